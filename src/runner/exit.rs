//! How a run ends: the quarantine file's marks on the report, then the exit code and its reason.

use super::*;

/// Marks the tests the quarantine file protects (see [`crate::quarantine::apply`]) and adds its
/// warnings; returns the error of a file that cannot be read or parsed (checked before the run when
/// its path is known then; one set in an ini file is read here).
pub(super) fn apply_quarantine(
    settings: &Settings,
    cwd: &Path,
    report: &mut RunReport,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match crate::quarantine::Quarantine::load_for_run(settings.quarantine.as_deref(), cwd) {
        Ok(None) => None,
        Ok(Some(mut q)) => {
            // Shown as the user wrote it, relative to the current directory when it is inside.
            if let Ok(rel) = q.path.strip_prefix(cwd) {
                q.path = rel.to_path_buf();
            }
            let today = chrono::Local::now().date_naive();
            warnings.extend(crate::quarantine::apply(
                report,
                &q,
                today,
                settings.quarantine_grace_days,
            ));
            None
        }
        Err(e) => {
            let e = crate::errors::chain(&e);
            warnings.push(e.clone());
            Some(e)
        }
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
