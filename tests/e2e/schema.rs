//! The JSON report against its published JSON Schema, `schema/report.schema.json`: what a consumer
//! validates against must accept every report smart-rerun writes.
//!
//! Real runs of several scenarios are validated with the venv's `jsonschema` (Draft 2020-12, formats
//! checked), and the invariants a schema cannot express (counts that add up, attempts numbered in order)
//! are checked here in Rust. Hand-built reports cover the optional fields no scenario produces, and a
//! negative test proves that the validation can fail.

use crate::common::{self, Project, RunOutput, assert_matches_schema, schema_errors};
use serde_json::{Value, json};
use smart_rerun::model::{
    Outcome, PolicyInfo, RoundKind, RunInfo, RunReport, SCHEMA_VERSION, Summary, Tool,
};

/// What a schema cannot say: the summary adds up, attempts are numbered in order, the outcome follows
/// from the attempts, the exit code is the one the process returned.
fn check_invariants(out: &RunOutput) {
    let report: RunReport = serde_json::from_value(out.report().clone())
        .unwrap_or_else(|e| panic!("the report does not read back: {e}; {}", out.dump()));
    let ctx = || out.dump();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert_eq!(
        report.run.exit_code.code(),
        out.code,
        "exit code; {}",
        ctx()
    );

    let s = &report.summary;
    let count = |o: Outcome| report.tests.iter().filter(|t| t.outcome == o).count();
    assert_eq!(s.total, report.tests.len(), "summary.total; {}", ctx());
    for (name, got, outcome) in [
        ("passed", s.passed, Outcome::Passed),
        ("failed", s.failed, Outcome::Failed),
        ("flaky", s.flaky, Outcome::Flaky),
        ("skipped", s.skipped, Outcome::Skipped),
        ("xfailed", s.xfailed, Outcome::Xfailed),
        ("xpassed", s.xpassed, Outcome::Xpassed),
        ("errors", s.errors, Outcome::Error),
        ("not_run", s.not_run, Outcome::NotRun),
    ] {
        assert_eq!(got, count(outcome), "summary.{name}; {}", ctx());
    }
    let by_outcome =
        s.passed + s.failed + s.flaky + s.skipped + s.xfailed + s.xpassed + s.errors + s.not_run;
    assert_eq!(s.total, by_outcome, "the outcome counts add up to total");
    assert_eq!(s.collection_errors, report.collection_errors.len());
    let reruns: usize = report
        .tests
        .iter()
        .map(|t| t.attempts.len().saturating_sub(1))
        .sum();
    assert_eq!(s.reruns, reruns, "summary.reruns; {}", ctx());
    let rerun_seconds: f64 = report
        .run
        .rounds
        .iter()
        .filter(|r| r.kind == RoundKind::Rerun)
        .map(|r| r.duration_seconds)
        .sum();
    assert!((s.rerun_seconds - rerun_seconds).abs() < 1e-9);

    let rounds = &report.run.rounds;
    assert!(!rounds.is_empty(), "a report has a first round");
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(r.number as usize, i + 1, "rounds are numbered in order");
        assert_eq!(r.kind == RoundKind::First, i == 0, "only round 1 is first");
    }
    let mut nodeids = std::collections::HashSet::new();
    for t in &report.tests {
        assert!(nodeids.insert(&t.nodeid), "{} listed twice", t.nodeid);
        let Some(last) = t.attempts.last() else {
            assert!(
                !matches!(t.outcome, Outcome::Failed | Outcome::Error | Outcome::Flaky),
                "{} is {:?} without attempts",
                t.nodeid,
                t.outcome
            );
            continue;
        };
        let numbers: Vec<u32> = t.attempts.iter().map(|a| a.number).collect();
        let expected: Vec<u32> = (1..=t.attempts.len() as u32).collect();
        assert_eq!(numbers, expected, "{}: attempt numbers", t.nodeid);
        assert!(
            t.attempts[0].outcome.is_failure(),
            "{}: attempts are kept from the first failure",
            t.nodeid
        );
        let mut previous_round = 0;
        for a in &t.attempts {
            assert!(
                a.round > previous_round && a.round as usize <= rounds.len(),
                "{}: attempt {} in round {}",
                t.nodeid,
                a.number,
                a.round
            );
            previous_round = a.round;
            if a.outcome.is_failure() {
                assert!(a.phase.is_some() && a.exception.is_some());
            }
        }
        if t.outcome == Outcome::Flaky {
            assert_eq!(last.outcome, Outcome::Passed, "{}", t.nodeid);
        } else {
            assert_eq!(
                t.outcome, last.outcome,
                "{}: outcome of the last attempt",
                t.nodeid
            );
        }
        assert_eq!(t.duration_seconds, last.duration_seconds, "{}", t.nodeid);
    }
}

