//! What the ledger asks the history ([`Prior`]): which passed tests are new, to repeat them
//! (`new_test_repeats`), and what it knows of a test's first failure (`history_policy`).

use super::*;

impl Ledger {
    /// Uses `prior` for what history knows, once the settings in force ask for it (`new_test_repeats`,
    /// `history_policy`) and name a history to open; otherwise it is dropped. Called once the first
    /// round's settings are final, before any test runs.
    pub(in crate::runner) fn connect_prior(&mut self, mut prior: Box<dyn Prior>) {
        let s = &self.settings;
        let wanted: Vec<&str> = [
            (s.new_test_repeats > 0, "smart_rerun_new_test_repeats"),
            (s.history_policy, "smart_rerun_history_policy"),
        ]
        .into_iter()
        .filter_map(|(on, key)| on.then_some(key))
        .collect();
        if wanted.is_empty() {
            return;
        }
        let Some(location) = s.history.as_deref() else {
            self.warnings.push(format!(
                "{} need{} a history (smart_rerun_history, --history): ignored",
                wanted.join(" and "),
                if wanted.len() == 1 { "s" } else { "" }
            ));
            return;
        };
        match prior.open(location) {
            Ok(()) => self.prior = Some(prior),
            Err(e) => self.prior_failed(e),
        }
    }

    /// The history failed: said once, and not asked again.
    pub(super) fn prior_failed(&mut self, e: String) {
        self.prior = None;
        self.warnings.push(format!(
            "history not used for retries and repeats: {} (the run goes on without it)",
            e.replace(['\n', '\r'], " ")
        ));
    }

    /// Passed tests the history has never seen, to run again (`new_test_repeats`); `None`, with a
    /// warning saying why, when there are none to repeat.
    pub(in crate::runner) fn new_tests(&mut self) -> Vec<u32> {
        let times = self.settings.new_test_repeats;
        let Some(prior) = self.prior.as_mut().filter(|_| times > 0) else {
            return Vec::new();
        };
        let candidates: Vec<u32> = (0..self.tests.len() as u32)
            .filter(|&i| {
                let t = &self.tests[i as usize];
                t.runs == 1 && t.last == Some(Outcome::Passed) && t.notes.is_none()
            })
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let nodeids: Vec<&str> = candidates
            .iter()
            .map(|&i| &*self.tests[i as usize].nodeid)
            .collect();
        let unseen = match prior.unseen(&nodeids) {
            Ok(Some(unseen)) => unseen,
            Ok(None) => {
                self.warnings.push(
                    "new_test_repeats: the history has no runs yet, so no test counts as new; repeats start with the next run"
                        .into(),
                );
                return Vec::new();
            }
            Err(e) => {
                self.prior_failed(e);
                return Vec::new();
            }
        };
        let new: Vec<u32> = candidates
            .into_iter()
            .zip(unseen)
            .filter_map(|(i, unseen)| unseen.then_some(i))
            .collect();
        if new.len() * 3 > self.tests.len() && new.len() > 3 {
            self.warnings.push(format!(
                "new_test_repeats: {} of {} are new to the history, more than a third of the suite: the history is probably another suite's, so none was repeated",
                counted(new.len(), "test"),
                self.tests.len()
            ));
            return Vec::new();
        }
        new
    }

    /// What history says of test `i`'s failure with this fingerprint (`history_policy`): the attempts
    /// it gives a known flaky test (kept in its notes), and in how many earlier runs the same failure
    /// failed it for good. Asked on its first failure only.
    pub(super) fn consult_prior(&mut self, i: usize, fingerprint: Option<&str>) -> u32 {
        if !self.settings.history_policy || self.tests[i].runs != 1 {
            return 0;
        }
        let Some(prior) = self.prior.as_mut() else {
            return 0;
        };
        let nodeid = &*self.tests[i].nodeid;
        let asked = prior.flakes(nodeid).and_then(|(flaky, runs)| {
            let failed_for_good = match fingerprint {
                Some(fp) => prior.failed_for_good(nodeid, fp)?,
                None => 0,
            };
            Ok((flaky, runs, failed_for_good))
        });
        match asked {
            Ok((flaky, runs, failed_for_good)) => {
                let percent = u64::from(self.settings.history_flaky_percent);
                if flaky > 0 && u64::from(flaky) * 100 >= percent * u64::from(runs) {
                    let max = self.settings.history_max;
                    self.tests[i].notes.get_or_insert_default().history_max = Some(max);
                }
                failed_for_good
            }
            Err(e) => {
                self.prior_failed(e);
                0
            }
        }
    }
}
