//! The ledger replayed on synthetic entries: each path a run can take, without pytest.
#![cfg(unix)]

use super::*;
use crate::model::RunReport;
use std::os::unix::process::ExitStatusExt;

/// A ledger whose tests get up to `max` attempts, with early stops on confirmed deterministic failures
/// set by `early_stop`.
pub(super) fn ledger(max: u32, early_stop: bool) -> Ledger {
    let mut settings = Settings::default();
    settings.policy.max_attempts = max;
    settings.early_stop = early_stop;
    Ledger::new(settings)
}

pub(super) fn collection(names: &[&str]) -> Entry<'static> {
    let collected: Collected = serde_json::from_value(serde_json::json!({
        "files": ["/r/tests/test_a.py"],
        "items": names.iter().enumerate().map(|(i, n)| {
            serde_json::json!([format!("tests/test_a.py::{n}"), 0, i + 1])
        }).collect::<Vec<_>>(),
    }))
    .unwrap();
    Entry::Collected {
        collected,
        rootdir: PathBuf::from("/r"),
    }
}

pub(super) fn id(name: &str) -> String {
    format!("tests/test_a.py::{name}")
}

/// A test's result; a failure raises `exc` with `message` at line 7.
pub(super) fn result(name: &str, outcome: &str, stop: f64) -> Entry<'static> {
    let failures = if matches!(outcome, "failed" | "error") {
        serde_json::json!([{
            "phase": if outcome == "failed" { "call" } else { "setup" },
            "type": "builtins.AssertionError",
            "mro": ["builtins.AssertionError", "builtins.Exception"],
            "message": "assert 1 == 2",
            "crash_path": "/r/tests/test_a.py",
            "crash_line": 7,
            "test_line": 5,
            "traceback": "def test():\n>   assert 1 == 2\nE   assert 1 == 2",
        }])
    } else {
        serde_json::json!([])
    };
    Entry::Finished(
        serde_json::from_value(serde_json::json!({
            "nodeid": id(name), "outcome": outcome, "duration": 0.25, "stop": stop,
            "reason": null, "worker": null, "failures": failures,
        }))
        .unwrap(),
    )
}

/// A round's end: pytest exited with `code` after its session finished with that status.
pub(super) fn ended(code: i32) -> RoundEnd {
    RoundEnd {
        status: ExitStatus::from_raw(code << 8),
        at: 1_000.0,
        hello: true,
        session: Some(
            serde_json::from_value(serde_json::json!({
                "protocol": crate::runner::events::PROTOCOL, "pytest_version": "9.0.2",
                "python_version": "3.11.2", "python_executable": "/usr/bin/python3",
                "rootdir": "/r", "inifile": null,
            }))
            .unwrap(),
        ),
        collected: true,
        collect_errors: Vec::new(),
        any_test: true,
        interrupted: false,
        finish: Some(SessionFinish {
            exitstatus: code,
            shouldstop: None,
            shouldfail: None,
            testsfailed: u64::from(code == 1),
        }),
    }
}

/// A round's end after pytest was killed by `signal` mid-round: no session finish.
fn killed(signal: i32) -> RoundEnd {
    RoundEnd {
        status: ExitStatus::from_raw(signal),
        finish: None,
        ..ended(0)
    }
}

pub(super) fn report(ledger: Ledger) -> RunReport {
    ledger.into_report(ReportInput {
        command: vec!["pytest".into()],
        cwd: "/r".into(),
        started_at: "2026-12-06T10:00:00Z".into(),
        finished_at: "2026-12-06T10:00:05Z".into(),
        duration_seconds: 5.0,
        rounds: Vec::new(),
        quarantine: Ok(None),
        today: chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
    })
}

pub(super) fn outcome_of(report: &RunReport, name: &str) -> (Outcome, usize, Option<String>) {
    let t = report.tests.iter().find(|t| t.nodeid == id(name)).unwrap();
    (
        t.outcome,
        t.attempts.len(),
        t.stopped_because.clone().or(t.reason.clone()),
    )
}

pub(super) fn round(
    ledger: &mut Ledger,
    number: u32,
    entries: Vec<Entry<'_>>,
    end: RoundEnd,
    selection: Option<&[u32]>,
) {
    ledger.apply(Entry::RoundStarted { number });
    for entry in entries {
        ledger.apply(entry);
    }
    ledger.apply(Entry::RoundEnded {
        end: Box::new(end),
        selection,
    });
}

