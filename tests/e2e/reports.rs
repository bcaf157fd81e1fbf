//! Reports the ecosystem reads: JUnit XML read back by a real Python consumer (junitparser) and
//! checked against the Surefire schema's element order, Markdown rendered by a CommonMark renderer
//! (markdown-it-py) to prove hostile test output stays text, the takeover of a user's `--junitxml`,
//! `--junit-compat per-attempt`, `render` merging saved reports, and GitHub Actions log groups.

use crate::common::{self, Project};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A passing, a flaky, an always-failing test, a setup error, a skip and an xfail.
const SUITE: &str = r#"
import pytest

def test_ok():
    pass

def test_flaky(attempt):
    print(f"flaky attempt {attempt}")
    assert attempt > 1, "first attempt fails"

def test_broken():
    assert 1 + 1 == 3

@pytest.fixture
def db():
    raise ConnectionError("database is down")

def test_needs_db(db):
    pass

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False
"#;

/// Reads a JUnit file with junitparser and with ElementTree (expat, a strict XML parser), and reports
/// per testcase what each saw, including the testcase's child elements in document order.
const JUNIT_READER: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
from junitparser import JUnitXml

path = sys.argv[1]
ET.parse(path)  # well-formed, or this raises
cases = []
xml = JUnitXml.fromfile(path)
suites = [xml] if xml._tag == "testsuite" else list(xml)
for suite in suites:
    for case in suite:
        cases.append({
            "name": case.name,
            "classname": case.classname,
            "file": case._elem.get("file"),
            "line": case._elem.get("line"),
            "time": case.time,
            "results": [type(r).__name__ for r in case.result],
            "messages": [r.message for r in case.result],
            "passed": case.is_passed,
            "skipped": case.is_skipped,
            "children": [c.tag for c in case._elem],
            "properties": {p.get("name"): p.get("value") for p in case._elem.iter("property")},
            "system_out": case.system_out,
        })
json.dump({"suites": len(suites), "cases": cases}, sys.stdout)
"#;

/// Renders Markdown with markdown-it-py (CommonMark plus GitHub's tables and strikethrough) and reports
/// the HTML elements, link targets, table shapes and text that come out.
const MARKDOWN_READER: &str = r#"
import json, sys
from html.parser import HTMLParser
from markdown_it import MarkdownIt

text = open(sys.argv[1], encoding="utf-8").read()
html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)

