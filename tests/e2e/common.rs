//! Shared harness for the end-to-end tests: fixture pytest projects in temp dirs, run through the real
//! `smart-rerun` binary with the venv that `scripts/bootstrap-python` built.
//!
//! `SMART_RERUN_TEST_VENV` picks the venv (scripts/test runs the suite on the newest and the oldest
//! supported pytest); without it, `target/venvs/latest`. `target/venvs/tools` is not a pytest venv: it
//! holds shellcheck, the workflow linters and maturin ([`tool`]).

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Counts attempts per key in the directory named by `COUNTER_DIR`, so a test can fail on chosen attempts.
const COUNTER_MODULE: &str = r#"
import hashlib, os, pathlib

def bump(key):
    d = pathlib.Path(os.environ["COUNTER_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    p = d / hashlib.sha1(key.encode("utf-8")).hexdigest()
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n
"#;

const COUNTER_CONFTEST: &str = r#"
import pytest
import sr_counter

@pytest.fixture
def attempt(request):
    """How many times this test has run, this one included."""
    return sr_counter.bump(request.node.nodeid)
"#;

/// Validates each file given after the schema; prints a JSON list with, per file, the list of every error.
/// `date-time` is checked by hand: jsonschema checks it only with the optional `rfc3339-validator`.
const VALIDATE: &str = r#"
import datetime, json, re, sys
from jsonschema import Draft202012Validator

RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z")
checker = Draft202012Validator.FORMAT_CHECKER

@checker.checks("date-time", raises=ValueError)
def date_time(value):
    if not isinstance(value, str):
        return True
    m = RFC3339.match(value)
    if not m:
        return False
    date, time, frac, zone = m.groups()
    frac = (frac or "")[:6].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    datetime.datetime.fromisoformat(date + "T" + time + "." + frac + zone)
    return True

with open(sys.argv[1], encoding="utf-8") as f:
    schema = json.load(f)
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=checker)
results = []
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    errors = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/" + "/".join(str(p) for p in e.absolute_path)
        errors.append("%s: %s (%s)" % (where, e.message, "/".join(str(p) for p in e.schema_path)))
    results.append(errors)
print(json.dumps(results))
"#;

/// Every error of each document against `schema/report.schema.json`, one list per document.
pub fn schema_errors(docs: &[&Value]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(VALIDATE)
        .arg(repo_root().join("schema/report.schema.json"));
    for (i, doc) in docs.iter().enumerate() {
        let path = dir.path().join(format!("report-{i}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().expect("the venv's python runs");
    assert!(
        out.status.success(),
        "the validator failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), docs.len());
    results
}

/// Asserts that a JSON report matches `schema/report.schema.json`; `context` says which run wrote it.
pub fn assert_matches_schema(doc: &Value, context: &dyn Fn() -> String) {
    let errors = schema_errors(&[doc]).remove(0);
    assert!(
        errors.is_empty(),
        "the report does not match schema/report.schema.json:\n  {}\n{}",
        errors.join("\n  "),
        context()
    );
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv under test.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("SMART_RERUN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/venvs/latest"));
    let venv = if venv.is_absolute() {
        venv
    } else {
        repo_root().join(venv)
    };
    assert!(
        python_in(&venv).exists(),
        "no Python venv at {}: run scripts/bootstrap-python (scripts/test does it for you)",
        venv.display()
    );
    assert!(
        venv.file_name().is_none_or(|n| n != "tools"),
        "SMART_RERUN_TEST_VENV={} is the tools venv (linters, maturin), which has no pytest: use \
         target/venvs/latest or target/venvs/pytest7",
        venv.display()
    );
    venv
}

/// A command from the tools venv (`tests/requirements/tools.txt`): shellcheck, zizmor, maturin, ...
pub fn tool(name: &str) -> PathBuf {
    let bin = if cfg!(windows) { "Scripts" } else { "bin" };
    let path = repo_root().join("target/venvs/tools").join(bin).join(name);
    assert!(
        path.exists(),
        "no {} : run scripts/bootstrap-python, which installs tests/requirements/tools.txt there",
        path.display()
    );
    path
}

fn python_in(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    }
}

pub fn python() -> PathBuf {
    python_in(&venv())
}

/// The pytest major version of the venv under test.
pub fn pytest_major() -> u32 {
    let out = Command::new(python())
        .args(["-c", "import pytest; print(pytest.__version__)"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smart-rerun"))
}

/// A pytest project in a temp dir.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// An empty project with the attempt counter (`attempt` fixture, `sr_counter.bump(key)`).
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("sr-e2e-")
            .tempdir()
            .unwrap();
        let p = Project { dir };
        p.file("sr_counter.py", COUNTER_MODULE);
        p.file("conftest.py", COUNTER_CONFTEST);
        p
    }

    /// A copy of `tests/fixtures/NAME`, with the counter.
    pub fn fixture(name: &str) -> Project {
        let p = Project::new();
        copy_dir(&repo_root().join("tests/fixtures").join(name), p.path());
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, content: &str) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn counters(&self) -> PathBuf {
        self.path().join(".counters")
    }

    pub fn report_path(&self) -> PathBuf {
        self.path().join("report.json")
    }

    /// `smart-rerun run ARGS --report report.json -- python -m pytest PYTEST...` in the project root.
    pub fn run(&self, args: &[&str], pytest: &[&str]) -> RunOutput {
        let mut cmd = self.command(args);
        cmd.arg("--")
            .arg(python())
            .args(["-m", "pytest"])
            .args(pytest);
        self.output(cmd)
    }

    /// `smart-rerun run ARGS --report report.json` with the environment set, for a custom COMMAND.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.current_dir(self.path())
            .arg("run")
            .args(args)
            .arg("--report")
            .arg(self.report_path())
            .env("COUNTER_DIR", self.counters())
            .env("NO_COLOR", "1")
            .env_remove("PYTEST_ADDOPTS")
            .env_remove("PYTEST_PLUGINS")
            .env_remove("VIRTUAL_ENV")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        cmd
    }

    pub fn output(&self, mut cmd: Command) -> RunOutput {
        let _ = std::fs::remove_file(self.report_path());
        let out = cmd.output().expect("smart-rerun runs");
        RunOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report: None,
        }
        .with_report(&self.report_path())
    }

    /// How many times `sr_counter` counted `key` (a nodeid for the `attempt` fixture).
    pub fn count(&self, key: &str) -> u32 {
        let out = Command::new(python())
            .args([
                "-c",
                "import hashlib,sys; print(hashlib.sha1(sys.argv[1].encode()).hexdigest())",
                key,
            ])
            .output()
            .unwrap();
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        std::fs::read_to_string(self.counters().join(digest))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("fixture {}: {e}", from.display()))
    {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What a run printed and wrote.
#[derive(Debug)]
pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Value>,
}

/// A float sum of nothing is -0.0 in Rust; a report must never say `-0.0` (a schema cannot tell).
pub fn assert_no_negative_zero(value: &Value, at: &str, context: &dyn Fn() -> String) {
    match value {
        Value::Number(n) => {
            let negative_zero = n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative());
            assert!(!negative_zero, "{at} is -0.0\n{}", context());
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_negative_zero(item, &format!("{at}/{i}"), context);
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                assert_no_negative_zero(field, &format!("{at}/{key}"), context);
            }
        }
        _ => {}
    }
}

