//! Rerun rounds under the plugins and errors users meet: pytest-xdist, setup and teardown errors,
//! collection errors, coverage data and a user's `--junitxml`.

use super::*;

#[test]
fn xdist_first_round_runs_on_workers_and_a_small_rerun_round_without() {
    let p = Project::new();
    p.file(
        "test_par.py",
        r#"
import pytest

@pytest.mark.parametrize("n", range(6))
def test_ok(n, attempt):
    pass

def test_flaky(attempt):
    assert attempt >= 2

def test_broken(attempt):
    assert False, "always"
"#,
    );
    let out = p.run(&[], &["-n", "2"]);
    out.assert_code(1);
    // Every collected test is in the report.
    assert_eq!(out.summary("total"), 8, "{}", out.dump());
    assert_eq!(out.summary("passed"), 6);
    assert_eq!(out.outcome("test_par.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_par.py::test_broken"), "failed");
    for n in 0..6 {
        assert_eq!(p.count(&format!("test_par.py::test_ok[{n}]")), 1);
    }
    assert_eq!(p.count("test_par.py::test_flaky"), 2);
    assert_eq!(p.count("test_par.py::test_broken"), 2);
    assert_eq!(selected_per_round(&out), [8, 2]);
    for id in ["test_par.py::test_flaky", "test_par.py::test_broken"] {
        let attempts = out.test(id)["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{id}");
        let first = attempts[0]["worker"].as_str().unwrap_or_default();
        assert!(
            first == "gw0" || first == "gw1",
            "{id}: the first attempt ran on a worker, not {first:?}; {}",
            out.dump()
        );
        // The rerun round of two quick tests ran in the controller itself.
        assert_eq!(attempts[1]["worker"], Value::Null, "{id}; {}", out.dump());
    }
    // xdist marks each failure with the worker that ran it ("[gw0] linux -- Python ...").
    assert_has(pytest_round(&out, 1), "[gw", &out);
    let round2 = pytest_round(&out, 2);
    assert!(
        !round2.contains("[gw") && !round2.contains("gw0") && !round2.contains("workers"),
        "{}",
        out.dump()
    );
    assert_pytest_round(&out, 2, "collected 2 items", "1 failed, 1 passed");
}

#[test]
fn xdist_keeps_its_workers_for_a_long_rerun_round_and_they_run_only_the_selection() {
    // Reruns expected to take 10 s or more keep xdist. The workers learn the round's files from the
    // controller (xdist's workerinput), not from the environment, and build only the selected tests.
    let p = Project::new();
    p.file(
        "test_long.py",
        r#"
import time
import pytest

@pytest.mark.parametrize("n", range(4))
def test_ok(n, attempt):
    pass

@pytest.mark.parametrize("n", range(2))
def test_slow_once(n, attempt):
    if attempt == 1:
        time.sleep(5.5)
        assert False, "slow and failed"
"#,
    );
    let out = p.run(&[], &["-n", "2"]);
    out.assert_code(0);
    assert_eq!(selected_per_round(&out), [6, 2], "{}", out.dump());
    for n in 0..4 {
        assert_eq!(p.count(&format!("test_long.py::test_ok[{n}]")), 1);
    }
    for n in 0..2 {
        let id = format!("test_long.py::test_slow_once[{n}]");
        assert_eq!(out.outcome(&id), "flaky");
        assert_eq!(p.count(&id), 2);
        let rerun = out.test(&id)["attempts"][1]["worker"]
            .as_str()
            .unwrap_or_default();
        assert!(
            rerun == "gw0" || rerun == "gw1",
            "{id}: round 2 ran on a worker, not {rerun:?}; {}",
            out.dump()
        );
    }
}

const SETUP_TEARDOWN: &str = r#"
import pytest

@pytest.fixture
def setup_fails_once(attempt):
    if attempt < 2:
        raise RuntimeError("setup failed once")

@pytest.fixture
def setup_always_fails():
    raise RuntimeError("setup is broken")

@pytest.fixture
def teardown_fails_once(attempt):
    yield
    if attempt < 2:
        raise RuntimeError("teardown failed once")

@pytest.fixture
def teardown_always_fails():
    yield
    raise RuntimeError("teardown is broken")

def test_setup_flaky(setup_fails_once):
    pass

def test_setup_broken(setup_always_fails):
    pass

def test_teardown_flaky(teardown_fails_once):
    pass