/// The run's report matches the schema and its invariants hold.
fn check(out: &RunOutput, code: i32) {
    out.assert_code(code);
    assert_matches_schema(out.report(), &|| out.dump());
    check_invariants(out);
}

fn attempts<'a>(out: &'a RunOutput, nodeid: &str) -> &'a Vec<Value> {
    out.test(nodeid)["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{nodeid} has no attempts; {}", out.dump()))
}

#[test]
fn a_passing_run_matches_the_schema() {
    let p = Project::new();
    p.file(
        "tests/test_ok.py",
        "import pytest\n\ndef test_a():\n    pass\n\n@pytest.mark.parametrize('x', [1, 'two words', 'ü'])\ndef test_param(x):\n    pass\n",
    );
    let out = p.run(&[], &[]);
    check(&out, 0);
    assert_eq!(out.summary("passed"), 4);
    assert!(out.report().get("warnings").is_none(), "{}", out.dump());
}

const FAILURES: &str = r#"
import pytest

def test_passes():
    pass

def test_flaky(attempt):
    print("attempt", attempt)
    assert attempt >= 2, "fails on the first attempt"

def test_always_fails():
    raise ValueError("broken for good")

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup boom")

def test_setup_error(broken_setup):
    pass

@pytest.fixture
def broken_teardown():
    yield
    raise OSError("teardown boom")

def test_fails_then_teardown_fails(broken_teardown):
    assert 1 == 2
"#;

#[test]
fn failures_flaky_tests_and_setup_errors_match_the_schema() {
    let p = Project::new();
    p.file("tests/test_failures.py", FAILURES);
    let out = p.run(&["--max", "3"], &[]);
    check(&out, 1);
    let flaky = "tests/test_failures.py::test_flaky";
    assert_eq!(out.outcome(flaky), "flaky");
    assert_eq!(
        attempts(&out, flaky)[0]["captured"][0]["text"],
        "attempt 1\n",
        "{}",
        out.dump()
    );
    let setup = "tests/test_failures.py::test_setup_error";
    assert_eq!(out.outcome(setup), "error");
    // Rerun at least once (a failure confirmed deterministic may stop before the limit).
    assert!(attempts(&out, setup).len() >= 2, "{}", out.dump());
    assert_eq!(attempts(&out, setup)[0]["phase"], "setup");
    let both = "tests/test_failures.py::test_fails_then_teardown_fails";
    assert_eq!(attempts(&out, both)[0]["phase"], "call");
    assert_eq!(
        attempts(&out, both)[0]["also_failed"],
        json!(["teardown"]),
        "{}",
        out.dump()
    );
    assert!(
        out.test("tests/test_failures.py::test_always_fails")["stopped_because"]
            .as_str()
            .is_some()
    );
}