/// Reads the JSON report at `path`, which must match the published schema.
pub fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    let report = serde_json::from_str(&text).expect("the report is JSON");
    let context = || format!("the report at {}", path.display());
    assert_matches_schema(&report, &context);
    assert_no_negative_zero(&report, "", &context);
    report
}

impl RunOutput {
    /// This run's output with the JSON report it wrote at `path`, if it wrote one, which must match the
    /// published schema.
    pub fn with_report(mut self, path: &Path) -> RunOutput {
        self.report = std::fs::read_to_string(path)
            .ok()
            .map(|s| serde_json::from_str(&s).expect("the report is JSON"));
        if let Some(report) = &self.report {
            assert_matches_schema(report, &|| self.dump());
            assert_no_negative_zero(report, "", &|| self.dump());
        }
        self
    }

    pub fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no report written; {}", self.dump()))
    }

    pub fn dump(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn test(&self, nodeid: &str) -> &Value {
        self.report()["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["nodeid"] == nodeid)
            .unwrap_or_else(|| panic!("{nodeid} not in the report; {}", self.dump()))
    }

    pub fn outcome(&self, nodeid: &str) -> String {
        self.test(nodeid)["outcome"].as_str().unwrap().to_owned()
    }

    /// Attempts recorded for a test (0 for a test that never failed).
    pub fn attempts(&self, nodeid: &str) -> usize {
        self.test(nodeid)["attempts"]
            .as_array()
            .map_or(0, |a| a.len())
    }

    pub fn summary(&self, key: &str) -> u64 {
        self.report()["summary"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary.{key}; {}", self.dump()))
    }

    pub fn nodeids(&self) -> Vec<String> {
        self.report()["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["nodeid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{}", self.dump());
        self
    }
}

/// The reason phrase the fake servers send with a status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
