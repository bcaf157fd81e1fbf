//! Real processes: pytest dying mid-round, signals reaching smart-rerun, exit codes, a wrapper
//! that loses the environment, interpreter discovery, and delays met by scheduling rounds.
//!
//! Every run here is bounded in time: a hang fails the test instead of blocking the suite.

use crate::common::{Project, RunOutput, python, venv};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Long enough for a few pytest start-ups on a loaded 2-core machine; a run that takes longer is hung.
const LIMIT: Duration = Duration::from_secs(120);

/// `smart-rerun run ARGS --report report.json -- <venv python> -m pytest PYTEST...`, not yet run.
fn pytest_command(p: &Project, args: &[&str], pytest: &[&str]) -> Command {
    let mut cmd = p.command(args);
    cmd.arg("--")
        .arg(python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .args(pytest);
    cmd
}

/// Like `Project::run`, but gives up (and kills smart-rerun) after `LIMIT`.
fn run(p: &Project, args: &[&str], pytest: &[&str]) -> RunOutput {
    bounded(p, pytest_command(p, args, pytest))
}

/// Runs `cmd` to the end, at most `LIMIT`.
fn bounded(p: &Project, mut cmd: Command) -> RunOutput {
    let _ = std::fs::remove_file(p.report_path());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("smart-rerun starts");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let code = wait_within(&mut child, LIMIT, "the run");
    collect(p, code, stdout, stderr)
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` at most `limit`; kills it and fails the test when it does not end in time.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}: smart-rerun killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn collect(
    p: &Project,
    code: i32,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
) -> RunOutput {
    RunOutput {
        code,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        report: None,
    }
    .with_report(&p.report_path())
}

fn rounds(out: &RunOutput) -> &Vec<Value> {
    out.report()["run"]["rounds"].as_array().unwrap()
}

fn attempt<'a>(out: &'a RunOutput, nodeid: &str, n: usize) -> &'a Value {
    &out.test(nodeid)["attempts"][n]
}

/// Seconds since the epoch of an RFC 3339 timestamp in the report.
fn epoch(v: &Value) -> f64 {
    let text = v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}"));
    let ts = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    ts.timestamp_nanos_opt().unwrap() as f64 / 1e9
}

fn assert_contains(haystack: &str, needle: &str, out: &RunOutput) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in {haystack:?}\n{}",
        out.dump()
    );
}

// -- pytest dying mid-round --------------------------------------------------------------------------

/// Each crasher kills pytest on the attempts `CRASH` allows; the plain tests around them use the counter
/// so the test can tell how often each ran.
fn crash_suite(crash_when: &str) -> String {
    format!(
        r#"
import ctypes, os, signal

def crash(attempt):
    return {crash_when}

def test_a(attempt):
    pass

def test_segfault(attempt):
    if crash(attempt):
        ctypes.string_at(0)

def test_b(attempt):
    pass

def test_os_exit(attempt):
    if crash(attempt):
        os._exit(3)

def test_c(attempt):
    pass

def test_sigkill(attempt):
    if crash(attempt):
        os.kill(os.getpid(), signal.SIGKILL)

def test_d(attempt):
    pass
"#
    )
}

const CRASH_IDS: [&str; 7] = [
    "test_crash.py::test_a",
    "test_crash.py::test_segfault",
    "test_crash.py::test_b",
    "test_crash.py::test_os_exit",
    "test_crash.py::test_c",
    "test_crash.py::test_sigkill",
    "test_crash.py::test_d",
];

const CRASHERS: [(&str, &str); 3] = [
    (
        "test_crash.py::test_segfault",
        "killed by signal 11 (SIGSEGV)",
    ),
    ("test_crash.py::test_os_exit", "exit status 3"),
    (
        "test_crash.py::test_sigkill",
        "killed by signal 9 (SIGKILL)",
    ),
];

const PLAIN: [&str; 4] = [
    "test_crash.py::test_a",
    "test_crash.py::test_b",
    "test_crash.py::test_c",
    "test_crash.py::test_d",
];

fn assert_crash_attempt(out: &RunOutput, nodeid: &str, n: usize, reason: &str) {
    let a = attempt(out, nodeid, n);
    assert_eq!(a["outcome"], "error", "{nodeid} attempt {n}: {a}");
    assert_eq!(a["phase"], "crash", "{nodeid} attempt {n}: {a}");
    let message = a["exception"]["message"].as_str().unwrap();
    assert_contains(message, reason, out);
}

#[test]
fn a_test_that_kills_pytest_once_is_an_error_attempt_then_flaky() {
    let p = Project::new();
    p.file("test_crash.py", &crash_suite("attempt == 1"));
    let out = run(&p, &[], &[]);
    out.assert_code(0);
    assert_eq!(out.nodeids(), CRASH_IDS, "every collected test is reported");
    for (nodeid, reason) in CRASHERS {
        assert_eq!(out.outcome(nodeid), "flaky", "{}", out.dump());
        assert_eq!(out.attempts(nodeid), 2);
        assert_crash_attempt(&out, nodeid, 0, reason);
        assert_eq!(attempt(&out, nodeid, 1)["outcome"], "passed");
        assert_eq!(p.count(nodeid), 2);
    }
    // The tests after each crash ran in a new process, once each, and were charged no attempt.
    for nodeid in PLAIN {
        assert_eq!(out.outcome(nodeid), "passed", "{}", out.dump());
        assert_eq!(out.attempts(nodeid), 0);
        assert_eq!(p.count(nodeid), 1, "{nodeid} ran once");
    }
    assert_eq!(out.summary("total"), 7);
    assert_eq!(out.summary("flaky"), 3);
    assert_eq!(out.summary("passed"), 4);
    assert_eq!(out.summary("reruns"), 3, "only the crashers were rerun");
    // The rounds show how each pytest ended.
    let ends: Vec<(Option<i64>, Option<i64>)> = rounds(&out)
        .iter()
        .map(|r| (r["exit_status"].as_i64(), r["signal"].as_i64()))
        .collect();
    assert_eq!(
        ends,
        [
            (None, Some(11)),
            (Some(3), None),
            (None, Some(9)),
            (Some(0), None)
        ],
        "{}",
        out.dump()
    );
    assert_contains(
        &out.stdout,
        "FLAKY  test_crash.py::test_segfault passed on attempt 2",
        &out,
    );
}

#[test]
fn a_test_that_always_kills_pytest_is_an_error_and_the_rest_still_run() {
    let p = Project::new();
    p.file("test_crash.py", &crash_suite("True"));
    let out = run(&p, &[], &[]);
    out.assert_code(1);
    assert_eq!(out.nodeids(), CRASH_IDS, "every collected test is reported");
    for (nodeid, reason) in CRASHERS {
        assert_eq!(out.outcome(nodeid), "error", "{}", out.dump());
        assert_eq!(out.attempts(nodeid), 2, "{}", out.dump());
        assert_crash_attempt(&out, nodeid, 0, reason);
        assert_crash_attempt(&out, nodeid, 1, reason);
        assert_contains(
            out.test(nodeid)["stopped_because"].as_str().unwrap(),
            "attempt limit",
            &out,
        );
    }
    for nodeid in PLAIN {
        assert_eq!(out.outcome(nodeid), "passed", "{}", out.dump());
        assert_eq!(p.count(nodeid), 1, "{nodeid} ran once");
    }
    assert_eq!(out.summary("errors"), 3);
    assert_eq!(out.summary("passed"), 4);
    assert_eq!(out.summary("reruns"), 3);
    assert_contains(
        &out.report()["run"]["exit_reason"].to_string(),
        "3 errors",
        &out,
    );
}

#[test]
fn tests_after_a_crash_run_in_a_continuation_round_that_charges_no_attempt() {
    let p = Project::new();
    p.file(
        "test_crash.py",
        "import os\n\ndef test_dies(attempt):\n    os._exit(3)\n\n\
         def test_after(attempt):\n    assert attempt == 1\n\n\
         def test_last(attempt):\n    assert attempt == 1\n",
    );
    let out = run(&p, &["--max", "1"], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_crash.py::test_dies"), "error");
    assert_eq!(out.outcome("test_crash.py::test_after"), "passed");
    assert_eq!(out.outcome("test_crash.py::test_last"), "passed");
    assert_eq!(out.summary("reruns"), 0);
    let rounds = rounds(&out);
    assert_eq!(rounds.len(), 2, "{}", out.dump());
    assert_eq!(rounds[0]["exit_status"], 3);
    assert_eq!(rounds[1]["kind"], "continuation");
    assert_eq!(rounds[1]["selected"], 2);
    assert_eq!(rounds[1]["exit_status"], 0);
}

#[test]
fn a_round_that_reruns_a_crash_and_runs_the_tests_after_it_says_both() {
    let p = Project::new();
    p.file(
        "test_crash.py",
        "import os\n\ndef test_dies_once(attempt):\n    if attempt == 1:\n        os._exit(3)\n\n\
         def test_after(attempt):\n    pass\n\n\
         def test_last(attempt):\n    pass\n",
    );
    let out = run(&p, &["--max", "2"], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_crash.py::test_dies_once"), "flaky");
    let rounds = rounds(&out);
    assert_eq!(rounds.len(), 2, "{}", out.dump());
    assert_eq!(rounds[1]["kind"], "rerun");
    assert_eq!(rounds[1]["selected"], 3);
    assert_contains(
        &out.stdout,
        "smart-rerun round 2: rerunning 1 failed test and running 2 not yet run\n",
        &out,
    );
}

#[test]
fn pytest_dying_while_collecting_a_rerun_round_does_not_loop() {
    let p = Project::new();
    // Imported once per pytest process: the first round collects; every later one dies collecting.
    p.file(
        "test_c.py",
        "import os, sr_counter\n\
         if sr_counter.bump('collect') > 1:\n    os._exit(7)\n\n\
         def test_fails(attempt):\n    assert False, 'always'\n\n\
         def test_passes():\n    pass\n",
    );
    // A fresh round's collection is what dies here (a warm round, forked, collects nothing).
    let out = run(&p, &["--max", "5", "--fork", "false"], &[]);
    out.assert_code(1);
    assert_eq!(p.count("collect"), 2, "one rerun round was tried, not more");
    assert_eq!(rounds(&out).len(), 2);
    assert_eq!(rounds(&out)[1]["exit_status"], 7);
    assert_eq!(out.outcome("test_c.py::test_fails"), "failed");
    assert_eq!(out.attempts("test_c.py::test_fails"), 1);
    assert_contains(
        out.test("test_c.py::test_fails")["stopped_because"]
            .as_str()
            .unwrap(),
        "ran none of its tests",
        &out,
    );
    assert_eq!(out.outcome("test_c.py::test_passes"), "passed");
}

#[test]
fn pytest_dying_while_collecting_a_continuation_round_does_not_loop() {
    let p = Project::new();
    p.file(
        "test_c.py",
        "import ctypes, os, sr_counter\n\
         if sr_counter.bump('collect') > 1:\n    ctypes.string_at(0)\n\n\
         def test_dies():\n    os._exit(3)\n\n\
         def test_after():\n    pass\n",
    );
    // A fresh round's collection is what dies here (a warm round, forked, collects nothing).
    let out = run(&p, &["--max", "5", "--fork", "false"], &[]);
    out.assert_code(1);
    assert_eq!(p.count("collect"), 2, "one more round was tried, not more");
    assert_eq!(rounds(&out).len(), 2);
    assert_eq!(rounds(&out)[1]["signal"], 11);
    assert_eq!(out.nodeids().len(), 2, "every collected test is reported");
    assert_eq!(out.outcome("test_c.py::test_dies"), "error");
    assert_eq!(out.outcome("test_c.py::test_after"), "not-run");
}

// -- signals -----------------------------------------------------------------------------------------

/// smart-rerun running in the background, its stdout read line by line.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Background {
    fn start(p: &Project, mut cmd: Command) -> Background {
        let _ = std::fs::remove_file(p.report_path());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("smart-rerun starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let stderr = drain(child.stderr.take().unwrap());
        Background {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    fn wait_for_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line with {needle:?} within {limit:?}");
                }
            }
        }
    }

    fn wait_for_file(&mut self, path: &Path, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                if !text.is_empty() {
                    return text;
                }
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{} did not appear within {limit:?}", path.display());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "smart-rerun ended ({status}) before {} appeared",
                    path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the end (at most `limit`) and returns what it did and how long it took.
    fn finish(mut self, p: &Project, limit: Duration) -> (RunOutput, Duration) {
        let started = Instant::now();
        let code = wait_within(&mut self.child, limit, "smart-rerun after the signal");
        let took = started.elapsed();
        (collect(p, code, self.stdout, self.stderr), took)
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

const SLEEPER: &str = r#"
import os, pathlib, time

def test_first():
    pass

def test_sleeps():
    pathlib.Path(os.environ["READY_FILE"]).write_text(str(os.getpid()))
    time.sleep(60)

def test_never(attempt):
    pass
"#;

/// Signals smart-rerun (only it, not pytest) while a test sleeps; the run must stop promptly.
fn interrupted_while_a_test_runs(signal: i32) {
    let p = Project::new();
    p.file("test_sleep.py", SLEEPER);
    let ready = p.path().join("ready");
    let mut cmd = pytest_command(&p, &[], &[]);
    cmd.env("READY_FILE", &ready);
    let mut bg = Background::start(&p, cmd);
    let pytest_pid: i32 = bg.wait_for_file(&ready, LIMIT).trim().parse().unwrap();
    bg.signal(signal);
    let (out, took) = bg.finish(&p, Duration::from_secs(30));
    out.assert_code(2);
    assert!(
        took < Duration::from_secs(20),
        "stopped {took:?} after the signal"
    );
    assert!(
        !alive(pytest_pid),
        "pytest (pid {pytest_pid}) is still running"
    );
    let report = out.report();
    assert_eq!(report["run"]["interrupted"], true);
    assert_eq!(report["run"]["exit_code"], 2);
    assert_eq!(out.outcome("test_sleep.py::test_first"), "passed");
    assert_eq!(out.outcome("test_sleep.py::test_never"), "not-run");
    assert_eq!(p.count("test_sleep.py::test_never"), 0);
    assert_eq!(out.nodeids().len(), 3, "every collected test is reported");
    // The test that was running has no result: not passed, and the report says it was cut short.
    assert_eq!(
        out.outcome("test_sleep.py::test_sleeps"),
        "not-run",
        "{}",
        out.dump()
    );
    assert_eq!(
        out.test("test_sleep.py::test_sleeps")["reason"],
        "the run was interrupted while it ran"
    );
    assert_eq!(
        out.test("test_sleep.py::test_never")["reason"],
        "the run was interrupted"
    );
    assert_eq!(rounds(&out).len(), 1, "no rerun after an interrupt");
}

#[test]
fn sigint_to_smart_rerun_interrupts_pytest_and_writes_the_partial_report() {
    interrupted_while_a_test_runs(libc::SIGINT);
}

#[test]
fn sigterm_to_smart_rerun_interrupts_pytest_and_writes_the_partial_report() {
    interrupted_while_a_test_runs(libc::SIGTERM);
}

#[test]
fn sigterm_during_a_delay_between_rounds_stops_at_once() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_fails_once(attempt):\n    assert attempt > 1\n",
    );
    let cmd = pytest_command(&p, &["--delay", "60"], &[]);
    let mut bg = Background::start(&p, cmd);
    bg.wait_for_line("waiting", LIMIT);
    bg.signal(libc::SIGTERM);
    let (out, took) = bg.finish(&p, Duration::from_secs(30));
    out.assert_code(2);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} to stop during a 60 s delay"
    );
    assert_eq!(out.report()["run"]["interrupted"], true);
    assert_eq!(rounds(&out).len(), 1);
    assert_eq!(p.count("test_a.py::test_fails_once"), 1, "not rerun");
    assert_eq!(out.outcome("test_a.py::test_fails_once"), "failed");
    assert_contains(
        out.test("test_a.py::test_fails_once")["stopped_because"]
            .as_str()
            .unwrap(),
        "interrupted",
        &out,
    );
}

// -- exit codes --------------------------------------------------------------------------------------

#[test]
fn exit_codes_for_passing_flaky_and_failing_suites() {
    let p = Project::new();
    p.file("test_a.py", "def test_ok():\n    pass\n");
    run(&p, &[], &[]).assert_code(0);

    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_ok():\n    pass\n\ndef test_once(attempt):\n    assert attempt > 1\n",
    );
    let out = run(&p, &[], &[]);
    out.assert_code(0);
    assert_eq!(out.summary("flaky"), 1);

    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_ok():\n    pass\n\ndef test_broken(attempt):\n    assert False\n",
    );
    let out = run(&p, &[], &[]);
    out.assert_code(1);
    assert_eq!(out.report()["run"]["exit_code"], 1);
    assert_eq!(p.count("test_a.py::test_broken"), 2);
}

#[test]
fn bad_options_are_all_reported_before_any_test_runs() {
    let p = Project::new();
    p.file("test_a.py", "def test_counted(attempt):\n    pass\n");
    let out = run(
        &p,
        &[
            "--max",
            "0",
            "--delay",
            "-1",
            "--backoff",
            "fib",
            "--errors",
            "1x",
        ],
        &[],
    );
    out.assert_code(4);
    let err = &out.stderr;
    for (flag, value, allowed) in [
        ("--max", "'0'", "1 or more"),
        ("--delay", "'-1'", "0 or more"),
        ("--backoff", "'fib'", "none, linear or exp"),
        ("--errors", "'1x'", "TimeoutError"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("no line names {flag}\n{}", out.dump()));
        assert_contains(line, value, &out);
        assert_contains(line, allowed, &out);
    }
    assert_eq!(p.count("test_a.py::test_counted"), 0, "no test ran");
    // pytest collected (so that bad ini values and markers would be listed with these), then stopped:
    // the report, when written, says so.
    if let Some(report) = &out.report {
        assert_eq!(report["run"]["exit_code"], 4);
        assert_eq!(report["summary"]["not_run"], 1);
    }

    // Each alone, too (a negative number must not be mistaken for a flag).
    for args in [
        ["--max", "0"],
        ["--delay", "-1"],
        ["--backoff", "fib"],
        ["--errors", "1x"],
    ] {
        let out = run(&p, &args, &[]);
        out.assert_code(4);
        assert_contains(&out.stderr, args[0], &out);
        assert_contains(&out.stderr, args[1], &out);
    }
    assert_eq!(p.count("test_a.py::test_counted"), 0, "no test ran");
}

#[test]
fn an_option_pytest_rejects_is_a_usage_error() {
    let p = Project::new();
    p.file("test_a.py", "def test_counted(attempt):\n    pass\n");
    let out = run(&p, &[], &["--no-such-option"]);
    out.assert_code(4);
    assert_contains(&out.stderr, "--no-such-option", &out);
    assert_eq!(p.count("test_a.py::test_counted"), 0, "no test ran");
    assert_contains(
        out.report()["run"]["exit_reason"].as_str().unwrap(),
        "usage error",
        &out,
    );
    assert!(
        !out.stdout.contains("died"),
        "pytest did not die, it refused an option; {}",
        out.dump()
    );

    // A path that does not exist: pytest starts its session, then stops with its usage error.
    let out = run(&p, &[], &["no_such_dir"]);
    out.assert_code(4);
    assert_contains(&out.stderr, "no_such_dir", &out);
    assert_eq!(p.count("test_a.py::test_counted"), 0, "no test ran");
}

#[test]
fn no_tests_collected_exits_5() {
    let p = Project::new();
    p.file("test_empty.py", "def helper():\n    pass\n");
    let out = run(&p, &[], &[]);
    out.assert_code(5);
    assert_eq!(out.summary("total"), 0);
}

#[test]
fn keyboard_interrupt_inside_a_test_exits_2() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_ok():\n    pass\n\ndef test_ctrl_c():\n    raise KeyboardInterrupt\n\n\
         def test_later(attempt):\n    pass\n",
    );
    let out = run(&p, &[], &[]);
    out.assert_code(2);
    assert_eq!(out.report()["run"]["interrupted"], true);
    assert_eq!(out.outcome("test_a.py::test_ok"), "passed");
    assert_eq!(out.outcome("test_a.py::test_later"), "not-run");
    assert_eq!(
        out.outcome("test_a.py::test_ctrl_c"),
        "not-run",
        "a test cut short by KeyboardInterrupt did not pass; {}",
        out.dump()
    );
    assert_eq!(p.count("test_a.py::test_later"), 0);
    assert_eq!(rounds(&out).len(), 1);
}

#[test]
fn a_command_that_does_not_exist_is_a_usage_error() {
    let p = Project::new();
    p.file("test_a.py", "def test_ok():\n    pass\n");
    let mut cmd = p.command(&[]);
    cmd.args(["--", "no-such-pytest-wrapper-xyz", "-q"]);
    let out = bounded(&p, cmd);
    out.assert_code(4);
    assert_contains(&out.stderr, "no-such-pytest-wrapper-xyz", &out);
}

// -- wrappers and the environment --------------------------------------------------------------------

fn script(p: &Project, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = p.path().join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

const FLAKY_ONCE: &str =
    "def test_ok():\n    pass\n\ndef test_once(attempt):\n    assert attempt > 1\n";

#[test]
fn a_wrapper_that_drops_the_environment_is_named_not_guessed() {
    let p = Project::new();
    p.file("test_a.py", "def test_ok():\n    pass\n");
    let wrapper = script(
        &p,
        "scrubbed.sh",
        &format!(
            "#!/bin/sh\nexec env -i PATH=\"$PATH\" '{}' -m pytest \"$@\"\n",
            python().display()
        ),
    );
    let mut cmd = p.command(&[]);
    cmd.arg("--").arg(&wrapper);
    let out = bounded(&p, cmd);
    out.assert_code(3);
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_contains(&all, "environment did not reach pytest", &out);
    assert_contains(&all, "passenv", &out);
    assert_contains(
        out.report()["run"]["exit_reason"].as_str().unwrap(),
        "passenv",
        &out,
    );
    // pytest ran and passed; saying it died would be a guess, and a wrong one.
    assert!(!all.contains("died"), "{}", out.dump());
}

#[test]
fn a_wrapper_that_passes_the_environment_works() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_ONCE);
    let wrapper = script(
        &p,
        "wrapper.sh",
        &format!(
            "#!/bin/sh\nexec '{}' -m pytest \"$@\"\n",
            python().display()
        ),
    );
    let mut cmd = p.command(&[]);
    cmd.arg("--").arg(&wrapper).arg("-q");
    let out = bounded(&p, cmd);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_once"), "flaky");
    assert_eq!(out.outcome("test_a.py::test_ok"), "passed");
    assert_eq!(p.count("test_a.py::test_once"), 2);
}

#[test]
fn the_venvs_pytest_console_script_works() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_ONCE);
    let mut cmd = p.command(&[]);
    cmd.arg("--").arg(venv().join("bin/pytest"));
    let out = bounded(&p, cmd);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_once"), "flaky");
    assert_eq!(p.count("test_a.py::test_once"), 2);
}

// -- interpreter discovery ---------------------------------------------------------------------------

fn symlink_venv(at: &Path) {
    std::os::unix::fs::symlink(venv(), at).unwrap();
}

/// Runs with no COMMAND and returns the interpreter smart-rerun chose and the one pytest reported.
fn discovered(p: &Project, args: &[&str], virtual_env: Option<&Path>) -> (RunOutput, String) {
    let mut cmd = p.command(args);
    if let Some(v) = virtual_env {
        cmd.env("VIRTUAL_ENV", v);
    }
    let out = bounded(p, cmd);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_once"), "flaky", "pytest ran");
    let run = &out.report()["run"];
    assert_eq!(run["command"][1], "-m");
    assert_eq!(run["command"][2], "pytest");
    assert_eq!(run["command"].as_array().unwrap().len(), 3);
    let chosen = run["command"][0].as_str().unwrap().to_owned();
    assert_eq!(
        run["python_executable"].as_str(),
        Some(chosen.as_str()),
        "pytest ran under the interpreter smart-rerun chose"
    );
    (out, chosen)
}

#[test]
fn without_a_command_the_interpreter_is_found_as_users_expect() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_ONCE);
    // Three working interpreters at three different paths, all the test venv.
    symlink_venv(&p.path().join(".venv"));
    let elsewhere = tempfile::tempdir().unwrap();
    let active = elsewhere.path().join("active");
    symlink_venv(&active);
    let flag = elsewhere.path().join("flag");
    symlink_venv(&flag);
    let flag_python = flag.join("bin/python");

    let (_, chosen) = discovered(
        &p,
        &["--python", flag_python.to_str().unwrap()],
        Some(&active),
    );
    assert_eq!(chosen, flag_python.to_str().unwrap(), "--python first");

    let _ = std::fs::remove_dir_all(p.counters());
    let (_, chosen) = discovered(&p, &[], Some(&active));
    assert_eq!(
        chosen,
        active.join("bin/python").to_str().unwrap(),
        "then VIRTUAL_ENV"
    );

    let _ = std::fs::remove_dir_all(p.counters());
    let (_, chosen) = discovered(&p, &[], None);
    assert_eq!(
        chosen,
        p.path().join(".venv/bin/python").to_str().unwrap(),
        "then ./.venv"
    );
}

#[test]
fn a_missing_python_flag_is_a_usage_error() {
    let p = Project::new();
    p.file("test_a.py", "def test_counted(attempt):\n    pass\n");
    let out = bounded(&p, p.command(&["--python", "no/such/python"]));
    out.assert_code(4);
    assert_contains(&out.stderr, "--python no/such/python", &out);
    assert_eq!(p.count("test_a.py::test_counted"), 0);
}

// -- delays and backoff, read from the report's timestamps ------------------------------------------

/// Seconds from each failed attempt's end to the start of the round of the next attempt.
fn gaps(out: &RunOutput, nodeid: &str) -> Vec<f64> {
    let attempts = out.test(nodeid)["attempts"].as_array().unwrap();
    let rounds = rounds(out);
    attempts
        .windows(2)
        .map(|w| {
            let finished = epoch(&w[0]["finished_at"]);
            let round = w[1]["round"].as_u64().unwrap() as usize;
            let started = epoch(&rounds[round - 1]["started_at"]);
            started - finished
        })
        .collect()
}

/// Rounding of the timestamps (microseconds) and clock reads.
const SLACK: f64 = 0.01;

#[test]
fn a_delay_separates_a_failed_attempt_from_the_next() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_once(attempt):\n    assert attempt > 1\n",
    );
    let out = run(&p, &["--delay", "1"], &[]);
    out.assert_code(0);
    let gaps = gaps(&out, "test_a.py::test_once");
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= 1.0 - SLACK, "gap {gaps:?}; {}", out.dump());
    assert!(gaps[0] < 1.0 + 10.0, "gap {gaps:?}");
}

#[test]
fn a_test_that_failed_early_in_a_long_round_has_already_waited() {
    let p = Project::new();
    p.file(
        "test_a.py",
        "import time\n\ndef test_early(attempt):\n    assert attempt > 1\n\n\
         def test_slow():\n    time.sleep(2.5)\n",
    );
    let out = run(&p, &["--delay", "1"], &[]);
    out.assert_code(0);
    let rounds = rounds(&out);
    assert_eq!(rounds.len(), 2);
    let first_end =
        epoch(&rounds[0]["started_at"]) + rounds[0]["duration_seconds"].as_f64().unwrap();
    let between = epoch(&rounds[1]["started_at"]) - first_end;
    assert!(
        between < 0.9,
        "round 2 started {between:.3}s after round 1 ended: the delay was waited again; {}",
        out.dump()
    );
    let gaps = gaps(&out, "test_a.py::test_early");
    assert!(gaps[0] >= 1.0 - SLACK, "gap {gaps:?}");
}

fn backoff_gaps(backoff: &str) -> (RunOutput, Vec<f64>) {
    let p = Project::new();
    p.file(
        "test_a.py",
        "def test_thrice(attempt):\n    assert attempt > 3\n",
    );
    let out = run(
        &p,
        // The same failure every time would otherwise be stopped early as deterministic.
        &[
            "--max",
            "4",
            "--delay",
            "0.3",
            "--backoff",
            backoff,
            "--early-stop",
            "false",
        ],
        &[],
    );
    out.assert_code(0);
    assert_eq!(out.attempts("test_a.py::test_thrice"), 4);
    let gaps = gaps(&out, "test_a.py::test_thrice");
    (out, gaps)
}

fn assert_gaps(out: &RunOutput, gaps: &[f64], expected: &[f64]) {
    assert_eq!(gaps.len(), expected.len());
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            *gap >= want - SLACK && *gap < want + 10.0,
            "gaps {gaps:?}, expected at least {expected:?}; {}",
            out.dump()
        );
    }
}

#[test]
fn linear_backoff_grows_the_gap_by_the_delay() {
    let (out, gaps) = backoff_gaps("linear");
    assert_gaps(&out, &gaps, &[0.3, 0.6, 0.9]);
}

#[test]
fn exponential_backoff_doubles_the_gap() {
    let (out, gaps) = backoff_gaps("exp");
    assert_gaps(&out, &gaps, &[0.3, 0.6, 1.2]);
}

const ERRORS_SUITE: &str = r#"
def test_timeout(attempt):
    if attempt == 1:
        raise TimeoutError("slow server")

def test_reset(attempt):
    if attempt == 1:
        raise ConnectionResetError("peer reset")

def test_value(attempt):
    if attempt == 1:
        raise ValueError("bad input")
"#;

#[test]
fn the_errors_allow_list_reruns_only_matching_exceptions() {
    let p = Project::new();
    p.file("test_a.py", ERRORS_SUITE);
    let out = run(&p, &["--errors", "TimeoutError"], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_a.py::test_timeout"), "flaky");
    assert_eq!(p.count("test_a.py::test_timeout"), 2);
    for nodeid in ["test_a.py::test_reset", "test_a.py::test_value"] {
        assert_eq!(out.outcome(nodeid), "failed");
        assert_eq!(out.attempts(nodeid), 1);
        assert_eq!(p.count(nodeid), 1, "{nodeid} failed at once");
        let why = out.test(nodeid)["stopped_because"].as_str().unwrap();
        assert_contains(why, "allow-list", &out);
        assert_contains(why, "TimeoutError", &out);
    }

    // A base class matches its subclasses: ConnectionResetError is an OSError.
    let p = Project::new();
    p.file("test_a.py", ERRORS_SUITE);
    let out = run(&p, &["--errors", "OSError"], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_a.py::test_reset"), "flaky");
    assert_eq!(p.count("test_a.py::test_reset"), 2);
    assert_eq!(out.outcome("test_a.py::test_timeout"), "flaky");
    assert_eq!(out.outcome("test_a.py::test_value"), "failed");
    assert_eq!(p.count("test_a.py::test_value"), 1);
    assert_contains(
        out.test("test_a.py::test_value")["stopped_because"]
            .as_str()
            .unwrap(),
        "ValueError is not in the errors allow-list",
        &out,
    );
}

// -- prestarted rounds -------------------------------------------------------------------------------

/// Test-side helpers: the pytest processes held for a later round by this run's smart-rerun (the parent
/// of the pytest running the test), found by their environment.
const HELD: &str = r#"
import os, pathlib, time

def held_pids():
    # Children of smart-rerun (this pytest's parent) started with a hold pipe.
    smart_rerun = os.getppid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/%s/environ" % entry, "rb") as fh:
                    environ = b"\0" + fh.read()
                with open("/proc/%s/stat" % entry, "rb") as fh:
                    parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == smart_rerun and b"\0SMART_RERUN_HOLD=" in environ:
                found.append(entry)
    return found

def watch(seconds):
    # Wait for the held pytest, then write its pid (or "none") where the Rust test looks.
    deadline = time.time() + seconds
    while time.time() < deadline:
        pids = held_pids()
        if pids:
            break
        time.sleep(0.05)
    pathlib.Path(os.environ["HELD_FILE"]).write_text(" ".join(pids) or "none")
"#;

/// Whether `pid` is a live process (a zombie, never reaped when its parent died, counts as gone).
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

fn prestart_project(watch_seconds: u32, then_sleep: u32) -> Project {
    let p = Project::new();
    p.file("held.py", HELD);
    p.file(
        "test_prestart.py",
        &format!(
            r#"
import os, pathlib, time
import held

def test_a_flaky(attempt):
    if attempt == 2:
        pathlib.Path(os.environ["RERUN_FILE"]).write_text(str(os.getpid()))
    assert attempt > 1

def test_b_watch():
    pathlib.Path(os.environ["ROUND1_FILE"]).write_text(str(os.getpid()))
    held.watch({watch_seconds})
    time.sleep({then_sleep})
"#
        ),
    );
    p
}

fn prestart_command(p: &Project, args: &[&str]) -> Command {
    // Held pytests are what these tests watch: warm rounds (tests/e2e/warm.rs) would make them unneeded.
    let args = [&["--fork", "false"][..], args].concat();
    let mut cmd = pytest_command(p, &args, &[]);
    cmd.env("HELD_FILE", p.path().join("held"))
        .env("RERUN_FILE", p.path().join("rerun"))
        .env("ROUND1_FILE", p.path().join("round1"));
    cmd
}

/// Starts the run and waits until round 1 has seen the pytest held for round 2; returns that pytest's pid.
fn start_until_held(p: &Project) -> (Background, i32) {
    let mut bg = Background::start(p, prestart_command(p, &[]));
    let held = bg
        .wait_for_file(&p.path().join("held"), LIMIT)
        .trim()
        .parse()
        .expect("a held pytest");
    (bg, held)
}

#[test]
fn a_rerun_round_runs_in_the_pytest_started_and_held_during_the_first() {
    let p = prestart_project(60, 0);
    let out = bounded(&p, prestart_command(&p, &[]));
    out.assert_code(0);
    assert_eq!(out.outcome("test_prestart.py::test_a_flaky"), "flaky");
    assert_eq!(p.count("test_prestart.py::test_a_flaky"), 2);
    // While round 1 still ran, one pytest was waiting for round 2: the one that then ran the rerun.
    let held = std::fs::read_to_string(p.path().join("held")).unwrap();
    let rerun = std::fs::read_to_string(p.path().join("rerun")).unwrap();
    assert_eq!(held.trim(), rerun.trim(), "{}", out.dump());
    let note = rounds(&out)[1]["note"].as_str().unwrap_or_default();
    assert_contains(note, "started during round 1", &out);
    // Held, it printed nothing: its session header follows smart-rerun's round 2 line.
    assert_eq!(out.stdout.matches("test session starts").count(), 2);
    let round2 = out.stdout.find("round 2").expect("a round 2 line");
    let second_header = out.stdout.rfind("test session starts").unwrap();
    assert!(round2 < second_header, "{}", out.dump());
}

#[test]
fn without_prestart_the_rerun_round_starts_its_own_pytest() {
    let p = prestart_project(2, 0);
    let out = bounded(&p, prestart_command(&p, &["--prestart", "false"]));
    out.assert_code(0);
    assert_eq!(out.outcome("test_prestart.py::test_a_flaky"), "flaky");
    let held = std::fs::read_to_string(p.path().join("held")).unwrap();
    assert_eq!(held, "none", "{}", out.dump());
    assert!(rounds(&out)[1]["note"].is_null(), "{}", out.dump());
}

#[test]
fn a_held_pytest_whose_round_never_comes_leaves_without_a_word() {
    // SIGTERM stops the run after round 1: the pytest held for round 2 is sent away.
    let p = prestart_project(60, 60);
    let (bg, held) = start_until_held(&p);
    bg.signal(libc::SIGTERM);
    let (out, _) = bg.finish(&p, Duration::from_secs(30));
    out.assert_code(2);
    assert_eq!(rounds(&out).len(), 1);
    assert!(!running(held), "the held pytest {held} is still there");
    assert_eq!(out.stdout.matches("test session starts").count(), 1);
    assert!(!out.stderr.contains("Traceback"), "{}", out.dump());
}

#[test]
fn a_held_pytest_leaves_on_its_own_when_smart_rerun_is_killed() {
    let p = prestart_project(60, 60);
    let (bg, held) = start_until_held(&p);
    let round1: i32 = std::fs::read_to_string(p.path().join("round1"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    bg.signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(20);
    while running(held) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = running(held);
    // SAFETY: the orphaned round-1 pytest of this test, sleeping in test_b_watch.
    unsafe { libc::kill(round1, libc::SIGKILL) };
    let _ = bg.finish(&p, Duration::from_secs(30));
    assert!(
        !still,
        "the held pytest {held} outlived its smart-rerun by 20 s"
    );
}

#[test]
fn a_pytest_that_dies_after_its_last_line_keeps_its_results_and_the_status_is_recorded() {
    // smart-rerun goes on once pytest has printed its last line; how the process really ended is
    // still recorded.
    let p = Project::new();
    p.file(
        "test_exit.py",
        r#"
import atexit, os, time

def _late_exit():
    time.sleep(1)
    os._exit(7)

def test_ok():
    atexit.register(_late_exit)
"#,
    );
    let out = run(&p, &[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_exit.py::test_ok"), "passed");
    assert_eq!(rounds(&out)[0]["exit_status"], 7, "{}", out.dump());
    let warnings = out.report()["warnings"].to_string();
    assert_contains(
        &warnings,
        "round 1: pytest reported exit status 0 and then exited with exit status 7",
        &out,
    );
}

// -- a pytest inside a test --------------------------------------------------------------------------

#[test]
fn a_pytest_that_a_test_runs_leaves_the_round_alone() {
    // Suites of pytest plugins run pytest inside their tests: in a child process (which inherits the
    // environment smart-rerun set up) or in-process with pytester (which loads PYTEST_PLUGINS again). Neither
    // may write into the round's events, read its selection or wait on its pipe; both tests here also run
    // in round 2, in the held pytest.
    let p = Project::new();
    p.file(
        "inner/test_inner.py",
        "def test_inner_fails():\n    assert False\n\ndef test_inner_passes():\n    pass\n",
    );
    p.file(
        "test_outer.py",
        r#"
import os, subprocess, sys

INNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inner")

def test_subprocess(attempt):
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", INNER],
        capture_output=True, text=True, timeout=60,
    )
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    assert run.returncode == 1
    assert attempt >= 2

def test_inprocess(pytester, attempt):
    pytester.makepyfile(test_in="def test_in_fails():\n    assert False\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
    assert attempt >= 2

def test_steady(attempt):
    pass
"#,
    );
    let out = run(&p, &[], &["-p", "pytester", "--ignore=inner"]);
    out.assert_code(0);
    assert_eq!(
        out.nodeids(),
        [
            "test_outer.py::test_subprocess",
            "test_outer.py::test_inprocess",
            "test_outer.py::test_steady",
        ],
        "{}",
        out.dump()
    );
    assert_eq!(out.outcome("test_outer.py::test_subprocess"), "flaky");
    assert_eq!(out.outcome("test_outer.py::test_inprocess"), "flaky");
    assert_eq!(out.outcome("test_outer.py::test_steady"), "passed");
    assert_eq!(p.count("test_outer.py::test_subprocess"), 2);
    assert_eq!(p.count("test_outer.py::test_steady"), 1);
    let selected: Vec<&Value> = rounds(&out).iter().map(|r| &r["selected"]).collect();
    assert_eq!(selected, [3, 2], "{}", out.dump());
    assert!(
        out.report()["warnings"]
            .as_array()
            .is_none_or(|w| w.is_empty()),
        "{}",
        out.dump()
    );
}

/// A test cannot read smart-rerun's environment (where the tokens are) through /proc: smart-rerun is not
/// dumpable, so its /proc files belong to root. Root reads them anyway, so when these tests run as root
/// the run is made as `nobody` (setpriv), one unprivileged user for smart-rerun and what it starts, as on
/// a CI runner. The command is a plain Python script (the system's interpreter, which `nobody` can run):
/// what matters is that smart-rerun started it.
#[cfg(target_os = "linux")]
#[test]
fn a_test_cannot_read_smart_reruns_environment_through_proc() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "sr-e2e-ai-token-4f9c2a";
    let p = Project::new();
    p.file(
        "peek.py",
        r#"
import os

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return repr(e).encode()

parent = os.getppid()
with open("peeked.txt", "wb") as f:
    f.write(read("/proc/%d/environ" % parent).replace(b"\0", b" ") + b"\n")
    f.write(read("/proc/%d/mem" % parent)[:40] + b"\n")
    # The control: this process's own environment is readable.
    f.write(b"self " + read("/proc/self/environ")[:20].replace(b"\0", b" ") + b"\n")
"#,
    );
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(python);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(crate::common::bin());
        cmd
    } else {
        Command::new(crate::common::bin())
    };
    cmd.current_dir(p.path())
        .args(["run", "--max", "1", "--"])
        .arg(&python)
        .arg("peek.py")
        .env("SMART_RERUN_AI_TOKEN", TOKEN);
    let out = bounded(&p, cmd);
    let peeked = std::fs::read_to_string(p.path().join("peeked.txt"))
        .unwrap_or_else(|e| panic!("the script did not run ({e}): {}", out.dump()));
    assert!(
        !peeked.contains(TOKEN),
        "the script read the token: {peeked}"
    );
    let lines: Vec<&str> = peeked.lines().collect();
    assert_eq!(lines.len(), 3, "{peeked}\n{}", out.dump());
    assert!(lines[0].starts_with("PermissionError"), "environ: {peeked}");
    assert!(lines[1].starts_with("PermissionError"), "mem: {peeked}");
    assert!(
        lines[2].starts_with("self ") && !lines[2].contains("Error"),
        "control: {peeked}"
    );
}
