//! GitHub Actions, end to end: the real binary with the runner's environment simulated by real files
//! (`GITHUB_EVENT_PATH`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`) and the REST API played by a local server
//! ([`FakeGitHub`]). Output is read the way the runner reads it: every line, stdout and stderr together,
//! through a model of its command parser, so a test sees which workflow commands would take effect.

use crate::common::{self, Project};
use crate::fake_github::{FakeGitHub, Scripted, TOKEN};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

#[test]
fn a_run_in_actions_annotates_summarises_sets_outputs_and_comments_and_the_tests_cannot_issue_commands()
 {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "2"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.text.contains("::set-output name=exit-code::0"),
        "pytest's output is shown: {}",
        out.dump()
    );

    // Only smart-rerun's own commands take effect: the rerun round's group and the annotations.
    let cmds = effective(&out.text);
    let names: Vec<&str> = cmds.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| matches!(*n, "group" | "endgroup" | "error" | "warning")),
        "{names:?}\n{}",
        out.dump()
    );
    let annotations: Vec<&Cmd> = cmds
        .iter()
        .filter(|c| c.name == "error" || c.name == "warning")
        .collect();
    let titles: Vec<&str> = annotations
        .iter()
        .map(|c| prop(c, "title").unwrap_or(""))
        .collect();
    assert_eq!(
        titles,
        [
            "Failed: test_gh.py::test_broken",
            "Failed: test_gh.py::test_hostile",
            "Flaky: test_gh.py::test_flaky",
            "Flaky: test_gh.py::test_param[::error::param]",
            "Flaky: test_gh.py::test_param[##[warning]p]",
        ],
        "{}",
        out.dump()
    );
    let broken = annotations[0];
    assert_eq!(prop(broken, "file"), Some("test_gh.py"));
    assert_eq!(prop(broken, "line"), Some("10"), "the assert's line");
    assert!(
        broken.data.starts_with("AssertionError: broken on purpose"),
        "{}",
        broken.data
    );
    let hostile = annotations[1];
    assert!(
        hostile
            .data
            .contains("boom\n::error::injected%0A::warning::x\n##[set-output name=passed;]99"),
        "the message arrives whole, as text: {:?}",
        hostile.data
    );
    assert_eq!(
        cmds.iter().filter(|c| c.name == "group").count(),
        1,
        "round 2 is grouped"
    );

    // Step outputs, with random delimiters.
    assert_eq!(step.output("passed"), "1");
    assert_eq!(step.output("failed"), "2");
    assert_eq!(step.output("flaky"), "3");
    assert_eq!(step.output("exit-code"), "1");
    assert_eq!(
        PathBuf::from(step.output("report-path")),
        p.report_path(),
        "absolute report path"
    );
    assert_eq!(step.output("junit-path"), "");

    // The job summary.
    let summary = step.summary();
    assert!(
        summary.contains("smart-rerun: 2 failed, 3 flaky, 1 passed"),
        "{summary}"
    );
    assert!(summary.contains("PR comment: [updated](https://github.com/o/r/pull/7#issuecomment-"));
    assert!(!summary.contains("@octocat"), "no mention: {summary}");

    // The sticky comment, with this job's section.
    let comments = api.comments();
    assert_eq!(comments.len(), 1, "{:?}", api.log());
    let body = &comments[0].body;
    assert!(body.starts_with(MARKER), "{body}");
    assert!(
        body.contains("<!-- smart-rerun:section key=\"test (3.12, ubuntu-latest)\" -->"),
        "{body}"
    );
    assert!(body.contains("**test (3.12, ubuntu-latest)**"), "{body}");
    assert!(!body.contains("@octocat"), "no mention: {body}");
    assert!(api.log().iter().all(|l| l.authorized));

    // The report carries the pull request and commit.
    let report = common::read_report(&p.report_path());
    assert_eq!(
        report["ci"],
        json!({
            "platform": "github",
            "repository": "o/r",
            "pull_request": 7,
            "head_sha": "0123456789abcdef0123456789abcdef01234567",
            "commit_sha": "89abcdef0123456789abcdef0123456789abcdef",
            "run_url": "https://github.com/o/r/actions/runs/99",
            "comment_key": "test (3.12, ubuntu-latest)",
        })
    );

    // The token is never shown or written.
    for text in [&out.text, &summary, &report.to_string(), body] {
        assert!(!text.contains(TOKEN));
    }
}

