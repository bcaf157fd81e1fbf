//! Rerun rounds select exactly the failed items, whatever their ids look like and however pytest was
//! invoked. Each test checks three things a user would notice: the report's rounds, the
//! counters of the tests that passed (they ran once), and pytest's own output of the rerun round
//! (what it collected and deselected).

use crate::common::{self, Project, RunOutput};
use serde_json::Value;
use std::process::Command;

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
    // A fresh round's collection is what this checks (a warm round, forked, collects nothing).
    let out = p.run(&["--fork", "false"], &[]);
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
    // A fresh round's collection is what this checks (a warm round, forked, collects nothing).
    let out = p.run(&["--fork", "false"], &[]);
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
    // A fresh round's collection is what this checks (a warm round, forked, collects nothing).
    let out = p.run(&["--fork", "false"], &[]);
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
    // A fresh round's collection is what this checks (a warm round, forked, collects nothing).
    let out = p.run(
        &["--fork", "false"],
        &["--doctest-modules", "--doctest-glob=*.txt"],
    );
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

#[test]
fn xdist_first_round_runs_on_workers_and_a_small_rerun_round_without() {
    let p = Project::new();
    p.file(
        "test_par.py",
        r#"
import pytest

@pytest.mark.parametrize("n", range(6))
def test_ok(n, attempt):
    pass

def test_flaky(attempt):
    assert attempt >= 2

def test_broken(attempt):
    assert False, "always"
"#,
    );
    let out = p.run(&[], &["-n", "2"]);
    out.assert_code(1);
    // Every collected test is in the report.
    assert_eq!(out.summary("total"), 8, "{}", out.dump());
    assert_eq!(out.summary("passed"), 6);
    assert_eq!(out.outcome("test_par.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_par.py::test_broken"), "failed");
    for n in 0..6 {
        assert_eq!(p.count(&format!("test_par.py::test_ok[{n}]")), 1);
    }
    assert_eq!(p.count("test_par.py::test_flaky"), 2);
    assert_eq!(p.count("test_par.py::test_broken"), 2);
    assert_eq!(selected_per_round(&out), [8, 2]);
    for id in ["test_par.py::test_flaky", "test_par.py::test_broken"] {
        let attempts = out.test(id)["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{id}");
        let first = attempts[0]["worker"].as_str().unwrap_or_default();
        assert!(
            first == "gw0" || first == "gw1",
            "{id}: the first attempt ran on a worker, not {first:?}; {}",
            out.dump()
        );
        // The rerun round of two quick tests ran in the controller itself.
        assert_eq!(attempts[1]["worker"], Value::Null, "{id}; {}", out.dump());
    }
    // xdist marks each failure with the worker that ran it ("[gw0] linux -- Python ...").
    assert_has(pytest_round(&out, 1), "[gw", &out);
    let round2 = pytest_round(&out, 2);
    assert!(
        !round2.contains("[gw") && !round2.contains("gw0") && !round2.contains("workers"),
        "{}",
        out.dump()
    );
    assert_pytest_round(&out, 2, "collected 2 items", "1 failed, 1 passed");
}

#[test]
fn xdist_keeps_its_workers_for_a_long_rerun_round_and_they_run_only_the_selection() {
    // Reruns expected to take 10 s or more keep xdist. The workers learn the round's files from the
    // controller (xdist's workerinput), not from the environment, and build only the selected tests.
    let p = Project::new();
    p.file(
        "test_long.py",
        r#"
import time
import pytest

@pytest.mark.parametrize("n", range(4))
def test_ok(n, attempt):
    pass

@pytest.mark.parametrize("n", range(2))
def test_slow_once(n, attempt):
    if attempt == 1:
        time.sleep(5.5)
        assert False, "slow and failed"
"#,
    );
    let out = p.run(&[], &["-n", "2"]);
    out.assert_code(0);
    assert_eq!(selected_per_round(&out), [6, 2], "{}", out.dump());
    for n in 0..4 {
        assert_eq!(p.count(&format!("test_long.py::test_ok[{n}]")), 1);
    }
    for n in 0..2 {
        let id = format!("test_long.py::test_slow_once[{n}]");
        assert_eq!(out.outcome(&id), "flaky");
        assert_eq!(p.count(&id), 2);
        let rerun = out.test(&id)["attempts"][1]["worker"]
            .as_str()
            .unwrap_or_default();
        assert!(
            rerun == "gw0" || rerun == "gw1",
            "{id}: round 2 ran on a worker, not {rerun:?}; {}",
            out.dump()
        );
    }
}

const SETUP_TEARDOWN: &str = r#"
import pytest

@pytest.fixture
def setup_fails_once(attempt):
    if attempt < 2:
        raise RuntimeError("setup failed once")

@pytest.fixture
def setup_always_fails():
    raise RuntimeError("setup is broken")