#[test]
fn skips_and_expected_failures_match_the_schema() {
    let p = Project::new();
    p.file(
        "test_skips.py",
        r#"
import pytest

@pytest.mark.skip(reason="not on this planet")
def test_skipped():
    pass

def test_skips_itself():
    pytest.skip("decided at run time")

@pytest.mark.xfail(reason="known bug")
def test_xfailed():
    assert False

@pytest.mark.xfail(reason="fixed already")
def test_xpassed():
    pass

def test_passes():
    pass
"#,
    );
    let out = p.run(&[], &[]);
    check(&out, 0);
    assert_eq!(out.outcome("test_skips.py::test_skipped"), "skipped");
    assert_eq!(out.outcome("test_skips.py::test_xfailed"), "xfailed");
    assert_eq!(out.outcome("test_skips.py::test_xpassed"), "xpassed");
    assert_eq!(
        out.test("test_skips.py::test_skipped")["reason"],
        "not on this planet",
        "{}",
        out.dump()
    );
    assert_eq!(
        out.test("test_skips.py::test_skips_itself")["reason"],
        "decided at run time"
    );
    assert_eq!(
        out.test("test_skips.py::test_xfailed")["reason"],
        "known bug"
    );
    assert_eq!(
        out.test("test_skips.py::test_xpassed")["reason"],
        "fixed already"
    );
}

#[test]
fn collection_errors_match_the_schema() {
    let p = Project::new();
    p.file("test_good.py", "def test_ok():\n    pass\n");
    p.file("test_broken.py", "import no_such_module_here\n");
    let out = p.run(&[], &[]);
    // pytest stops on collection errors: the run counts as interrupted, like pytest's own exit 2.
    check(&out, 2);
    assert_eq!(out.summary("collection_errors"), 1);
    let error = &out.report()["collection_errors"][0];
    assert_eq!(error["nodeid"], "test_broken.py");
    assert!(
        error["traceback"]
            .as_str()
            .unwrap()
            .contains("no_such_module_here")
    );
}

#[test]
fn a_run_stopped_by_x_lists_the_tests_it_never_ran() {
    let p = Project::new();
    p.file(
        "test_x.py",
        "def test_fails():\n    assert False\n\ndef test_later():\n    pass\n",
    );
    let out = p.run(&["--max", "1"], &["-x"]);
    check(&out, 1);
    assert_eq!(out.outcome("test_x.py::test_later"), "not-run");
    assert!(out.test("test_x.py::test_later")["reason"].is_string());
}

#[test]
fn a_crashed_round_matches_the_schema() {
    let p = Project::new();
    p.file(
        "test_crash.py",
        r#"
import os

def test_before():
    pass

def test_exits_once(attempt):
    if attempt == 1:
        os._exit(1)

def test_after():
    pass
"#,
    );
    let out = p.run(&[], &[]);
    check(&out, 0);
    let crashed = attempts(&out, "test_crash.py::test_exits_once");
    assert_eq!(crashed[0]["phase"], "crash", "{}", out.dump());
    assert_eq!(crashed[0]["outcome"], "error");
    assert_eq!(out.outcome("test_crash.py::test_exits_once"), "flaky");
    assert_eq!(out.outcome("test_crash.py::test_after"), "passed");
}

#[cfg(unix)]
#[test]
fn a_round_killed_by_a_signal_matches_the_schema() {
    let p = Project::new();
    p.file(
        "test_kill.py",
        r#"
import os, signal

def test_killed_once(attempt):
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
"#,
    );
    let out = p.run(&[], &[]);
    check(&out, 0);
    let first = &out.report()["run"]["rounds"][0];
    assert_eq!(first["signal"], 9, "{}", out.dump());
    assert_eq!(first["exit_status"], Value::Null);
}

#[test]
fn an_xdist_run_matches_the_schema() {
    let p = Project::new();
    p.file(
        "test_par.py",
        "def test_flaky(attempt):\n    assert attempt > 1\n\ndef test_ok():\n    pass\n",
    );
    let out = p.run(&[], &["-n", "2"]);
    check(&out, 0);
    let first = &attempts(&out, "test_par.py::test_flaky")[0];
    assert!(first["worker"].is_string(), "{}", out.dump());
}

