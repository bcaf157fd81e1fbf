//! GitHub Actions, end to end: the real binary with the runner's environment simulated by real files
//! (`GITHUB_EVENT_PATH`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`) and the REST API played by a local server
//! ([`FakeGitHub`]). Output is read the way the runner reads it: every line, stdout and stderr together,
//! through a model of its command parser, so a test sees which workflow commands would take effect.

use crate::common::{self, Project};
use crate::fake_github::{FakeGitHub, Scripted, TOKEN};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod comment;
mod run;

const MARKER: &str = "<!-- smart-rerun:sticky v1 -->";

/// The commands the runner registers (and parses) besides a stop token.
const REGISTERED: &[&str] = &[
    "stop-commands",
    "error",
    "warning",
    "notice",
    "debug",
    "group",
    "endgroup",
    "set-output",
    "save-state",
    "add-mask",
    "add-matcher",
    "remove-matcher",
    "echo",
    "set-env",
    "add-path",
];

/// A workflow command as the runner parses it (`ActionCommand.TryParseV2`, then the legacy `TryParse`).
#[derive(Debug, Clone, PartialEq)]
struct Cmd {
    name: String,
    props: Vec<(String, String)>,
    data: String,
    line: String,
}

fn parse(line: &str, extra: Option<&str>) -> Option<Cmd> {
    let known = |n: &str| REGISTERED.contains(&n) || Some(n) == extra;
    let unescape = |s: &str, prop: bool| {
        let s = s.replace("%0D", "\r").replace("%0A", "\n");
        let s = if prop {
            s.replace("%3A", ":").replace("%2C", ",")
        } else {
            s
        };
        s.replace("%25", "%")
    };
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix("::") {
        if let Some(end) = rest.find("::") {
            let info = &rest[..end];
            let (name, props) = info.split_once(' ').unwrap_or((info, ""));
            if known(name) {
                return Some(Cmd {
                    name: name.to_owned(),
                    props: props
                        .split(',')
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_owned(), unescape(v, true)))
                        .collect(),
                    data: unescape(&rest[end + 2..], false),
                    line: line.to_owned(),
                });
            }
        }
    }
    let at = line.find("##[")?;
    let rest = &line[at + 3..];
    let end = rest.find(']')?;
    let name = rest[..end].split(' ').next().unwrap_or("");
    known(name).then(|| Cmd {
        name: name.to_owned(),
        props: Vec::new(),
        data: rest[end + 1..].to_owned(),
        line: line.to_owned(),
    })
}

/// The commands that take effect, honouring `::stop-commands::` exactly as the runner does.
fn effective(output: &str) -> Vec<Cmd> {
    let mut stopped: Option<String> = None;
    let mut done = Vec::new();
    for line in output.lines() {
        let Some(cmd) = parse(line, stopped.as_deref()) else {
            continue;
        };
        match &stopped {
            Some(token) if cmd.name.eq_ignore_ascii_case(token) => stopped = None,
            Some(_) => {}
            None if cmd.name == "stop-commands" => stopped = Some(cmd.data.clone()),
            None => done.push(cmd),
        }
    }
    assert!(
        stopped.is_none(),
        "commands are still stopped at the end:\n{output}"
    );
    done
}

fn prop<'a>(c: &'a Cmd, key: &str) -> Option<&'a str> {
    c.props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A simulated runner step: its files and environment.