#[test]
fn a_failure_that_passes_on_its_rerun_is_flaky_and_the_run_passes() {
    let mut l = ledger(3, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b"]));
    l.apply(Entry::Started { nodeid: &id("a") });
    l.apply(result("a", "failed", 100.0));
    assert!(
        l.retry_due(),
        "a failed with attempts left: the next round may start"
    );
    l.apply(result("b", "passed", 100.5));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    assert_eq!(l.queued(), vec![(0, 100.0)], "a is due at once (no delay)");

    round(
        &mut l,
        2,
        vec![result("a", "passed", 200.0)],
        ended(0),
        Some(&[0]),
    );
    assert!(l.queued().is_empty());
    let r = report(l);
    assert_eq!(outcome_of(&r, "a"), (Outcome::Flaky, 2, None));
    assert_eq!(outcome_of(&r, "b"), (Outcome::Passed, 0, None));
    assert_eq!(r.run.exit_code, ExitCode::Ok);
    assert_eq!(r.run.exit_reason, "all tests passed; 1 flaky");
    let first = &r.tests[0].attempts[0];
    assert_eq!(first.round, 1);
    assert_eq!(
        first.crash.as_ref().map(|c| (c.file.as_str(), c.line)),
        Some(("tests/test_a.py", 7))
    );
    assert_eq!(
        first.test_location.as_ref().map(|c| c.file.as_str()),
        Some("tests/test_a.py")
    );
}

#[test]
fn a_test_that_fails_the_same_way_twice_stops_early_and_counts_what_it_saved() {
    let mut l = ledger(4, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    round(
        &mut l,
        2,
        vec![result("a", "failed", 200.0)],
        ended(1),
        Some(&[0]),
    );
    assert!(
        l.queued().is_empty(),
        "the same failure twice is deterministic"
    );
    let r = report(l);
    let (outcome, attempts, why) = outcome_of(&r, "a");
    assert_eq!((outcome, attempts), (Outcome::Failed, 2));
    assert!(why.unwrap().contains("deterministic"));
    assert_eq!(r.summary.attempts_saved, 2);
    assert_eq!(r.run.exit_code, ExitCode::TestsFailed);
    assert_eq!(r.run.exit_reason, "1 failed after reruns");
}

#[test]
fn without_early_stop_a_broken_test_uses_every_attempt() {
    let mut l = ledger(3, false);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "error", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    for number in 2..=3 {
        round(
            &mut l,
            number,
            vec![result("a", "error", 100.0 * f64::from(number))],
            ended(1),
            Some(&[0]),
        );
    }
    assert!(l.queued().is_empty());
    let r = report(l);
    let (outcome, attempts, why) = outcome_of(&r, "a");
    assert_eq!((outcome, attempts), (Outcome::Error, 3));
    assert!(why.unwrap().contains("3"), "names the attempt limit");
    assert_eq!(r.summary.attempts_saved, 0);
}

#[test]
fn a_crash_mid_test_charges_the_running_test_and_carries_the_rest_free() {
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b", "c"]));
    l.apply(Entry::Started { nodeid: &id("a") });
    l.apply(result("a", "passed", 100.0));
    l.apply(Entry::Started { nodeid: &id("b") });
    l.apply(Entry::RoundEnded {
        end: Box::new(killed(11)),
        selection: None,
    });
    // b was running: an error attempt, due again; c never started: carried without an attempt.
    assert_eq!(l.queued(), vec![(1, 1_000.0), (2, 0.0)]);
    assert_eq!(l.tests[2].runs, 0);
    assert_eq!(
        l.warnings,
        ["round 1: pytest died before finishing the round (killed by signal 11 (SIGSEGV))"]
    );

    round(
        &mut l,
        2,
        vec![
            result("b", "passed", 1_100.0),
            result("c", "passed", 1_100.5),
        ],
        ended(0),
        Some(&[1, 2]),
    );
    let r = report(l);
    let b = &r.tests[1];
    assert_eq!(b.outcome, Outcome::Flaky);
    assert_eq!(b.attempts[0].phase, Some(Phase::Crash));
    assert_eq!(
        b.attempts[0].exception.as_ref().unwrap().message,
        "pytest died while this test ran (killed by signal 11 (SIGSEGV))"
    );
    assert_eq!(outcome_of(&r, "c"), (Outcome::Passed, 0, None));
    assert_eq!(r.run.exit_code, ExitCode::Ok);
}

#[test]
fn an_early_stop_carries_the_unrun_tests_only_while_reruns_are_pending() {
    let stopped = |end: RoundEnd| RoundEnd {
        finish: end.finish.map(|f| SessionFinish {
            shouldfail: Some("stopping after 1 failures".into()),
            ..f
        }),
        ..end
    };
    // -x with attempts left: the failure is rerun and the tests -x skipped run in that round, free.
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(stopped(ended(1))),
        selection: None,
    });
    assert_eq!(l.queued(), vec![(0, 100.0), (1, 0.0)]);

    // No attempts left: the unrun test is reported as not run, with pytest's reason.
    let mut l = ledger(1, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(stopped(ended(1))),
        selection: None,
    });
    assert!(l.queued().is_empty());
    let r = report(l);
    assert_eq!(
        outcome_of(&r, "b"),
        (
            Outcome::NotRun,
            0,
            Some("pytest stopped early: stopping after 1 failures".into())
        )
    );
    assert_eq!(r.run.exit_code, ExitCode::TestsFailed);
}

