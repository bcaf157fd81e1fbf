//! What a run leaves behind: nothing. Its pytest and pytest's xdist workers die with it (even when
//! smart-rerun is SIGKILLed), what
//! a test left running is stopped with pytest's process group, and its private directory (mode 0700) is
//! removed by the next run when the run that made it was killed.

use crate::common::{Project, python};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// `smart-rerun run -- python -m pytest -p no:cacheprovider PYTEST...` with `TMPDIR` inside the project,
/// stdin and stdout away from any terminal (as in CI).
fn command(p: &Project, tmp: &Path, pytest: &[&str]) -> Command {
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .args(pytest)
        .env("TMPDIR", tmp)
        .env("READY_FILE", p.path().join("ready.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Whether `pid` is a live process: a zombie (dead, not yet reaped by whoever inherited it) is not.
fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn gone_within(pid: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits for the test's ready file (written whole, then renamed into place).
fn ready(p: &Project, child: &mut Child) -> Value {
    let path = p.path().join("ready.json");
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("smart-rerun ended ({status}) before the test was ready");
        }
        assert!(Instant::now() < deadline, "the test never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait(child: &mut Child) -> i32 {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("smart-rerun did not end within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records, for the test to report: its pid, a process it started, and the run directories it can see.
const READY: &str = r#"
import json, os, pathlib, stat, subprocess, sys, tempfile

def ready(**extra):
    base = pathlib.Path(tempfile.gettempdir())
    dirs = {p.name: stat.S_IMODE(p.stat().st_mode) for p in base.iterdir() if p.name.startswith("smart-rerun-")}
    info = {"pid": os.getpid(), "dirs": dirs, **extra}
    target = pathlib.Path(os.environ["READY_FILE"])
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.rename(target)

def leave_a_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid
"#;

/// A project with the ready helper, the test file `name`, and its own `TMPDIR` (returned).
fn project_with(name: &str, test: &str) -> (Project, std::path::PathBuf) {
    let p = Project::new();
    let tmp = p.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    p.file("ready_helper.py", READY);
    p.file(name, test);
    (p, tmp)
}

#[test]
fn sigkill_of_smart_rerun_takes_pytest_with_it_and_the_next_run_removes_its_private_directory() {
    let (p, tmp) = project_with(
        "test_sleep.py",
        "import time\nfrom ready_helper import ready\n\n\
         def test_sleeps():\n    ready()\n    time.sleep(60)\n",
    );
    // A directory of a run that is still going (this process): not to be touched.
    let live = tmp.join("smart-rerun-live");
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("owner"), format!("{}\n", std::process::id())).unwrap();

    let mut child = command(&p, &tmp, &[]).spawn().unwrap();
    let info = ready(&p, &mut child);
    let pytest = info["pid"].as_i64().unwrap();
    let dirs = info["dirs"].as_object().unwrap();
    let run_dirs: Vec<(&String, &Value)> = dirs
        .iter()
        .filter(|(n, _)| *n != "smart-rerun-live")
        .collect();
    assert_eq!(run_dirs.len(), 1, "{info}");
    let (run_dir, mode) = run_dirs[0];
    assert_eq!(
        mode.as_u64(),
        Some(0o700),
        "the run directory is private: {info}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        gone_within(pytest, Duration::from_secs(10)),
        "pytest (pid {pytest}) outlived smart-rerun's SIGKILL"
    );
    let stale = tmp.join(run_dir);
    assert!(stale.exists(), "a killed run cannot remove its directory");

    // The next run on the machine removes it, and leaves the live run's alone.
    p.file("test_sleep.py", "def test_quick():\n    pass\n");
    let mut next = command(&p, &tmp, &[]).spawn().unwrap();
    assert_eq!(wait(&mut next), 0);
    assert!(!stale.exists(), "{} is still there", stale.display());
    assert!(live.exists(), "a live run's directory was removed");
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["smart-rerun-live"],
        "the run removed its own directory"
    );
}

#[test]
fn processes_a_test_left_running_are_stopped_when_its_pytest_exits() {
    let (p, tmp) = project_with(
        "test_leave.py",
        "from ready_helper import ready, leave_a_process\n\n\
         def test_leaves_one(attempt):\n    ready(left=leave_a_process())\n    assert attempt > 1\n",
    );
    let mut child = command(&p, &tmp, &[]).spawn().unwrap();
    let info = ready(&p, &mut child);
    let left = info["left"].as_i64().unwrap();
    assert_eq!(wait(&mut child), 0, "flaky, passed on its rerun");
    assert!(
        gone_within(left, Duration::from_secs(10)),
        "the process the test started (pid {left}) is still running"
    );
    let report = crate::common::read_report(&p.report_path());
    assert_eq!(report["tests"][0]["outcome"], "flaky", "{report}");
}

#[test]
fn sigkill_of_smart_rerun_takes_pytest_xdist_workers_with_it() {
    let (p, tmp) = project_with(
        "test_sleep.py",
        "import time\nfrom ready_helper import ready\n\n\
         def test_sleeps():\n    ready()\n    time.sleep(60)\n",
    );
    let mut child = command(&p, &tmp, &["-n", "1"]).spawn().unwrap();
    let worker = ready(&p, &mut child)["pid"].as_i64().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        gone_within(worker, Duration::from_secs(10)),
        "the xdist worker (pid {worker}) outlived smart-rerun's SIGKILL"
    );
}
