//! The report a ledger ends in: each test's result from its attempts, the quarantine file's marks, and
//! the exit code with its reason; and an attempt made from a collector event.

use super::*;
use crate::model::{
    CapturedSection, Location, PolicyInfo, Round, RunInfo, RunReport, SCHEMA_VERSION, Summary,
    TestResult, Tool,
};
use crate::quarantine::Quarantine;
use crate::runner::events::FailureEvent;
use crate::runner::exit::decide_exit;
use std::path::Path;

/// What the report needs besides the ledger: the run's command and times, its rounds, and the
/// quarantine file (read by the caller; an error makes the run exit 4).
pub(in crate::runner) struct ReportInput {
    pub(in crate::runner) command: Vec<String>,
    pub(in crate::runner) cwd: String,
    pub(in crate::runner) started_at: String,
    pub(in crate::runner) finished_at: String,
    pub(in crate::runner) duration_seconds: f64,
    pub(in crate::runner) rounds: Vec<Round>,
    pub(in crate::runner) quarantine: Result<Option<Quarantine>, String>,
    /// Today, for the quarantine file's expiry dates.
    pub(in crate::runner) today: chrono::NaiveDate,
}

impl Ledger {
    /// The run's report: each test's result, the summary, the exit code and its reason.
    pub(in crate::runner) fn into_report(self, input: ReportInput) -> RunReport {
        let Ledger {
            tests,
            files,
            session,
            collection_errors,
            mut warnings,
            ..
        } = self;
        let interrupted = self.interrupted;
        // Flaky tests whose policy says a flake fails the run (`fail_on_flaky`, or `flaky="fail"`).
        let failing_flakes: std::collections::HashSet<String> = tests
            .iter()
            .filter(|t| final_outcome(t) == Outcome::Flaky)
            .filter(|t| match self.markers.get(&*t.nodeid) {
                Some(m) => m.apply(&self.settings.policy).fail_on_flaky,
                None => self.settings.policy.fail_on_flaky,
            })
            .map(|t| t.nodeid.to_string())
            .collect();
        // New tests that failed on a repeat (`new_test_repeats`): caught before they merge.
        let new_flakes: std::collections::HashSet<String> = tests
            .iter()
            .filter(|t| final_outcome(t) == Outcome::Flaky && repeated(t))
            .map(|t| t.nodeid.to_string())
            .collect();
        let mut results = Vec::with_capacity(tests.len());
        for t in tests {
            let outcome = final_outcome(&t);
            let notes = t.notes.map(|n| *n).unwrap_or_default();
            results.push(TestResult {
                file: t.file.map(|f| files[f as usize].clone()),
                nodeid: t.nodeid.into(),
                outcome,
                line: t.line,
                duration_seconds: t.last_duration,
                reason: notes.reason,
                stopped_because: if outcome.is_failure() || notes.repeats > 0 {
                    notes.stopped_because
                } else {
                    None
                },
                classification: crate::classify::observe(outcome, &notes.attempts).map(Box::new),
                history: None,
                quarantine: None,
                attempts: notes.attempts,
            });
        }
        let mut report = RunReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run: RunInfo {
                command: input.command,
                cwd: input.cwd,
                python_version: session.as_ref().map(|s| s.python_version.clone()),
                pytest_version: session.as_ref().map(|s| s.pytest_version.clone()),
                python_executable: session.as_ref().and_then(|s| s.python_executable.clone()),
                rootdir: session.as_ref().map(|s| s.rootdir.clone()),
                started_at: input.started_at,
                finished_at: input.finished_at,
                duration_seconds: input.duration_seconds,
                exit_code: ExitCode::Ok,
                exit_reason: String::new(),
                interrupted,
                policy: PolicyInfo::from(&self.settings.policy),
                rounds: input.rounds,
                plugins: session
                    .as_ref()
                    .map(|s| s.plugins.clone())
                    .unwrap_or_default(),
            },
            summary: Summary::default(),
            tests: results,
            collection_errors,
            warnings: Vec::new(),
            ci: None,
        };
        // The quarantine file marks the tests it protects; their outcomes stay, their failures do not
        // decide the exit code.
        let quarantine_error = match input.quarantine {
            Ok(None) => None,
            Ok(Some(q)) => {
                warnings.extend(crate::quarantine::apply(
                    &mut report,
                    &q,
                    input.today,
                    self.settings.quarantine_grace_days,
                ));
                None
            }
            Err(e) => {
                warnings.push(e.clone());
                Some(e)
            }
        };
        report.summarize();
        report.summary.attempts_saved = self.attempts_saved;
        report.summary.seconds_saved = self.seconds_saved;
        let (mut exit, mut reason) = decide_exit(
            &report,
            self.early_exit,
            self.session_problem,
            self.collection_aborted,
        );
        let failing_flakes = report
            .tests
            .iter()
            .filter(|t| failing_flakes.contains(&t.nodeid) && !t.is_quarantined())
            .count();
        if exit == ExitCode::Ok && failing_flakes > 0 {
            exit = ExitCode::TestsFailed;
            reason = format!(
                "{failing_flakes} flaky test{} and flaky results are set to fail the run (fail_on_flaky)",
                if failing_flakes == 1 { "" } else { "s" }
            );
        }
        let new_flakes = report
            .tests
            .iter()
            .filter(|t| new_flakes.contains(&t.nodeid) && !t.is_quarantined())
            .count();
        if exit == ExitCode::Ok && new_flakes > 0 {
            exit = ExitCode::TestsFailed;
            reason = format!(
                "{} new to the history failed on a repeat: flaky before it merges (new_test_repeats)",
                if new_flakes == 1 {
                    "1 test".to_owned()
                } else {
                    format!("{new_flakes} tests")
                }
            );
        }
        if let Some(e) = quarantine_error {
            (exit, reason) = (ExitCode::UsageError, e);
        }
        if let Some(note) = (exit != ExitCode::Ok).then(|| reason.clone()) {
            if !warnings.contains(&note) && matches!(exit, ExitCode::InternalError) {
                warnings.push(note);
            }
        }
        report.run.exit_code = exit;
        report.run.exit_reason = reason;
        report.warnings = warnings;
        report
    }
}

