//! The first round's deferred rendering: a failure that a rerun replaces is drawn briefly (no locals),
//! one that stays failed exactly as plain pytest draws it, in the terminal, the JSON report and the
//! JUnit file; under xdist too; and in full when the binary does not answer.

use crate::common::{Project, RunOutput, python};
use std::process::Command;

const TESTS: &str = r#"
def helper(value):
    flaky_local = "FLAKY_LOCAL_%d" % value
    raise ConnectionError("connection reset by peer")

def test_flaky(attempt):
    if attempt == 1:
        helper(attempt)

def test_broken():
    broken_local = "BROKEN_LOCAL_VALUE"
    assert broken_local == "something else"
"#;

/// `--showlocals` shows this line for test_broken (its source has the value in double quotes).
const BROKEN_LOCALS: &str = "broken_local = 'BROKEN_LOCAL_VALUE'";
/// ... and this one for test_flaky's first failure, when drawn in full.
const FLAKY_LOCALS: &str = "flaky_local = 'FLAKY_LOCAL_1'";

/// ConnectionError is rerun; test_broken's AssertionError is outside the list, so it is not.
const ARGS: &[&str] = &["--max", "3", "--errors", "ConnectionError"];

fn project() -> Project {
    let p = Project::new();
    p.file("test_render.py", TESTS);
    p
}

/// What the first round printed: everything before the second round's announcement.
fn first_round(out: &RunOutput) -> &str {
    let end = out
        .stdout
        .find("smart-rerun round 2")
        .unwrap_or_else(|| panic!("no second round\n{}", out.dump()));
    &out.stdout[..end]
}

/// The FAILURES block of one test: from its `____ name ____` header to the next header or `====` line
/// (a `_ _ _` line between two frames is part of the block).
fn failure_block<'a>(text: &'a str, name: &str) -> &'a str {
    let header = format!(" {name} _");
    let start = text
        .find(&header)
        .unwrap_or_else(|| panic!("no FAILURES entry for {name} in\n{text}"));
    let start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let body = text[start..]
        .find('\n')
        .map_or(text.len(), |i| start + i + 1);
    let end = text[body..]
        .find("\n__")
        .into_iter()
        .chain(text[body..].find("\n="))
        .min()
        .map_or(text.len(), |i| body + i + 1);
    &text[start..end]
}

fn traceback<'a>(out: &'a RunOutput, nodeid: &str, attempt: usize) -> &'a str {
    out.test(nodeid)["attempts"][attempt]["traceback"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceback\n{}", out.dump()))
}

/// Asserts that `text`, from the run `out`, holds `needle` (or, with `holds` false, does not), showing
/// the whole run when it is not so.
fn assert_holds(out: &RunOutput, text: &str, needle: &str, holds: bool) {
    let state = if holds { "missing" } else { "present" };
    assert_eq!(
        text.contains(needle),
        holds,
        "{needle:?} {state}\n{}",
        out.dump()
    );
}

#[test]
fn a_failure_a_rerun_replaces_is_drawn_briefly_and_one_that_stays_failed_as_pytest_draws_it() {
    let p = project();
    let out = p.run(
        ARGS,
        &[
            "--showlocals",
            "-ra",
            "-p",
            "no:cacheprovider",
            "--junitxml=junit.xml",
        ],
    );
    out.assert_code(1);
    assert_eq!(out.outcome("test_render.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_render.py::test_broken"), "failed");
    let round1 = first_round(&out);

    // The flaky test's first failure: type, message and crash site, without the locals.
    assert_holds(&out, round1, FLAKY_LOCALS, false);
    let flaky = failure_block(round1, "test_flaky");
    assert!(
        flaky.contains("ConnectionError: connection reset by peer"),
        "{flaky}"
    );
    assert!(flaky.contains("test_render.py:4: in helper"), "{flaky}");
    let first = &out.test("test_render.py::test_flaky")["attempts"][0];
    assert_eq!(first["exception"]["type"], "builtins.ConnectionError");
    assert_eq!(first["exception"]["message"], "connection reset by peer");
    assert_eq!(first["crash"]["file"], "test_render.py");
    assert_eq!(first["crash"]["line"], 4);
    let brief = traceback(&out, "test_render.py::test_flaky", 0);
    assert!(
        brief.contains("ConnectionError: connection reset by peer")
            && !brief.contains(FLAKY_LOCALS),
        "{brief}"
    );

    // The test that stays failed: the same block plain pytest prints, locals included.
    let plain = Command::new(python())
        .current_dir(p.path())
        .args([
            "-m",
            "pytest",
            "--showlocals",
            "-ra",
            "-p",
            "no:cacheprovider",
        ])
        .arg("test_render.py::test_broken")
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1")
        .env_remove("PYTEST_ADDOPTS")
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout);
    let expected = failure_block(&plain, "test_broken");
    assert!(expected.contains(BROKEN_LOCALS), "{plain}");
    assert_eq!(failure_block(round1, "test_broken"), expected);
    assert_holds(
        &out,
        round1,
        "FAILED test_render.py::test_broken - AssertionError: assert",
        true,
    );
    let full = traceback(&out, "test_render.py::test_broken", 0);
    assert!(full.contains(BROKEN_LOCALS), "{full}");

    // The JUnit file smart-rerun writes in the user's place carries the full text too.
    let junit = std::fs::read_to_string(p.path().join("junit.xml")).unwrap();
    let junit = junit
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"");
    assert!(junit.contains(BROKEN_LOCALS), "{junit}");
}