#[test]
fn an_xdist_worker_crash_matches_the_schema_and_says_which_worker_crashed() {
    let p = Project::new();
    p.file(
        "test_crash.py",
        "import os\n\ndef test_ok():\n    pass\n\ndef test_exits_once(attempt):\n    if attempt == 1:\n        os._exit(1)\n",
    );
    let junit = p.path().join("junit.xml");
    let out = p.run(
        &["--max", "2", "--junit-xml", junit.to_str().unwrap()],
        &["-n", "2"],
    );
    check(&out, 0);
    let id = "test_crash.py::test_exits_once";
    assert_eq!(out.outcome(id), "flaky");
    let first = &attempts(&out, id)[0];
    assert_eq!(first["phase"], "crash", "{}", out.dump());
    assert_eq!(first["outcome"], "error");
    assert_eq!(first["exception"]["type"], "smart_rerun.PytestCrash");
    let worker = first["worker"].as_str().expect("the worker that crashed");
    let said = format!("worker {worker} crashed while running this test");
    assert_eq!(
        first["exception"]["message"],
        said.as_str(),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout
            .contains(&format!("(first failed: smart_rerun.PytestCrash: {said})")),
        "{}",
        out.dump()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("message=\"smart_rerun.PytestCrash: {said}\"")),
        "{xml}"
    );
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_matches_the_schema() {
    use std::time::{Duration, Instant};
    let p = Project::new();
    let started = p.path().join("started");
    p.file(
        "test_slow.py",
        &format!(
            r#"
import pathlib, time

def test_fails():
    assert False

def test_slow():
    pathlib.Path({started:?}).write_text("yes")
    time.sleep(60)

def test_never():
    pass
"#,
            started = started.display().to_string()
        ),
    );
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = std::fs::remove_file(p.report_path());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "test_slow never started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("smart-rerun ended early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // CI cancels a job by signalling only the entry process.
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("smart-rerun did not end after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(p.report_path()).unwrap()).unwrap();
    let out = RunOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::new(),
        report: Some(report),
    };
    check(&out, 2);
    assert_eq!(out.report()["run"]["interrupted"], true);
    assert_eq!(out.outcome("test_slow.py::test_never"), "not-run");
}

/// The model from its JSON form, so fields added to it later (with `serde(default)`) need no change here.
fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("the JSON matches the model")
}