#[test]
fn the_tests_never_see_the_token() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_env.py",
        "import os\n\ndef test_env():\n    assert 'SMART_RERUN_GITHUB_TOKEN' not in os.environ\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
}

#[test]
fn with_stop_commands_off_pytest_output_issues_commands_but_the_summary_does_not() {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let step = Step::new(p.path(), &api.url);
    let out = run_step(
        run_cmd(
            &p,
            &["--github-stop-commands=false", "--github-comment=false"],
        ),
        &step,
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    assert!(
        cmds.iter().any(|c| c.name == "set-output"),
        "pytest's own commands act when the user turns the guard off: {}",
        out.dump()
    );
    assert!(api.log().is_empty(), "no comment asked, no API call");
}

#[test]
fn annotations_summary_and_comment_can_be_turned_off() {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let cmd = run_cmd(&p, &["--github-annotations", "false"]);
    let mut step = Step::new(p.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_SUMMARY", "false")
        .set("SMART_RERUN_GITHUB_COMMENT", "0");
    let out = run_step(cmd, &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    assert!(
        cmds.iter()
            .all(|c| c.name == "group" || c.name == "endgroup"),
        "{cmds:?}"
    );
    assert_eq!(step.summary(), "");
    assert!(api.log().is_empty());
    assert_eq!(step.output("exit-code"), "1", "outputs are always set");
}

#[test]
fn a_read_only_token_on_a_fork_pr_is_one_warning_and_the_exit_code_stays() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status: 403,
        headers: vec![("x-ratelimit-remaining".into(), "4999".into())],
        body: r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest/issues/comments#create-an-issue-comment","status":"403"}"#.into(),
    });
    for (suite, code) in [
        ("def test_ok():\n    pass\n", 0),
        ("def test_no():\n    assert False\n", 1),
    ] {
        let p = Project::new();
        p.file("test_fork.py", suite);
        let mut step = Step::new(p.path(), &api.url);
        step.event("pull_request", &pr_payload(true));
        let out = run_step(run_cmd(&p, &[]), &step);
        assert_eq!(out.code, code, "{}", out.dump());
        let warnings: Vec<Cmd> = effective(&out.text)
            .into_iter()
            .filter(|c| prop(c, "title") == Some("smart-rerun PR comment"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", out.dump());
        let w = &warnings[0];
        assert_eq!(w.name, "warning");
        assert!(
            w.data.contains("Resource not accessible by integration"),
            "{}",
            w.data
        );
        assert!(w.data.contains("forks get a read-only token"), "{}", w.data);
        assert!(w.data.contains("workflow_run"), "{}", w.data);
        assert!(
            w.data.contains(
                "https://github.com/aki-07/smart-rerun/blob/main/docs/github.md#fork-pull-requests"
            ),
            "{}",
            w.data
        );
        assert_eq!(step.output("exit-code"), code.to_string());
        assert!(step.summary().contains("PR comment: not posted"));
        assert!(!out.text.contains(TOKEN));
    }
    assert_eq!(
        api.requests("GET").len(),
        2,
        "403 is not retried: {:?}",
        api.log()
    );
}

#[test]
fn no_pull_request_no_token_no_api_call() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file("test_ok.py", "def test_ok():\n    pass\n");
    let mut step = Step::new(p.path(), &api.url);
    step.event("push", &json!({"ref": "refs/heads/main"}));
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("no PR comment: the push event is not about a pull request")
    );
    let mut step = Step::new(p.path(), &api.url);
    step.unset("SMART_RERUN_GITHUB_TOKEN");
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text.contains("no PR comment: no token"),
        "{}",
        out.dump()
    );
    assert!(api.log().is_empty());
    assert!(effective(&out.text).is_empty());
}

// ---- `smart-rerun comment`: the REST API, without pytest ----