class Walk(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.hrefs, self.srcs, self.tables, self.text = [], [], [], [], []
        self.row = None
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "a":
            self.hrefs.append(attrs.get("href"))
        if "src" in attrs:
            self.srcs.append(attrs["src"])
        if any(k.startswith("on") for k in attrs):
            self.tags.append("EVENT-HANDLER")
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.row = 0
        if tag in ("td", "th") and self.row is not None:
            self.row += 1
    def handle_endtag(self, tag):
        if tag == "tr":
            self.tables[-1].append(self.row)
            self.row = None
    def handle_data(self, data):
        self.text.append(data)

w = Walk()
w.feed(html)
json.dump({
    "tags": sorted(set(w.tags)),
    "hrefs": w.hrefs,
    "srcs": w.srcs,
    "tables": w.tables,
    "text": "".join(w.text),
}, sys.stdout)
"#;

fn run_python(p: &Project, script: &str, args: &[&Path]) -> Value {
    let path = p.path().join("sr_reader.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(common::python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read_junit(p: &Project, path: &Path) -> Value {
    run_python(p, JUNIT_READER, &[path])
}

fn case<'a>(junit: &'a Value, name: &str) -> &'a Value {
    junit["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no testcase {name} in {junit:#}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// The Surefire schema's testcase sequence (FACTS.md), with pytest's leading `properties`.
#[track_caller]
fn assert_surefire_order(junit: &Value) {
    const ORDER: [(&str, bool); 10] = [
        ("properties", false),
        ("failure", true),
        ("rerunFailure", true),
        ("flakyFailure", true),
        ("skipped", false),
        ("error", false),
        ("rerunError", true),
        ("flakyError", true),
        ("system-out", false),
        ("system-err", false),
    ];
    for case in junit["cases"].as_array().unwrap() {
        let children = strs(&case["children"]);
        let ranks: Vec<usize> = children
            .iter()
            .map(|c| {
                ORDER
                    .iter()
                    .position(|(n, _)| n == c)
                    .unwrap_or_else(|| panic!("unexpected <{c}> in {case}"))
            })
            .collect();
        assert!(
            ranks
                .windows(2)
                .all(|w| w[0] < w[1] || (w[0] == w[1] && ORDER[w[0]].1)),
            "{children:?} is out of the schema's order in {case}"
        );
    }
}

#[test]
fn junit_from_a_real_run_is_read_by_junitparser_in_surefire_order() {
    let p = Project::new();
    p.file("tests/test_suite.py", SUITE);
    // Two attempts: a failure repeated the same way is not tried a third time.
    let out = p.run(&["--max", "2", "--junit-xml", "reports/junit.xml"], &[]);
    out.assert_code(1);
    let junit = read_junit(&p, &p.path().join("reports/junit.xml"));
    assert_eq!(junit["suites"], 1);
    assert_eq!(junit["cases"].as_array().unwrap().len(), 6, "{junit:#}");
    assert_surefire_order(&junit);

    let ok = case(&junit, "test_ok");
    assert_eq!(ok["classname"], "tests.test_suite");
    assert_eq!(ok["file"], "tests/test_suite.py");
    assert_eq!(ok["line"], "4");
    assert_eq!(ok["passed"], true);

    // junitparser ignores the flaky elements, as GitLab does: a flaky test reads as passed, and the
    // property and system-out say it was flaky.
    let flaky = case(&junit, "test_flaky");
    assert_eq!(flaky["passed"], true, "{flaky}");
    assert_eq!(
        strs(&flaky["children"]),
        ["properties", "flakyFailure", "system-out"]
    );
    assert_eq!(flaky["properties"]["flaky"], "true");
    assert_eq!(flaky["properties"]["attempts"], "2");
    assert_eq!(flaky["line"], "7");
    let note = flaky["system_out"].as_str().unwrap();
    assert!(
        note.contains("FLAKY") && note.contains("passed on attempt 2"),
        "{note}"
    );

    let broken = case(&junit, "test_broken");
    assert_eq!(strs(&broken["results"]), ["Failure"]);
    assert_eq!(
        strs(&broken["children"]),
        ["properties", "failure", "rerunFailure"],
        "{broken}"
    );
    assert!(
        broken["messages"][0]
            .as_str()
            .unwrap()
            .starts_with("AssertionError: assert"),
        "{broken}"
    );

    let setup = case(&junit, "test_needs_db");
    assert_eq!(strs(&setup["results"]), ["Error"]);
    assert_eq!(
        strs(&setup["children"]),
        ["properties", "error", "rerunError"]
    );

    assert_eq!(case(&junit, "test_skipped")["skipped"], true);
    assert_eq!(case(&junit, "test_known_bug")["skipped"], true);
}

/// Everything a hostile test can put in its id, message, traceback and output.
const HOSTILE: &str = r#"
import sys, pytest

EVIL = "a|b `x` ``` </details> </pre> <script>alert(1)</script> <img src=x onerror=alert(1)> @org/team **bold** [l](javascript:alert(1)) \x1b[31mred\x1b[0m \x1b]0;title\x07 | --- |"

@pytest.mark.parametrize("evil", [EVIL], ids=["a|b `x` </details> </pre> <script>alert(1)</script> @org/team"])
def test_evil(evil, attempt):
    sys.stdout.buffer.write(b"invalid utf-8: \xff\xfe\xfd\n")
    sys.stdout.flush()
    print(evil)
    raise AssertionError(evil + "\n```\n" + "B" * 100_000)

@pytest.mark.parametrize("evil", [EVIL], ids=["flaky </details> @org/team"])
def test_evil_flaky(evil, attempt):
    sys.stdout.buffer.write(b"\xff\xfe")
    sys.stdout.flush()
    if attempt == 1:
        raise RuntimeError(evil)
"#;

#[test]
fn hostile_test_output_stays_text_in_markdown_junit_and_the_terminal() {
    let p = Project::new();
    p.file("test_hostile.py", HOSTILE);
    let out = p.run(
        &["--junit-xml", "junit.xml", "--markdown", "report.md"],
        &[],
    );
    out.assert_code(1);
    assert_eq!(out.summary("flaky"), 1, "{}", out.dump());

    // Markdown: what a CommonMark renderer makes of it.
    let md_path = p.path().join("report.md");
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.len() <= 65_536);
    let html = run_python(&p, MARKDOWN_READER, &[&md_path]);
    let tags = strs(&html["tags"]);
    for tag in &tags {
        assert!(
            [
                "h2",
                "h3",
                "p",
                "table",
                "thead",
                "tbody",
                "tr",
                "th",
                "td",
                "details",
                "summary",
                "pre",
                "em",
                "a",
                "ul",
                "li",
                "blockquote",
                "code"
            ]
            .contains(tag),
            "a hostile <{tag}> element came out: {md}"
        );
    }
    assert!(
        html["srcs"].as_array().unwrap().is_empty(),
        "{}",
        html["srcs"]
    );
    for href in strs(&html["hrefs"]) {
        assert!(
            href.starts_with("https://") || href.starts_with("http://"),
            "{href}"
        );
    }
    // Two tables (failed, flaky), every row with the header's four cells (the last: the classification).
    let tables = html["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{md}");
    for table in tables {
        let rows: Vec<u64> = table
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(rows, [4, 4], "{md}");
    }
    let text = html["text"].as_str().unwrap();
    assert!(!text.contains("@org"), "a live mention: {text}");
    assert!(text.contains("<script>alert(1)</script>"), "shown as text");
    assert!(!md.contains('\u{1b}'));

    // JUnit: ElementTree (strict) and junitparser read it; the invalid bytes arrive as U+FFFD.
    let junit = read_junit(&p, &p.path().join("junit.xml"));
    assert_surefire_order(&junit);
    assert_eq!(junit["cases"].as_array().unwrap().len(), 2);
    let xml = std::fs::read_to_string(p.path().join("junit.xml")).unwrap();
    assert!(!xml.contains('\u{1b}') && !xml.contains("<script"));
    assert!(xml.contains("invalid utf-8: \u{fffd}"), "{}", &xml[..2000]);

    // The terminal: smart-rerun's own lines carry no raw escape (pytest's own output is pytest's).
    let ours: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("smart-rerun") || l.starts_with("  "))
        .collect();
    let summary = out
        .stdout
        .split("smart-rerun summary")
        .nth(1)
        .expect("a summary");
    assert!(!summary.contains('\u{1b}'), "{summary:?}");
    assert!(
        summary.contains("\\u{1b}[31mred"),
        "made visible: {summary}"
    );
    for line in ours {
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }
}