pub(in crate::runner) fn final_outcome(t: &TestState) -> Outcome {
    let Some(last) = t.last else {
        return Outcome::NotRun;
    };
    let attempts = t.attempts();
    let failed_before = attempts.iter().any(|a| a.outcome.is_failure());
    match last {
        Outcome::Passed if failed_before => Outcome::Flaky,
        // A new test that passed, then failed on a repeat: its result depends on the run.
        other
            if other.is_failure()
                && repeated(t)
                && attempts.iter().any(|a| a.outcome == Outcome::Passed) =>
        {
            Outcome::Flaky
        }
        other => other,
    }
}

/// Whether the test was repeated as new to the history (`new_test_repeats`).
fn repeated(t: &TestState) -> bool {
    t.notes.as_ref().is_some_and(|n| n.repeats > 0)
}

pub(super) fn attempt_from_event(event: &TestEvent, round: u32, rootdir: &Path) -> Attempt {
    let outcome = Outcome::from(event.outcome);
    let mut attempt = Attempt {
        number: 0,
        round,
        outcome,
        phase: None,
        duration_seconds: event.duration,
        finished_at: rfc3339_from_epoch(event.stop),
        exception: None,
        crash: None,
        test_location: None,
        traceback: None,
        captured: Vec::new(),
        also_failed: Vec::new(),
        worker: event.worker.clone(),
        fingerprint: None,
        classification: None,
    };
    if let Some(first) = event.failures.first() {
        fill_failure(&mut attempt, first, rootdir);
        attempt.also_failed = event.failures[1..].iter().map(|f| f.phase).collect();
    }
    attempt
}

fn fill_failure(attempt: &mut Attempt, f: &FailureEvent, rootdir: &Path) {
    attempt.phase = Some(f.phase);
    let type_name = f
        .type_name
        .clone()
        .unwrap_or_else(|| "builtins.Exception".to_owned());
    let mro = if f.mro.is_empty() {
        vec![type_name.clone()]
    } else {
        f.mro.clone()
    };
    attempt.exception = Some(ExceptionInfo {
        type_name,
        mro,
        message: f.message.clone().unwrap_or_default(),
    });
    attempt.crash = f
        .crash_path
        .as_ref()
        .zip(f.crash_line)
        .map(|(path, line)| Location {
            file: relative_to(path, rootdir),
            line,
        });
    attempt.test_location = None;
    if let Some(line) = f.test_line {
        attempt.test_location = Some(Location {
            file: String::new(),
            line,
        });
    }
    attempt.traceback = f.traceback.clone();
    attempt.captured = f
        .sections
        .iter()
        .map(|(name, text)| CapturedSection {
            name: name.clone(),
            text: text.clone().unwrap_or_default(),
        })
        .collect();
}