def test_teardown_broken(teardown_always_fails):
    pass

def test_ok(attempt):
    pass
"#;

#[test]
fn setup_and_teardown_errors_are_failures_and_rerun() {
    let p = Project::new();
    p.file("test_fixtures.py", SETUP_TEARDOWN);
    let out = p.run(&[], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_fixtures.py::test_setup_flaky"), "flaky");
    assert_eq!(
        out.outcome("test_fixtures.py::test_teardown_flaky"),
        "flaky"
    );
    assert_eq!(out.outcome("test_fixtures.py::test_setup_broken"), "error");
    assert_eq!(
        out.outcome("test_fixtures.py::test_teardown_broken"),
        "error"
    );
    assert_eq!(out.outcome("test_fixtures.py::test_ok"), "passed");
    assert_eq!(p.count("test_fixtures.py::test_ok"), 1);
    assert_eq!(p.count("test_fixtures.py::test_setup_flaky"), 2);
    assert_eq!(p.count("test_fixtures.py::test_teardown_flaky"), 2);
    for (id, phase) in [
        ("test_fixtures.py::test_setup_flaky", "setup"),
        ("test_fixtures.py::test_teardown_flaky", "teardown"),
    ] {
        let attempts = out.test(id)["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{id}");
        assert_eq!(attempts[0]["outcome"], "error", "{id}");
        assert_eq!(attempts[0]["phase"], phase, "{id}");
        assert_eq!(attempts[0]["exception"]["type"], "builtins.RuntimeError");
        assert_eq!(attempts[1]["outcome"], "passed", "{id}");
    }
    for (id, phase) in [
        ("test_fixtures.py::test_setup_broken", "setup"),
        ("test_fixtures.py::test_teardown_broken", "teardown"),
    ] {
        assert_eq!(attempt_rounds(&out, id), [1, 2], "{id}");
        for a in out.test(id)["attempts"].as_array().unwrap() {
            assert_eq!(a["outcome"], "error", "{id}");
            assert_eq!(a["phase"], phase, "{id}");
        }
    }
    assert_eq!(out.summary("errors"), 2);
    assert_eq!(out.summary("flaky"), 2);
    assert_eq!(selected_per_round(&out), [5, 4]);
    assert_pytest_round(
        &out,
        2,
        "collected 4 items",
        // pytest counts a test whose call passed and whose teardown failed as passed and an error.
        "3 passed, 2 errors",
    );
}

const BROKEN_MODULE: &str = "import no_such_module_anywhere\n\ndef test_never():\n    pass\n";

#[test]
fn collection_errors_are_reported_not_rerun_and_stop_the_run_like_pytest() {
    let p = Project::new();
    p.file("test_broken.py", BROKEN_MODULE);
    p.file("test_good.py", FLAKY_AND_OK);
    let out = p.run(&[], &[]);
    // pytest stops after collection errors and exits 2.
    out.assert_code(2);
    let errors = out.report()["collection_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", out.dump());
    assert_eq!(errors[0]["nodeid"], "test_broken.py");
    assert!(
        errors[0]["traceback"]
            .as_str()
            .unwrap()
            .contains("no_such_module_anywhere")
    );
    assert_eq!(out.summary("collection_errors"), 1);
    assert_eq!(rounds(&out).len(), 1, "nothing is rerun; {}", out.dump());
    assert_eq!(p.count("test_good.py::test_flaky"), 0);
    assert_eq!(p.count("test_good.py::test_ok"), 0);
    // The tests pytest collected but never ran are still in the report.
    assert_eq!(out.outcome("test_good.py::test_flaky"), "not-run");
    assert_eq!(out.outcome("test_good.py::test_ok"), "not-run");
    assert_eq!(out.summary("total"), 2);
    assert!(!out.nodeids().iter().any(|id| id.contains("test_never")));
}

#[test]
fn with_continue_on_collection_errors_the_other_tests_run_and_rerun() {
    let p = Project::new();
    p.file("test_broken.py", BROKEN_MODULE);
    p.file("test_good.py", FLAKY_AND_OK);
    let out = p.run(&[], &["--continue-on-collection-errors"]);
    out.assert_code(1);
    assert_eq!(out.summary("collection_errors"), 1);
    assert_eq!(
        out.report()["collection_errors"][0]["nodeid"],
        "test_broken.py"
    );
    assert_eq!(out.outcome("test_good.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_good.py::test_ok"), "passed");
    assert_eq!(p.count("test_good.py::test_flaky"), 2);
    assert_eq!(p.count("test_good.py::test_ok"), 1);
    assert_eq!(selected_per_round(&out), [2, 1]);
    // The broken module is not collected again.
    let round2 = pytest_round(&out, 2);
    assert!(
        !round2.contains("test_broken.py") && !round2.contains("no_such_module_anywhere"),
        "{}",
        out.dump()
    );
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");
}

#[test]
fn coverage_data_keeps_the_first_round_and_adds_the_rerun() {
    let p = Project::new();
    p.file("pkg/__init__.py", "");
    p.file(
        "pkg/lib.py",
        r#"def first_round_only():
    return "first"


def rerun_only():
    return "rerun"
"#,
    );
    p.file(
        "tests/test_cov.py",
        r#"
from pkg import lib

def test_first_round_only(attempt):
    assert lib.first_round_only() == "first"

def test_flaky(attempt):
    assert attempt >= 2
    assert lib.rerun_only() == "rerun"
"#,
    );
    let out = p.run(&[], &["--cov=pkg", "--cov-report="]);
    out.assert_code(0);
    assert_eq!(out.outcome("tests/test_cov.py::test_flaky"), "flaky");
    assert_eq!(p.count("tests/test_cov.py::test_first_round_only"), 1);
    let json = p.path().join("cov.json");
    let cov = Command::new(common::python())
        .args(["-m", "coverage", "json", "-o"])
        .arg(&json)
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(cov.status.success(), "{cov:?}");
    let data: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let file = &data["files"]["pkg/lib.py"];
    let executed: Vec<u64> = file["executed_lines"]
        .as_array()
        .unwrap_or_else(|| panic!("pkg/lib.py not in coverage: {data}"))
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    assert!(
        executed.contains(&2),
        "line 2 ran only in round 1; executed {executed:?}"
    );
    assert!(
        executed.contains(&6),
        "line 6 ran only in round 2; executed {executed:?}"
    );
    assert_eq!(file["missing_lines"], serde_json::json!([]));
}

#[test]
fn a_users_junitxml_is_not_overwritten_by_a_rerun_round() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_AND_OK);
    let out = p.run(&[], &["--junitxml=out.xml"]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_flaky"), "flaky");
    let xml = std::fs::read_to_string(p.path().join("out.xml"))
        .unwrap_or_else(|e| panic!("out.xml: {e}; {}", out.dump()));
    // test_ok ran only in the first round: a rerun round that rewrote the file would drop it.
    assert!(xml.contains(r#"name="test_ok""#), "{xml}");
    assert!(xml.contains(r#"name="test_flaky""#), "{xml}");
}

/// Runs `cmd` (output to files in the project), killing it if it outlives `limit`; a hang is a failure,
/// not a stuck test suite.
#[cfg(unix)]
fn run_with_deadline(p: &Project, mut cmd: Command, limit: std::time::Duration) -> RunOutput {
    use std::time::Instant;
    let stdout = p.path().join("smart-rerun.stdout");
    let stderr = p.path().join("smart-rerun.stderr");
    cmd.stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = cmd.spawn().expect("smart-rerun runs");
    let started = Instant::now();
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit && !hung {
            // SIGTERM: smart-rerun passes it on to pytest and exits.
            hung = true;
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        if started.elapsed() > limit * 2 {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = RunOutput {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        report: None,
    };
    assert!(!hung, "smart-rerun hung for {limit:?}; {}", out.dump());
    out
}

#[cfg(unix)]
#[test]
fn xdist_stops_before_any_test_on_an_invalid_setting() {
    // The verdict on the settings comes once gw0 has collected. A worker that stops does not end an
    // xdist run (the controller waited for it forever): the controller itself must wait and stop.
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\nsmart_rerun_max = abc\n");
    p.file("test_a.py", FLAKY_AND_OK);
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-n", "2"]);
    let out = run_with_deadline(&p, cmd, std::time::Duration::from_secs(40));
    out.assert_code(4);
    assert_has(
        &format!("{}{}", out.stdout, out.stderr),
        "smart_rerun_max = 'abc'",
        &out,
    );
    assert_eq!(p.count("test_a.py::test_flaky"), 0, "no test may run");
    assert_eq!(p.count("test_a.py::test_ok"), 0, "no test may run");
}