@pytest.fixture
def teardown_fails_once(attempt):
    yield
    if attempt < 2:
        raise RuntimeError("teardown failed once")

@pytest.fixture
def teardown_always_fails():
    yield
    raise RuntimeError("teardown is broken")

def test_setup_flaky(setup_fails_once):
    pass

def test_setup_broken(setup_always_fails):
    pass

def test_teardown_flaky(teardown_fails_once):
    pass

def test_teardown_broken(teardown_always_fails):
    pass

def test_ok(attempt):
    pass
"#;

#[test]
fn setup_and_teardown_errors_are_failures_and_rerun() {
    let p = Project::new();
    p.file("test_fixtures.py", SETUP_TEARDOWN);
    let out = p.run(&[], &[]);
    out.assert_code(1);
    assert_eq!(out.outcome("test_fixtures.py::test_setup_flaky"), "flaky");
    assert_eq!(
        out.outcome("test_fixtures.py::test_teardown_flaky"),
        "flaky"
    );
    assert_eq!(out.outcome("test_fixtures.py::test_setup_broken"), "error");
    assert_eq!(
        out.outcome("test_fixtures.py::test_teardown_broken"),
        "error"
    );
    assert_eq!(out.outcome("test_fixtures.py::test_ok"), "passed");
    assert_eq!(p.count("test_fixtures.py::test_ok"), 1);
    assert_eq!(p.count("test_fixtures.py::test_setup_flaky"), 2);
    assert_eq!(p.count("test_fixtures.py::test_teardown_flaky"), 2);
    for (id, phase) in [
        ("test_fixtures.py::test_setup_flaky", "setup"),
        ("test_fixtures.py::test_teardown_flaky", "teardown"),
    ] {
        let attempts = out.test(id)["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{id}");
        assert_eq!(attempts[0]["outcome"], "error", "{id}");
        assert_eq!(attempts[0]["phase"], phase, "{id}");
        assert_eq!(attempts[0]["exception"]["type"], "builtins.RuntimeError");
        assert_eq!(attempts[1]["outcome"], "passed", "{id}");
    }
    for (id, phase) in [
        ("test_fixtures.py::test_setup_broken", "setup"),
        ("test_fixtures.py::test_teardown_broken", "teardown"),
    ] {
        assert_eq!(attempt_rounds(&out, id), [1, 2], "{id}");
        for a in out.test(id)["attempts"].as_array().unwrap() {
            assert_eq!(a["outcome"], "error", "{id}");
            assert_eq!(a["phase"], phase, "{id}");
        }
    }
    assert_eq!(out.summary("errors"), 2);
    assert_eq!(out.summary("flaky"), 2);
    assert_eq!(selected_per_round(&out), [5, 4]);
    assert_pytest_round(
        &out,
        2,
        "collected 4 items",
        // pytest counts a test whose call passed and whose teardown failed as passed and an error.
        "3 passed, 2 errors",
    );
}

const BROKEN_MODULE: &str = "import no_such_module_anywhere\n\ndef test_never():\n    pass\n";

#[test]
fn collection_errors_are_reported_not_rerun_and_stop_the_run_like_pytest() {
    let p = Project::new();
    p.file("test_broken.py", BROKEN_MODULE);
    p.file("test_good.py", FLAKY_AND_OK);
    let out = p.run(&[], &[]);
    // pytest stops after collection errors and exits 2.
    out.assert_code(2);
    let errors = out.report()["collection_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", out.dump());
    assert_eq!(errors[0]["nodeid"], "test_broken.py");
    assert!(
        errors[0]["traceback"]
            .as_str()
            .unwrap()
            .contains("no_such_module_anywhere")
    );
    assert_eq!(out.summary("collection_errors"), 1);
    assert_eq!(rounds(&out).len(), 1, "nothing is rerun; {}", out.dump());
    assert_eq!(p.count("test_good.py::test_flaky"), 0);
    assert_eq!(p.count("test_good.py::test_ok"), 0);
    // The tests pytest collected but never ran are still in the report.
    assert_eq!(out.outcome("test_good.py::test_flaky"), "not-run");
    assert_eq!(out.outcome("test_good.py::test_ok"), "not-run");
    assert_eq!(out.summary("total"), 2);
    assert!(!out.nodeids().iter().any(|id| id.contains("test_never")));
}

