//! Hand-built reports for the renderers' tests: every outcome, fixed timestamps and durations, hostile
//! text and very large runs.

use crate::model::*;

const STARTED: &str = "2026-11-02T10:00:00Z";

fn exception(type_name: &str, mro: &[&str], message: &str) -> ExceptionInfo {
    ExceptionInfo {
        type_name: type_name.into(),
        mro: mro.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

// Built from JSON, so fields added to the model later (all `serde(default)`) need no change here.
fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("sample matches the model")
}

/// Fingerprints and classifies every failed attempt, and each test from its attempts, as the runner
/// does.
fn classify_all(r: &mut RunReport) {
    for t in &mut r.tests {
        for a in &mut t.attempts {
            crate::classify::annotate(a);
        }
        t.classification = crate::classify::observe(t.outcome, &t.attempts).map(Box::new);
    }
}

/// A failed attempt of a test function in `file` at `line`.
pub(crate) fn failed_attempt(
    number: u32,
    phase: Phase,
    exc: ExceptionInfo,
    file: &str,
    line: u32,
    traceback: &str,
) -> Attempt {
    let outcome = if phase == Phase::Call {
        Outcome::Failed
    } else {
        Outcome::Error
    };
    from_json(serde_json::json!({
        "number": number,
        "round": number,
        "outcome": outcome,
        "phase": phase,
        "duration_seconds": 0.25,
        "finished_at": format!("2026-11-02T10:00:0{number}Z"),
        "exception": exc,
        "crash": {"file": file, "line": line},
        "test_location": {"file": file, "line": line},
        "traceback": traceback,
        "captured": [{"name": "Captured stdout call", "text": format!("attempt {number} output\n")}],
    }))
}

pub(crate) fn passed_attempt(number: u32) -> Attempt {
    from_json(serde_json::json!({
        "number": number,
        "round": number,
        "outcome": "passed",
        "duration_seconds": 0.125,
        "finished_at": format!("2026-11-02T10:00:0{number}Z"),
    }))
}

pub(crate) fn test(
    nodeid: &str,
    outcome: Outcome,
    line: u32,
    attempts: Vec<Attempt>,
) -> TestResult {
    let mut t: TestResult = from_json(serde_json::json!({
        "nodeid": nodeid,
        "outcome": outcome,
        "file": nodeid.split("::").next(),
        "line": line,
        "duration_seconds": 0.5,
    }));
    t.attempts = attempts;
    t
}

/// An empty report with fixed run metadata; call [`RunReport::summarize`] after adding tests.
pub(crate) fn empty() -> RunReport {
    let round = |number: u32, kind: &str, started: &str, seconds: f64, selected: usize| {
        serde_json::json!({
            "number": number,
            "kind": kind,
            "started_at": started,
            "duration_seconds": seconds,
            "selected": selected,
            "exit_status": 1,
        })
    };
    from_json(serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "smart-rerun", "version": "0.0.0-test"},
        "run": {
            "command": ["python", "-m", "pytest"],
            "cwd": "/work/project",
            "python_version": "3.11.7",
            "pytest_version": "9.2.0",
            "python_executable": "/usr/bin/python3",
            "rootdir": "/work/project",
            "started_at": STARTED,
            "finished_at": "2026-11-02T10:00:12Z",
            "duration_seconds": 12.5,
            "exit_code": 1,
            "exit_reason": "1 failed, 1 error, 1 collection error after reruns",
            "interrupted": false,
            "policy": {
                "enabled": true,
                "max_attempts": 3,
                "delay_seconds": 0.0,
                "backoff": "none",
                "max_delay_seconds": null,
                "errors": [],
            },
            "rounds": [
                round(1, "first", STARTED, 8.0, 0),
                round(2, "rerun", "2026-11-02T10:00:08Z", 2.5, 3),
                round(3, "rerun", "2026-11-02T10:00:10Z", 2.0, 2),
            ],
        },
        "summary": {
            "total": 0, "passed": 0, "failed": 0, "flaky": 0, "skipped": 0, "xfailed": 0,
            "xpassed": 0, "errors": 0, "not_run": 0, "collection_errors": 0, "reruns": 0,
            "rerun_seconds": 0.0,
        },
        "tests": [],
    }))
}

