//! The checked-in quarantine file through the real binary: a broken file stops `run` before any test
//! runs (exit 4, naming file, line and field); `quarantine check` fails on expired entries;
//! `quarantine suggest` proposes entries from history that `check` then accepts.

use crate::common::{self, Project, RunOutput};
use crate::history::{FLAKY, history, project};
use std::process::{Command, Stdio};

fn quarantine(p: &Project, args: &[&str]) -> RunOutput {
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("quarantine")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SMART_RERUN_HISTORY")
        .stdin(Stdio::null())
        .output()
        .expect("smart-rerun runs");
    RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: None,
    }
}

const FILE: &str = ".smart-rerun/quarantine.toml";

#[test]
fn a_broken_quarantine_file_stops_the_run_before_any_test() {
    let p = project();
    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nreason = \"TICKET-7\"\nexpires = 2027-13-01\n",
    );
    let out = p.run(&[], &[]);
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(
        out.stderr
            .contains(".smart-rerun/quarantine.toml:4: expires:"),
        "{}",
        out.stderr
    );
    assert_eq!(p.count(FLAKY), 0, "a test ran");

    let check = quarantine(&p, &["check"]);
    assert_eq!(check.code, 4);
    assert!(
        check
            .stderr
            .contains(".smart-rerun/quarantine.toml:4: expires:"),
        "{}",
        check.stderr
    );

    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nexpires = 2027-01-01\n",
    );
    let missing = quarantine(&p, &["check"]);
    assert_eq!(missing.code, 4);
    assert!(
        missing
            .stderr
            .contains("quarantine.toml:1: reason: is missing"),
        "{}",
        missing.stderr
    );
}

#[test]
fn check_fails_on_an_expired_entry_and_passes_otherwise() {
    let p = project();
    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nreason = \"TICKET-7\"\nexpires = 2026-12-31\n\n[[test]]\nnodeid = \"test_suite.py::test_broken\"\nreason = \"TICKET-8\"\nexpires = 2027-03-01\n",
    );
    let ok = quarantine(&p, &["check", "--today", "2026-12-31"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("2 tests quarantined"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("the next expiry on 2026-12-31"),
        "{}",
        ok.stdout
    );
    let late = quarantine(&p, &["check", "--today", "2027-01-01"]);
    assert_eq!(late.code, 1, "{}", late.stdout);
    assert!(
        late.stdout.contains(
            ".smart-rerun/quarantine.toml:1: test_suite.py::test_flaky expired on 2026-12-31"
        ),
        "{}",
        late.stdout
    );
    // A valid file lets the run go on.
    let run = p.run(&[], &[]);
    assert_eq!(run.code, 1, "{}", run.dump());
    let none = Project::new();
    assert_eq!(quarantine(&none, &["check"]).code, 0);
}

#[test]
fn suggestions_from_history_are_entries_that_check_accepts() {
    let p = project();
    let db = p.path().join("history.db");
    let db = db.to_str().unwrap();
    for _ in 0..2 {
        assert_eq!(p.run(&["--history", db], &[]).code, 1);
    }
    let flaky = history(&p, &["flaky", "--history", db, "--format", "json"]);
    assert!(flaky.stdout.contains(FLAKY), "{}", flaky.stdout);
    let suggested = quarantine(&p, &["suggest", "--history", db, "--min-flaky", "2"]);
    assert_eq!(suggested.code, 0, "{}", suggested.stderr);
    assert!(
        suggested.stdout.contains(&format!("nodeid = \"{FLAKY}\"")),
        "{}",
        suggested.stdout
    );
    assert!(
        suggested.stdout.contains("flaky in 2 of its 2 runs"),
        "{}",
        suggested.stdout
    );
    p.file(FILE, &suggested.stdout);
    let check = quarantine(&p, &["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("1 test quarantined"),
        "{}",
        check.stdout
    );
    // Listed now: nothing more to suggest.
    let again = quarantine(&p, &["suggest", "--history", db, "--min-flaky", "2"]);
    assert_eq!(again.stdout.trim(), "");
    assert!(
        again.stderr.contains("no test to suggest"),
        "{}",
        again.stderr
    );
}