/// A report with every optional property present and every array non-empty.
fn everything_report() -> RunReport {
    let heuristic = json!({
        "category": "flaky-network",
        "confidence": 0.7,
        "action": {"kind": "retry_with_delay", "seconds": 2.0},
        "reason": "a connection error",
        "source": "heuristic",
    });
    let mut report: RunReport = from_json(json!({
        "schema_version": SCHEMA_VERSION,
        "tool": Tool::default(),
        "run": {
            "command": ["pytest", "-n", "2"],
            "cwd": "/work/project",
            "python_version": "3.12.1",
            "pytest_version": "8.3.4",
            "python_executable": "/work/project/.venv/bin/python",
            "rootdir": "/work/project",
            "started_at": "2026-01-02T03:04:00Z",
            "finished_at": "2026-01-02T03:04:10.5+00:00",
            "duration_seconds": 10.5,
            "exit_code": 1,
            "exit_reason": "1 error after reruns",
            "interrupted": false,
            "policy": {
                "enabled": true,
                "max_attempts": 2,
                "delay_seconds": 0.5,
                "backoff": "exp",
                "max_delay_seconds": 30.0,
                "errors": ["ConnectionError"],
            },
            "rounds": [
                {
                    "number": 1,
                    "kind": "first",
                    "started_at": "2026-01-02T03:04:00Z",
                    "duration_seconds": 5.0,
                    "selected": 3,
                    "exit_status": 1,
                    "note": "a note",
                },
                {
                    "number": 2,
                    "kind": "rerun",
                    "started_at": "2026-01-02T03:04:05Z",
                    "duration_seconds": 1.0,
                    "selected": 1,
                    "exit_status": null,
                    "signal": 9,
                },
                {
                    "number": 3,
                    "kind": "continuation",
                    "started_at": "2026-01-02T03:04:06Z",
                    "duration_seconds": 1.0,
                    "selected": 1,
                    "exit_status": 0,
                },
            ],
            "plugins": ["xdist"],
        },
        "summary": Summary { attempts_saved: 1, seconds_saved: 0.5, ..Summary::default() },
        "tests": [
            {
                "nodeid": "tests/test_net.py::test_fetch[a b-ü]",
                "outcome": "error",
                "file": "tests/test_net.py",
                "line": 5,
                "duration_seconds": 0.0,
                "stopped_because": "reached the attempt limit (2)",
                "classification": {
                    "category": "unknown",
                    "confidence": 0.3,
                    "action": {"kind": "stop_retry"},
                    "reason": "a connection error; later attempts failed differently",
                    "source": "observed",
                },
                "history": {
                    "verdict": "failing-since",
                    "runs": 50,
                    "flaky_runs": 2,
                    "failed_runs": 4,
                    "first_seen": "2026-10-01T08:00:00Z",
                    "first_flaky": "2026-10-03T08:00:00Z",
                    "failing_since": {"started_at": "2026-11-01T08:00:00Z", "commit": "abc1234"},
                    "branch": "main",
                },
                "attempts": [
                    {
                        "number": 1,
                        "round": 1,
                        "outcome": "failed",
                        "phase": "call",
                        "duration_seconds": 0.25,
                        "finished_at": "2026-01-02T03:04:05.123456Z",
                        "exception": {
                            "type": "requests.exceptions.ConnectionError",
                            "mro": [
                                "requests.exceptions.ConnectionError",
                                "builtins.OSError",
                                "builtins.Exception",
                                "builtins.BaseException",
                            ],
                            "message": "connection refused",
                        },
                        "crash": {"file": "src/client.py", "line": 42},
                        "test_location": {"file": "tests/test_net.py", "line": 7},
                        "traceback": "E   requests.exceptions.ConnectionError: connection refused",
                        "captured": [{"name": "Captured stdout call", "text": "hello\n"}],
                        "also_failed": ["teardown"],
                        "worker": "gw0",
                        "fingerprint": "00ff00ff00ff00ff",
                        "classification": heuristic,
                    },
                    {
                        "number": 2,
                        "round": 2,
                        "outcome": "error",
                        "phase": "crash",
                        "duration_seconds": 0.0,
                        "finished_at": "2026-01-02T03:04:06Z",
                        "exception": {
                            "type": "smart_rerun.PytestCrash",
                            "mro": [],
                            "message": "pytest died while this test ran (killed by signal 9 (SIGKILL))",
                        },
                        "fingerprint": "0123456789abcdef",
                        "classification": {
                            "category": "environmental",
                            "confidence": 0.7,
                            "action": {"kind": "retry"},
                            "reason": "pytest died",
                            "source": "ai",
                        },
                    },
                ],
            },
            {
                "nodeid": "tests/test_net.py::test_skip",
                "outcome": "skipped",
                "file": "tests/test_net.py",
                "line": 9,
                "duration_seconds": 0.001,
                "reason": "offline",
            },
            {
                "nodeid": "tests/test_net.py::test_later",
                "outcome": "not-run",
                "file": null,
                "line": null,
                "duration_seconds": 0.0,
                "reason": "the run was interrupted",
            },
        ],
        "collection_errors": [{
            "nodeid": "tests/test_broken.py",
            "traceback": "E   ModuleNotFoundError: No module named 'nope'",
        }],
        "warnings": ["round 2: pytest died before finishing the round"],
        "ci": {
            "platform": "github",
            "repository": "octo/project",
            "pull_request": 42,
            "head_sha": "a".repeat(40),
            "commit_sha": "b".repeat(40),
            "run_url": "https://github.com/octo/project/actions/runs/1",
            "comment_key": "test (3.12)",
        },
    }));
    report.summarize();
    report
}