#[test]
fn an_interrupt_settles_everything_and_names_the_test_that_was_running() {
    let mut l = ledger(3, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b", "c"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::Started { nodeid: &id("b") });
    let end = RoundEnd {
        interrupted: true,
        ..ended(2)
    };
    l.apply(Entry::RoundEnded {
        end: Box::new(end),
        selection: None,
    });
    assert!(l.interrupted);
    l.apply(Entry::Interrupted);
    assert!(l.queued().is_empty(), "nothing runs after a signal");
    let r = report(l);
    assert_eq!(
        outcome_of(&r, "a"),
        (Outcome::Failed, 1, Some("the run was interrupted".into()))
    );
    assert_eq!(
        outcome_of(&r, "b"),
        (
            Outcome::NotRun,
            0,
            Some("the run was interrupted while it ran".into())
        )
    );
    assert_eq!(
        outcome_of(&r, "c"),
        (Outcome::NotRun, 0, Some("the run was interrupted".into()))
    );
    assert_eq!(
        (r.run.exit_code, r.run.interrupted),
        (ExitCode::Interrupted, true)
    );
}

#[test]
fn a_rerun_round_that_runs_nothing_settles_its_tests_instead_of_spinning() {
    let mut l = ledger(3, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    round(&mut l, 2, Vec::new(), ended(4), Some(&[0]));
    assert!(l.queued().is_empty());
    let why = "the round 2 pytest process ran none of its tests (exit status 4)";
    assert_eq!(l.warnings, [why]);
    let r = report(l);
    assert_eq!(
        outcome_of(&r, "a"),
        (
            Outcome::Failed,
            1,
            Some("pytest did not run it in round 2".into())
        )
    );
}

#[test]
fn a_test_the_rerun_round_no_longer_collects_is_settled_with_that_reason() {
    let mut l = ledger(3, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a", "b"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(result("b", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    let listed: Collected = serde_json::from_value(serde_json::json!({
        "files": ["/r/tests/test_a.py"], "items": [[id("b"), 0, 2]],
    }))
    .unwrap();
    l.apply(Entry::RoundStarted { number: 2 });
    l.apply(Entry::Listed(&listed));
    l.apply(result("b", "passed", 200.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(0)),
        selection: Some(&[0, 1]),
    });
    let r = report(l);
    assert_eq!(
        outcome_of(&r, "a"),
        (
            Outcome::Failed,
            1,
            Some("round 2 did not collect it again".into())
        )
    );
    assert_eq!(outcome_of(&r, "b").0, Outcome::Flaky);
}

#[test]
fn the_first_round_decides_whether_there_is_a_run_at_all() {
    // The collector never reported in: the command's environment did not reach pytest.
    let mut l = ledger(2, true);
    round(
        &mut l,
        1,
        Vec::new(),
        RoundEnd {
            hello: false,
            ..ended(0)
        },
        None,
    );
    let (code, why) = l.early_exit.clone().unwrap();
    assert_eq!(code, ExitCode::InternalError);
    assert!(
        why.starts_with("the collector plugin never reported in"),
        "{why}"
    );

    // Stopped before collecting, on a usage error pytest printed itself.
    let mut l = ledger(2, true);
    let end = RoundEnd {
        collected: false,
        finish: None,
        ..ended(4)
    };
    round(&mut l, 1, Vec::new(), end, None);
    assert_eq!(
        l.early_exit,
        Some((
            ExitCode::UsageError,
            "pytest stopped on a usage error before running tests".into()
        ))
    );

    // Collection errors stopped pytest (exit 2) before any test ran.
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    let end = RoundEnd {
        collect_errors: vec![("tests/test_b.py".into(), "ImportError: no module b".into())],
        any_test: false,
        ..ended(2)
    };
    l.apply(Entry::RoundEnded {
        end: Box::new(end),
        selection: None,
    });
    let r = report(l);
    assert_eq!(
        (r.run.exit_code, r.run.exit_reason.as_str()),
        (
            ExitCode::Interrupted,
            "pytest stopped: errors during collection"
        )
    );
    assert_eq!(r.collection_errors.len(), 1);
    assert_eq!(
        outcome_of(&r, "a"),
        (
            Outcome::NotRun,
            0,
            Some("pytest stopped after errors during collection".into())
        )
    );
}