/// A saved report for `smart-rerun comment`: one test, failed or passed, for job `key`.
fn saved_report(dir: &Path, name: &str, key: &str, pr: Option<u64>, failed: bool) -> PathBuf {
    let outcome = if failed { "failed" } else { "passed" };
    let attempts = if failed {
        json!([{"number": 1, "round": 1, "outcome": "failed", "phase": "call", "duration_seconds": 0.1,
                "exception": {"type": "builtins.AssertionError", "mro": ["builtins.AssertionError"],
                              "message": format!("{key} broke")}}])
    } else {
        json!([])
    };
    let mut ci = json!({"platform": "github", "repository": "evil/elsewhere", "comment_key": key,
                        "run_url": "https://github.com/o/r/actions/runs/5"});
    if let Some(pr) = pr {
        ci["pull_request"] = json!(pr);
    }
    let report = json!({
        "schema_version": 1,
        "tool": {"name": "smart-rerun", "version": "0.1.0"},
        "run": {
            "command": ["pytest"], "cwd": "/w", "python_version": "3.12.0", "pytest_version": "9.0.0",
            "python_executable": "/usr/bin/python3", "rootdir": "/w", "started_at": "2026-11-02T10:00:00Z",
            "finished_at": "2026-11-02T10:00:01Z", "duration_seconds": 1.0, "exit_code": if failed { 1 } else { 0 },
            "exit_reason": "", "interrupted": false,
            "policy": {"enabled": true, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                       "max_delay_seconds": null, "errors": []},
            "rounds": [{"number": 1, "kind": "first", "started_at": "2026-11-02T10:00:00Z",
                        "duration_seconds": 1.0, "selected": 1, "exit_status": if failed { 1 } else { 0 }}],
        },
        "summary": {"total": 1, "passed": if failed { 0 } else { 1 }, "failed": if failed { 1 } else { 0 },
                    "flaky": 0, "skipped": 0, "xfailed": 0, "xpassed": 0, "errors": 0, "not_run": 0,
                    "collection_errors": 0, "reruns": 0, "rerun_seconds": 0.0},
        "tests": [{"nodeid": format!("tests/test_{name}.py::test_x"), "outcome": outcome,
                   "file": format!("tests/test_{name}.py"), "line": 1, "duration_seconds": 0.1,
                   "attempts": attempts}],
        "ci": ci,
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, report.to_string()).unwrap();
    path
}

fn comment_cmd(reports: &[&Path], args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.arg("comment").arg("--report").args(reports).args(args);
    cmd
}

fn section_keys(body: &str) -> Vec<String> {
    body.match_indices("<!-- smart-rerun:section key=\"")
        .map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[test]
fn the_comment_is_created_then_updated_in_place() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("PR comment created: https://github.com/o/r/pull/7#issuecomment-")
    );
    let first = api.comments();
    assert_eq!(first.len(), 1);
    assert!(first[0].body.contains("unit broke"));

    let a = saved_report(ws.path(), "a", "unit", Some(7), false);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment updated"), "{}", out.dump());
    let now = api.comments();
    assert_eq!(now.len(), 1, "updated in place");
    assert_eq!(now[0].id, first[0].id);
    assert!(!now[0].body.contains("unit broke") && now[0].body.contains("1 passed"));
    assert_eq!(api.requests("POST").len(), 1);
    assert_eq!(api.requests("PATCH").len(), 1);
    assert!(
        api.log().iter().all(|l| !l.path.contains("evil")),
        "the repository is the job's, never the report's"
    );
}

#[test]
fn the_comment_is_found_on_page_three_and_a_planted_marker_is_ignored() {
    let api = FakeGitHub::start();
    api.page_size(2);
    api.add_comment("LGTM", "alice", false, "MEMBER");
    let planted = api.add_comment(
        &format!("{MARKER}\nplanted by a drive-by commenter"),
        "mallory",
        false,
        "NONE",
    );
    for i in 0..2 {
        api.add_comment(&format!("comment {i}"), "bob", false, "CONTRIBUTOR");
    }
    let ours = api.add_comment(
        &format!("{MARKER}\n<!-- smart-rerun:section key=\"old\" -->\nold\n<!-- smart-rerun:end-section -->\n"),
        "github-actions[bot]",
        true,
        "NONE",
    );
    api.add_comment("after", "alice", false, "MEMBER");

    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    let patched: Vec<String> = api.requests("PATCH").into_iter().map(|l| l.path).collect();
    assert_eq!(
        patched.first().map(String::as_str),
        Some(format!("/repos/o/r/issues/comments/{ours}").as_str()),
        "{:?}",
        api.log()
    );
    assert!(api.requests("POST").is_empty());
    let pages: Vec<String> = api
        .requests("GET")
        .into_iter()
        .map(|l| l.path)
        .filter(|p| p.contains("/issues/7/comments"))
        .collect();
    assert_eq!(pages.len(), 3, "every page is read: {pages:?}");
    assert!(
        pages[1].starts_with("/repositories/1/issues/7/comments?"),
        "Link followed: {pages:?}"
    );
    let comments = api.comments();
    let body = &comments.iter().find(|c| c.id == ours).unwrap().body;
    assert_eq!(section_keys(body), ["old", "unit"], "other sections kept");
    assert_eq!(
        comments.iter().find(|c| c.id == planted).unwrap().body,
        format!("{MARKER}\nplanted by a drive-by commenter")
    );
    assert!(api.log().iter().all(|l| l.authorized));
}