/// Writes whether the user's JUnit file exists as each round's pytest ends.
const ROUND_LOGGER: &str = r#"
import os

def pytest_unconfigure(config):
    target = os.environ["JUNIT_TARGET"]
    with open(os.environ["ROUND_LOG"], "a") as f:
        f.write(f"round {os.environ.get('SMART_RERUN_ROUND')}: exists={os.path.exists(target)}\n")
"#;

const FLAKY_AND_OK: &str = r#"
def test_ok():
    pass

def test_flaky(attempt):
    assert attempt > 1
"#;

#[cfg(unix)]
#[test]
fn a_users_junitxml_is_written_once_merged_relative_to_pytests_invocation_dir() {
    let p = Project::new();
    // Tests under sub/, pytest invoked from sub/ by a wrapper, the ini file (and so the rootdir) above.
    p.file("pytest.ini", "[pytest]\n");
    p.file("sub/test_a.py", FLAKY_AND_OK);
    p.file("sub/conftest.py", ROUND_LOGGER);
    let target = p.path().join("sub/reports/out.xml");
    for (i, form) in ["--junitxml reports/out.xml", "--junitxml=reports/out.xml"]
        .into_iter()
        .enumerate()
    {
        let _ = std::fs::remove_file(&target);
        let _ = std::fs::remove_dir_all(p.counters());
        let log = p.path().join(format!("rounds-{i}.log"));
        let mut cmd = p.command(&[]);
        cmd.env("JUNIT_TARGET", &target)
            .env("ROUND_LOG", &log)
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(format!("cd sub && exec \"$0\" -m pytest {form}",))
            .arg(common::python());
        let out = p.output(cmd);
        out.assert_code(0);
        assert_eq!(out.outcome("sub/test_a.py::test_flaky"), "flaky");
        // No round's pytest wrote it (not even round 1); smart-rerun wrote it after the last round.
        let rounds = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            rounds, "round 1: exists=False\nround 2: exists=False\n",
            "{form}"
        );
        assert!(
            !p.path().join("reports/out.xml").exists(),
            "resolved against smart-rerun's cwd instead of pytest's"
        );
        let junit = read_junit(&p, &target);
        assert_surefire_order(&junit);
        let names: Vec<&str> = junit["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["test_ok", "test_flaky"], "{form}");
        let flaky = case(&junit, "test_flaky");
        assert_eq!(
            flaky["classname"], "sub.test_a",
            "pytest's names, rootdir-relative"
        );
        assert_eq!(
            strs(&flaky["children"]),
            ["properties", "flakyFailure", "system-out"]
        );
    }
}