#[test]
fn under_xdist_each_worker_asks_and_the_controller_prints_the_full_text() {
    let p = project();
    let out = p.run(
        ARGS,
        &["--showlocals", "-ra", "-p", "no:cacheprovider", "-n", "2"],
    );
    out.assert_code(1);
    assert_eq!(out.outcome("test_render.py::test_flaky"), "flaky");
    let round1 = first_round(&out);
    assert_holds(&out, round1, FLAKY_LOCALS, false);
    assert_holds(
        &out,
        failure_block(round1, "test_flaky"),
        "ConnectionError: connection reset by peer",
        true,
    );
    assert_holds(
        &out,
        failure_block(round1, "test_broken"),
        BROKEN_LOCALS,
        true,
    );
    assert_holds(
        &out,
        traceback(&out, "test_render.py::test_broken", 0),
        BROKEN_LOCALS,
        true,
    );
    assert_holds(
        &out,
        traceback(&out, "test_render.py::test_flaky", 0),
        FLAKY_LOCALS,
        false,
    );
}

#[test]
fn without_an_answer_from_the_binary_every_failure_is_drawn_in_full() {
    let p = project();
    // The collector's answer file is one nobody writes, and its wait short: as if the binary hung.
    p.file(
        "conftest.py",
        &format!(
            "{}\n{}",
            std::fs::read_to_string(p.path().join("conftest.py")).unwrap(),
            r#"
import _smart_rerun_render as render

_decide = render.Render._decide

def _unanswered(self):
    plan = _decide(self)
    return plan and {"answer": plan["answer"] + ".nobody-writes-this", "wait": 0.3}

render.Render._decide = _unanswered
"#
        ),
    );
    let out = p.run(ARGS, &["--showlocals", "-ra", "-p", "no:cacheprovider"]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_render.py::test_flaky"), "flaky");
    let round1 = first_round(&out);
    assert_holds(
        &out,
        failure_block(round1, "test_flaky"),
        FLAKY_LOCALS,
        true,
    );
    assert_holds(
        &out,
        failure_block(round1, "test_broken"),
        BROKEN_LOCALS,
        true,
    );
    assert_holds(
        &out,
        traceback(&out, "test_render.py::test_flaky", 0),
        FLAKY_LOCALS,
        true,
    );
}

#[test]
fn with_no_rerun_possible_nothing_is_deferred() {
    let p = project();
    let out = p.run(&["--max", "1"], &["--showlocals", "-p", "no:cacheprovider"]);
    out.assert_code(1);
    assert_holds(&out, &out.stdout, FLAKY_LOCALS, true);
    assert_holds(
        &out,
        traceback(&out, "test_render.py::test_flaky", 0),
        FLAKY_LOCALS,
        true,
    );
}

#[test]
fn a_failure_still_shows_what_its_teardown_printed() {
    let p = Project::new();
    p.file(
        "test_teardown.py",
        r#"
import pytest

@pytest.fixture
def noisy():
    yield
    print("TEARDOWN_OUTPUT_OF_THE_BROKEN_TEST")

def test_passes(noisy):
    pass

def test_broken(noisy):
    assert False, "broken"
"#,
    );
    let out = p.run(ARGS, &["--showlocals", "-p", "no:cacheprovider"]);
    out.assert_code(1);
    let block = failure_block(&out.stdout, "test_broken");
    assert!(
        block.contains("Captured stdout teardown")
            && block.contains("TEARDOWN_OUTPUT_OF_THE_BROKEN_TEST"),
        "{}",
        out.dump()
    );
}
