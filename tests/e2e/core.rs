//! The core loop: reruns of failed tests in fresh processes, under the retry policy.

use crate::common::Project;

const FLAKY: &str = r#"
def test_passes():
    pass

def test_fails_once(attempt):
    assert attempt >= 2, "fails on the first attempt"

def test_fails_twice(attempt):
    assert attempt >= 3, "fails on the first two attempts"

def test_always_fails():
    raise ValueError("broken for good")
"#;

#[test]
fn failed_tests_rerun_until_they_pass_or_reach_max() {
    let p = Project::new();
    p.file("tests/test_flaky.py", FLAKY);
    // Without the early stop, so the attempt limit is what ends test_always_fails (see
    // `a_failure_seen_twice_the_same_way_stops_early` for the default).
    let out = p.run(&["--max", "3", "--early-stop", "false"], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("tests/test_flaky.py::test_passes"), "passed");
    assert_eq!(out.attempts("tests/test_flaky.py::test_passes"), 0);
    assert_eq!(out.outcome("tests/test_flaky.py::test_fails_once"), "flaky");
    assert_eq!(out.attempts("tests/test_flaky.py::test_fails_once"), 2);
    assert_eq!(
        out.outcome("tests/test_flaky.py::test_fails_twice"),
        "flaky"
    );
    assert_eq!(out.attempts("tests/test_flaky.py::test_fails_twice"), 3);
    assert_eq!(
        out.outcome("tests/test_flaky.py::test_always_fails"),
        "failed"
    );
    assert_eq!(out.attempts("tests/test_flaky.py::test_always_fails"), 3);
    // Only failed tests ran again: the passing test ran once.
    assert_eq!(
        p.count("tests/test_flaky.py::test_passes"),
        0,
        "test_passes does not use the counter"
    );
    assert_eq!(out.summary("flaky"), 2);
    assert_eq!(out.summary("failed"), 1);
    assert_eq!(out.summary("passed"), 1);
    assert_eq!(out.summary("reruns"), 1 + 2 + 2);
    let attempt = &out.test("tests/test_flaky.py::test_always_fails")["attempts"][0];
    assert_eq!(attempt["exception"]["type"], "builtins.ValueError");
    assert_eq!(attempt["exception"]["message"], "broken for good");
    assert_eq!(attempt["phase"], "call");
    assert_eq!(attempt["crash"]["file"], "tests/test_flaky.py");
    assert!(
        attempt["traceback"]
            .as_str()
            .unwrap()
            .contains("ValueError: broken for good")
    );
    assert!(
        out.stdout
            .contains("FLAKY  tests/test_flaky.py::test_fails_once passed on attempt 2"),
        "{}",
        out.dump()
    );
}

#[test]
fn flaky_tests_that_pass_make_the_run_pass() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_once(attempt):\n    assert attempt > 1\n\ndef test_ok():\n    pass\n",
    );
    let out = p.run(&[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_once"), "flaky");
    assert_eq!(out.report()["run"]["exit_code"], 0);
}

#[test]
fn max_one_means_no_reruns() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_once(attempt):\n    assert attempt > 1\n",
    );
    let out = p.run(&["--max", "1"], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_a.py::test_once"), "failed");
    assert_eq!(p.count("test_a.py::test_once"), 1);
    assert_eq!(out.report()["run"]["rounds"].as_array().unwrap().len(), 1);
}

/// The code under test (anyone's, on a fork PR) never sees smart-rerun's own tokens.
#[test]
fn pytest_does_not_inherit_smart_reruns_tokens() {
    let p = Project::new();
    p.file(
        "test_env.py",
        r#"
import os

def test_no_tokens():
    leaked = [k for k in ("SMART_RERUN_AI_TOKEN", "SMART_RERUN_GITHUB_TOKEN", "SMART_RERUN_GITLAB_TOKEN") if k in os.environ]
    assert not leaked, leaked

def test_other_variables_still_pass_through():
    assert os.environ["MY_APP_SETTING"] == "kept"
"#,
    );
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(crate::common::python())
        .args(["-m", "pytest"])
        .env("SMART_RERUN_AI_TOKEN", "ai-secret-123456")
        .env("SMART_RERUN_GITHUB_TOKEN", "gh-secret-123456")
        .env("SMART_RERUN_GITLAB_TOKEN", "gl-secret-123456")
        .env("MY_APP_SETTING", "kept");
    let out = p.output(cmd);
    out.assert_code(0);
    assert_eq!(out.outcome("test_env.py::test_no_tokens"), "passed");
    for secret in ["ai-secret-123456", "gh-secret-123456", "gl-secret-123456"] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }
}

/// The early stop: a broken test with `--max 5` runs twice (the confirming attempt), a flaky one keeps its
/// attempts, and the summary says what the early stop saved.
#[test]
fn a_failure_seen_twice_the_same_way_stops_early() {
    let p = Project::new();
    p.file(
        "test_a.py",
        r#"
def test_broken():
    raise ValueError("the parser rejects this input")

def test_network(attempt):
    # Fails the same way twice, then passes: a network reset deserves its attempts.
    if attempt < 3:
        raise ConnectionResetError(104, "Connection reset by peer")
"#,
    );
    let out = p.run(&["--max", "5"], &[]);
    out.assert_code(1);
    assert_eq!(out.attempts("test_a.py::test_broken"), 2, "{}", out.dump());
    let broken = out.test("test_a.py::test_broken");
    assert_eq!(broken["classification"]["category"], "deterministic");
    assert_eq!(broken["classification"]["source"], "observed");
    assert!(
        broken["stopped_because"]
            .as_str()
            .unwrap()
            .contains("failed the same way twice: a deterministic failure, so the 3 remaining attempts were not spent"),
        "{}",
        out.dump()
    );
    let fp = &broken["attempts"][0]["fingerprint"];
    assert!(fp.is_string() && *fp == broken["attempts"][1]["fingerprint"]);
    assert_eq!(out.outcome("test_a.py::test_network"), "flaky");
    assert_eq!(out.attempts("test_a.py::test_network"), 3);
    assert_eq!(
        out.test("test_a.py::test_network")["classification"]["category"],
        "flaky-network"
    );
    assert_eq!(out.summary("attempts_saved"), 3);
    assert!(out.stdout.contains("[deterministic]"), "{}", out.dump());

    // `--early-stop false` spends every attempt.
    let all = p.run(
        &["--max", "5", "--early-stop", "false"],
        &["test_a.py::test_broken"],
    );
    all.assert_code(1);
    assert_eq!(all.attempts("test_a.py::test_broken"), 5);
    assert_eq!(all.summary("attempts_saved"), 0);

    // One attempt left is one attempt, not "1 remaining attempt were".
    let one = p.run(&["--max", "3"], &["test_a.py::test_broken"]);
    one.assert_code(1);
    assert!(
        one.test("test_a.py::test_broken")["stopped_because"]
            .as_str()
            .unwrap()
            .contains("so the 1 remaining attempt was not spent"),
        "{}",
        one.dump()
    );
}
