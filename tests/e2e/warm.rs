//! Warm rounds: rerun rounds forked from a snapshot of the first round's pytest taken after collection.
//! Each test checks what a user would notice: the rerun sees nothing the first round's tests left behind
//! (the same as with `--fork false`), the conftest is imported once, a thread alive after collection
//! falls back with one line, nothing outlives a killed smart-rerun, coverage adds up, `-x` and `-k` hold.
//!
//! The newest venv has pytest-rerunfailures and pytest-xdist installed: rerunfailures then starts an idle
//! server thread in every pytest, the one thread that does not rule the fork out. The runs here leave it
//! loaded, so that venv checks that exception too.

use crate::common::{Project, RunOutput, python};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The conftest of every project here: the counter's `attempt` fixture, and one line per import of the
/// conftest (the pid of the process that imported it).
const CONFTEST: &str = r#"
import os, pathlib, pytest
import sr_counter

with open(pathlib.Path(__file__).with_name("conftest-imports.txt"), "a") as f:
    f.write("%d\n" % os.getpid())

@pytest.fixture
def attempt(request):
    return sr_counter.bump(request.node.nodeid)
"#;

/// A test that leaves everything behind it can on its first attempt and records what its second sees.
const LEAKY: &str = r#"
import json, os, pathlib, sys
import pytest

STATE = []
SETUPS = {"count": 0}

@pytest.fixture(scope="session")
def session_state():
    SETUPS["count"] += 1
    return {"values": []}

def open_leak_target():
    target = os.path.realpath("leak-target.txt")
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd) == target:
                found.append(int(fd))
        except OSError:
            pass
    return found

def test_leaky(attempt, session_state):
    seen = {
        "pid": os.getpid(),
        "module_global": list(STATE),
        "session_setups": SETUPS["count"],
        "session_values": list(session_state["values"]),
        "env": os.environ.get("SR_WARM_LEAK"),
        "open_fds": open_leak_target(),
        "imported": "sr_leaked_module" in sys.modules,
    }
    pathlib.Path("seen-%d.json" % attempt).write_text(json.dumps(seen))
    STATE.append(attempt)
    session_state["values"].append(attempt)
    os.environ["SR_WARM_LEAK"] = "leaked"
    LEAKED_FD.append(os.open("leak-target.txt", os.O_RDONLY | os.O_CREAT))
    import sr_leaked_module  # noqa: F401
    assert attempt >= 2, "fails on the first attempt, after leaving its state behind"

def test_steady():
    pass

LEAKED_FD = []
"#;

/// The pytest arguments of every run here.
const PYTEST: &[&str] = &["-p", "no:cacheprovider"];

fn project(test_file: &str, content: &str) -> Project {
    let p = Project::new();
    p.file("conftest.py", CONFTEST);
    p.file(test_file, content);
    p
}

fn run(p: &Project, args: &[&str], pytest: &[&str]) -> RunOutput {
    p.run(args, &[PYTEST, pytest].concat())
}