#[test]
fn with_continue_on_collection_errors_the_other_tests_run_and_rerun() {
    let p = Project::new();
    p.file("test_broken.py", BROKEN_MODULE);
    p.file("test_good.py", FLAKY_AND_OK);
    let out = p.run(&[], &["--continue-on-collection-errors"]);
    out.assert_code(1);
    assert_eq!(out.summary("collection_errors"), 1);
    assert_eq!(
        out.report()["collection_errors"][0]["nodeid"],
        "test_broken.py"
    );
    assert_eq!(out.outcome("test_good.py::test_flaky"), "flaky");
    assert_eq!(out.outcome("test_good.py::test_ok"), "passed");
    assert_eq!(p.count("test_good.py::test_flaky"), 2);
    assert_eq!(p.count("test_good.py::test_ok"), 1);
    assert_eq!(selected_per_round(&out), [2, 1]);
    // The broken module is not collected again.
    let round2 = pytest_round(&out, 2);
    assert!(
        !round2.contains("test_broken.py") && !round2.contains("no_such_module_anywhere"),
        "{}",
        out.dump()
    );
    assert_pytest_round(&out, 2, "collected 1 item", "1 passed");
}

#[test]
fn coverage_data_keeps_the_first_round_and_adds_the_rerun() {
    let p = Project::new();
    p.file("pkg/__init__.py", "");
    p.file(
        "pkg/lib.py",
        r#"def first_round_only():
    return "first"


def rerun_only():
    return "rerun"
"#,
    );
    p.file(
        "tests/test_cov.py",
        r#"
from pkg import lib

def test_first_round_only(attempt):
    assert lib.first_round_only() == "first"

def test_flaky(attempt):
    assert attempt >= 2
    assert lib.rerun_only() == "rerun"
"#,
    );
    let out = p.run(&[], &["--cov=pkg", "--cov-report="]);
    out.assert_code(0);
    assert_eq!(out.outcome("tests/test_cov.py::test_flaky"), "flaky");
    assert_eq!(p.count("tests/test_cov.py::test_first_round_only"), 1);
    let json = p.path().join("cov.json");
    let cov = Command::new(common::python())
        .args(["-m", "coverage", "json", "-o"])
        .arg(&json)
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(cov.status.success(), "{cov:?}");
    let data: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let file = &data["files"]["pkg/lib.py"];
    let executed: Vec<u64> = file["executed_lines"]
        .as_array()
        .unwrap_or_else(|| panic!("pkg/lib.py not in coverage: {data}"))
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    assert!(
        executed.contains(&2),
        "line 2 ran only in round 1; executed {executed:?}"
    );
    assert!(
        executed.contains(&6),
        "line 6 ran only in round 2; executed {executed:?}"
    );
    assert_eq!(file["missing_lines"], serde_json::json!([]));
}

#[test]
fn a_users_junitxml_is_not_overwritten_by_a_rerun_round() {
    let p = Project::new();
    p.file("test_a.py", FLAKY_AND_OK);
    let out = p.run(&[], &["--junitxml=out.xml"]);
    out.assert_code(0);
    assert_eq!(out.outcome("test_a.py::test_flaky"), "flaky");
    let xml = std::fs::read_to_string(p.path().join("out.xml"))
        .unwrap_or_else(|e| panic!("out.xml: {e}; {}", out.dump()));
    // test_ok ran only in the first round: a rerun round that rewrote the file would drop it.
    assert!(xml.contains(r#"name="test_ok""#), "{xml}");
    assert!(xml.contains(r#"name="test_flaky""#), "{xml}");
}

/// Runs `cmd` (output to files in the project), killing it if it outlives `limit`; a hang is a failure,
/// not a stuck test suite.
#[cfg(unix)]
fn run_with_deadline(p: &Project, mut cmd: Command, limit: std::time::Duration) -> RunOutput {
    use std::time::Instant;
    let stdout = p.path().join("smart-rerun.stdout");
    let stderr = p.path().join("smart-rerun.stderr");
    cmd.stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = cmd.spawn().expect("smart-rerun runs");
    let started = Instant::now();
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit && !hung {
            // SIGTERM: smart-rerun passes it on to pytest and exits.
            hung = true;
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        if started.elapsed() > limit * 2 {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = RunOutput {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        report: None,
    };
    assert!(!hung, "smart-rerun hung for {limit:?}; {}", out.dump());
    out
}

#[cfg(unix)]
#[test]
fn xdist_stops_before_any_test_on_an_invalid_setting() {
    // The verdict on the settings comes once gw0 has collected. A worker that stops does not end an
    // xdist run (the controller waited for it forever): the controller itself must wait and stop.
    let p = Project::new();
    p.file("pytest.ini", "[pytest]\nsmart_rerun_max = abc\n");
    p.file("test_a.py", FLAKY_AND_OK);
    let mut cmd = p.command(&[]);
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-n", "2"]);
    let out = run_with_deadline(&p, cmd, std::time::Duration::from_secs(40));
    out.assert_code(4);
    assert_has(
        &format!("{}{}", out.stdout, out.stderr),
        "smart_rerun_max = 'abc'",
        &out,
    );
    assert_eq!(p.count("test_a.py::test_flaky"), 0, "no test may run");
    assert_eq!(p.count("test_a.py::test_ok"), 0, "no test may run");
}
