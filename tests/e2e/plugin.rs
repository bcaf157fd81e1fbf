//! The pytest plugin in the wheel: `pip install pytest-smart-rerun`, then `pytest --smart-rerun ...`.
//!
//! pytest runs from a fresh venv that scripts/bootstrap-wheel made with the wheel maturin built
//! (target/venvs/wheel-latest, wheel-pytest7: the one matching SMART_RERUN_TEST_VENV), so these tests run
//! what a user installs: the plugin found through its entry point, the binary the wheel put on PATH.

use crate::ai::Server;
use crate::common::{self, Project, RunOutput};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Fails on its first two attempts, passes on the third.
const FLAKY_TWICE: &str = r#"
def test_flaky(attempt):
    if attempt < 3:
        raise TimeoutError("the service answered late (attempt %d)" % attempt)

def test_fine():
    pass
"#;

/// The venv with the wheel installed, for the pytest of the venv under test.
fn wheel_venv() -> PathBuf {
    let name = common::venv()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let venv = common::repo_root()
        .join("target/venvs")
        .join(format!("wheel-{name}"));
    assert!(
        venv.join("bin/pytest").exists(),
        "no venv with the wheel at {}: run scripts/bootstrap-wheel (scripts/test does it for you)",
        venv.display()
    );
    venv
}

/// `PROGRAM ARGS` from the wheel's venv in the project, with a clean environment for smart-rerun.
fn venv_command(p: &Project, program: &str, args: &[&str]) -> Command {
    let venv = wheel_venv();
    let mut cmd = Command::new(venv.join("bin").join(program));
    cmd.current_dir(p.path())
        .args(args)
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PATH", path_with(&venv))
        .env("VIRTUAL_ENV", &venv)
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env_remove("SMART_RERUN_BIN")
        .stdin(Stdio::null());
    for key in smart_rerun::config::KEYS {
        cmd.env_remove(key.env);
    }
    cmd
}

fn path_with(venv: &std::path::Path) -> std::ffi::OsString {
    let mut paths = vec![venv.join("bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// `pytest ARGS` (the venv's console script) in the project.
fn pytest(p: &Project, args: &[&str]) -> RunOutput {
    p.output(venv_command(p, "pytest", args))
}

fn report_flag(p: &Project) -> String {
    format!("--smart-rerun-report={}", p.report_path().display())
}

#[test]
fn the_reference_quick_start_works_verbatim() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let started = Instant::now();
    let report = report_flag(&p);
    let out = pytest(
        &p,
        &[
            "--smart-rerun",
            "--smart-rerun-max=3",
            "--smart-rerun-delay=1",
            &report,
        ],
    );
    out.assert_code(0);
    assert_eq!(
        out.outcome("test_service.py::test_flaky"),
        "flaky",
        "{}",
        out.dump()
    );
    assert_eq!(out.attempts("test_service.py::test_flaky"), 3);
    assert_eq!(p.count("test_service.py::test_flaky"), 3);
    assert_eq!(out.outcome("test_service.py::test_fine"), "passed");
    // Each round is a fresh pytest; the delay of 1 s was kept before each of the two reruns.
    assert_eq!(
        out.stdout.matches("test session starts").count(),
        3,
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("smart-rerun summary"), "{}", out.dump());
    assert!(
        out.stdout
            .contains("FLAKY  test_service.py::test_flaky passed on attempt 3"),
        "{}",
        out.dump()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{}",
        out.dump()
    );
    // The binary ran the pytest the user started, with the settings from the options.
    let policy = &out.report()["run"]["policy"];
    assert_eq!(policy["max_attempts"], json!(3), "{}", out.dump());
    assert_eq!(policy["delay_seconds"], json!(1.0), "{}", out.dump());
}

#[test]
fn python_m_pytest_and_addopts_hand_over_too() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE).file(
        "pytest.ini",
        "[pytest]\naddopts = --smart-rerun --smart-rerun-max=3\n",
    );
    let report = report_flag(&p);
    let out = p.output(venv_command(&p, "python", &["-m", "pytest", &report]));
    out.assert_code(0);
    assert_eq!(out.outcome("test_service.py::test_flaky"), "flaky");
    assert_eq!(p.count("test_service.py::test_flaky"), 3);
}