/// One test of each outcome, a collection error, a flaky test and a test that failed every attempt.
pub(crate) fn every_outcome() -> RunReport {
    let mut r = empty();
    let assert_tb = "def test_total():\n>       assert total([1, 2]) == 4\nE       assert 3 == 4\n\ntests/test_math.py:12: AssertionError";
    let conn_tb = "def test_fetch(client):\n>       client.get('/users')\nE       ConnectionError: [Errno 111] Connection refused\n\ntests/test_api.py:30: ConnectionError";
    let db = exception(
        "myapp.db.DatabaseError",
        &["myapp.db.DatabaseError", "builtins.Exception"],
        "could not connect to server",
    );
    r.tests = vec![
        test("tests/test_math.py::test_add", Outcome::Passed, 5, vec![]),
        test(
            "tests/test_math.py::test_total",
            Outcome::Failed,
            10,
            (1..=3)
                .map(|n| {
                    failed_attempt(
                        n,
                        Phase::Call,
                        exception(
                            "builtins.AssertionError",
                            &["builtins.AssertionError", "builtins.Exception"],
                            "assert 3 == 4\n +  where 3 = total([1, 2])",
                        ),
                        "tests/test_math.py",
                        12,
                        assert_tb,
                    )
                })
                .collect(),
        ),
        test(
            "tests/test_api.py::TestUsers::test_fetch[v2]",
            Outcome::Flaky,
            28,
            vec![
                failed_attempt(
                    1,
                    Phase::Call,
                    exception(
                        "builtins.ConnectionError",
                        &["builtins.ConnectionError", "builtins.OSError"],
                        "[Errno 111] Connection refused",
                    ),
                    "tests/test_api.py",
                    30,
                    conn_tb,
                ),
                failed_attempt(
                    2,
                    Phase::Setup,
                    db.clone(),
                    "tests/conftest.py",
                    8,
                    "tests/conftest.py:8: DatabaseError",
                ),
                passed_attempt(3),
            ],
        ),
        test(
            "tests/test_db.py::test_migrate",
            Outcome::Error,
            40,
            (1..=3)
                .map(|n| {
                    failed_attempt(
                        n,
                        Phase::Setup,
                        db.clone(),
                        "tests/conftest.py",
                        8,
                        "@pytest.fixture\ndef db():\n>       return connect()\nE       myapp.db.DatabaseError: could not connect to server\n\ntests/conftest.py:8: DatabaseError",
                    )
                })
                .collect(),
        ),
        TestResult {
            reason: Some("needs Windows".into()),
            ..test("tests/test_os.py::test_registry", Outcome::Skipped, 3, vec![])
        },
        TestResult {
            reason: Some("bug #12".into()),
            ..test("tests/test_os.py::test_known_bug", Outcome::Xfailed, 9, vec![])
        },
        TestResult {
            reason: Some("the run ended first".into()),
            duration_seconds: 0.0,
            ..test("tests/test_slow.py::test_late", Outcome::NotRun, 4, vec![])
        },
    ];
    r.collection_errors = vec![CollectionError {
        nodeid: "tests/test_broken.py".into(),
        traceback: "ImportError while importing test module 'tests/test_broken.py'.\nE   ModuleNotFoundError: No module named 'nope'".into(),
    }];
    classify_all(&mut r);
    r.summarize();
    r
}

/// Test ids, messages, tracebacks and output written to break out of every format.
pub(crate) const HOSTILE: &str = "a|b `x` ``` </details> </pre> <script>alert(1)</script> <img src=x onerror=alert(1)> @org/team \u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7} **bold** [link](javascript:alert(1)) ::error::forged ##[error]forged \u{fffe}\u{ffff} \u{0}nul \r\n| --- | --- |";

/// A report whose every untrusted field is [`HOSTILE`], with a 100 KB message.
pub(crate) fn hostile() -> RunReport {
    let mut r = empty();
    let id = format!("tests/test_x.py::test_evil[{HOSTILE}]");
    let big = format!("{HOSTILE}\n{}", "A".repeat(100_000));
    let tb = format!("{HOSTILE}\n```\n</pre></details>\n{big}");
    let exc = exception(&format!("evil.{HOSTILE}"), &[], &big);
    let mut failed = failed_attempt(1, Phase::Call, exc.clone(), "tests/test_x.py", 3, &tb);
    failed.captured = vec![CapturedSection {
        name: "Captured stdout call".into(),
        text: format!("{HOSTILE}\n\u{fffd}\u{fffd}"),
    }];
    let mut second = failed.clone();
    second.number = 2;
    r.tests = vec![
        test(&id, Outcome::Failed, 3, vec![failed.clone(), second]),
        test(
            &format!("{id}-flaky"),
            Outcome::Flaky,
            3,
            vec![failed, passed_attempt(2)],
        ),
    ];
    r.warnings = vec![HOSTILE.into()];
    r.collection_errors = vec![CollectionError {
        nodeid: format!("tests/{HOSTILE}.py"),
        traceback: tb,
    }];
    r.summarize();
    r
}

/// `failed` deterministic failures and `flaky` flaky tests, each with a `traceback_bytes` traceback.
pub(crate) fn large(failed: usize, flaky: usize, traceback_bytes: usize) -> RunReport {
    let mut r = empty();
    let line = "    frame in some/module.py, line 42, in some_function: value = compute(x, y, z)\n";
    let tb: String = line.repeat(traceback_bytes / line.len() + 1);
    let exc = exception(
        "builtins.AssertionError",
        &["builtins.AssertionError"],
        "assert response.status == 200",
    );
    for i in 0..failed {
        let id = format!("tests/test_many.py::test_failing_{i:05}");
        let attempts = vec![
            failed_attempt(1, Phase::Call, exc.clone(), "tests/test_many.py", 7, &tb),
            failed_attempt(2, Phase::Call, exc.clone(), "tests/test_many.py", 7, &tb),
        ];
        r.tests.push(test(&id, Outcome::Failed, 5, attempts));
    }
    for i in 0..flaky {
        let id = format!("tests/test_many.py::test_flaky_{i:05}");
        let attempts = vec![
            failed_attempt(1, Phase::Call, exc.clone(), "tests/test_many.py", 7, &tb),
            passed_attempt(2),
        ];
        r.tests.push(test(&id, Outcome::Flaky, 5, attempts));
    }
    r.summarize();
    r
}
