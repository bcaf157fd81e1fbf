//! The testcases of the document, one test at a time, in the layout [`JunitCompat`] asks for.

use super::elements::{
    FALLBACK_TYPE, captured, kind_of, message, rerun, schema_order, secs, skipped, type_of,
};
use super::{JunitCompat, JunitOptions, pytest_names, quarantined};
use crate::model::{Attempt, Outcome, RunReport, TestResult};
use crate::report::truncate;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestRerun, XmlString};
use std::time::Duration;

/// How much of each testcase [`testcases`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detail {
    Full,
    /// Only its status, unnamed: enough for quick-junit to count it, at a fraction of the cost.
    Status,
}

/// Every testcase of the document, in order, built one test at a time.
pub(super) fn testcases<'a>(
    report: &'a RunReport,
    options: &'a JunitOptions,
    detail: Detail,
) -> impl Iterator<Item = TestCase> + 'a {
    let mut build = Build {
        detail,
        locations: Locations::default(),
    };
    let tests = report
        .tests
        .iter()
        .flat_map(move |test| match options.compat {
            JunitCompat::Surefire => Cases::Two(Some(testcase(test, &mut build)), None),
            JunitCompat::PerAttempt => Cases::Many(per_attempt(test, &mut build).into_iter()),
            JunitCompat::Gitlab => {
                let case = testcase(test, &mut build);
                Cases::Two(Some(case), gitlab_flaky_companion(test, &mut build))
            }
        });
    let errors = report.collection_errors.iter().map(move |error| {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_message("collection failure")
            .set_type("CollectionError")
            .set_description(error.traceback.as_str());
        if detail == Detail::Status {
            return TestCase::new("", status);
        }
        let (_, name) = pytest_names(&error.nodeid);
        let mut case = TestCase::new(name, status);
        case.set_classname("");
        // The schema requires `time` on every testcase.
        case.set_time(Duration::ZERO);
        case
    });
    tests.chain(errors)
}

/// What building testcases carries from one test to the next.
struct Build {
    detail: Detail,
    locations: Locations,
}

/// The `file` and `line` attributes. quick-junit cleans every string it is given (ANSI escapes, control
/// characters), which costs more than the rest of a passing testcase; the keys and the file, which
/// consecutive tests share, are cleaned once and cloned.
struct Locations {
    file_key: XmlString,
    line_key: XmlString,
    /// The last file, as the report has it and cleaned.
    file: Option<(String, XmlString)>,
}

impl Default for Locations {
    fn default() -> Self {
        Locations {
            file_key: XmlString::new("file"),
            line_key: XmlString::new("line"),
            file: None,
        }
    }
}

impl Locations {
    fn add(&mut self, case: &mut TestCase, test: &TestResult) {
        if let Some(file) = &test.file {
            let cleaned = match &self.file {
                Some((raw, cleaned)) if raw == file => cleaned.clone(),
                _ => {
                    let cleaned = XmlString::new(file);
                    self.file = Some((file.clone(), cleaned.clone()));
                    cleaned
                }
            };
            case.extra.insert(self.file_key.clone(), cleaned);
        }
        if let Some(line) = test.line {
            case.extra
                .insert(self.line_key.clone(), line.to_string().into());
        }
    }
}

/// One test's testcases, without a vector for the common one or two.
// It lives on the stack for one test at a time: boxing the big variant would bring back the allocation per
// test that this avoids.
#[allow(clippy::large_enum_variant)]
enum Cases {
    Two(Option<TestCase>, Option<TestCase>),
    Many(std::vec::IntoIter<TestCase>),
}

impl Iterator for Cases {
    type Item = TestCase;

    fn next(&mut self) -> Option<TestCase> {
        match self {
            Cases::Two(first, second) => first.take().or_else(|| second.take()),
            Cases::Many(cases) => cases.next(),
        }
    }
}