#[test]
fn the_marker_overrides_the_options_per_test() {
    let p = Project::new();
    p.file(
        "test_marked.py",
        r#"
import pytest

@pytest.mark.smart_rerun(max=4, delay=0.5)
def test_eventually_consistent(attempt):
    if attempt < 4:
        raise TimeoutError("state not replicated yet")

def test_unmarked(attempt):
    assert False, "broken on attempt %d" % attempt
"#,
    );
    let report = report_flag(&p);
    let out = pytest(&p, &["--smart-rerun", &report]);
    out.assert_code(1);
    assert_eq!(
        out.outcome("test_marked.py::test_eventually_consistent"),
        "flaky"
    );
    assert_eq!(p.count("test_marked.py::test_eventually_consistent"), 4);
    // The default of 2 attempts for the rest; early stop does not apply below a third attempt.
    assert_eq!(out.outcome("test_marked.py::test_unmarked"), "failed");
    assert_eq!(p.count("test_marked.py::test_unmarked"), 2);
}

#[test]
fn every_option_is_in_a_smart_rerun_group_of_pytest_help() {
    let p = Project::new();
    let out = p.output(venv_command(&p, "pytest", &["--help"]));
    out.assert_code(0);
    let group = out
        .stdout
        .split("\nsmart-rerun:")
        .nth(1)
        .unwrap_or_else(|| panic!("no smart-rerun group in pytest --help: {}", out.dump()));
    for key in smart_rerun::config::KEYS {
        let option = smart_rerun::config::pytest_option(key.flag);
        assert!(
            group.contains(&format!("  {option}")),
            "{option} is not in the group: {group}"
        );
        // The ini keys are registered, so --strict-config projects keep working.
        assert!(
            out.stdout.contains(&format!("  {} ", key.ini)),
            "{} not among the ini keys",
            key.ini
        );
    }
    assert!(!out.stdout.contains("smart-rerun summary"));
}

#[test]
fn a_plain_pytest_is_left_alone() {
    let p = Project::new();
    p.file(
        "test_plain.py",
        "def test_broken(attempt):\n    assert False\n",
    );
    let out = pytest(&p, &["-p", "no:cacheprovider"]);
    out.assert_code(1);
    assert_eq!(p.count("test_plain.py::test_broken"), 1);
    assert!(
        !out.stdout.contains("smart-rerun summary"),
        "{}",
        out.dump()
    );
    assert!(!out.stdout.contains("smart-rerun round"), "{}", out.dump());
    assert_eq!(out.stdout.matches("test session starts").count(), 1);
}

#[test]
fn p_no_smart_rerun_opts_out_of_the_ini_settings() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE).file(
        "pytest.ini",
        "[pytest]\nsmart_rerun = true\nsmart_rerun_max = 3\n",
    );
    let out = pytest(&p, &["-p", "no:smart_rerun"]);
    out.assert_code(1);
    assert_eq!(p.count("test_service.py::test_flaky"), 1);
    assert!(
        !out.stdout.contains("smart-rerun summary"),
        "{}",
        out.dump()
    );
    // The same project without the opt-out hands over.
    let out = pytest(&p, &[]);
    out.assert_code(0);
    assert!(out.stdout.contains("smart-rerun summary"), "{}", out.dump());
    assert_eq!(p.count("test_service.py::test_flaky"), 3);
}

#[test]
fn a_settings_variable_hands_over() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let mut cmd = venv_command(&p, "pytest", &[]);
    cmd.env("SMART_RERUN_MAX", "3");
    let out = p.output(cmd);
    out.assert_code(0);
    assert!(out.stdout.contains("smart-rerun summary"), "{}", out.dump());
    assert_eq!(p.count("test_service.py::test_flaky"), 3);
}

#[test]
fn bad_option_values_are_a_pytest_usage_error_before_any_test_runs() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let out = pytest(
        &p,
        &["--smart-rerun-max=three", "--smart-rerun-backoff=fast"],
    );
    out.assert_code(4);
    assert!(
        out.stderr
            .starts_with("ERROR: smart-rerun: 2 invalid settings:"),
        "{}",
        out.dump()
    );
    for expected in [
        "smart_rerun_max = 'three' (pytest option --smart-rerun-max): is not a whole number: use 1 or more",
        "smart_rerun_backoff = 'fast' (pytest option --smart-rerun-backoff): use none, linear or exp",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {}", out.dump());
    }
    assert!(
        !out.stdout.contains("test session starts"),
        "{}",
        out.dump()
    );
    assert_eq!(p.count("test_service.py::test_flaky"), 0);
}