#[test]
fn per_attempt_junit_has_one_testcase_per_attempt() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_AND_OK);
    let out = p.run(&["--junit-compat", "per-attempt"], &["--junitxml=out.xml"]);
    out.assert_code(0);
    let junit = read_junit(&p, &p.path().join("out.xml"));
    let cases: Vec<(&str, bool)> = junit["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        cases,
        [
            ("test_ok", true),
            ("test_flaky (attempt 1)", false),
            ("test_flaky", true)
        ]
    );
    assert_eq!(
        strs(&case(&junit, "test_flaky (attempt 1)")["results"]),
        ["Failure"]
    );
}

fn render(p: &Project, args: &[&str], reports: &[&Path]) -> (i32, String) {
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("render")
        .args(args)
        .args(reports)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn render_merges_two_runs_into_one_json_markdown_and_junit() {
    // Two shards of a matrix: one with a flaky and a passing test, one with a failing test.
    let a = Project::new();
    a.file("test_a.py", FLAKY_AND_OK);
    let out_a = a.run(&[], &[]);
    out_a.assert_code(0);
    let b = Project::new();
    b.file(
        "test_b.py",
        "def test_b_fails():\n    assert 0\n\ndef test_b_ok():\n    pass\n",
    );
    let out_b = b.run(&[], &[]);
    out_b.assert_code(1);
    let shard_b = a.path().join("shard-b.json");
    std::fs::copy(b.report_path(), &shard_b).unwrap();
    let reports = [a.report_path(), shard_b];
    let reports: Vec<&Path> = reports.iter().map(|p| p.as_path()).collect();

    let (code, json) = render(&a, &["--format", "json"], &reports);
    assert_eq!(code, 0, "{json}");
    let merged: Value = serde_json::from_str(&json).unwrap();
    common::assert_matches_schema(&merged, &|| json.clone());
    let ids: Vec<&str> = merged["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["nodeid"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "test_a.py::test_ok",
            "test_a.py::test_flaky",
            "test_b.py::test_b_fails",
            "test_b.py::test_b_ok"
        ]
    );
    let s = &merged["summary"];
    assert_eq!(
        (&s["total"], &s["passed"], &s["flaky"], &s["failed"]),
        (&4.into(), &2.into(), &1.into(), &1.into())
    );
    assert_eq!(merged["run"]["exit_code"], 1, "the worst shard's");

    let (code, md) = render(&a, &["--format", "markdown"], &reports);
    assert_eq!(code, 0, "{md}");
    assert!(
        md.starts_with("## ❌ smart-rerun: 1 failed, 1 flaky, 2 passed"),
        "{md}"
    );
    assert!(
        md.contains(r"test\_b.py\:\:test\_b\_fails") && md.contains(r"test\_a.py\:\:test\_flaky")
    );

    let junit_path = a.path().join("merged.xml");
    let (code, msg) = render(
        &a,
        &[
            "--format",
            "junit",
            "--output",
            junit_path.to_str().unwrap(),
        ],
        &reports,
    );
    assert_eq!(code, 0, "{msg}");
    let junit = read_junit(&a, &junit_path);
    assert_surefire_order(&junit);
    assert_eq!(junit["cases"].as_array().unwrap().len(), 4);
    assert_eq!(strs(&case(&junit, "test_b_fails")["results"]), ["Failure"]);
    assert_eq!(
        strs(&case(&junit, "test_flaky")["children"]),
        ["properties", "flakyFailure", "system-out"]
    );

    let (code, text) = render(&a, &["--format", "terminal"], &reports);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("1 failed, 2 passed, 1 flaky of 4 tests"),
        "{text}"
    );
}