#[test]
fn invalid_settings_stop_the_run_before_any_test_with_exit_4() {
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(Entry::RoundEnded {
        end: Box::new(RoundEnd {
            any_test: false,
            ..ended(4)
        }),
        selection: None,
    });
    l.apply(Entry::InvalidSettings(
        "smart_rerun_max = 0: must be at least 1".into(),
    ));
    let r = report(l);
    assert_eq!(r.run.exit_code, ExitCode::UsageError);
    assert_eq!(r.run.exit_reason, "smart_rerun_max = 0: must be at least 1");
    assert_eq!(
        outcome_of(&r, "a"),
        (
            Outcome::NotRun,
            0,
            Some("not run: smart-rerun stopped on invalid settings".into())
        )
    );
}

#[test]
fn a_session_that_fails_with_no_failed_test_fails_the_run() {
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "passed", 100.0));
    let mut end = ended(1);
    end.finish.as_mut().unwrap().testsfailed = 0;
    l.apply(Entry::RoundEnded {
        end: Box::new(end),
        selection: None,
    });
    let r = report(l);
    assert_eq!(r.run.exit_code, ExitCode::TestsFailed);
    assert!(
        r.run.exit_reason.contains("--cov-fail-under"),
        "{}",
        r.run.exit_reason
    );
}

#[test]
fn a_flake_fails_the_run_when_its_policy_says_so() {
    let mut l = ledger(2, true);
    l.settings.policy.fail_on_flaky = true;
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    round(
        &mut l,
        2,
        vec![result("a", "passed", 200.0)],
        ended(0),
        Some(&[0]),
    );
    let r = report(l);
    assert_eq!(r.run.exit_code, ExitCode::TestsFailed);
    assert!(
        r.run.exit_reason.contains("fail_on_flaky"),
        "{}",
        r.run.exit_reason
    );
}

#[test]
fn an_unreadable_quarantine_file_fails_the_run_with_exit_4() {
    let mut l = ledger(2, true);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["a"]));
    l.apply(result("a", "passed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(0)),
        selection: None,
    });
    let r = l.into_report(ReportInput {
        quarantine: Err("q.toml:3: expires: not a date".into()),
        ..ReportInput {
            command: Vec::new(),
            cwd: "/r".into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_seconds: 0.0,
            rounds: Vec::new(),
            quarantine: Ok(None),
            today: chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
        }
    });
    assert_eq!(
        (r.run.exit_code, r.run.exit_reason.as_str()),
        (ExitCode::UsageError, "q.toml:3: expires: not a date")
    );
    assert!(
        r.warnings
            .contains(&"q.toml:3: expires: not a date".to_owned())
    );
}

#[test]
fn the_running_tests_are_kept_in_start_order_and_finished_ones_pruned() {
    let mut round = Tally::new(2, 1000);
    for i in (0..1000).rev() {
        round.started(i);
        if i != 700 && i != 40 {
            round.seen[i] = Seen::Ran;
        }
    }
    // Started again: once running, or after its result (an in-process rerun plugin).
    round.started(700);
    round.started(3);
    assert!(round.running.len() <= 8, "{:?}", round.running);
    let running: Vec<u32> = round
        .running
        .iter()
        .copied()
        .filter(|&i| round.seen[i as usize] == Seen::Running)
        .collect();
    assert_eq!(running, vec![700, 40]);
}

fn attempt(number: u32, outcome: Outcome) -> Attempt {
    serde_json::from_value(serde_json::json!({
        "number": number, "round": number, "outcome": outcome, "duration_seconds": 0.1,
    }))
    .unwrap()
}

fn test_state(attempts: &[Outcome]) -> TestState {
    let mut t = TestState {
        nodeid: "t.py::test_a".into(),
        file: None,
        line: None,
        runs: attempts.len() as u32,
        last: attempts.last().copied(),
        last_duration: 0.1,
        last_stop: 0.0,
        status: Status::Done,
        notes: None,
    };
    if attempts.iter().any(|o| o.is_failure()) {
        t.notes.get_or_insert_default().attempts = attempts
            .iter()
            .enumerate()
            .map(|(i, &o)| attempt(i as u32 + 1, o))
            .collect();
    }
    t
}

#[test]
fn a_test_s_final_outcome_follows_from_its_attempts() {
    use Outcome::*;
    let cases: &[(&[Outcome], Outcome)] = &[
        (&[Passed], Passed),
        (&[Failed, Passed], Flaky),
        (&[Error, Failed, Passed], Flaky),
        (&[Failed, Failed], Failed),
        (&[Failed, Error], Error),
        (&[Skipped], Skipped),
        (&[Xfailed], Xfailed),
        // Collected, never run: pytest died first, or the run was interrupted.
        (&[], NotRun),
    ];
    for (attempts, expected) in cases {
        assert_eq!(
            final_outcome(&test_state(attempts)),
            *expected,
            "{attempts:?}"
        );
    }
}