fn testcase(test: &TestResult, build: &mut Build) -> TestCase {
    // A quarantined failure does not fail the run: it is not a `failure` here either.
    let quarantined_failure = test
        .quarantine
        .as_deref()
        .filter(|_| test.outcome.is_failure());
    let status = match quarantined_failure {
        Some(q) => quarantined::status(test, q),
        None => status(test),
    };
    if build.detail == Detail::Status {
        return TestCase::new("", status);
    }
    let (classname, name) = pytest_names(&test.nodeid);
    let mut case = TestCase::new(name, status);
    case.set_classname(classname);
    case.set_time(secs(test.duration_seconds));
    build.locations.add(&mut case, test);
    if let Some(q) = test.quarantine.as_deref() {
        quarantined::add_properties(&mut case, q);
    }
    if quarantined_failure.is_some() {
        quarantined::add_output(&mut case, test);
    } else if test.outcome == Outcome::Flaky {
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

/// The status of a test that no quarantine entry excuses.
fn status(test: &TestResult) -> TestCaseStatus {
    match test.outcome {
        Outcome::Passed | Outcome::Xpassed => TestCaseStatus::success(),
        Outcome::Flaky => TestCaseStatus::Success {
            flaky_runs: schema_order(
                test.attempts
                    .iter()
                    .filter(|a| a.outcome.is_failure())
                    .map(rerun)
                    .collect(),
            ),
        },
        Outcome::Failed | Outcome::Error => {
            let failures: Vec<&Attempt> = test
                .attempts
                .iter()
                .filter(|a| a.outcome.is_failure())
                .collect();
            match failures.split_first() {
                // Surefire: `failure`/`error` describes the first run, `rerun*` each later one.
                Some((first, later)) => {
                    let kind = kind_of(first);
                    let mut status = TestCaseStatus::non_success(kind);
                    status
                        .set_message(message(first))
                        .set_type(type_of(first))
                        .set_description(first.traceback.as_deref().unwrap_or(""));
                    let mut reruns: Vec<TestRerun> = later.iter().map(|a| rerun(a)).collect();
                    if kind == NonSuccessKind::Error {
                        // The schema puts every `rerunFailure` before `error`, which quick-junit
                        // cannot write; after an `error`, a later failed run is a `rerunError`.
                        for r in &mut reruns {
                            r.kind = NonSuccessKind::Error;
                        }
                    }
                    status.add_reruns(schema_order(reruns));
                    status
                }
                None => {
                    let kind = if test.outcome == Outcome::Error {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut status = TestCaseStatus::non_success(kind);
                    status
                        .set_message(test.stopped_because.as_deref().unwrap_or("failed"))
                        .set_type(FALLBACK_TYPE);
                    status
                }
            }
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
    }
}

fn per_attempt(test: &TestResult, build: &mut Build) -> Vec<TestCase> {
    // A quarantined failure's attempts would each count as failing: it stays one skipped testcase.
    if test.attempts.len() < 2 || (test.is_quarantined() && test.outcome.is_failure()) {
        return vec![testcase(test, build)];
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
                    .set_type(type_of(a))
                    .set_description(a.traceback.as_deref().unwrap_or(""));
                status
            } else {
                TestCaseStatus::success()
            };
            if build.detail == Detail::Status {
                return TestCase::new("", status);
            }
            let label = if a.number as usize == last {
                name.clone()
            } else {
                format!("{name} (attempt {})", a.number)
            };
            let mut case = TestCase::new(label, status);
            case.set_classname(classname.as_str());
            case.set_time(secs(a.duration_seconds));
            case.add_property(Property::new("attempt", a.number.to_string()));
            build.locations.add(&mut case, test);
            if let Some(out) = captured(a, "stdout") {
                case.set_system_out(out);
            }
            case
        })
        .collect()
}

/// GitLab reads only `failure`/`error`/`skipped`, keeps one testcase per status and name, turns its
/// report red on any failure, and shows no text for a passed testcase. A flaky test therefore stays
/// passed under its own name (its history and the merge request comparison are unchanged) and gets a
/// companion, `name [flaky]`, skipped, whose text — the one GitLab shows — lists the failed attempts and
/// the first failure's traceback.
fn gitlab_flaky_companion(test: &TestResult, build: &mut Build) -> Option<TestCase> {
    if test.outcome != Outcome::Flaky {
        return None;
    }
    let failures: Vec<&Attempt> = test
        .attempts
        .iter()
        .filter(|a| a.outcome.is_failure())
        .collect();
    let first = *failures.first()?;
    if build.detail == Detail::Status {
        return Some(TestCase::new("", TestCaseStatus::skipped()));
    }
    let (classname, name) = pytest_names(&test.nodeid);
    let passed_on = test.passed_on_attempt().unwrap_or(0);
    let summary = format!(
        "flaky: failed {} of {} attempts, passed on attempt {passed_on}; first failure: {}",
        failures.len(),
        test.attempts.len(),
        message(first)
    );
    let mut text = format!("smart-rerun: FLAKY - {summary}\n");
    for a in &failures {
        text.push_str(&format!("attempt {} failed: {}\n", a.number, message(a)));
    }
    if let Some(tb) = first.traceback.as_deref().filter(|t| !t.trim().is_empty()) {
        text.push_str(&format!(
            "\nTraceback of attempt {}:\n{}",
            first.number,
            truncate(tb, 64 * 1024)
        ));
    }
    let mut status = TestCaseStatus::skipped();
    status
        .set_message(truncate(&summary, 1000))
        .set_type("smart-rerun.flaky")
        .set_description(text);
    let mut case = TestCase::new(format!("{name} [flaky]"), status);
    case.set_classname(classname);
    case.set_time(secs(failures.iter().map(|a| a.duration_seconds).sum()));
    build.locations.add(&mut case, test);
    case.add_property(Property::new("flaky", "true"));
    Some(case)
}