#[test]
fn two_matrix_jobs_keep_each_others_sections_even_when_they_finish_together() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "test (3.11)", Some(7), true);
    let b = saved_report(ws.path(), "b", "test (3.12)", Some(7), false);
    run_step(comment_cmd(&[&a], &[]), &step);
    run_step(comment_cmd(&[&b], &[]), &step);
    let comments = api.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(
        section_keys(&comments[0].body),
        ["test (3.11)", "test (3.12)"]
    );

    // Both at once, twice over, each rewriting its own section: one comment, both sections.
    api.delay(std::time::Duration::from_millis(30));
    let mut step = step;
    step.set("SMART_RERUN_TEST_GITHUB_PAUSE_MS", "300");
    for round in 0..2 {
        let a = saved_report(ws.path(), "a", "test (3.11)", Some(7), round == 0);
        let b = saved_report(ws.path(), "b", "test (3.12)", Some(7), round == 1);
        let c = saved_report(ws.path(), "c", "lint", Some(7), false);
        let spawn = |r: &Path| {
            let mut cmd = comment_cmd(&[r], &[]);
            step.apply(&mut cmd);
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let children = [spawn(&a), spawn(&b), spawn(&c)];
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let comments = api.comments();
        assert_eq!(comments.len(), 1, "duplicates are folded: {comments:?}");
        assert_eq!(
            section_keys(&comments[0].body),
            ["lint", "test (3.11)", "test (3.12)"],
            "round {round}: {}",
            comments[0].body
        );
    }
}

#[test]
fn one_comment_from_several_reports_and_the_merged_form() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "shard 1", Some(7), true);
    let b = saved_report(ws.path(), "b", "shard 2", Some(7), false);
    let out = run_step(comment_cmd(&[&a, &b], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(api.requests("POST").len(), 1, "one write for both");
    assert_eq!(
        section_keys(&api.comments()[0].body),
        ["shard 1", "shard 2"]
    );

    let out = run_step(
        comment_cmd(&[&a, &b], &["--comment-key", "all shards"]),
        &step,
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let body = &api.comments()[0].body;
    assert!(section_keys(body).contains(&"all shards".to_owned()));
    assert!(body.contains("1 failed, 1 passed"), "{body}");
}

#[test]
fn server_errors_and_short_rate_limits_are_retried() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "GET",
        times: 2,
        status: 502,
        headers: vec![],
        body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
    });
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 403,
        headers: vec![
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
        ],
        body: r#"{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}"#.into(),
    });
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 429,
        headers: vec![("retry-after".into(), "1".into())],
        body: r#"{"message":"You have exceeded a secondary rate limit."}"#.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());
    // Two 502s, the list, then the list again after creating (a parallel job may have created one).
    assert_eq!(api.requests("GET").len(), 4, "{:?}", api.log());
    assert_eq!(api.requests("POST").len(), 3, "{:?}", api.log());
    assert_eq!(api.comments().len(), 1);
}

/// Runs `comment` against an API that answers every request with `status` and `body`; returns the one
/// warning's text and how many requests were made.
fn failing_comment(status: u16, headers: Vec<(String, String)>, body: &str) -> (String, usize) {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status,
        headers,
        body: body.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "never a failed job: {}", out.dump());
    assert!(!out.text.contains(TOKEN));
    let warnings: Vec<Cmd> = effective(&out.text)
        .into_iter()
        .filter(|c| c.name == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.dump());
    assert!(warnings[0].data.contains("#fork-pull-requests"));
    (warnings[0].data.clone(), api.log().len())
}

