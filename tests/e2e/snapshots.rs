//! The shape of what smart-rerun prints and writes, as a user sees it, checked whole with insta snapshots:
//! its own lines of a run (round headers, the summary), usage errors, the Markdown report and the JUnit
//! XML. Times, paths, versions and pytest's tracebacks (whose look depends on the pytest and Python
//! versions the suite runs under) are filtered, so the same snapshots hold on every supported pytest.

use crate::common::{Project, python};

/// One test of each kind: passing, flaky (fails once), broken, skipped, xfailed.
const SUITE: &str = r#"
import pytest

def test_ok():
    pass

def test_flaky(attempt):
    if attempt < 2:
        raise ConnectionResetError(104, "Connection reset by peer")

def test_broken():
    assert 1 + 1 == 3, "logic bug"

@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False
"#;

/// Filters for what changes from run to run and machine to machine.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\b\d+\.\d+ ?s\b", "[T]s");
    s.add_filter(r"\b\d+\.\d+s\b", "[T]s");
    s.add_filter(r"pytest \d+\.\d+\.\d+", "pytest [VERSION]");
    s.add_filter(r#"(time|timestamp)="[^"]*""#, r#"$1="[T]""#);
    s.add_filter(
        r#"name="smart-rerun.version" value="[^"]*""#,
        r#"name="smart-rerun.version" value="[VERSION]""#,
    );
    s.add_filter(r"(?s)<pre>.*?</pre>", "<pre>[TRACEBACK]</pre>");
    s.add_filter(
        r"(?s)<stackTrace>.*?</stackTrace>",
        "<stackTrace>[TRACEBACK]</stackTrace>",
    );
    s.add_filter(
        r"(?s)(<failure [^>]*>).*?</failure>",
        "$1[TRACEBACK]</failure>",
    );
    s.add_filter(
        r"(?s)(<rerunFailure [^>]*>).*?</rerunFailure>",
        "$1[TRACEBACK]</rerunFailure>",
    );
    s.add_filter(r"fingerprint [0-9a-f]{16}", "fingerprint [FP]");
    s.add_filter(r"[^\s(]*sr-e2e-[A-Za-z0-9_]+", "[PROJECT]");
    s.set_prepend_module_to_snapshot(false);
    s
}

/// smart-rerun's own lines of a run's output: the rounds it announces and its summary, not pytest's.
fn own_lines(stdout: &str) -> String {
    let mut out = Vec::new();
    let mut in_summary = false;
    let mut in_header = false;
    for line in stdout.lines() {
        in_summary |= line.contains("smart-rerun summary");
        // A round's header: "smart-rerun round N: ..." and its indented list of tests.
        in_header = line.starts_with("smart-rerun ") || (in_header && line.starts_with("  "));
        if in_summary || in_header {
            out.push(line);
        }
    }
    out.join("\n")
}

#[test]
fn a_run_with_every_outcome() {
    let p = Project::new();
    p.file("test_every.py", SUITE);
    let md = p.path().join("report.md");
    let junit = p.path().join("junit.xml");
    let out = p.run(
        &[
            "--max",
            "3",
            "--color",
            "never",
            "--markdown",
            md.to_str().unwrap(),
            "--junit-xml",
            junit.to_str().unwrap(),
        ],
        &["-q", "-p", "no:cacheprovider"],
    );
    out.assert_code(1);
    settings().bind(|| {
        insta::assert_snapshot!("run_every_outcome_terminal", own_lines(&out.stdout));
        insta::assert_snapshot!(
            "run_every_outcome_markdown",
            std::fs::read_to_string(&md).unwrap()
        );
        insta::assert_snapshot!(
            "run_every_outcome_junit",
            std::fs::read_to_string(&junit).unwrap()
        );
    });
}

#[test]
fn invalid_settings_are_one_usage_error() {
    let p = Project::new();
    p.file("test_every.py", SUITE)
        .file("pytest.ini", "[pytest]\nsmart_rerun_delay = soon\n");
    let mut cmd = p.command(&[
        "--max",
        "three",
        "--backoff",
        "fast",
        "--junit-compat",
        "xunit",
    ]);
    cmd.arg("--")
        .arg(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    let out = p.output(cmd);
    out.assert_code(4);
    assert_eq!(p.count("test_every.py::test_flaky"), 0, "a test ran");
    settings().bind(|| {
        insta::assert_snapshot!("invalid_settings_stderr", out.stderr.trim_end());
    });
}
