//! JUnit XML in the Surefire flaky schema, written with quick-junit. The main entry is [`to_junit`].
//!
//! - A test that passed after failing carries one `flakyFailure`/`flakyError` per failed attempt (type,
//!   message, stackTrace, captured output).
//! - A test that failed every attempt carries `failure`/`error` for the first attempt and
//!   `rerunFailure`/`rerunError` for each later one.
//! - `classname` and `name` are derived from the node id exactly as pytest's own junitxml does
//!   (`mangle_test_address`), so dashboards keyed on pytest's names keep their history; each testcase also
//!   has `file` and `line`.
//! - Consumers that ignore the flaky elements (GitLab shows such a test as plain passed) still see the
//!   flake: a `flaky` property and a line in `system-out` say it.
//!
//! [`JunitCompat::PerAttempt`] writes one testcase per attempt instead, for tools that count runs.

use super::{Attempt, Outcome, Phase, RunReport, TestResult};
use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};
use std::time::Duration;

/// How attempts are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum JunitCompat {
    /// One testcase per test, with Surefire's flaky and rerun elements.
    #[default]
    Surefire,
    /// One testcase per attempt: earlier attempts are named `name (attempt k)`.
    PerAttempt,
}

#[derive(Debug, Clone)]
pub struct JunitOptions {
    /// The testsuite's name; pytest's `junit_suite_name` (default `pytest`).
    pub suite_name: String,
    pub compat: JunitCompat,
}

impl Default for JunitOptions {
    fn default() -> Self {
        JunitOptions {
            suite_name: "pytest".into(),
            compat: JunitCompat::Surefire,
        }
    }
}

/// pytest's junitxml naming: the path becomes dotted without `.py`, the last `::` part is the name, the
/// rest the classname; parameters (`[...]`) stay on the name.
pub fn pytest_names(nodeid: &str) -> (String, String) {
    let (path, params) = match nodeid.find('[') {
        Some(at) => (&nodeid[..at], &nodeid[at..]),
        None => (nodeid, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    let first = names[0].replace('/', ".");
    names[0] = first
        .strip_suffix(".py")
        .map(str::to_owned)
        .unwrap_or(first);
    if let Some(last) = names.last_mut() {
        last.push_str(params);
    }
    let name = names.pop().unwrap_or_default();
    (names.join("."), name)
}

/// Writes the JUnit XML for `report` to `path` (atomically).
pub fn save(
    report: &RunReport,
    options: &JunitOptions,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let junit = to_junit(report, options);
    super::write_atomic(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        junit.serialize(&mut out).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut out)
    })
}

/// Builds the JUnit report.
pub fn to_junit(report: &RunReport, options: &JunitOptions) -> Report {
    let mut suite = TestSuite::new(options.suite_name.as_str());
    if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(&report.run.started_at) {
        suite.set_timestamp(ts);
    }
    suite.set_time(secs(report.run.duration_seconds));
    let s = &report.summary;
    suite.add_property(Property::new(
        "smart-rerun.version",
        report.tool.version.as_str(),
    ));
    suite.add_property(Property::new("smart-rerun.flaky", s.flaky.to_string()));
    suite.add_property(Property::new("smart-rerun.reruns", s.reruns.to_string()));

    for test in &report.tests {
        match options.compat {
            JunitCompat::Surefire => {
                suite.add_test_case(testcase(test));
            }
            JunitCompat::PerAttempt => {
                suite.add_test_cases(per_attempt(test));
            }
        }
    }
    for error in &report.collection_errors {
        let (_, name) = pytest_names(&error.nodeid);
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_message("collection failure")
            .set_description(error.traceback.as_str());
        let mut case = TestCase::new(name, status);
        case.set_classname("");
        suite.add_test_case(case);
    }
    let mut junit = Report::new(options.suite_name.as_str());
    junit.add_test_suite(suite);
    junit
}