struct Step {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Step {
    fn new(workspace: &Path, api: &str) -> Step {
        let dir = tempfile::Builder::new().prefix("sr-gh-").tempdir().unwrap();
        let file = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(file("output"), "").unwrap();
        std::fs::write(file("summary"), "").unwrap();
        let vars = [
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("CI", "true".to_owned()),
            ("GITHUB_API_URL", api.to_owned()),
            ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
            ("GITHUB_REPOSITORY", "o/r".to_owned()),
            (
                "GITHUB_SHA",
                "89abcdef0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("GITHUB_RUN_ID", "99".to_owned()),
            ("GITHUB_JOB", "test".to_owned()),
            (
                "SMART_RERUN_GITHUB_MATRIX",
                r#"{"python": "3.12", "os": "ubuntu-latest"}"#.to_owned(),
            ),
            ("GITHUB_WORKSPACE", workspace.display().to_string()),
            ("GITHUB_OUTPUT", file("output")),
            ("GITHUB_STEP_SUMMARY", file("summary")),
            ("SMART_RERUN_GITHUB_TOKEN", TOKEN.to_owned()),
            ("SMART_RERUN_TEST_GITHUB_PAUSE_MS", "20".to_owned()),
        ];
        let mut step = Step {
            dir,
            vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        step.event("pull_request", &pr_payload(false));
        step
    }

    fn event(&mut self, name: &str, payload: &Value) -> &mut Self {
        let path = self.dir.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        self.set("GITHUB_EVENT_NAME", name);
        self.set("GITHUB_EVENT_PATH", &path.display().to_string());
        self
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.vars.retain(|(name, _)| name != k);
        self.vars.push((k.to_owned(), v.to_owned()));
        self
    }

    fn unset(&mut self, k: &str) -> &mut Self {
        self.vars.retain(|(name, _)| name != k);
        self
    }

    /// Applies the step's environment, and only it: nothing of a real runner's leaks in.
    fn apply(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("GITHUB_") || k.starts_with("RUNNER_") || k.starts_with("SMART_RERUN")
            {
                cmd.env_remove(k);
            }
        }
        cmd.env_remove("CI");
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }

    fn outputs(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("output")).unwrap();
        smart_rerun::ci::github::files::parse_outputs(&text)
    }

    fn output(&self, name: &str) -> String {
        self.outputs()
            .into_iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no output {name}: {:?}", self.outputs()))
            .1
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("summary")).unwrap()
    }
}

fn pr_payload(fork: bool) -> Value {
    json!({
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"sha": "0123456789abcdef0123456789abcdef01234567",
                     "repo": {"full_name": if fork { "someone/r" } else { "o/r" }}},
            "base": {"repo": {"full_name": "o/r"}},
        },
        "repository": {"full_name": "o/r"},
    })
}

/// What a step printed (stdout and stderr into one file, in write order, as the runner reads them).
struct Printed {
    code: i32,
    text: String,
}

impl Printed {
    fn dump(&self) -> String {
        format!("exit {}\n{}", self.code, self.text)
    }
}

fn run_step(mut cmd: Command, step: &Step) -> Printed {
    step.apply(&mut cmd);
    let log = step.dir.path().join("log.txt");
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    let status = cmd.status().expect("smart-rerun runs");
    Printed {
        code: status.code().unwrap_or(-1),
        text: std::fs::read_to_string(&log).unwrap(),
    }
}

const HOSTILE_SUITE: &str = r###"
import sys
import pytest

def test_ok():
    pass

def test_broken():
    x = 1
    assert x == 2, "broken on purpose"

def test_flaky(attempt):
    if attempt == 1:
        raise ConnectionResetError(104, "Connection reset by peer")

def test_hostile(attempt):
    print("::set-output name=exit-code::0")
    print("::add-mask::ghs_fake")
    print("##[error]forged legacy error")
    print("   ::warning file=x.py::indented")
    sys.stderr.write("::error::from stderr\n")
    sys.stderr.flush()
    raise AssertionError("boom\n::error::injected%0A::warning::x\n##[set-output name=passed;]99 @octocat")

@pytest.mark.parametrize("v", ["::error::param", "##[warning]p"])
def test_param(v, attempt):
    assert attempt > 1
"###;

fn hostile_project() -> Project {
    let p = Project::new();
    p.file("test_gh.py", HOSTILE_SUITE);
    p
}

fn run_cmd(p: &Project, args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.current_dir(p.path())
        .arg("run")
        .args(args)
        .arg("--report")
        .arg(p.report_path())
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1")
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS")
        .env_remove("VIRTUAL_ENV")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-q"]);
    cmd
}