/// A report with every optional property absent: pytest never started a session.
fn nothing_report() -> RunReport {
    let mut report: RunReport = from_json(json!({
        "schema_version": SCHEMA_VERSION,
        "tool": Tool::default(),
        "run": RunInfo {
            command: vec!["python".into(), "-m".into(), "pytest".into()],
            cwd: "C:\\work".into(),
            started_at: "2026-01-02T03:04:00Z".into(),
            finished_at: "2026-01-02T03:04:00.1Z".into(),
            exit_code: smart_rerun::model::ExitCode::InternalError,
            exit_reason: "the collector plugin never reported in".into(),
            policy: PolicyInfo::from(&smart_rerun::policy::RetryPolicy::default()),
            rounds: from_json(json!([{
                "number": 1,
                "kind": "first",
                "started_at": "2026-01-02T03:04:00Z",
                "duration_seconds": 0.1,
                "selected": 0,
                "exit_status": 3,
            }])),
            ..RunInfo::default()
        },
        "summary": Summary::default(),
        "tests": [],
    }));
    report.summarize();
    report
}

#[test]
fn hand_built_reports_with_every_optional_field_or_none_match_the_schema() {
    let everything = serde_json::to_value(everything_report()).unwrap();
    let nothing = serde_json::to_value(nothing_report()).unwrap();
    // The hand-built reports do exercise what they claim to.
    assert!(everything["tests"][0]["attempts"][0]["also_failed"].is_array());
    assert!(everything["run"]["rounds"][1]["signal"].is_number());
    assert!(everything["ci"]["pull_request"].is_number());
    assert!(everything["tests"][0]["attempts"][1]["classification"].is_object());
    assert!(nothing["run"]["python_version"].is_null());
    assert!(nothing.get("warnings").is_none());
    // The unit tests' snapshot of the JSON rendering (src/report/snapshots/) is a valid report too.
    let snap = std::fs::read_to_string(
        common::repo_root()
            .join("src/report/snapshots/smart_rerun__report__tests__json_rendering.snap"),
    )
    .unwrap();
    let (_, body) = snap.split_once("\n---\n").unwrap();
    let snapshot: Value = serde_json::from_str(body).unwrap();
    for (name, doc) in [
        ("everything", &everything),
        ("nothing", &nothing),
        ("snapshot", &snapshot),
    ] {
        assert_matches_schema(doc, &|| {
            format!("{name}: {}", serde_json::to_string_pretty(doc).unwrap())
        });
    }
}

/// `value` with the JSON pointer `at` set (or removed, for `None`).
fn edited(value: &Value, at: &str, to: Option<Value>) -> Value {
    let mut doc = value.clone();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let parent = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (parent, to) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            assert!(map.remove(key).is_some(), "no {at} to remove");
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        _ => panic!("cannot edit {at}"),
    }
    doc
}