#[test]
fn refusals_are_one_warning_each_and_not_retried() {
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    type Case<'a> = (u16, Vec<(String, String)>, &'a str, &'a str, usize);
    let cases: Vec<Case> = vec![
        (
            404,
            vec![],
            r#"{"message":"Not Found","status":"404"}"#,
            "o/r or pull request #7 is not visible to this token (404 Not Found)",
            1,
        ),
        (
            401,
            vec![],
            r#"{"message":"Bad credentials","status":"401"}"#,
            "GitHub rejected the token (401 Bad credentials)",
            1,
        ),
        (
            403,
            vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), far),
            ],
            r#"{"message":"API rate limit exceeded for installation ID 1."}"#,
            "the API rate limit is exhausted for another",
            1,
        ),
        (503, vec![], "", "GitHub answered 503 to 4 tries", 4),
    ];
    for (status, headers, body, expected, requests) in cases {
        let (warning, made) = failing_comment(status, headers, body);
        assert!(warning.contains(expected), "{status}: {warning}");
        assert_eq!(made, requests, "{status}: {warning}");
    }
}

#[test]
fn a_comment_github_refuses_as_invalid_is_a_warning() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 422,
        headers: vec![],
        body: r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"unprocessable","field":"data","message":"Could not resolve to a node with the global id"}],"documentation_url":"https://docs.github.com/rest","status":"422"}"#.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("GitHub refused the comment (422 Validation Failed: Could not resolve"),
        "{}",
        out.dump()
    );
    assert_eq!(api.requests("POST").len(), 1);
}

#[test]
fn in_a_workflow_run_job_the_pull_request_must_be_at_the_tested_commit() {
    let api = FakeGitHub::start();
    let tested = "1111111111111111111111111111111111111111";
    let ws = tempfile::tempdir().unwrap();
    let mut step = Step::new(ws.path(), &api.url);
    step.event(
        "workflow_run",
        &json!({"workflow_run": {"head_sha": tested, "pull_requests": [], "event": "pull_request"}}),
    );
    // The report (untrusted, from the fork's run) names pull request 8, which is at another commit.
    api.set_head(8, "2222222222222222222222222222222222222222");
    api.set_head(7, tested);
    let a = saved_report(ws.path(), "a", "unit", Some(8), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text.contains("refusing to comment on it"),
        "{}",
        out.dump()
    );
    assert!(api.comments().is_empty());

    let out = run_step(comment_cmd(&[&a], &["--pr", "7"]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());
    let body = &api.comments()[0].body;
    assert!(
        body.contains("https://github.com/o/r/actions/runs/5"),
        "the report's run link is kept when it is this repository's: {body}"
    );
}

#[test]
fn comment_usage_errors_exit_4() {
    let ws = tempfile::tempdir().unwrap();
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let b = saved_report(ws.path(), "b", "unit", Some(8), true);
    let mut step = Step::new(ws.path(), "http://127.0.0.1:9");
    let out = run_step(comment_cmd(&[&a, &b], &[]), &{
        let mut s = Step::new(ws.path(), "http://127.0.0.1:9");
        s.event("push", &json!({}));
        s
    });
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(
        out.text
            .contains("different pull requests (#7, #8): pass --pr")
    );
    step.unset("SMART_RERUN_GITHUB_TOKEN");
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(out.text.contains("no token"));
    let out = run_step(comment_cmd(&[&ws.path().join("missing.json")], &[]), &step);
    assert_eq!(out.code, 4, "{}", out.dump());
}

#[test]
fn a_token_pasted_with_a_newline_works_and_a_broken_one_is_a_warning_not_a_crash() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let mut step = Step::new(ws.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_TOKEN", &format!("{TOKEN}\n"));
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());

    let p = Project::new();
    p.file("test_ok.py", "def test_ok():\n    pass\n");
    let mut step = Step::new(p.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_TOKEN", "ghs_one\ttwo");
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("the GitHub token is empty or holds characters an HTTP header cannot"),
        "{}",
        out.dump()
    );
    assert!(!out.text.contains("ghs_one"));
}

