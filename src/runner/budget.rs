//! The settings in force and what they allow: the first round's verdict on the ini values and markers,
//! each test's policy (its marker's, else the run's), and the run-wide failure and rerun budgets.

use super::ledger::Status;
use super::*;

impl Run<'_> {
    /// Validates the ini values and markers pytest reported, with the command line and environment over
    /// them, and tells the waiting collector to go on or to stop (exit 4) before any test runs.
    pub(super) fn give_verdict(
        &mut self,
        session: Option<&SessionStart>,
        collected: Option<&Collected>,
        path: &Path,
    ) -> std::io::Result<()> {
        self.verdict_given = true;
        let mut errors = Vec::new();
        if let Some(session) = session {
            let inifile = session.inifile.as_deref().map(Path::new);
            let mut layer = RawLayer::from_ini(&session.ini, inifile);
            layer.mark_overrides(&session.ini_overrides);
            layer.update(&self.config.layer);
            match Settings::from_layer(&layer, &|n| std::env::var(n).ok(), &self.config.cwd) {
                Ok(settings) => self.ledger.settings = settings,
                Err(e) => errors.extend(e.0),
            }
            let invoked = session
                .invocation_dir
                .as_deref()
                .map_or_else(|| self.config.cwd.clone(), PathBuf::from);
            self.ledger.settings.pytest_junitxml =
                session.junitxml.as_deref().map(|p| invoked.join(p));
            self.ledger.settings.junit_suite_name = session.junit_suite_name.clone();
        }
        if let Some(collected) = collected {
            for (idx, markers) in &collected.markers {
                let Some((nodeid, _, _)) = idx
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| collected.items.get(i))
                else {
                    continue;
                };
                match config::marker::parse(nodeid, markers) {
                    Ok(Some(policy)) => {
                        self.ledger.markers.insert(nodeid.clone(), policy);
                    }
                    Ok(None) => {}
                    Err(e) => errors.extend(e),
                }
            }
        }
        if let Some(session) = session {
            let flaky_marked = self.ledger.markers.values().any(|m| m.from == "flaky");
            for (plugin, state) in &session.rerun_plugins {
                let switched_on = state.as_object().is_some_and(|o| {
                    o.values()
                        .any(|v| v.as_u64().is_some_and(|n| n > 0) || v.as_bool() == Some(true))
                });
                if switched_on || flaky_marked {
                    let module = match plugin.as_str() {
                        "pytest-rerunfailures" => "rerunfailures",
                        "pytest-retry" => "pytest_retry",
                        other => other,
                    };
                    self.ledger.warnings.push(format!(
                        "{plugin} is active in this run: it reruns failed tests inside the same pytest process, \
                         and smart-rerun then reruns them again. Disable it for smart-rerun's runs with \
                         `-p no:{module}` in the command (or PYTEST_ADDOPTS=\"-p no:{module}\"); \
                         smart-rerun reads @pytest.mark.flaky(reruns=N, reruns_delay=S) itself"
                    ));
                }
            }
        }
        let body = if errors.is_empty() {
            if let Some(prior) = self.prior.take() {
                self.ledger.connect_prior(prior);
            }
            serde_json::json!({ "abort": false, "render": self.render_plan(1) })
        } else {
            let errors = ConfigErrors(errors);
            let message = format!("smart-rerun: {errors}");
            self.config_errors = Some(errors);
            serde_json::json!({ "abort": true, "message": message })
        };
        // Whole, then renamed into place: a pytest waiting for the file never reads half of it.
        crate::output::write_atomic(path, |f| {
            std::io::Write::write_all(f, &serde_json::to_vec(&body)?)
        })
    }
}

impl Ledger {
    /// `max_failures`: when more tests than that failed in the first round, the build is broken, not
    /// flaky; nothing is rerun.
    pub(super) fn apply_failure_budget(&mut self) {
        let Some(limit) = self.settings.max_failures else {
            return;
        };
        let failed = self
            .tests
            .iter()
            .filter(|t| t.last.is_some_and(Outcome::is_failure))
            .count();
        if failed as u64 <= limit as u64 {
            return;
        }
        let why = format!(
            "{} failed in the first round, more than max_failures = {limit}: the build looks broken, not flaky, so nothing was rerun",
            counted(failed, "test")
        );
        let mut held = 0;
        for t in &mut self.tests {
            if t.runs > 0 && matches!(t.status, Status::Queued { .. }) {
                t.status = Status::Done;
                t.set_stopped_because(Some(why.clone()));
                held += 1;
            }
        }
        if held > 0 {
            self.warnings.push(why);
        }
    }

    /// `max_reruns`: trims a round's reruns to what is left of the budget; continuation runs are free.
    pub(super) fn apply_rerun_budget(&mut self, tests: &mut Vec<usize>) {
        let all = &self.tests;
        let Some(limit) = self.settings.max_reruns else {
            self.reruns_started += tests.iter().filter(|&&i| all[i].runs > 0).count() as u32;
            return;
        };
        let mut started = self.reruns_started;
        let before = tests.len();
        tests.retain(|&i| {
            if all[i].runs == 0 {
                return true;
            }
            started += 1;
            started <= limit
        });
        self.reruns_started = started.min(limit);
        if tests.len() == before {
            return;
        }
        let why = format!("the run's rerun budget (max_reruns = {limit}) is spent");
        let kept: std::collections::HashSet<usize> = tests.iter().copied().collect();
        for (i, t) in self.tests.iter_mut().enumerate() {
            if t.runs > 0 && matches!(t.status, Status::Queued { .. }) && !kept.contains(&i) {
                t.status = Status::Done;
                t.set_stopped_because(Some(why.clone()));
            }
        }
        if !self.warnings.contains(&why) {
            self.warnings.push(why);
        }
    }
}

/// Whether `max_reruns` leaves nothing to rerun.
pub(super) fn rerun_budget_spent(limit: Option<u32>, started: u32) -> bool {
    limit.is_some_and(|limit| started >= limit)
}
