//! Configuration as pytest users write it: the `smart_rerun_*` ini keys in every file pytest
//! discovers, `SMART_RERUN_*` variables, flags and the `smart_rerun` marker, in that order of precedence;
//! validation that stops the run before any test body runs; budgets; flaky-marker migration; and
//! `smart-rerun config`.
//!
//! The effective attempt limit is observed as what a user sees: how many attempts a failing test got.

use crate::common::{self, Project, RunOutput};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test that fails its first four attempts and one that fails for good, plus one with a marker.
/// `test_plain` shows the global limit (ini < env < flag); `test_marked`'s own `max` beats all of them.
fn precedence_suite(marker_max: u32) -> String {
    format!(
        r#"
import pytest

def test_plain(attempt):
    assert attempt >= 5, "fails its first four attempts"

@pytest.mark.smart_rerun(max={marker_max})
def test_marked(attempt):
    assert attempt >= 5, "fails its first four attempts"
"#
    )
}

const PLAIN: &str = "test_p.py::test_plain";
const MARKED: &str = "test_p.py::test_marked";

/// `smart-rerun run ARGS --report … -- python -m pytest PYTEST…` with `env` set on top of a clean
/// environment (no stray `SMART_RERUN_*` from the machine running the tests). Each run starts with fresh
/// attempt counters. These tests observe the attempt limit, so the early stop for a failure repeated the
/// same way (`smart_rerun_early_stop`, a different setting) is off unless `env` says otherwise.
fn run_env(p: &Project, args: &[&str], env: &[(&str, &str)], pytest: &[&str]) -> RunOutput {
    let _ = std::fs::remove_dir_all(p.counters());
    let mut cmd = p.command(args);
    scrub(&mut cmd);
    cmd.env("SMART_RERUN_EARLY_STOP", "false");
    cmd.envs(env.iter().copied());
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .args(pytest);
    p.output(cmd)
}

fn scrub(cmd: &mut Command) {
    for k in smart_rerun::config::KEYS {
        cmd.env_remove(k.env);
    }
}

/// `smart-rerun config ARGS -- python -m pytest PYTEST…` (no `--report`, unlike `Project::command`).
fn config(p: &Project, args: &[&str], env: &[(&str, &str)], pytest: &[&str]) -> RunOutput {
    let mut cmd = Command::new(common::bin());
    cmd.current_dir(p.path())
        .arg("config")
        .args(args)
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1")
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS")
        .env_remove("VIRTUAL_ENV")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    scrub(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .args(pytest);
    p.output(cmd)
}

/// `config`'s line for a key: `(value, source)`.
fn config_line(out: &RunOutput, key: &str) -> (String, String) {
    let line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key}; {}", out.dump()));
    let rest = line[key.len()..].trim_start();
    let (value, source) = rest
        .split_once("  ")
        .unwrap_or_else(|| panic!("no source on {line:?}"));
    (value.trim().to_owned(), source.trim().to_owned())
}