#[test]
fn in_github_actions_each_rerun_rounds_output_is_a_log_group() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_AND_OK);
    let mut cmd = p.command(&[]);
    cmd.env("GITHUB_ACTIONS", "true")
        // Keep any GitHub adapter on this machine: files it may write, no token, no API.
        .env("GITHUB_STEP_SUMMARY", p.path().join("step-summary.md"))
        .env("GITHUB_OUTPUT", p.path().join("github-output"))
        .env_remove("GITHUB_TOKEN")
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .arg("--")
        .arg(common::python())
        .args(["-m", "pytest"]);
    let out = p.output(cmd);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let groups: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("::group::") || l.starts_with("::endgroup::"))
        .map(|(i, l)| (i, *l))
        .collect();
    assert_eq!(
        groups.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        [
            "::group::smart-rerun round 2: rerunning 1 failed test",
            "::endgroup::"
        ],
        "{}",
        out.dump()
    );
    let (open, close) = (groups[0].0, groups[1].0);
    let first_session = lines
        .iter()
        .position(|l| l.contains("test session starts"))
        .unwrap();
    assert!(first_session < open, "round 1 is not grouped");
    let inside = lines[open..close].join("\n");
    assert!(
        inside.contains("test session starts") && inside.contains("1 passed"),
        "round 2's pytest output sits in the group: {inside}"
    );
    assert!(!groups[0].1.contains("test_flaky"));
    let summary_at = lines
        .iter()
        .position(|l| l.contains("smart-rerun summary"))
        .unwrap();
    assert!(close < summary_at, "the summary is outside the group");
}

/// The mode of each report file smart-rerun writes, and of the JUnit XML pytest writes itself, for a run
/// under `umask`.
#[cfg(unix)]
fn modes_under_umask(umask: u32) -> (Vec<(&'static str, u32)>, u32) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let p = Project::new();
    p.file("test_a.py", FLAKY_AND_OK);
    let with_umask = |cmd: &mut Command| {
        // SAFETY: umask(2) is async-signal-safe and only changes the child's own mask.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
    };
    let mut cmd = p.command(&[
        "--junit-xml",
        "out/junit.xml",
        "--markdown",
        "out/summary.md",
        "--ai",
        "--ai-protocol",
        "http",
        // Nothing listens there: the AI report is written all the same, saying so.
        "--ai-endpoint",
        "http://127.0.0.1:9/",
        "--ai-report",
        "out/ai.json",
    ]);
    cmd.arg("--").arg(common::python()).args(["-m", "pytest"]);
    with_umask(&mut cmd);
    p.output(cmd).assert_code(0);
    let mode = |rel: &str| {
        let path = p.path().join(rel);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        meta.permissions().mode() & 0o777
    };
    let ours = vec![
        ("report.json", mode("report.json")),
        ("out/junit.xml", mode("out/junit.xml")),
        ("out/summary.md", mode("out/summary.md")),
        ("out/ai.json", mode("out/ai.json")),
    ];
    let mut plain = Command::new(common::python());
    plain
        .current_dir(p.path())
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml=plain.xml",
        ])
        .env("COUNTER_DIR", p.counters())
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS");
    with_umask(&mut plain);
    plain.output().unwrap();
    (ours, mode("plain.xml"))
}

#[cfg(unix)]
#[test]
fn report_files_follow_the_umask_as_pytests_own_junitxml_does() {
    for umask in [0o022, 0o077] {
        let (ours, pytests) = modes_under_umask(umask);
        assert_eq!(
            pytests,
            0o666 & !umask,
            "pytest's --junitxml under {umask:03o}"
        );
        for (file, mode) in ours {
            assert_eq!(
                mode, pytests,
                "{file} under umask {umask:03o}: {mode:03o}, pytest's own --junitxml {pytests:03o}"
            );
        }
    }
}
