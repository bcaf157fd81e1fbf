//! How a run ends: the quarantine file in force, and the exit code with its reason.

use super::*;

/// The quarantine file in force (see [`crate::quarantine::apply`]), or the error of one that cannot be
/// read or parsed (checked before the run when its path is known then; one set in an ini file is read
/// here).
pub(super) fn load_quarantine(
    settings: &Settings,
    cwd: &Path,
) -> Result<Option<crate::quarantine::Quarantine>, String> {
    match crate::quarantine::Quarantine::load_for_run(settings.quarantine.as_deref(), cwd) {
        Ok(q) => Ok(q.map(|mut q| {
            // Shown as the user wrote it, relative to the current directory when it is inside.
            if let Ok(rel) = q.path.strip_prefix(cwd) {
                q.path = rel.to_path_buf();
            }
            q
        })),
        Err(e) => Err(crate::errors::chain(&e)),
    }
}

/// The run's exit code, pytest's way, and why.
pub(super) fn decide_exit(
    report: &RunReport,
    early: Option<(ExitCode, String)>,
    session_problem: Option<(ExitCode, String)>,
    collection_aborted: bool,
) -> (ExitCode, String) {
    let s = &report.summary;
    if let Some(early) = early {
        return early;
    }
    if report.run.interrupted {
        return (ExitCode::Interrupted, "the run was interrupted".into());
    }
    if collection_aborted {
        return (
            ExitCode::Interrupted,
            "pytest stopped: errors during collection".into(),
        );
    }
    // A quarantined test's failure counts as if it had passed.
    let unprotected = |o: Outcome| {
        report
            .tests
            .iter()
            .filter(|t| t.outcome == o && !t.is_quarantined())
            .count()
    };
    let (failed, errors) = if s.quarantined_failures > 0 {
        (unprotected(Outcome::Failed), unprotected(Outcome::Error))
    } else {
        (s.failed, s.errors)
    };
    let failing = failed + errors + s.collection_errors;
    if failing > 0 {
        let mut parts = Vec::new();
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        if errors > 0 {
            parts.push(format!(
                "{errors} error{}",
                if errors == 1 { "" } else { "s" }
            ));
        }
        if s.collection_errors > 0 {
            parts.push(format!(
                "{} collection error{}",
                s.collection_errors,
                if s.collection_errors == 1 { "" } else { "s" }
            ));
        }
        return (
            ExitCode::TestsFailed,
            format!("{} after reruns", parts.join(", ")),
        );
    }
    if let Some(problem) = session_problem {
        return problem;
    }
    if s.total == 0 {
        return (ExitCode::NoTestsCollected, "no tests were collected".into());
    }
    let quarantined = match s.quarantined_failures {
        0 => String::new(),
        n => format!(
            "; {n} quarantined test{} failed",
            if n == 1 { "" } else { "s" }
        ),
    };
    if s.flaky > 0 {
        return (
            ExitCode::Ok,
            format!("all tests passed; {} flaky{quarantined}", s.flaky),
        );
    }
    (ExitCode::Ok, format!("all tests passed{quarantined}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CollectionError, RunInfo, SCHEMA_VERSION, Summary, Tool};

    fn summarized(outcomes: &[Outcome], collection_errors: usize, interrupted: bool) -> RunReport {
        let mut r = RunReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run: RunInfo {
                interrupted,
                ..RunInfo::default()
            },
            summary: Summary::default(),
            tests: outcomes
                .iter()
                .map(|&outcome| {
                    serde_json::from_value(serde_json::json!({
                        "nodeid": "t.py::x", "outcome": outcome, "file": null, "line": null,
                        "duration_seconds": 0.0,
                    }))
                    .unwrap()
                })
                .collect(),
            collection_errors: (0..collection_errors)
                .map(|_| CollectionError {
                    nodeid: "t.py".into(),
                    traceback: String::new(),
                })
                .collect(),
            warnings: Vec::new(),
            ci: None,
        };
        r.summarize();
        r
    }

    #[test]
    fn the_exit_code_and_its_reason_follow_pytest() {
        use Outcome::*;
        let usage = Some((ExitCode::UsageError, "bad settings".to_owned()));
        let crashed = Some((ExitCode::InternalError, "pytest crashed".to_owned()));
        let cases = [
            // (tests, collection errors, interrupted, early exit, session problem, collection aborted)
            (
                summarized(&[Passed, Passed], 0, false),
                None,
                None,
                false,
                (ExitCode::Ok, "all tests passed"),
            ),
            (
                summarized(&[Passed, Flaky], 0, false),
                None,
                None,
                false,
                (ExitCode::Ok, "all tests passed; 1 flaky"),
            ),
            (
                summarized(&[Failed, Error, Error, Flaky], 1, false),
                None,
                None,
                false,
                (
                    ExitCode::TestsFailed,
                    "1 failed, 2 errors, 1 collection error after reruns",
                ),
            ),
            (
                summarized(&[], 0, false),
                None,
                None,
                false,
                (ExitCode::NoTestsCollected, "no tests were collected"),
            ),
            (
                summarized(&[Passed, NotRun], 0, true),
                None,
                None,
                false,
                (ExitCode::Interrupted, "the run was interrupted"),
            ),
            (
                summarized(&[], 1, false),
                None,
                None,
                true,
                (
                    ExitCode::Interrupted,
                    "pytest stopped: errors during collection",
                ),
            ),
            // An early exit (invalid settings) outranks everything the tests did.
            (
                summarized(&[Failed], 0, true),
                usage.clone(),
                None,
                false,
                (ExitCode::UsageError, "bad settings"),
            ),
            // A session problem counts only when no test failed.
            (
                summarized(&[Passed], 0, false),
                None,
                crashed.clone(),
                false,
                (ExitCode::InternalError, "pytest crashed"),
            ),
            (
                summarized(&[Failed], 0, false),
                None,
                crashed,
                false,
                (ExitCode::TestsFailed, "1 failed after reruns"),
            ),
        ];
        for (report, early, problem, aborted, (code, reason)) in cases {
            assert_eq!(
                decide_exit(&report, early, problem, aborted),
                (code, reason.to_owned()),
                "{:?}",
                report.summary
            );
        }
    }
}