/// The venv's pytest version as (major, minor).
fn pytest_version() -> (u32, u32) {
    let out = Command::new(common::python())
        .args(["-c", "import pytest; print(pytest.__version__)"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('.').map(|n| n.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether the venv under test has pytest-rerunfailures installed, asked without importing it (a failed
/// import would print its traceback into the test run's output).
fn has_rerunfailures() -> bool {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import importlib.util; print(importlib.util.find_spec('pytest_rerunfailures') is not None)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

#[track_caller]
fn assert_has(haystack: &str, needle: &str, out: &RunOutput) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?}\n=== in\n{}",
        out.dump()
    );
}

fn warnings(out: &RunOutput) -> Vec<String> {
    out.report()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// 1. Precedence, for every file pytest reads its configuration from.

/// One configuration file setting `smart_rerun_max = 3`, at `line`, and the pytest arguments that make
/// pytest read it.
struct ConfigFile {
    name: &'static str,
    text: &'static str,
    line: u32,
    pytest_args: &'static [&'static str],
}

/// In each file type: the ini value alone decides (3 attempts), the marker beats it (max=1: one
/// attempt), and `SMART_RERUN_MAX` beats it (2 attempts). `config` names the file and line.
fn ini_file_is_read_and_env_and_marker_win(file: ConfigFile, extra: &[(&str, &str)]) {
    let p = Project::new();
    p.file("test_p.py", &precedence_suite(1));
    for (name, text) in extra {
        p.file(name, text);
    }
    p.file(file.name, file.text);
    let where_ = format!("{}:{}", p.path().join(file.name).display(), file.line);

    let out = run_env(&p, &[], &[], file.pytest_args);
    out.assert_code(1);
    assert_eq!(
        out.attempts(PLAIN),
        3,
        "{}: ini max 3; {}",
        file.name,
        out.dump()
    );
    assert_eq!(out.outcome(PLAIN), "failed");
    assert_eq!(
        out.attempts(MARKED),
        1,
        "{}: the marker's max=1 wins over the ini",
        file.name
    );
    assert_eq!(out.report()["run"]["policy"]["max_attempts"], 3);

    let out = run_env(&p, &[], &[("SMART_RERUN_MAX", "2")], file.pytest_args);
    out.assert_code(1);
    assert_eq!(
        out.attempts(PLAIN),
        2,
        "{}: SMART_RERUN_MAX beats the ini; {}",
        file.name,
        out.dump()
    );
    assert_eq!(out.attempts(MARKED), 1);

    let out = config(&p, &[], &[], file.pytest_args);
    out.assert_code(0);
    assert_eq!(
        config_line(&out, "smart_rerun_max"),
        ("3".to_owned(), where_),
        "{}",
        out.dump()
    );
}

#[test]
fn precedence_ini_env_flag_marker_with_pytest_ini() {
    let p = Project::new();
    p.file("test_p.py", &precedence_suite(5));
    p.file("pytest.ini", "[pytest]\nsmart_rerun_max = 2\n");

    // ini alone: 2 attempts; the marker's own max=5 lets test_marked pass on its fifth.
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.attempts(PLAIN), 2, "{}", out.dump());
    assert_eq!(out.outcome(MARKED), "flaky");
    assert_eq!(out.attempts(MARKED), 5);

    // Environment over ini.
    let out = run_env(&p, &[], &[("SMART_RERUN_MAX", "3")], &[]);
    assert_eq!(out.attempts(PLAIN), 3, "{}", out.dump());

    // Flag over environment over ini; the marker still wins for its test.
    let out = run_env(&p, &["--max", "4"], &[("SMART_RERUN_MAX", "3")], &[]);
    out.assert_code(1);
    assert_eq!(out.attempts(PLAIN), 4, "{}", out.dump());
    assert_eq!(out.outcome(PLAIN), "failed");
    assert_eq!(out.outcome(MARKED), "flaky");
    assert_eq!(out.attempts(MARKED), 5);
    assert_eq!(p.count(MARKED), 5, "counters start afresh each run");
    assert!(
        out.stdout.contains("attempt 4 of 4"),
        "the progress line shows the flag's limit; {}",
        out.dump()
    );
    assert!(
        out.stdout.contains("attempt 5 of 5"),
        "and the marker's; {}",
        out.dump()
    );
}

#[test]
fn dot_pytest_ini() {
    // `.pytest.ini` arrived in pytest 7.2 (pytest-dev/pytest#9988); pytest 7.0's file discovery knows
    // only pytest.ini, pyproject.toml, tox.ini and setup.cfg.
    if pytest_version() < (7, 2) {
        return;
    }
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: ".pytest.ini",
            text: "[pytest]\naddopts = -q\nsmart_rerun_max = 3\n",
            line: 3,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn pyproject_ini_options() {
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "pyproject.toml",
            // A TOML integer and a list, as people write them; pytest hands them over as text and list.
            text: "[project]\nname = \"demo\"\n\n[tool.pytest.ini_options]\nsmart_rerun_max = 3\nsmart_rerun_errors = [\"AssertionError\", \"TimeoutError\"]\n",
            line: 5,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn pytest_toml() {
    // pytest.toml is read by pytest 9 and newer only; older pytest ignores the file.
    if common::pytest_major() < 9 {
        return;
    }
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "pytest.toml",
            // Native TOML types: pytest 9 type-checks them against the registered ini type.
            text: "[pytest]\nsmart_rerun = true\nsmart_rerun_max = 3\nsmart_rerun_delay = 0.0\n",
            line: 3,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn pyproject_tool_pytest() {
    // The native `[tool.pytest]` table is pytest 9 and newer only; older pytest ignores it.
    if common::pytest_major() < 9 {
        return;
    }
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "pyproject.toml",
            text: "[project]\nname = \"demo\"\n\n[tool.pytest]\nsmart_rerun_max = 3\nsmart_rerun_errors = [\"AssertionError\", \"TimeoutError\"]\n",
            line: 5,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn tox_ini() {
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "tox.ini",
            text: "[tox]\nenvlist = py\n\n[pytest]\nsmart_rerun_max = 3\n",
            line: 5,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn setup_cfg() {
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "setup.cfg",
            text: "[metadata]\nname = demo\nsmart_rerun_max = 9\n\n[tool:pytest]\nsmart_rerun_max = 3\n",
            line: 6,
            pytest_args: &[],
        },
        &[],
    );
}

#[test]
fn dash_c_other_ini_wins_over_the_discovered_file() {
    ini_file_is_read_and_env_and_marker_win(
        ConfigFile {
            name: "ci.ini",
            text: "[pytest]\n\nsmart_rerun_max = 3\n",
            line: 3,
            pytest_args: &["-c", "ci.ini"],
        },
        // Would give 5 attempts if pytest read it.
        &[("pytest.ini", "[pytest]\nsmart_rerun_max = 5\n")],
    );
}

#[test]
fn pytest_dash_o_overrides_the_file_and_is_named_as_its_source() {
    let p = Project::new();
    p.file("test_p.py", &precedence_suite(1));
    p.file("pytest.ini", "[pytest]\nsmart_rerun_max = 2\n");
    let out = run_env(&p, &[], &[], &["-o", "smart_rerun_max=3"]);
    out.assert_code(1);
    assert_eq!(out.attempts(PLAIN), 3, "{}", out.dump());

    let out = config(&p, &[], &[], &["-o", "smart_rerun_max=3"]);
    out.assert_code(0);
    assert_eq!(
        config_line(&out, "smart_rerun_max"),
        ("3".into(), "pytest -o".into())
    );
    // A bad -o value is blamed on -o, not on the file's line that says 2.
    let out = config(&p, &[], &[], &["-o", "smart_rerun_max=0"]);
    out.assert_code(4);
    assert_has(&out.stderr, "smart_rerun_max = '0' (pytest -o)", &out);
    assert!(!out.stderr.contains("pytest.ini:2"), "{}", out.dump());
}

// ---------------------------------------------------------------------------------------------------
// 2. Strict projects.

#[test]
fn strict_config_and_strict_markers_projects_keep_working() {
    let p = Project::new();
    p.file(
        "pytest.ini",
        "[pytest]\naddopts = --strict-config --strict-markers\nsmart_rerun_max = 3\nsmart_rerun_backoff = none\n",
    );
    p.file(
        "test_s.py",
        r#"
import pytest

def test_plain(attempt):
    assert attempt >= 3

@pytest.mark.smart_rerun(max=2, errors=["AssertionError"])
def test_marked(attempt):
    assert attempt >= 3
"#,
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    assert_eq!(
        out.outcome("test_s.py::test_plain"),
        "flaky",
        "{}",
        out.dump()
    );
    assert_eq!(out.attempts("test_s.py::test_plain"), 3);
    assert_eq!(out.outcome("test_s.py::test_marked"), "failed");
    assert_eq!(out.attempts("test_s.py::test_marked"), 2);
    assert!(
        !out.stdout.contains("PytestUnknownMarkWarning"),
        "{}",
        out.dump()
    );
    assert!(
        !out.stdout.contains("Unknown config option"),
        "{}",
        out.dump()
    );
}

// ---------------------------------------------------------------------------------------------------
// 3. Invalid settings stop the run before any test body runs.

const COUNTED: &str = r#"
import sr_counter

def test_counted():
    sr_counter.bump("body")
"#;

/// Everything the user sees: terminal, errors and the report.
fn everything(out: &RunOutput) -> String {
    format!(
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        out.report
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default()
    )
}

#[test]
fn invalid_ini_value_names_file_and_line_and_no_test_runs() {
    let p = Project::new();
    p.file("test_c.py", COUNTED);
    p.file(
        "pytest.ini",
        "[pytest]\naddopts = -q\nsmart_rerun_max = 0\n",
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(4);
    let all = everything(&out);
    let at = format!("{}:3", p.path().join("pytest.ini").display());
    assert_has(&all, &format!("smart_rerun_max = '0' ({at})"), &out);
    assert_has(&all, "1 or more", &out);
    assert_eq!(p.count("body"), 0, "no test body ran; {}", out.dump());
    assert_eq!(out.report()["run"]["exit_code"], 4);
}

#[test]
fn invalid_env_value_names_the_variable() {
    let p = Project::new();
    p.file("test_c.py", COUNTED);
    let out = run_env(&p, &[], &[("SMART_RERUN_DELAY", "soon")], &[]);
    out.assert_code(4);
    assert_has(
        &everything(&out),
        "smart_rerun_delay = 'soon' (environment variable SMART_RERUN_DELAY): is not a number",
        &out,
    );
    assert_eq!(out.report()["run"]["exit_code"], 4);
    assert_eq!(p.count("body"), 0);
}

#[test]
fn invalid_flag_value_names_the_flag() {
    let p = Project::new();
    p.file("test_c.py", COUNTED);
    let out = run_env(&p, &["--backoff", "fib"], &[], &[]);
    out.assert_code(4);
    assert_has(
        &everything(&out),
        "smart_rerun_backoff = 'fib' (command line --backoff): use none, linear or exp",
        &out,
    );
    assert_eq!(p.count("body"), 0);
}

#[test]
fn invalid_marker_names_the_test_and_no_test_runs() {
    let p = Project::new();
    p.file(
        "test_m.py",
        r#"
import pytest
import sr_counter

def test_fine():
    sr_counter.bump("body")

@pytest.mark.smart_rerun(max=0, backoff="fib")
def test_bad():
    sr_counter.bump("body")
"#,
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(4);
    let all = everything(&out);
    assert_has(
        &all,
        "max = '0' (marker on test_m.py::test_bad): must be a whole number, 1 or more",
        &out,
    );
    assert_has(
        &all,
        "backoff = 'fib' (marker on test_m.py::test_bad): use none, linear or exp",
        &out,
    );
    assert_eq!(p.count("body"), 0, "{}", out.dump());
    assert_eq!(out.outcome("test_m.py::test_fine"), "not-run");
}

#[test]
fn every_bad_value_is_reported_at_once_from_every_layer() {
    let p = Project::new();
    p.file(
        "test_m.py",
        r#"
import pytest
import sr_counter

@pytest.mark.smart_rerun(delay=-1)
def test_bad():
    sr_counter.bump("body")
"#,
    );
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_max = zero\nsmart_rerun_fail_on_flaky = sometimes\n",
    );
    let out = run_env(
        &p,
        &["--max-reruns", "-3"],
        &[("SMART_RERUN_JITTER", "lots")],
        &[],
    );
    out.assert_code(4);
    let all = everything(&out);
    let ini = p.path().join("pytest.ini").display().to_string();
    for needle in [
        format!("smart_rerun_max = 'zero' ({ini}:2)"),
        format!("smart_rerun_fail_on_flaky = 'sometimes' ({ini}:3)"),
        "smart_rerun_jitter = 'lots' (environment variable SMART_RERUN_JITTER)".to_owned(),
        "smart_rerun_max_reruns = '-3' (command line --max-reruns)".to_owned(),
        "delay = '-1' (marker on test_m.py::test_bad)".to_owned(),
        "5 invalid settings".to_owned(),
    ] {
        assert_has(&all, &needle, &out);
    }
    assert_eq!(p.count("body"), 0, "{}", out.dump());
}

#[test]
fn missing_env_placeholder_is_named_and_secrets_never_show() {
    let p = Project::new();
    p.file("test_c.py", COUNTED);
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_ai_token = {{ env:SR_E2E_MISSING_TOKEN }}\n",
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(4);
    assert_has(
        &everything(&out),
        "environment variable SR_E2E_MISSING_TOKEN is not set",
        &out,
    );
    assert_eq!(p.count("body"), 0);

    // A token that resolves, next to a bad value: the run stops, and the token is nowhere.
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_ai_token = {{ env:SR_E2E_TOKEN }}-tail\nsmart_rerun_max = 0\n",
    );
    let out = run_env(&p, &[], &[("SR_E2E_TOKEN", "s3cr3t-from-env")], &[]);
    out.assert_code(4);
    let all = everything(&out);
    assert!(!all.contains("s3cr3t-from-env"), "{}", out.dump());

    // A literal token in the file, in the environment, and a bad one: never printed either.
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_ai_token = literal-s3cr3t-{{ env:NOPE_SR_E2E }}\n",
    );
    let out = run_env(
        &p,
        &[],
        &[("SMART_RERUN_AI_TOKEN", "env-s3cr3t {{ broken")],
        &[],
    );
    out.assert_code(4);
    let all = everything(&out);
    assert!(!all.contains("s3cr3t"), "{}", out.dump());
    assert_has(
        &all,
        "smart_rerun_ai_token (environment variable SMART_RERUN_AI_TOKEN)",
        &out,
    );

    // A run that succeeds with a token set: not in the report or the output either.
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_ai_token = {{ env:SR_E2E_TOKEN }}\n",
    );
    let out = run_env(&p, &[], &[("SR_E2E_TOKEN", "s3cr3t-from-env")], &[]);
    out.assert_code(0);
    assert!(!everything(&out).contains("s3cr3t"), "{}", out.dump());
    let out = config(&p, &[], &[("SR_E2E_TOKEN", "s3cr3t-from-env")], &[]);
    out.assert_code(0);
    assert!(!everything(&out).contains("s3cr3t"), "{}", out.dump());
    let (value, _) = config_line(&out, "smart_rerun_ai_token");
    assert_eq!(value, "*** (set)");
}

// ---------------------------------------------------------------------------------------------------
// 4. The marker.

#[test]
fn marker_on_function_class_and_module() {
    let p = Project::new();
    p.file(
        "test_fn.py",
        r#"
import pytest

def test_unmarked(attempt):
    assert attempt >= 9

@pytest.mark.smart_rerun(max=3)
def test_function(attempt):
    assert attempt >= 9

@pytest.mark.smart_rerun(max=4)
class TestClass:
    def test_in_class(self, attempt):
        assert attempt >= 9

    @pytest.mark.smart_rerun(max=1)
    def test_closest_wins(self, attempt):
        assert attempt >= 9
"#,
    );
    p.file(
        "test_mod.py",
        r#"
import pytest

pytestmark = pytest.mark.smart_rerun(max=5)

def test_in_module(attempt):
    assert attempt >= 9
"#,
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    for (nodeid, attempts) in [
        ("test_fn.py::test_unmarked", 2),
        ("test_fn.py::test_function", 3),
        ("test_fn.py::TestClass::test_in_class", 4),
        ("test_fn.py::TestClass::test_closest_wins", 1),
        ("test_mod.py::test_in_module", 5),
    ] {
        assert_eq!(out.attempts(nodeid), attempts, "{nodeid}; {}", out.dump());
    }
}

#[test]
fn marker_errors_as_list_or_comma_string() {
    let p = Project::new();
    p.file(
        "test_e.py",
        r#"
import pytest

@pytest.mark.smart_rerun(max=3, errors=["KeyError", "TimeoutError"])
def test_list_allowed(attempt):
    raise TimeoutError("slow")

@pytest.mark.smart_rerun(max=3, errors=["KeyError", "TimeoutError"])
def test_list_other(attempt):
    raise ValueError("bug")

@pytest.mark.smart_rerun(max=3, errors="KeyError, OSError")
def test_comma_base_class(attempt):
    raise ConnectionResetError("reset")

@pytest.mark.smart_rerun(max=3, errors="KeyError, TimeoutError")
def test_comma_other(attempt):
    raise ValueError("bug")
"#,
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    assert_eq!(
        out.attempts("test_e.py::test_list_allowed"),
        3,
        "{}",
        out.dump()
    );
    assert_eq!(out.attempts("test_e.py::test_comma_base_class"), 3);
    for other in ["test_e.py::test_list_other", "test_e.py::test_comma_other"] {
        assert_eq!(out.attempts(other), 1, "{other}");
        let why = out.test(other)["stopped_because"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            why.contains("ValueError is not in the errors allow-list"),
            "{other}: {why}"
        );
    }
}

#[test]
fn with_smart_rerun_false_only_marked_tests_rerun() {
    let p = Project::new();
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun = false\nsmart_rerun_max = 3\n",
    );
    p.file(
        "test_o.py",
        r#"
import pytest

def test_unmarked(attempt):
    assert attempt >= 2

@pytest.mark.smart_rerun
def test_marked(attempt):
    assert attempt >= 2
"#,
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_o.py::test_unmarked"), "failed");
    assert_eq!(p.count("test_o.py::test_unmarked"), 1);
    assert_has(
        out.test("test_o.py::test_unmarked")["stopped_because"]
            .as_str()
            .unwrap(),
        "smart_rerun = false",
        &out,
    );
    assert_eq!(out.outcome("test_o.py::test_marked"), "flaky");
    assert_eq!(p.count("test_o.py::test_marked"), 2);

    // `--rerun` turns it back on for everyone.
    let p2 = Project::new();
    p2.file("pytest.ini", "[pytest]\nsmart_rerun = false\n");
    p2.file(
        "test_o.py",
        "def test_unmarked(attempt):\n    assert attempt >= 2\n",
    );
    let out = run_env(&p2, &["--rerun"], &[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_o.py::test_unmarked"), "flaky");
}

#[test]
fn flaky_fail_marker_and_fail_on_flaky_make_the_run_fail() {
    let suite = |marker: &str| {
        format!(
            "import pytest\n\n{marker}\ndef test_once(attempt):\n    assert attempt >= 2\n\ndef test_ok():\n    pass\n"
        )
    };
    let p = Project::new();
    p.file(
        "test_f.py",
        &suite("@pytest.mark.smart_rerun(flaky=\"fail\")"),
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_f.py::test_once"), "flaky");
    assert_has(
        out.report()["run"]["exit_reason"].as_str().unwrap(),
        "fail_on_flaky",
        &out,
    );

    // The same flaky result without the marker passes the run...
    let p = Project::new();
    p.file("test_f.py", &suite(""));
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_f.py::test_once"), "flaky");

    // ...unless --fail-on-flaky is given.
    let p = Project::new();
    p.file("test_f.py", &suite(""));
    let out = run_env(&p, &["--fail-on-flaky"], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_f.py::test_once"), "flaky");

    // And flaky="pass" on the test overrides a global fail_on_flaky.
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\nsmart_rerun_fail_on_flaky = true\n");
    p.file(
        "test_f.py",
        &suite("@pytest.mark.smart_rerun(flaky=\"pass\")"),
    );
    let out = run_env(&p, &[], &[], &[]);
    out.assert_code(0);
}

// ---------------------------------------------------------------------------------------------------
// 5. Migration from pytest-rerunfailures.

#[test]
fn rerunfailures_flaky_marker_migrates() {
    let p = Project::new();
    p.file(
        "test_r.py",
        r#"
import pytest

@pytest.mark.flaky(reruns=2, reruns_delay=0.1)
def test_twice(attempt):
    assert attempt >= 3

@pytest.mark.flaky(reruns=2, reruns_delay=0.1)
def test_broken(attempt):
    assert False
"#,
    );
    // --strict-markers still accepts `flaky` with pytest-rerunfailures disabled or not installed.
    p.file("pytest.ini", "[pytest]\naddopts = --strict-markers\n");
    // `-p no:rerunfailures`: smart-rerun alone reads the marker (pytest 7.0 has no such plugin, and the
    // option only blocks a name there).
    let out = run_env(&p, &[], &[], &["-p", "no:rerunfailures"]);
    out.assert_code(1);
    assert_eq!(
        out.outcome("test_r.py::test_twice"),
        "flaky",
        "{}",
        out.dump()
    );
    assert_eq!(out.attempts("test_r.py::test_twice"), 3);
    assert_eq!(
        out.attempts("test_r.py::test_broken"),
        3,
        "reruns=2 is max 3"
    );
    assert_eq!(p.count("test_r.py::test_broken"), 3);
    assert!(out.stdout.contains("attempt 3 of 3"), "{}", out.dump());
    assert!(warnings(&out).iter().all(|w| !w.contains("rerunfailures")));
}

#[test]
fn active_rerunfailures_is_warned_about() {
    // Only the latest venv has pytest-rerunfailures; the pytest 7.0 venv deliberately lacks it, so
    // there this test has nothing to check. The latest venv lacking it would be a broken bootstrap, not a
    // reason to pass without checking anything.
    if !has_rerunfailures() {
        assert!(
            common::pytest_major() < 8,
            "the venv for pytest {} has no pytest-rerunfailures: run scripts/bootstrap-python",
            common::pytest_major()
        );
        return;
    }
    let p = Project::new();
    p.file(
        "test_r.py",
        "def test_once(attempt):\n    assert attempt >= 2\n",
    );
    let out = run_env(&p, &[], &[], &["--reruns", "1"]);
    out.assert_code(0);
    let warned: Vec<String> = warnings(&out)
        .into_iter()
        .filter(|w| w.contains("pytest-rerunfailures"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", out.dump());
    assert_has(&warned[0], "-p no:rerunfailures", &out);
    assert_has(&warned[0], "reruns them again", &out);
    assert!(
        !warned[0].contains("  "),
        "one readable sentence: {:?}",
        warned[0]
    );
    assert_has(&out.stdout, "warning: pytest-rerunfailures is active", &out);
    // The in-process rerun is still a failed attempt: the test is flaky, not passed.
    assert_eq!(out.outcome("test_r.py::test_once"), "flaky");
    assert_eq!(out.attempts("test_r.py::test_once"), 2);

    // Switched on by its ini key instead of the flag: the same warning.
    p.file("pytest.ini", "[pytest]\nreruns = 1\n");
    let out = run_env(&p, &[], &[], &[]);
    assert!(
        warnings(&out)
            .iter()
            .any(|w| w.contains("-p no:rerunfailures")),
        "{}",
        out.dump()
    );

    // Disabled: no warning, and smart-rerun does the rerun in a fresh process.
    let out = run_env(&p, &[], &[], &["-p", "no:rerunfailures"]);
    out.assert_code(0);
    assert!(
        warnings(&out).iter().all(|w| !w.contains("rerunfailures")),
        "{}",
        out.dump()
    );
    assert!(
        !out.stdout.contains("rerunfailures is active"),
        "{}",
        out.dump()
    );
    assert_eq!(out.report()["run"]["rounds"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------------
// 6. Budgets.

#[test]
fn max_failures_stops_reruns_of_a_broken_build() {
    let p = Project::new();
    p.file(
        "test_b.py",
        "def test_a(attempt):\n    assert attempt >= 2\n\ndef test_b(attempt):\n    assert attempt >= 2\n\ndef test_c(attempt):\n    assert attempt >= 2\n",
    );
    let out = run_env(&p, &["--max-failures", "1", "--max", "3"], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.report()["run"]["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(out.summary("failed"), 3);
    assert_eq!(out.summary("reruns"), 0);
    for t in [
        "test_b.py::test_a",
        "test_b.py::test_b",
        "test_b.py::test_c",
    ] {
        assert_eq!(p.count(t), 1, "{t} ran once");
        assert_has(
            out.test(t)["stopped_because"].as_str().unwrap(),
            "more than max_failures = 1",
            &out,
        );
    }
    assert!(
        warnings(&out)
            .iter()
            .any(|w| w.contains("3 tests failed in the first round")),
        "{}",
        out.dump()
    );
    assert_has(&out.stdout, "the build looks broken, not flaky", &out);
}

#[test]
fn max_reruns_caps_the_total_number_of_reruns() {
    let p = Project::new();
    let mut suite = String::new();
    for n in 1..=4 {
        suite.push_str(&format!(
            "def test_{n}(attempt):\n    assert attempt >= 2\n\n"
        ));
    }
    p.file("test_b.py", &suite);
    let out = run_env(&p, &["--max-reruns", "2"], &[], &[]);
    out.assert_code(1);
    assert_eq!(out.summary("reruns"), 2, "{}", out.dump());
    assert_eq!(out.summary("flaky"), 2);
    assert_eq!(out.summary("failed"), 2);
    let total: u32 = (1..=4)
        .map(|n| p.count(&format!("test_b.py::test_{n}")))
        .sum();
    assert_eq!(total, 4 + 2, "four first runs and two reruns");
    assert!(
        warnings(&out)
            .iter()
            .any(|w| w.contains("rerun budget (max_reruns = 2) is spent")),
        "{}",
        out.dump()
    );
}

#[test]
fn max_delay_caps_the_backoff_and_jitter_is_accepted() {
    let p = Project::new();
    p.file(
        "test_d.py",
        "def test_twice(attempt):\n    assert attempt >= 3\n",
    );
    let started = Instant::now();
    // Uncapped, exp backoff from 20s would wait 20s, then 40s.
    let out = run_env(
        &p,
        &[
            "--max",
            "3",
            "--delay",
            "20",
            "--backoff",
            "exp",
            "--max-delay",
            "0.5",
            "--jitter",
            "0.1",
        ],
        &[],
        &[],
    );
    let elapsed = started.elapsed();
    out.assert_code(0);
    let nodeid = "test_d.py::test_twice";
    assert_eq!(out.outcome(nodeid), "flaky");
    assert_eq!(out.attempts(nodeid), 3);
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    // Each retry waited the capped delay (0.5s, plus up to 0.1s of jitter) after the failed attempt.
    let at = |v: &serde_json::Value| -> f64 {
        let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        t.timestamp_millis() as f64 / 1000.0
    };
    let attempts = out.test(nodeid)["attempts"].as_array().unwrap().clone();
    let rounds = out.report()["run"]["rounds"].as_array().unwrap().clone();
    assert_eq!(rounds.len(), 3);
    for k in 0..2 {
        let gap = at(&rounds[k + 1]["started_at"]) - at(&attempts[k]["finished_at"]);
        assert!(
            (0.49..10.0).contains(&gap),
            "retry {} started {gap:.2}s after the failure; {}",
            k + 1,
            out.dump()
        );
    }
    assert_eq!(out.report()["run"]["policy"]["max_delay_seconds"], 0.5);
}

// ---------------------------------------------------------------------------------------------------
// 7. `smart-rerun config`.

#[test]
fn config_prints_each_key_with_its_value_and_source_and_runs_nothing() {
    let p = Project::new();
    p.file(
        "test_c.py",
        "import sr_counter\nsr_counter.bump('collected')\n\ndef test_x():\n    sr_counter.bump('body')\n",
    );
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_max = 3\nsmart_rerun_delay = 0.5\nsmart_rerun_errors = TimeoutError,OSError\n",
    );
    let out = config(
        &p,
        &["--max", "4", "--max-reruns", "7"],
        &[("SMART_RERUN_BACKOFF", "linear"), ("SMART_RERUN_DELAY", "")],
        &[],
    );
    out.assert_code(0);
    let ini = p.path().join("pytest.ini").display().to_string();
    assert_eq!(
        config_line(&out, "smart_rerun_max"),
        ("4".into(), "command line --max".into())
    );
    assert_eq!(
        config_line(&out, "smart_rerun_delay"),
        ("0.5".into(), format!("{ini}:3")),
        "an empty variable counts as unset"
    );
    assert_eq!(
        config_line(&out, "smart_rerun_errors"),
        ("TimeoutError,OSError".into(), format!("{ini}:4"))
    );
    assert_eq!(
        config_line(&out, "smart_rerun_backoff"),
        (
            "linear".into(),
            "environment variable SMART_RERUN_BACKOFF".into()
        )
    );
    assert_eq!(
        config_line(&out, "smart_rerun_max_reruns"),
        ("7".into(), "command line --max-reruns".into())
    );
    assert_eq!(
        config_line(&out, "smart_rerun"),
        ("true".into(), "default".into())
    );
    for k in smart_rerun::config::KEYS {
        config_line(&out, k.ini);
    }
    assert_has(&out.stdout, &format!("configfile {ini}"), &out);
    assert_eq!(p.count("collected"), 0, "config collects nothing");
    assert_eq!(p.count("body"), 0, "config runs nothing");
    assert!(out.report.is_none());
}

#[test]
fn config_exits_4_on_an_invalid_ini_value() {
    let p = Project::new();
    p.file(
        "test_c.py",
        "import sr_counter\nsr_counter.bump('collected')\n\ndef test_x():\n    sr_counter.bump('body')\n",
    );
    p.file(
        "tox.ini",
        "[tox]\nenvlist = py\n\n[pytest]\nsmart_rerun_backoff = fibonacci\n",
    );
    let out = config(&p, &["--delay", "-1"], &[], &[]);
    out.assert_code(4);
    assert_has(
        &out.stderr,
        &format!(
            "smart_rerun_backoff = 'fibonacci' ({}:5): use none, linear or exp",
            p.path().join("tox.ini").display()
        ),
        &out,
    );
    assert_has(
        &out.stderr,
        "smart_rerun_delay = '-1' (command line --delay): must be a number of seconds, 0 or more",
        &out,
    );
    assert_has(&out.stderr, "2 invalid settings", &out);
    assert_eq!(p.count("collected"), 0);
    assert_eq!(p.count("body"), 0);
}