fn testcase(test: &TestResult) -> TestCase {
    let (classname, name) = pytest_names(&test.nodeid);
    let status = match test.outcome {
        Outcome::Passed | Outcome::Xpassed => TestCaseStatus::success(),
        Outcome::Flaky => TestCaseStatus::Success {
            flaky_runs: test
                .attempts
                .iter()
                .filter(|a| a.outcome.is_failure())
                .map(rerun)
                .collect(),
        },
        Outcome::Failed | Outcome::Error => {
            let failures: Vec<&Attempt> = test
                .attempts
                .iter()
                .filter(|a| a.outcome.is_failure())
                .collect();
            let kind = if test.outcome == Outcome::Error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut status = TestCaseStatus::non_success(kind);
            match failures.split_first() {
                Some((first, later)) => {
                    status
                        .set_message(message(first))
                        .set_description(first.traceback.as_deref().unwrap_or(""));
                    if let Some(e) = &first.exception {
                        status.set_type(e.type_name.as_str());
                    }
                    status.add_reruns(later.iter().map(|a| rerun(a)));
                }
                None => {
                    status.set_message(test.stopped_because.as_deref().unwrap_or("failed"));
                }
            }
            status
        }
        Outcome::Skipped => skipped(test.reason.as_deref(), None),
        Outcome::Xfailed => skipped(
            test.reason
                .as_deref()
                .map(|r| format!("xfail: {r}"))
                .as_deref(),
            Some("pytest.xfail"),
        ),
        Outcome::NotRun => skipped(
            Some(&format!(
                "not run: {}",
                test.reason.as_deref().unwrap_or("the run ended first")
            )),
            Some("smart-rerun.not-run"),
        ),
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(classname);
    case.set_time(secs(test.duration_seconds));
    location(&mut case, test);
    if test.outcome == Outcome::Flaky {
        let failed = test
            .attempts
            .iter()
            .filter(|a| a.outcome.is_failure())
            .count();
        let passed_on = test.passed_on_attempt().unwrap_or(0);
        case.add_property(Property::new("flaky", "true"));
        case.add_property(Property::new("attempts", test.attempts.len().to_string()));
        let first = test.first_failure().map(message).unwrap_or_default();
        case.set_system_out(format!(
            "smart-rerun: FLAKY - failed {failed} time{} then passed on attempt {passed_on}. First failure: {first}",
            if failed == 1 { "" } else { "s" }
        ));
    } else if test.attempts.len() > 1 {
        case.add_property(Property::new("attempts", test.attempts.len().to_string()));
        let last = test.last_failure();
        if let Some(out) = last.and_then(|a| captured(a, "stdout")) {
            case.set_system_out(out);
        }
        if let Some(err) = last.and_then(|a| captured(a, "stderr")) {
            case.set_system_err(err);
        }
    } else if let Some(a) = test.attempts.first() {
        if let Some(out) = captured(a, "stdout") {
            case.set_system_out(out);
        }
        if let Some(err) = captured(a, "stderr") {
            case.set_system_err(err);
        }
    }
    case
}

fn per_attempt(test: &TestResult) -> Vec<TestCase> {
    if test.attempts.len() < 2 {
        return vec![testcase(test)];
    }
    let (classname, name) = pytest_names(&test.nodeid);
    let last = test.attempts.len();
    test.attempts
        .iter()
        .map(|a| {
            let status = if a.outcome.is_failure() {
                let mut status = TestCaseStatus::non_success(kind_of(a));
                status
                    .set_message(message(a))
                    .set_description(a.traceback.as_deref().unwrap_or(""));
                if let Some(e) = &a.exception {
                    status.set_type(e.type_name.as_str());
                }
                status
            } else {
                TestCaseStatus::success()
            };
            let label = if a.number as usize == last {
                name.clone()
            } else {
                format!("{name} (attempt {})", a.number)
            };
            let mut case = TestCase::new(label, status);
            case.set_classname(classname.as_str());
            case.set_time(secs(a.duration_seconds));
            case.add_property(Property::new("attempt", a.number.to_string()));
            location(&mut case, test);
            if let Some(out) = captured(a, "stdout") {
                case.set_system_out(out);
            }
            case
        })
        .collect()
}

fn location(case: &mut TestCase, test: &TestResult) {
    if let Some(file) = &test.file {
        case.extra.insert("file".into(), file.as_str().into());
    }
    if let Some(line) = test.line {
        case.extra.insert("line".into(), line.to_string().into());
    }
}

fn skipped(message: Option<&str>, ty: Option<&str>) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    if let Some(m) = message {
        status.set_message(m);
    }
    if let Some(t) = ty {
        status.set_type(t);
    }
    status
}

fn kind_of(a: &Attempt) -> NonSuccessKind {
    match a.phase {
        Some(Phase::Call) | None => NonSuccessKind::Failure,
        Some(Phase::Setup | Phase::Teardown | Phase::Crash) => NonSuccessKind::Error,
    }
}

fn rerun(a: &Attempt) -> TestRerun {
    let mut r = TestRerun::new(kind_of(a));
    r.set_message(message(a)).set_time(secs(a.duration_seconds));
    if let Some(e) = &a.exception {
        r.set_type(e.type_name.as_str());
    } else {
        r.set_type("smart-rerun.failure");
    }
    // Surefire requires a stackTrace on every flaky and rerun element.
    r.set_stack_trace(a.traceback.as_deref().unwrap_or(""));
    if let Some(out) = captured(a, "stdout") {
        r.set_system_out(out);
    }
    if let Some(err) = captured(a, "stderr") {
        r.set_system_err(err);
    }
    if let Some(ts) = a
        .finished_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        let start = ts - chrono::Duration::milliseconds((a.duration_seconds * 1000.0) as i64);
        r.set_timestamp(start);
    }
    r
}

/// `Type: first line of the message`, as pytest's junitxml puts in `message`.
fn message(a: &Attempt) -> String {
    match &a.exception {
        Some(e) => {
            let first = e.message.lines().next().unwrap_or("");
            let text = if first.is_empty() {
                e.short_type().to_owned()
            } else {
                format!("{}: {first}", e.short_type())
            };
            truncate(&text, 1000)
        }
        None => "failed".into(),
    }
}

/// The captured sections of one stream (`Captured stdout call`, ...), joined.
fn captured(a: &Attempt, stream: &str) -> Option<String> {
    let parts: Vec<String> = a
        .captured
        .iter()
        .filter(|s| s.name.contains(stream))
        .map(|s| format!("----- {} -----\n{}", s.name, s.text))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pytests_junitxml() {
        let rows = [
            ("tests/test_a.py::test_x", ("tests.test_a", "test_x")),
            (
                "tests/test_a.py::TestC::TestD::test_x",
                ("tests.test_a.TestC.TestD", "test_x"),
            ),
            (
                "test_a.py::test_p[a::b/c.py]",
                ("test_a", "test_p[a::b/c.py]"),
            ),
            ("pkg/mod.py::pkg.mod.func", ("pkg.mod", "pkg.mod.func")),
            ("docs/guide.txt::guide.txt", ("docs.guide.txt", "guide.txt")),
        ];
        for (nodeid, (classname, name)) in rows {
            assert_eq!(
                pytest_names(nodeid),
                (classname.to_owned(), name.to_owned()),
                "{nodeid}"
            );
        }
    }
}