#[cfg(unix)]
#[test]
fn a_cancelled_run_still_annotates_and_sets_outputs_but_skips_the_comment() {
    let api = FakeGitHub::start();
    let p = Project::new();
    let started = p.path().join("started");
    p.file(
        "test_slow.py",
        &format!(
            "import pathlib, time\n\ndef test_fail():\n    assert False\n\ndef test_slow():\n    pathlib.Path({:?}).write_text('x')\n    time.sleep(60)\n",
            started.display()
        ),
    );
    let step = Step::new(p.path(), &api.url);
    let mut cmd = run_cmd(&p, &[]);
    step.apply(&mut cmd);
    let log = step.dir.path().join("log.txt");
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow test never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // What the runner does on cancellation: SIGINT to the step's process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    let titles: Vec<String> = effective(&text)
        .iter()
        .filter_map(|c| prop(c, "title").map(str::to_owned))
        .collect();
    assert!(
        titles.contains(&"Failed: test_slow.py::test_fail".to_owned()),
        "{titles:?}\n{text}"
    );
    assert!(
        text.contains("no PR comment: the run was interrupted"),
        "{text}"
    );
    assert!(api.log().is_empty());
    assert_eq!(step.output("exit-code"), "2");
}

/// ANSI colours, an OSC 8 hyperlink and a bell in a failure message: the annotation carries the text and
/// none of the escapes.
#[test]
fn escape_sequences_in_test_output_never_reach_an_annotation() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_ansi.py",
        "def test_ansi():\n    raise AssertionError(\
         '\\x1b[31mred\\x1b[0m \\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\x07bell\\tend')\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "1"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    let error = cmds
        .iter()
        .find(|c| c.name == "error")
        .unwrap_or_else(|| panic!("no error annotation: {}", out.dump()));
    assert!(
        error
            .data
            .starts_with("AssertionError: red click bell end\n"),
        "{:?}",
        error.data
    );
    assert!(
        !error.line.chars().any(char::is_control),
        "{:?}",
        error.line
    );
}

/// A failure message with a bare domain, a URL and issue references: the job summary and the PR comment
/// show them as text, never as links or cross-references (GitHub would link `#1` to the first issue of
/// this repository and notify it). Inside `<pre>` (the tracebacks) GitHub links nothing, so the text stays as it
/// was there.
#[test]
fn links_and_issue_references_in_test_output_stay_text() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_links.py",
        "def test_links():\n    raise AssertionError(\
         'visit www.evil-example.com or https://evil.example/x about #1 and GH-45')\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "1"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let comments = api.comments();
    assert_eq!(comments.len(), 1, "{}", out.dump());
    for (what, text) in [
        ("summary", step.summary()),
        ("comment", comments[0].body.clone()),
    ] {
        assert!(text.contains("evil-example.com"), "{what}: {text}");
        let text = outside_pre(&text);
        for linkable in ["www.evil", "https://evil", "https\\://evil", "#1 ", "GH-45"] {
            assert!(!text.contains(linkable), "{what} has {linkable:?}: {text}");
        }
    }
}

/// The text of a rendered Markdown body outside its `<pre>` blocks.
fn outside_pre(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("<pre") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("</pre>")
            .map_or("", |end| &rest[start + end + 6..]);
    }
    out.push_str(rest);
    out
}

#[test]
fn a_redirect_to_another_server_does_not_take_the_token_there() {
    let elsewhere = FakeGitHub::start();
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status: 302,
        headers: vec![(
            "Location".into(),
            format!("{}/repos/o/r/issues/7/comments?per_page=100", elsewhere.url),
        )],
        body: String::new(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "never a failed job: {}", out.dump());
    assert!(!api.log().is_empty() && api.log().iter().all(|l| l.authorized));
    let reached = elsewhere.log();
    assert!(
        reached.iter().all(|l| !l.authorized),
        "the token went to the other server: {reached:?}"
    );
    assert!(api.comments().is_empty() && elsewhere.comments().is_empty());
    let warnings: Vec<Cmd> = effective(&out.text)
        .into_iter()
        .filter(|c| c.name == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.dump());
    assert!(
        warnings[0].data.contains("could not write the PR comment"),
        "{}",
        warnings[0].data
    );
}
