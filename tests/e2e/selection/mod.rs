//! Rerun rounds select exactly the failed items, whatever their ids look like and however pytest was
//! invoked. Each test checks three things a user would notice: the report's rounds, the
//! counters of the tests that passed (they ran once), and pytest's own output of the rerun round
//! (what it collected and deselected).

use crate::common::{self, Project, RunOutput};
use serde_json::Value;
use std::process::Command;

mod plugins;

/// The report's rounds.
fn rounds(out: &RunOutput) -> &Vec<Value> {
    out.report()["run"]["rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("no rounds; {}", out.dump()))
}

/// How many tests each round was asked to run.
fn selected_per_round(out: &RunOutput) -> Vec<u64> {
    rounds(out)
        .iter()
        .map(|r| r["selected"].as_u64().unwrap())
        .collect()
}

/// The rounds a test's recorded attempts ran in.
fn attempt_rounds(out: &RunOutput, nodeid: &str) -> Vec<u64> {
    out.test(nodeid)["attempts"]
        .as_array()
        .map(|a| a.iter().map(|a| a["round"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// pytest's own output of round `n` (1-based), as it streamed to stdout, without smart-rerun's own lines.
fn pytest_round(out: &RunOutput, n: usize) -> &str {
    let text = out
        .stdout
        .split("test session starts")
        .nth(n)
        .unwrap_or_else(|| panic!("pytest's output has no round {n}; {}", out.dump()));
    let end = ["smart-rerun round ", "smart-rerun summary"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

#[track_caller]
fn assert_has(haystack: &str, needle: &str, out: &RunOutput) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in\n{haystack}\n=== whole run\n{}",
        out.dump()
    );
}

/// Asserts that round `n` of pytest printed `collected` (its "collected N items / M deselected / K
/// selected" line) and a final line starting with `result` (e.g. "2 passed, 3 deselected"). A rerun
/// round builds only the functions and classes its tests live in; parametrised siblings, unittest
/// methods and doctests are built and then deselected.
#[track_caller]
fn assert_pytest_round(out: &RunOutput, n: usize, collected: &str, result: &str) {
    let text = pytest_round(out, n);
    assert_has(text, &format!("{collected}\n"), out);
    assert_has(text, &format!(" {result} in "), out);
}

#[test]
fn parametrised_ids_with_spaces_brackets_colons_and_non_ascii_rerun_exactly() {
    let p = Project::new();
    p.file(
        "test_ids.py",
        r#"
import pytest

@pytest.mark.parametrize("value", [
    "a b", "x[1]", "m::n", "grüße", "a", "plain",
    pytest.param("q", id="id with [brackets] and ::colons"),
])
def test_ids(value, attempt):
    if value not in ("a", "plain"):
        assert attempt >= 2, value
"#,
    );
    p.file("test_other.py", "def test_other(attempt):\n    pass\n");
    let out = p.run(&[], &[]);
    out.assert_code(0);
    let flaky = [
        "test_ids.py::test_ids[a b]",
        "test_ids.py::test_ids[x[1]]",
        "test_ids.py::test_ids[m::n]",
        // pytest escapes non-ASCII in ids.
        "test_ids.py::test_ids[gr\\xfc\\xdfe]",
        "test_ids.py::test_ids[id with [brackets] and ::colons]",
    ];
    let passing = [
        "test_ids.py::test_ids[a]",
        "test_ids.py::test_ids[plain]",
        "test_other.py::test_other",
    ];
    for id in flaky {
        assert_eq!(out.outcome(id), "flaky", "{id}");
        assert_eq!(attempt_rounds(&out, id), [1, 2], "{id}");
        assert_eq!(p.count(id), 2, "{id}");
    }
    for id in passing {
        assert_eq!(out.outcome(id), "passed", "{id}");
        assert_eq!(p.count(id), 1, "{id} ran again");
    }
    assert_eq!(selected_per_round(&out), [8, 5]);
    // Only test_ids.py is collected again; its two passing siblings are deselected.
    assert_pytest_round(
        &out,
        2,
        "collected 7 items / 2 deselected / 5 selected",
        "5 passed, 2 deselected",
    );
}

#[test]
fn unescaped_non_ascii_ids_rerun_exactly() {
    // With pytest's opt-out of id escaping, node ids carry real non-ASCII text through the selection.
    let p = Project::new();
    p.file(
        "pytest.ini",
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n",
    );
    p.file(
        "test_ids.py",
        r#"
import pytest

@pytest.mark.parametrize("value", ["grüße", "日本語 テスト", "ok"])
def test_ids(value, attempt):
    if value != "ok":
        assert attempt >= 2, value
"#,
    );
    let out = p.run(&[], &[]);
    out.assert_code(0);
    for id in [
        "test_ids.py::test_ids[grüße]",
        "test_ids.py::test_ids[日本語 テスト]",
    ] {
        assert_eq!(out.outcome(id), "flaky", "{id}");
        assert_eq!(p.count(id), 2, "{id}");
    }
    assert_eq!(out.outcome("test_ids.py::test_ids[ok]"), "passed");
    assert_eq!(p.count("test_ids.py::test_ids[ok]"), 1);
    assert_pytest_round(
        &out,
        2,
        "collected 3 items / 1 deselected / 2 selected",
        "2 passed, 1 deselected",
    );
}

#[test]
fn classes_and_nested_classes_rerun_exactly() {
    let p = Project::new();
    p.file(
        "test_classes.py",
        r#"
class TestOuter:
    def test_flaky(self, attempt):
        assert attempt >= 2

    def test_ok(self, attempt):
        pass

    class TestInner:
        def test_flaky(self, attempt):
            assert attempt >= 2

        def test_ok(self, attempt):
            pass

class TestOther:
    def test_flaky(self, attempt):
        pass

def test_flaky(attempt):
    pass
"#,
    );
    let out = p.run(&[], &[]);
    out.assert_code(0);
    for id in [
        "test_classes.py::TestOuter::test_flaky",
        "test_classes.py::TestOuter::TestInner::test_flaky",
    ] {
        assert_eq!(out.outcome(id), "flaky", "{id}");
        assert_eq!(p.count(id), 2, "{id}");
    }
    // Same names elsewhere: not selected.
    for id in [
        "test_classes.py::TestOuter::test_ok",
        "test_classes.py::TestOuter::TestInner::test_ok",
        "test_classes.py::TestOther::test_flaky",
        "test_classes.py::test_flaky",
    ] {
        assert_eq!(out.outcome(id), "passed", "{id}");
        assert_eq!(p.count(id), 1, "{id} ran again");
    }
    assert_eq!(selected_per_round(&out), [6, 2]);
    assert_pytest_round(&out, 2, "collected 2 items", "2 passed");
}

#[test]
fn unittest_testcase_methods_rerun_exactly() {
    let p = Project::new();
    p.file(
        "test_unit.py",
        r#"
import unittest
import sr_counter

class TestOne(unittest.TestCase):
    def test_flaky(self):
        self.assertGreaterEqual(sr_counter.bump("one.flaky"), 2)

    def test_ok(self):
        sr_counter.bump("one.ok")

class TestTwo(unittest.TestCase):
    def setUp(self):
        # A setUp that fails once is an error of this test, rerun like any other.
        if sr_counter.bump("two.setup") < 2:
            raise RuntimeError("setUp failed once")

    def test_flaky(self):
        sr_counter.bump("two.flaky")
"#,
    );
    let out = p.run(&[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_unit.py::TestOne::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_unit.py::TestTwo::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_unit.py::TestOne::test_ok"), "passed");
    assert_eq!(p.count("one.flaky"), 2);
    assert_eq!(p.count("one.ok"), 1, "a passing sibling ran again");
    assert_eq!(p.count("two.setup"), 2);
    assert_eq!(p.count("two.flaky"), 1);
    assert_eq!(selected_per_round(&out), [3, 2]);
    assert_pytest_round(
        &out,
        2,
        "collected 3 items / 1 deselected / 2 selected",
        "2 passed, 1 deselected",
    );
}

#[test]
fn doctest_items_rerun_exactly() {
    let p = Project::new();
    p.file(
        "mathlib.py",
        r#"
def double(x):
    """
    >>> import sr_counter
    >>> sr_counter.bump("doc.double") >= 2
    True
    >>> double(2)
    4
    """
    return 2 * x

def half(x):
    """
    >>> import sr_counter
    >>> sr_counter.bump("doc.half")
    1
    >>> half(4)
    2.0
    """
    return x / 2
"#,
    );
    p.file("test_plain.py", "def test_plain(attempt):\n    pass\n");
    // Text-file doctests too: one that fails once, one that passes.
    p.file(
        "docs/guide.txt",
        "Guide\n=====\n\n    >>> import sr_counter\n    >>> sr_counter.bump(\"doc.guide\") >= 2\n    True\n",
    );
    p.file(
        "docs/other.txt",
        "    >>> import sr_counter\n    >>> sr_counter.bump(\"doc.other\")\n    1\n",
    );
    let out = p.run(&[], &["--doctest-modules", "--doctest-glob=*.txt"]);
    out.assert_code(0);
    assert_eq!(out.outcome("mathlib.py::mathlib.double"), "flaky");
    assert_eq!(attempt_rounds(&out, "mathlib.py::mathlib.double"), [1, 2]);
    assert_eq!(out.outcome("mathlib.py::mathlib.half"), "passed");
    assert_eq!(out.outcome("test_plain.py::test_plain"), "passed");
    assert_eq!(p.count("doc.double"), 2);
    assert_eq!(p.count("doc.half"), 1, "the passing doctest ran again");
    assert_eq!(p.count("test_plain.py::test_plain"), 1);
    assert_eq!(out.outcome("docs/guide.txt::guide.txt"), "flaky");
    assert_eq!(out.outcome("docs/other.txt::other.txt"), "passed");
    assert_eq!(p.count("doc.guide"), 2);
    assert_eq!(
        p.count("doc.other"),
        1,
        "the passing text doctest ran again"
    );
    assert_eq!(selected_per_round(&out), [5, 2]);
    // Round 2 collects mathlib.py (two doctests) and docs/guide.txt only.
    assert_pytest_round(
        &out,
        2,
        "collected 3 items / 1 deselected / 2 selected",
        "2 passed, 1 deselected",
    );
}

/// `smart-rerun run -- python -m pytest PYTEST...` from `cwd` (below the project root).
fn run_in(p: &Project, cwd: &str, pytest: &[&str]) -> RunOutput {
    let mut cmd: Command = p.command(&[]);
    cmd.current_dir(p.path().join(cwd))
        .arg("--")
        .arg(common::python())
        .args(["-m", "pytest"])
        .args(pytest);
    p.output(cmd)
}

const FLAKY_AND_OK: &str = r#"
def test_flaky(attempt):
    assert attempt >= 2

def test_ok(attempt):
    pass
"#;

#[test]
fn runs_from_a_subdirectory_rerun_exactly() {
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\n");
    p.file("tests/unit/test_a.py", FLAKY_AND_OK);
    p.file("tests/unit/test_b.py", "def test_b(attempt):\n    pass\n");
    // Outside the directory pytest runs in: never collected, never run.
    p.file(
        "tests/other/test_c.py",
        "def test_c(attempt):\n    assert False\n",
    );
    let out = run_in(&p, "tests/unit", &[]);
    out.assert_code(0);
    // Node ids stay relative to the rootdir, above the working directory.
    let rootdir = out.report()["run"]["rootdir"].as_str().unwrap();
    assert_eq!(
        std::path::Path::new(rootdir).canonicalize().unwrap(),
        p.path().canonicalize().unwrap()
    );
    let mut ids = out.nodeids();
    ids.sort();
    assert_eq!(
        ids,
        [
            "tests/unit/test_a.py::test_flaky",
            "tests/unit/test_a.py::test_ok",
            "tests/unit/test_b.py::test_b",
        ]
    );
    assert_eq!(out.outcome("tests/unit/test_a.py::test_flaky"), "flaky");
    assert_eq!(p.count("tests/unit/test_a.py::test_flaky"), 2);
    assert_eq!(p.count("tests/unit/test_a.py::test_ok"), 1);
    assert_eq!(p.count("tests/unit/test_b.py::test_b"), 1);
    assert_eq!(p.count("tests/other/test_c.py::test_c"), 0);
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");

    // A relative path argument, from a subdirectory.
    let _ = std::fs::remove_dir_all(p.counters());
    let out = run_in(&p, "tests", &["unit/test_a.py"]);
    out.assert_code(0);
    assert_eq!(out.outcome("tests/unit/test_a.py::test_flaky"), "flaky");
    assert_eq!(p.count("tests/unit/test_a.py::test_ok"), 1);
    assert_eq!(selected_per_round(&out), [2, 1]);
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");
}

#[test]
fn a_config_file_given_with_c_reruns_exactly() {
    // `-c ci/pytest.ini` makes ci/ the rootdir, so the tests lie outside it and pytest names them
    // relative to the directory it was asked to collect: the rerun round must keep those names.
    let p = Project::new();
    p.file(
        "ci/pytest.ini",
        "[pytest]\npython_files = check_*.py\npython_functions = check_*\n",
    );
    p.file(
        "checks/conftest.py",
        "import pytest, sr_counter\n\n@pytest.fixture\ndef attempt(request):\n    return sr_counter.bump(request.node.nodeid)\n",
    );
    p.file(
        "checks/check_a.py",
        "def check_flaky(attempt):\n    assert attempt >= 2\n\ndef check_ok(attempt):\n    pass\n",
    );
    p.file("checks/check_b.py", "def check_b(attempt):\n    pass\n");
    // Would fail if the ini's python_files were lost in a rerun round.
    p.file(
        "checks/test_not_a_check.py",
        "def test_x():\n    assert False\n",
    );
    let out = p.run(&[], &["-c", "ci/pytest.ini"]);
    out.assert_code(0);
    let mut ids = out.nodeids();
    ids.sort();
    assert_eq!(
        ids,
        [
            "checks/check_a.py::check_flaky",
            "checks/check_a.py::check_ok",
            "checks/check_b.py::check_b",
        ],
        "{}",
        out.dump()
    );
    assert_eq!(out.outcome("checks/check_a.py::check_flaky"), "flaky");
    assert_eq!(
        attempt_rounds(&out, "checks/check_a.py::check_flaky"),
        [1, 2]
    );
    assert_eq!(p.count("checks/check_a.py::check_flaky"), 2);
    assert_eq!(p.count("checks/check_a.py::check_ok"), 1);
    assert_eq!(p.count("checks/check_b.py::check_b"), 1);
    let round2 = pytest_round(&out, 2);
    assert_has(round2, "1 passed", &out);
    assert!(!round2.contains("failed"), "{}", out.dump());

    // A config file with another name in the project root: the rootdir holds the tests and the
    // rerun round collects only their file, still with the config's python_functions.
    let _ = std::fs::remove_dir_all(p.counters());
    p.file(
        "ci-pytest.ini",
        "[pytest]\npython_files = check_*.py\npython_functions = check_*\n",
    );
    let out = p.run(&[], &["-c", "ci-pytest.ini"]);
    out.assert_code(0);
    assert_eq!(out.summary("total"), 3, "{}", out.dump());
    assert_eq!(
        out.outcome("checks/check_a.py::check_flaky"),
        "flaky",
        "{}",
        out.dump()
    );
    assert_eq!(p.count("checks/check_a.py::check_flaky"), 2);
    assert_eq!(p.count("checks/check_a.py::check_ok"), 1);
    assert_eq!(p.count("checks/check_b.py::check_b"), 1);
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");
}

#[test]
fn an_explicit_rootdir_reruns_exactly() {
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\n");
    p.file("tests/test_a.py", FLAKY_AND_OK);
    p.file("tests/test_b.py", "def test_b(attempt):\n    pass\n");
    let out = p.run(&[], &["--rootdir", "tests", "tests"]);
    out.assert_code(0);
    // Node ids relative to the rootdir given.
    assert_eq!(out.outcome("test_a.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_a.py::test_ok"), "passed");
    assert_eq!(out.outcome("test_b.py::test_b"), "passed");
    assert_eq!(p.count("test_a.py::test_flaky"), 2);
    assert_eq!(p.count("test_a.py::test_ok"), 1);
    assert_eq!(p.count("test_b.py::test_b"), 1);
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");

    // A rootdir that does not hold the tests: pytest names them relative to the path it collects.
    let _ = std::fs::remove_dir_all(p.counters());
    std::fs::create_dir_all(p.path().join("elsewhere")).unwrap();
    let out = p.run(&[], &["--rootdir", "elsewhere", "tests"]);
    out.assert_code(0);
    let flaky = out
        .nodeids()
        .into_iter()
        .find(|id| id.ends_with("test_a.py::test_flaky"))
        .unwrap_or_else(|| panic!("{}", out.dump()));
    assert_eq!(out.outcome(&flaky), "flaky", "{}", out.dump());
    assert_eq!(attempt_rounds(&out, &flaky), [1, 2]);
    assert_eq!(p.count(&flaky), 2);
    assert_eq!(out.summary("passed"), 2);
    let round2 = pytest_round(&out, 2);
    assert_has(round2, "1 passed", &out);
}

#[test]
fn k_and_m_filters_hold_in_rerun_rounds() {
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\nmarkers =\n    slow: slow tests\n");
    p.file(
        "test_filters.py",
        r#"
import pytest

def test_fast_flaky(attempt):
    assert attempt >= 2

def test_fast_ok(attempt):
    pass

def test_other_fails(attempt):
    assert False, "deselected by -k: must never run"

@pytest.mark.slow
def test_fast_but_slow(attempt):
    assert False, "deselected by -m: must never run"
"#,
    );
    let out = p.run(&[], &["-k", "fast", "-m", "not slow"]);
    out.assert_code(0);
    let mut ids = out.nodeids();
    ids.sort();
    assert_eq!(
        ids,
        [
            "test_filters.py::test_fast_flaky",
            "test_filters.py::test_fast_ok"
        ],
        "tests the user's filters deselect are not reported as run"
    );
    assert_eq!(out.summary("total"), 2);
    assert_eq!(out.outcome("test_filters.py::test_fast_flaky"), "flaky");
    assert_eq!(p.count("test_filters.py::test_fast_flaky"), 2);
    assert_eq!(p.count("test_filters.py::test_fast_ok"), 1);
    assert_eq!(p.count("test_filters.py::test_other_fails"), 0);
    assert_eq!(p.count("test_filters.py::test_fast_but_slow"), 0);
    assert_eq!(selected_per_round(&out), [2, 1]);
    assert_pytest_round(
        &out,
        1,
        "collected 4 items / 2 deselected / 2 selected",
        "1 failed, 1 passed, 2 deselected",
    );
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");
}

#[test]
fn strict_markers_and_strict_config_accept_smart_rerun_markers_and_ini_keys() {
    let p = Project::new();
    p.file(
        "pytest.ini",
        "[pytest]\naddopts = --strict-markers --strict-config\nsmart_rerun_max = 2\nsmart_rerun_delay = 0\n",
    );
    p.file(
        "test_marked.py",
        r#"
import pytest

@pytest.mark.smart_rerun(max=2)
def test_marked_flaky(attempt):
    assert attempt >= 2

def test_ok(attempt):
    pass
"#,
    );
    let out = p.run(&[], &[]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_marked.py::test_marked_flaky"), "flaky");
    assert_eq!(p.count("test_marked.py::test_marked_flaky"), 2);
    assert_eq!(p.count("test_marked.py::test_ok"), 1);
    for n in [1, 2] {
        let text = pytest_round(&out, n);
        assert!(
            !text.contains("PytestUnknownMarkWarning")
                && !text.contains("not found in `markers`")
                && !text.contains("Unknown config option"),
            "round {n}: {}",
            out.dump()
        );
    }
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");

    // The same project without the collector: pytest itself rejects both, so the test above means
    // something.
    let plain = Command::new(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .current_dir(p.path())
        .env("COUNTER_DIR", p.counters())
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&plain.stderr).into_owned()
        + &String::from_utf8_lossy(&plain.stdout);
    assert_ne!(plain.status.code(), Some(0), "{said}");
    assert!(
        said.contains("Unknown config option: smart_rerun_"),
        "{said}"
    );
}