#[test]
fn a_bad_ini_value_stops_before_any_test_runs() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE)
        .file("pytest.ini", "[pytest]\nsmart_rerun_max = zero\n");
    let out = pytest(&p, &[]);
    out.assert_code(4);
    assert!(
        out.stderr
            .starts_with("ERROR: smart-rerun: invalid setting: smart_rerun_max = 'zero' ("),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("pytest.ini:2): is not a whole number: use 1 or more"),
        "{}",
        out.dump()
    );
    assert_eq!(p.count("test_service.py::test_flaky"), 0);
}

#[test]
fn the_console_script_is_on_the_venv_path() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let version = p.output(venv_command(&p, "smart-rerun", &["--version"]));
    version.assert_code(0);
    assert_eq!(
        version.stdout.trim(),
        format!("smart-rerun {}", env!("CARGO_PKG_VERSION"))
    );
    let report = p.report_path();
    let out = p.output(venv_command(
        &p,
        "smart-rerun",
        &[
            "run",
            "--max",
            "3",
            "--report",
            report.to_str().unwrap(),
            "--",
            "python",
            "-m",
            "pytest",
        ],
    ));
    out.assert_code(0);
    assert_eq!(out.outcome("test_service.py::test_flaky"), "flaky");
}

#[test]
fn junit_xml_and_xdist_pass_through_the_hand_over() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let report = report_flag(&p);
    let out = pytest(
        &p,
        &[
            "--smart-rerun",
            "--smart-rerun-max=3",
            "-n",
            "2",
            "--junitxml=junit.xml",
            &report,
        ],
    );
    out.assert_code(0);
    assert_eq!(out.outcome("test_service.py::test_flaky"), "flaky");
    let junit = std::fs::read_to_string(p.path().join("junit.xml")).unwrap();
    // One testcase for the flaky test, with one flakyFailure per failed attempt.
    assert_eq!(junit.matches("<flakyFailure").count(), 2, "{junit}");
    assert_eq!(junit.matches("<testcase ").count(), 2, "{junit}");
}

/// The reference README's ini block, word for word but for the AI endpoint, which is a real MCP server
/// on this machine, and the token's variable, which the server checks.
#[test]
fn the_reference_ini_block_works_with_a_real_mcp_server() {
    let token = "sr-plugin-e2e-token-51f0";
    let server = Server::mcp(&["--token", token], json!({}));
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE).file(
        "pytest.ini",
        &format!(
            "[pytest]
smart_rerun = true
smart_rerun_max = 3
smart_rerun_delay = 0.5
smart_rerun_backoff = exp
smart_rerun_errors = TimeoutError,ConnectionError
smart_rerun_report = reports/smart_rerun.json
smart_rerun_ai = true
smart_rerun_ai_endpoint = {}
smart_rerun_ai_token = {{{{ env:SMART_RERUN_AI_TOKEN }}}}
smart_rerun_ai_report = reports/smart_rerun_ai.json
smart_rerun_ai_cache = .cache/smart_rerun_ai.json
smart_rerun_ai_redact = true
",
            server.url()
        ),
    );
    let mut cmd = venv_command(&p, "pytest", &[]);
    cmd.env("SMART_RERUN_AI_TOKEN", token);
    let out = p.output(cmd);
    out.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("reports/smart_rerun.json")).unwrap(),
    )
    .unwrap();
    let flaky = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["nodeid"] == "test_service.py::test_flaky")
        .unwrap();
    assert_eq!(flaky["outcome"], "flaky", "{}", out.dump());
    assert_eq!(p.count("test_service.py::test_flaky"), 3);
    // The AI was asked (the server saw the failure), and its trail and cache were written.
    let calls = server.calls();
    assert!(
        calls
            .iter()
            .any(|c| c["nodeid"] == "test_service.py::test_flaky"),
        "no classification call: {calls:?}; {}",
        out.dump()
    );
    assert!(p.path().join("reports/smart_rerun_ai.json").is_file());
    assert!(p.path().join(".cache/smart_rerun_ai.json").is_file());
    // The token reached the server, never the output.
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
}