#[test]
fn the_schema_rejects_reports_that_break_it() {
    let good = serde_json::to_value(everything_report()).unwrap();
    assert_matches_schema(&good, &|| String::new());
    let renamed = {
        let doc = edited(&good, "/summary/reruns", None);
        edited(&doc, "/summary/rerun_count", Some(json!(1)))
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an unknown outcome",
            edited(&good, "/tests/1/outcome", Some(json!("flakey"))),
            "'flakey' is not one of",
        ),
        (
            "flaky as an attempt's outcome",
            edited(&good, "/tests/0/attempts/0/outcome", Some(json!("flaky"))),
            "'flaky' is not one of",
        ),
        (
            "an unknown phase",
            edited(&good, "/tests/0/attempts/0/phase", Some(json!("body"))),
            "'body' is not one of",
        ),
        (
            "an extra top-level field",
            edited(&good, "/extra", Some(json!(true))),
            "Additional properties are not allowed ('extra' was unexpected)",
        ),
        (
            "an extra field in an attempt",
            edited(&good, "/tests/0/attempts/0/retries", Some(json!(1))),
            "('retries' was unexpected)",
        ),
        (
            "a renamed summary field",
            renamed,
            "'reruns' is a required property",
        ),
        (
            "another schema version",
            edited(&good, "/schema_version", Some(json!(SCHEMA_VERSION + 1))),
            "3 was expected",
        ),
        (
            "a quarantine block without its reason",
            edited(
                &good,
                "/tests/1/quarantine",
                Some(json!({
                    "entry": "t.py::*", "expires": "2027-01-31", "file": "q.toml", "line": 1,
                    "expired": false
                })),
            ),
            "'reason' is a required property",
        ),
        (
            "a quarantine block with an unknown field",
            edited(
                &good,
                "/tests/1/quarantine",
                Some(json!({
                    "entry": "t.py::*", "reason": "r", "expires": "2027-01-31", "file": "q.toml",
                    "line": 1, "expired": false, "reviewer": "x"
                })),
            ),
            "'reviewer' was unexpected",
        ),
        (
            "null for an omitted optional field",
            edited(&good, "/tests/1/reason", Some(Value::Null)),
            "None is not of type 'string'",
        ),
        (
            "a timestamp that is not RFC 3339",
            edited(&good, "/run/started_at", Some(json!("yesterday"))),
            "'yesterday' is not a 'date-time'",
        ),
        (
            "an impossible date",
            edited(
                &good,
                "/run/finished_at",
                Some(json!("2026-13-45T00:00:00Z")),
            ),
            "is not a 'date-time'",
        ),
        (
            "a negative count",
            edited(&good, "/summary/passed", Some(json!(-1))),
            "-1 is less than the minimum of 0",
        ),
        (
            "a fractional count",
            edited(&good, "/summary/total", Some(json!(1.5))),
            "1.5 is not of type 'integer'",
        ),
        (
            "an unknown exit code",
            edited(&good, "/run/exit_code", Some(json!(7))),
            "7 is not one of",
        ),
        (
            "a failed test without attempts",
            edited(&good, "/tests/0/attempts", None),
            "'attempts' is a required property",
        ),
        (
            "an empty array that is omitted when empty",
            edited(&good, "/warnings", Some(json!([]))),
            "should be non-empty",
        ),
        (
            "a failed attempt without its exception",
            edited(&good, "/tests/0/attempts/0/exception", None),
            "'exception' is a required property",
        ),
        (
            "a failed attempt without its fingerprint",
            edited(&good, "/tests/0/attempts/0/fingerprint", None),
            "'fingerprint' is a required property",
        ),
        (
            "a fingerprint that is not 16 hex digits",
            edited(&good, "/tests/0/attempts/0/fingerprint", Some(json!("XYZ"))),
            "does not match",
        ),
        (
            "a confidence above 1",
            edited(
                &good,
                "/tests/0/attempts/0/classification/confidence",
                Some(json!(1.5)),
            ),
            "1.5 is greater than the maximum of 1",
        ),
        (
            "an unknown action",
            edited(
                &good,
                "/tests/0/attempts/0/classification/action",
                Some(json!({"kind": "retry_later"})),
            ),
            "is not valid under any of the given schemas",
        ),
        (
            "an unknown category",
            edited(
                &good,
                "/tests/0/classification/category",
                Some(json!("flaky")),
            ),
            "'flaky' is not one of",
        ),
        (
            "an unknown CI platform",
            edited(&good, "/ci/platform", Some(json!("jenkins"))),
            "'jenkins' is not one of",
        ),
        (
            "stopped_because on a test that did not fail",
            edited(&good, "/tests/1/stopped_because", Some(json!("why"))),
            "is not one of ['failed', 'error', 'flaky']",
        ),
    ];
    let docs: Vec<&Value> = cases.iter().map(|(_, doc, _)| doc).collect();
    let results = schema_errors(&docs);
    for ((what, _, expected), errors) in cases.iter().zip(&results) {
        println!("{what}:\n  {}", errors.join("\n  "));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{what}: expected an error containing {expected:?}, got:\n  {}",
            errors.join("\n  ")
        );
    }
}

#[test]
fn the_schema_is_the_one_for_this_schema_version() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("schema/report.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["properties"]["schema_version"]["const"],
        SCHEMA_VERSION
    );
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}