fn conftest_imports(p: &Project) -> Vec<String> {
    std::fs::read_to_string(p.path().join("conftest-imports.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rounds(out: &RunOutput) -> &Vec<Value> {
    out.report()["run"]["rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("no rounds; {}", out.dump()))
}

fn note(out: &RunOutput, round: usize) -> String {
    rounds(out)[round]["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn warned(out: &RunOutput, needle: &str) -> Vec<String> {
    out.report()["warnings"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn seen(p: &Project, attempt: u32) -> Value {
    let path = p.path().join(format!("seen-{attempt}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The rerun saw none of what the first attempt left behind, and ran in another process.
fn assert_isolated(p: &Project, out: &RunOutput) {
    out.assert_code(0);
    assert_eq!(
        out.outcome("test_leaky.py::test_leaky"),
        "flaky",
        "{}",
        out.dump()
    );
    assert_eq!(out.outcome("test_leaky.py::test_steady"), "passed");
    let (first, second) = (seen(p, 1), seen(p, 2));
    assert_eq!(first["session_setups"], 1, "{}", out.dump());
    let context = format!(
        "first attempt saw {first}, the rerun {second}\n{}",
        out.dump()
    );
    assert_ne!(first["pid"], second["pid"], "{context}");
    assert_eq!(second["module_global"], serde_json::json!([]), "{context}");
    // The session fixture was set up afresh: once in the rerun's process, with nothing in it.
    assert_eq!(second["session_setups"], 1, "{context}");
    assert_eq!(second["session_values"], serde_json::json!([]), "{context}");
    assert_eq!(second["env"], Value::Null, "{context}");
    assert_eq!(second["open_fds"], serde_json::json!([]), "{context}");
    assert_eq!(second["imported"], false, "{context}");
}

fn leaky_project() -> Project {
    let p = project("test_leaky.py", LEAKY);
    p.file("sr_leaked_module.py", "VALUE = 1\n");
    p
}

#[test]
fn a_warm_rerun_sees_nothing_the_first_round_left_and_imports_no_conftest() {
    let p = leaky_project();
    let out = run(&p, &[], &[]);
    assert_isolated(&p, &out);
    // One import of the conftest for the whole run: the rerun round was forked, not started.
    assert_eq!(conftest_imports(&p).len(), 1, "{}", out.dump());
    assert_eq!(rounds(&out).len(), 2);
    assert!(note(&out, 1).contains("forked"), "{}", out.dump());
    assert!(warned(&out, "warm").is_empty(), "{}", out.dump());
    // The rerun round printed its own session, as a fresh pytest does.
    assert_eq!(
        out.stdout.matches("test session starts").count(),
        2,
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("collected 1 item\n"), "{}", out.dump());
}

#[test]
fn without_fork_a_rerun_is_just_as_isolated_and_imports_the_conftest_again() {
    for how in ["flag", "env", "ini"] {
        let p = leaky_project();
        let out = match how {
            "flag" => run(&p, &["--fork", "false"], &[]),
            "env" => {
                let mut cmd = p.command(&[]);
                cmd.env("SMART_RERUN_FORK", "false")
                    .arg("--")
                    .arg(python())
                    .args(["-m", "pytest"])
                    .args(PYTEST);
                p.output(cmd)
            }
            _ => {
                p.file("pytest.ini", "[pytest]\nsmart_rerun_fork = false\n");
                run(&p, &[], &[])
            }
        };
        assert_isolated(&p, &out);
        assert_eq!(conftest_imports(&p).len(), 2, "{how}: {}", out.dump());
        assert!(!note(&out, 1).contains("forked"), "{how}: {}", out.dump());
        assert!(warned(&out, "warm").is_empty(), "{how}: {}", out.dump());
    }
}

#[test]
fn a_thread_alive_after_collection_falls_back_to_a_fresh_pytest_saying_why_once() {
    let p = leaky_project();
    p.file(
        "conftest.py",
        &format!(
            "{CONFTEST}\nimport threading\n_stop = threading.Event()\n\
             threading.Thread(target=_stop.wait, name=\"conftest-poller\", daemon=True).start()\n"
        ),
    );
    p.file(
        "test_more.py",
        "def test_twice(attempt):\n    assert attempt >= 3\n",
    );
    let out = run(&p, &["--max", "3", "--early-stop", "false"], &[]);
    assert_isolated(&p, &out);
    assert_eq!(out.outcome("test_more.py::test_twice"), "flaky");
    // Three rounds, each its own pytest; the reason is given once, in one line.
    assert_eq!(rounds(&out).len(), 3, "{}", out.dump());
    assert_eq!(conftest_imports(&p).len(), 3, "{}", out.dump());
    let lines = warned(&out, "warm fork");
    assert_eq!(lines.len(), 1, "{}", out.dump());
    assert!(!lines[0].contains('\n'), "{lines:?}");
    assert!(
        lines[0].contains("1 thread besides the main one was alive after collection")
            && lines[0].contains("conftest-poller"),
        "{lines:?}"
    );
    assert!(
        out.stdout
            .contains("warning: round 2 started a fresh pytest"),
        "{}",
        out.dump()
    );
}

#[test]
fn minus_x_and_minus_k_hold_in_warm_rounds() {
    let p = project(
        "test_x.py",
        r#"
def test_a(attempt):
    assert attempt >= 2

def test_b():
    pass

def test_c():
    pass

def test_deselected():
    raise AssertionError("-k leaves this one out")
"#,
    );
    let out = run(&p, &[], &["-x", "-k", "not deselected"]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_x.py::test_a"), "flaky");
    assert_eq!(out.outcome("test_x.py::test_b"), "passed");
    assert_eq!(out.outcome("test_x.py::test_c"), "passed");
    assert!(
        !out.nodeids().iter().any(|n| n.contains("deselected")),
        "{}",
        out.dump()
    );
    // Round 1 stopped at the first failure (-x); round 2, forked, ran the rest and the rerun.
    assert_eq!(rounds(&out).len(), 2, "{}", out.dump());
    assert_eq!(rounds(&out)[1]["selected"], 3, "{}", out.dump());
    assert!(note(&out, 1).contains("forked"), "{}", out.dump());
    assert_eq!(conftest_imports(&p).len(), 1, "{}", out.dump());

    // -x within a warm round: the first of two tests that fail again stops it.
    let p = project(
        "test_x.py",
        r#"
def test_a(attempt):
    assert attempt >= 3

def test_b(attempt):
    assert attempt >= 3
"#,
    );
    let out = run(&p, &["--max", "3", "--early-stop", "false"], &["-x"]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_x.py::test_a"), "flaky");
    assert_eq!(out.outcome("test_x.py::test_b"), "flaky");
    assert_eq!(p.count("test_x.py::test_a"), 3, "{}", out.dump());
    assert_eq!(conftest_imports(&p).len(), 1, "{}", out.dump());
}

/// The lines coverage.py measured in `pkg/lib.py`, from the `.coverage` file in `dir`.
fn covered_lines(dir: &Path) -> Vec<u64> {
    let out = Command::new(python())
        .current_dir(dir)
        .args(["-m", "coverage", "json", "-o", "cov.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cov.json")).unwrap()).unwrap();
    let files = json["files"].as_object().unwrap();
    let (_, lib) = files
        .iter()
        .find(|(name, _)| name.ends_with("lib.py"))
        .expect("pkg/lib.py measured");
    lib["executed_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect()
}

const COVERED: &str = r#"
from pkg import lib

def test_cov(attempt):
    if attempt == 1:
        lib.first()
        assert False, "fails on the first attempt"
    lib.second()
"#;

const LIB: &str =
    "def first():\n    return 1\n\n\ndef second():\n    return 2\n\n\ndef never():\n    return 3\n";

#[test]
fn coverage_of_a_warm_round_adds_to_the_first_rounds() {
    let p = project("test_cov.py", COVERED);
    p.file("pkg/__init__.py", "").file("pkg/lib.py", LIB);
    let out = run(&p, &[], &["--cov=pkg", "--cov-report="]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_cov.py::test_cov"), "flaky");
    assert!(note(&out, 1).contains("forked"), "{}", out.dump());
    let warm = covered_lines(p.path());

    // The same two attempts by plain pytest, the second appending to the first's data.
    let plain = project("test_cov.py", COVERED);
    plain.file("pkg/__init__.py", "").file("pkg/lib.py", LIB);
    for extra in [&[][..], &["--cov-append"][..]] {
        let status = Command::new(python())
            .current_dir(plain.path())
            .env("COUNTER_DIR", plain.counters())
            .env_remove("PYTEST_ADDOPTS")
            .env_remove("PYTEST_PLUGINS")
            .args(["-m", "pytest", "-q", "--cov=pkg", "--cov-report="])
            .args(PYTEST)
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.code().is_some_and(|c| c <= 1));
    }
    let expected = covered_lines(plain.path());
    // Both functions' bodies ran (line 2 on the first attempt, line 6 on the rerun); `never` did not.
    assert!(expected.contains(&2) && expected.contains(&6) && !expected.contains(&10));
    assert_eq!(warm, expected, "{}", out.dump());
}

fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Live processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) && running(pid) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn the_snapshot_and_its_round_die_with_a_killed_smart_rerun() {
    let p = project(
        "test_kill.py",
        r#"
import os, pathlib, time

def test_slow_rerun(attempt):
    if attempt == 1:
        assert False, "fails on the first attempt"
    pathlib.Path("round2-pid").write_text(str(os.getpid()))
    time.sleep(120)
"#,
    );
    // The test file's absolute path marks this run's pytest processes (the snapshot and the rounds it
    // forks keep the first round's command line).
    let marker = p.path().join("test_kill.py").to_string_lossy().into_owned();
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(python())
        .args(["-m", "pytest"])
        .args(PYTEST)
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid_file = p.path().join("round2-pid");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pid_file.exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the warm round 2 never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = processes_with(&marker);
    // The snapshot and round 2's process, forked from it (round 1's pytest may still be exiting).
    assert!(before.len() >= 2, "{before:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = processes_with(&marker);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(&marker);
    }
    for &pid in &left {
        // SAFETY: a pytest process of this test's own run, left behind; killed so nothing lingers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "processes {left:?} outlived their smart-rerun by 20 s (before the kill: {before:?})"
    );
}

/// Registers an exit handler at import (so the snapshot's round processes inherit it) and keeps a
/// logging file handler whose last record is written at session end.
const EXITING: &str = r#"
import atexit, logging, os, pathlib, pytest

def _bye():
    pathlib.Path("atexit-%d.txt" % os.getpid()).write_text("ran")

atexit.register(_bye)

@pytest.fixture(scope="session", autouse=True)
def session_log():
    log = logging.getLogger("suite")
    log.addHandler(logging.FileHandler("session-%d.log" % os.getpid(), delay=True))
    yield
    log.warning("session over")

def test_flaky(attempt):
    assert attempt >= 2
"#;

#[test]
fn rounds_that_skip_the_interpreters_finalization_still_run_its_exit_handlers() {
    let p = project("test_exiting.py", EXITING);
    let out = run(&p, &[], &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(note(&out, 1).contains("forked"), "{}", out.dump());
    let names = |prefix: &str| {
        let mut found: Vec<String> = std::fs::read_dir(p.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        found.sort();
        found
    };
    // The first round and the forked second one each ran the handler (the snapshot runs none: it
    // never ran a test) and each logged its session's end, in two processes.
    let exits = names("atexit-");
    assert_eq!(exits.len(), 2, "{exits:?}; {}", out.dump());
    let logs = names("session-");
    assert_eq!(logs.len(), 2, "{logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(p.path().join(&log)).unwrap();
        assert_eq!(text, "session over\n", "{log}");
    }
    assert_eq!(rounds(&out)[0]["exit_status"], 1, "{}", out.dump());
    assert_eq!(rounds(&out)[1]["exit_status"], 0, "{}", out.dump());
}

/// Records how many objects the garbage collector holds frozen (in its permanent generation) when the
/// test runs, and fails on its first attempt.
const FREEZE: &str = r#"
import gc, pathlib

def test_frozen(attempt):
    pathlib.Path("frozen-%d.txt" % attempt).write_text(str(gc.get_freeze_count()))
    assert attempt >= 2
"#;

#[test]
fn with_a_snapshot_every_round_runs_with_the_collected_suite_frozen_and_without_one_none_does() {
    let frozen = |p: &Project, attempt: u32| -> u64 {
        let path = p.path().join(format!("frozen-{attempt}.txt"));
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let p = project("test_freeze.py", FREEZE);
    let out = run(&p, &[], &[]);
    out.assert_code(0);
    assert!(note(&out, 1).contains("forked"), "{}", out.dump());
    // The suite's modules, collected items and pytest's own objects: thousands, in both rounds.
    for attempt in [1, 2] {
        assert!(
            frozen(&p, attempt) > 1000,
            "attempt {attempt}: {}",
            out.dump()
        );
    }
    let p = project("test_freeze.py", FREEZE);
    let out = run(&p, &["--fork", "false"], &[]);
    out.assert_code(0);
    for attempt in [1, 2] {
        assert_eq!(frozen(&p, attempt), 0, "attempt {attempt}: {}", out.dump());
    }
}