#[test]
fn the_errors_allow_list_and_ai_options_from_the_command_line() {
    let server = Server::mcp(&[], json!({}));
    let p = Project::new();
    p.file(
        "test_mixed.py",
        r#"
def test_timeout(attempt):
    if attempt < 2:
        raise TimeoutError("slow")

def test_value(attempt):
    raise ValueError("wrong value on attempt %d" % attempt)
"#,
    );
    let report = report_flag(&p);
    let endpoint = format!("--smart-rerun-ai-endpoint={}", server.url());
    let out = pytest(
        &p,
        &[
            "--smart-rerun",
            "--smart-rerun-max=3",
            "--smart-rerun-backoff=linear",
            "--smart-rerun-errors=TimeoutError",
            "--smart-rerun-ai",
            &endpoint,
            "--smart-rerun-ai-report=ai.json",
            &report,
        ],
    );
    out.assert_code(1);
    assert_eq!(out.outcome("test_mixed.py::test_timeout"), "flaky");
    // Not on the allow-list: run once.
    assert_eq!(out.outcome("test_mixed.py::test_value"), "failed");
    assert_eq!(p.count("test_mixed.py::test_value"), 1);
    let policy = &out.report()["run"]["policy"];
    assert_eq!(policy["backoff"], "linear", "{}", out.dump());
    assert_eq!(policy["errors"], json!(["TimeoutError"]), "{}", out.dump());
    assert!(p.path().join("ai.json").is_file(), "{}", out.dump());
    assert!(!server.calls().is_empty());
}

#[test]
fn sigterm_to_the_pytest_process_reaches_smart_rerun() {
    let p = Project::new();
    p.file(
        "test_slow.py",
        r#"
import os, pathlib, time

def test_slow():
    pathlib.Path(os.environ["COUNTER_DIR"]).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(os.environ["COUNTER_DIR"]) / "started").write_text("1")
    time.sleep(60)
"#,
    );
    let report = report_flag(&p);
    let mut cmd = venv_command(&p, "pytest", &["--smart-rerun", &report]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = Instant::now();
    while !p.counters().join("started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pid pytest was started with is smart-rerun's now (the plugin execs the binary).
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
    assert_eq!(comm.trim(), "smart-rerun");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("smart-rerun summary"), "{stdout}");
}

/// Marked tests in a plain run (no `--smart-rerun`, no ini key, no variable): one flaky, one broken, and
/// an unmarked test that passes.
const MARKED: &str = r#"
import os
import pytest

@pytest.mark.smart_rerun(max=3)
def test_marked_flaky(attempt):
    with open("pids.txt", "a") as f:
        f.write("%d\n" % os.getpid())
    if attempt < 2:
        raise ConnectionError("reset by peer (attempt %d)" % attempt)

@pytest.mark.smart_rerun(max=3)
def test_marked_broken(attempt):
    assert attempt < 0, "broken on attempt %d" % attempt

def test_fine():
    pass
"#;

#[test]
fn a_plain_run_retries_a_failed_marked_test_in_a_fresh_pytest() {
    let p = Project::new();
    p.file(
        "test_marked.py",
        &MARKED.replace(
            "@pytest.mark.smart_rerun(max=3)\ndef test_marked_broken",
            "def skipped_broken",
        ),
    );
    let out = pytest(&p, &["-p", "no:cacheprovider", "--junitxml=junit.xml"]);
    // pytest's own summary said "1 failed"; the retry passed, so the run passes, as it did in 0.1.x.
    out.assert_code(0);
    assert!(out.stdout.contains("1 failed, 1 passed"), "{}", out.dump());
    assert!(
        out.stdout.contains(
            "smart-rerun: retrying 1 failed test marked @pytest.mark.smart_rerun in a fresh pytest"
        ),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains(
            "smart-rerun: test_marked.py::test_marked_flaky is flaky: it failed, then passed on attempt 2"
        ),
        "{}",
        out.dump()
    );
    assert_eq!(p.count("test_marked.py::test_marked_flaky"), 2);
    assert_eq!(p.count("test_marked.py::test_fine"), 0);
    let pids = std::fs::read_to_string(p.path().join("pids.txt")).unwrap();
    let pids: Vec<&str> = pids.lines().collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_ne!(pids[0], pids[1], "the retry ran in the same process");
    // The plain run's JUnit XML is the user's file; the retry does not replace it.
    let junit = std::fs::read_to_string(p.path().join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 2, "{junit}");
}

