//! What history changes while a run runs, through the real binary and real pytest: tests new to the
//! history repeated in a rerun round (`--new-test-repeats`), and retries adjusted from history
//! (`--history-policy`): more attempts for a known flaky test, none after a known failure. Each on the
//! embedded SQLite history and on a real PostgreSQL server the test starts.

use crate::common::{Project, RunOutput};
use crate::postgres::PgServer;

const OLD: &str = r#"
def test_old(attempt):
    pass
"#;

/// A new stable test, and a new test that fails on its third run only (a race that shows now and then).
const NEW: &str = r#"
def test_new_stable(attempt):
    pass

def test_new_racy(attempt):
    assert attempt != 3, "the third run lost the race"
"#;

fn db(p: &Project) -> String {
    p.path().join("history.db").to_str().unwrap().to_owned()
}

fn warnings(run: &RunOutput) -> Vec<String> {
    run.report()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn tests_new_to_the_history_run_again_and_a_new_flaky_one_fails_the_run() {
    let p = Project::new();
    let db = db(&p);
    new_tests_repeat(&p, &db);
}

#[test]
fn tests_new_to_a_postgres_history_run_again() {
    let pg = PgServer::start();
    new_tests_repeat(&Project::new(), &pg.database("repeats"));
}

fn new_tests_repeat(p: &Project, db: &str) {
    p.file("test_old.py", OLD);
    let first = p.run(&["--history", db, "--new-test-repeats", "3"], &[]);
    assert_eq!(first.code, 0, "{}", first.dump());
    // The history had no runs: no test counts as new, nothing is repeated.
    assert_eq!(p.count("test_old.py::test_old"), 1);
    assert!(
        warnings(&first)
            .iter()
            .any(|w| w.contains("the history has no runs yet")),
        "{:?}",
        warnings(&first)
    );

    p.file("test_new.py", NEW);
    let run = p.run(&["--history", db, "--new-test-repeats", "3"], &[]);
    assert_eq!(run.code, 1, "{}", run.dump());
    let report = run.report();
    assert_eq!(
        report["run"]["exit_reason"],
        "1 test new to the history failed on a repeat: flaky before it merges (new_test_repeats)"
    );
    // The old test ran once; each new test ran once in the first round and three times in the second.
    assert_eq!(p.count("test_old.py::test_old"), 2);
    assert_eq!(run.outcome("test_old.py::test_old"), "passed");
    assert_eq!(run.attempts("test_old.py::test_old"), 0);
    for new in ["test_new.py::test_new_stable", "test_new.py::test_new_racy"] {
        assert_eq!(p.count(new), 4, "{new}");
        assert_eq!(run.attempts(new), 4, "{new}: {}", run.dump());
    }
    assert_eq!(run.outcome("test_new.py::test_new_stable"), "passed");
    let racy = run.test("test_new.py::test_new_racy");
    assert_eq!(racy["outcome"], "flaky");
    let outcomes: Vec<&str> = racy["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["passed", "passed", "failed", "passed"]);
    let rounds: Vec<u64> = racy["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, [1, 2, 2, 2], "the repeats run in one round");
    assert_eq!(
        racy["stopped_because"],
        "a test new to the history: it passed, then failed on repeat 2 of 3 (smart_rerun_new_test_repeats)"
    );
    assert!(
        racy["attempts"][2]["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("the third run lost the race")
    );

    // Now the history knows them: the next run repeats nothing.
    let again = p.run(&["--history", db, "--new-test-repeats", "3"], &[]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(p.count("test_new.py::test_new_stable"), 5);
}

#[test]
fn new_test_repeats_without_a_history_say_so_and_change_nothing() {
    let p = Project::new();
    p.file("test_old.py", OLD);
    let run = p.run(&["--new-test-repeats", "2"], &[]);
    assert_eq!(run.code, 0, "{}", run.dump());
    assert_eq!(p.count("test_old.py::test_old"), 1);
    assert_eq!(
        warnings(&run),
        ["smart_rerun_new_test_repeats needs a history (smart_rerun_history, --history): ignored"]
    );
}

/// Flaky in every run (odd attempts fail) and broken the same way in every run; the ini file asks for
/// two attempts.
const SUITE: &str = r#"
import os

def test_flaky(attempt):
    # Fails on odd attempts; once FLAKY_UNTIL is set, on every attempt before that one.
    until = int(os.environ.get("FLAKY_UNTIL", "0"))
    assert (attempt >= until) if until else attempt % 2 == 0, "the server was not up yet"

def test_broken():
    assert 1 + 1 == 3
"#;

#[test]
fn history_gives_a_known_flaky_test_more_attempts_and_stops_a_known_failure_at_once() {
    let p = Project::new();
    let db = db(&p);
    retries_from_history(&p, &db);
}

#[test]
fn a_postgres_history_adjusts_retries_as_sqlite_does() {
    let pg = PgServer::start();
    retries_from_history(&Project::new(), &pg.database("policy"));
}

fn retries_from_history(p: &Project, db: &str) {
    p.file("test_suite.py", SUITE);
    p.file("pytest.ini", "[pytest]\nsmart_rerun_max = 2\n");
    for _ in 0..2 {
        let run = p.run(&["--history", db, "--history-policy"], &[]);
        assert_eq!(run.code, 1, "{}", run.dump());
        assert_eq!(run.outcome("test_suite.py::test_flaky"), "flaky");
        assert_eq!(run.attempts("test_suite.py::test_broken"), 2);
    }
    assert_eq!(p.count("test_suite.py::test_flaky"), 4);

    // Now test_flaky needs four attempts (5, 6 and 7 fail): history lets it have them.
    let mut cmd = p.command(&["--history", db, "--history-policy", "--history-max", "4"]);
    cmd.env("FLAKY_UNTIL", "8")
        .arg("--")
        .arg(crate::common::python())
        .args(["-m", "pytest"]);
    let run = p.output(cmd);
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_eq!(run.outcome("test_suite.py::test_flaky"), "flaky");
    assert_eq!(run.attempts("test_suite.py::test_flaky"), 4);
    // test_broken failed the same way for good in both earlier runs: one attempt, and the report says why.
    let broken = run.test("test_suite.py::test_broken");
    assert_eq!(broken["outcome"], "failed");
    assert_eq!(broken["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(
        broken["stopped_because"],
        "history saw this failure fail the test for good in 2 earlier runs, never passing on a rerun, so the 1 remaining attempt was not spent (smart_rerun_history_policy)"
    );
    assert_eq!(run.report()["summary"]["attempts_saved"], 1);

    // Without the policy, the same history changes nothing: two attempts each.
    let mut cmd = p.command(&["--history", db]);
    cmd.env("FLAKY_UNTIL", "12")
        .arg("--")
        .arg(crate::common::python())
        .args(["-m", "pytest"]);
    let run = p.output(cmd);
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_eq!(run.outcome("test_suite.py::test_flaky"), "failed");
    assert_eq!(run.attempts("test_suite.py::test_flaky"), 2);
    assert_eq!(run.attempts("test_suite.py::test_broken"), 2);
}