#[test]
fn a_broken_marked_test_gets_its_attempts_and_unmarked_failures_keep_the_run_failed() {
    let p = Project::new();
    p.file("test_marked.py", MARKED).file(
        "test_unmarked.py",
        "def test_unmarked_broken(attempt):\n    assert False\n",
    );
    let out = pytest(&p, &["-p", "no:cacheprovider"]);
    out.assert_code(1);
    // max=3 counts the plain run's attempt: two more, not three.
    assert_eq!(p.count("test_marked.py::test_marked_broken"), 3);
    assert_eq!(p.count("test_marked.py::test_marked_flaky"), 2);
    // Unmarked tests are never retried in a plain run.
    assert_eq!(p.count("test_unmarked.py::test_unmarked_broken"), 1);
    assert!(
        out.stdout.contains(
            "smart-rerun: retrying 2 failed tests marked @pytest.mark.smart_rerun in a fresh pytest"
        ),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains(
            "smart-rerun: test_marked.py::test_marked_broken still fails after 3 attempts"
        ),
        "{}",
        out.dump()
    );

    // Without the unmarked failure, the marked broken test alone fails the run.
    std::fs::remove_file(p.path().join("test_unmarked.py")).unwrap();
    let out = pytest(&p, &["-p", "no:cacheprovider", "-k", "broken"]);
    out.assert_code(1);
    assert_eq!(p.count("test_marked.py::test_marked_broken"), 6);
}

#[test]
fn a_plain_run_without_a_failed_marked_test_starts_nothing() {
    let p = Project::new();
    p.file(
        "test_marked.py",
        "import pytest\n\n@pytest.mark.smart_rerun(max=3)\ndef test_marked(attempt):\n    pass\n\n\
         def test_unmarked_broken(attempt):\n    assert False\n",
    );
    let out = pytest(&p, &["-p", "no:cacheprovider"]);
    out.assert_code(1);
    assert!(!out.stdout.contains("smart-rerun:"), "{}", out.dump());
    assert!(
        !out.stdout.contains("smart-rerun summary"),
        "{}",
        out.dump()
    );
    assert_eq!(out.stdout.matches("test session starts").count(), 1);
    assert_eq!(p.count("test_marked.py::test_unmarked_broken"), 1);
}

#[test]
fn a_plain_run_stopped_by_x_does_not_retry() {
    let p = Project::new();
    p.file("test_marked.py", MARKED);
    let out = pytest(&p, &["-p", "no:cacheprovider", "-x"]);
    out.assert_code(1);
    assert_eq!(p.count("test_marked.py::test_marked_flaky"), 1);
    assert!(
        out.stdout.contains(
            "smart-rerun: not retrying 1 failed test marked @pytest.mark.smart_rerun: the run stopped \
             early (-x or --maxfail); run with --smart-rerun to rerun failed tests"
        ),
        "{}",
        out.dump()
    );
    assert_eq!(out.stdout.matches("test session starts").count(), 1);
}

#[test]
fn a_plain_run_under_xdist_retries_marked_tests() {
    let p = Project::new();
    p.file("test_marked.py", MARKED);
    let out = pytest(&p, &["-p", "no:cacheprovider", "-n", "2"]);
    out.assert_code(1);
    assert_eq!(p.count("test_marked.py::test_marked_flaky"), 2);
    assert_eq!(p.count("test_marked.py::test_marked_broken"), 3);
    assert!(
        out.stdout.contains(
            "smart-rerun: test_marked.py::test_marked_flaky is flaky: it failed, then passed on attempt 2"
        ),
        "{}",
        out.dump()
    );
}

/// The hand-over reads the options wherever pytest takes them from (PYTEST_ADDOPTS, the space-separated
/// form, -p before them), and leaves what it does not know to pytest's own error.
#[test]
fn options_from_pytest_addopts_and_unknown_options() {
    let p = Project::new();
    p.file("test_service.py", FLAKY_TWICE);
    let report = report_flag(&p);
    let mut cmd = venv_command(&p, "pytest", &["-p", "no:cacheprovider", &report]);
    cmd.env("PYTEST_ADDOPTS", "--smart-rerun --smart-rerun-max 3");
    let out = p.output(cmd);
    out.assert_code(0);
    assert_eq!(out.outcome("test_service.py::test_flaky"), "flaky");
    assert_eq!(p.count("test_service.py::test_flaky"), 3);

    let out = pytest(&p, &["--smart-rerun", "--smart-rerun-maximum=3"]);
    out.assert_code(4);
    assert!(
        out.stderr
            .contains("unrecognized arguments: --smart-rerun-maximum=3"),
        "{}",
        out.dump()
    );
    assert_eq!(p.count("test_service.py::test_flaky"), 3, "a test ran");
}
