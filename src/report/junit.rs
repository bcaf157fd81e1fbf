//! JUnit XML in the Surefire flaky schema, written with quick-junit. The main entries are [`save`] and
//! [`write`], which stream the document a batch of testcases at a time.
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
//! [`JunitCompat::Gitlab`] (the default under GitLab CI) adds a skipped `name [flaky]` companion to each
//! flaky test, because GitLab's test report ignores the flaky elements and shows no output for a passed
//! test.

use super::truncate;
use crate::model::{Attempt, Outcome, Phase, RunReport, TestResult};
use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite, XmlString,
};
use std::io::{self, Write};
use std::time::Duration;

/// How attempts are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum JunitCompat {
    /// One testcase per test, with Surefire's flaky and rerun elements.
    #[default]
    Surefire,
    /// One testcase per attempt: earlier attempts are named `name (attempt k)`.
    PerAttempt,
    /// Surefire, plus a skipped `name [flaky]` testcase per flaky test that GitLab's test report shows:
    /// the flake is visible there without a failure turning the report red for a test that passed.
    Gitlab,
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
    let (path, params) = nodeid.split_at(nodeid.find('[').unwrap_or(nodeid.len()));
    let (file, rest) = match path.split_once("::") {
        Some((file, rest)) => (file, Some(rest)),
        None => (path, None),
    };
    let dotted = file.replace('/', ".");
    let file = dotted.strip_suffix(".py").unwrap_or(&dotted);
    let Some(rest) = rest else {
        return (String::new(), format!("{file}{params}"));
    };
    let mut parts = rest.split("::");
    let mut classname = file.to_owned();
    let mut name = parts.next().unwrap_or_default();
    for part in parts {
        classname.push('.');
        classname.push_str(name);
        name = part;
    }
    (classname, format!("{name}{params}"))
}

/// Writes the JUnit XML for `report` to `path` (atomically), streamed: see [`write`].
pub fn save(report: &RunReport, options: &JunitOptions, path: &std::path::Path) -> io::Result<()> {
    crate::output::write_atomic(path, |file| {
        let mut out = io::BufWriter::new(file);
        write(report, options, &mut out).map_err(io::Error::other)?;
        out.flush()
    })
}

/// The JUnit XML document for `report`.
pub fn to_xml(
    report: &RunReport,
    options: &JunitOptions,
) -> Result<String, quick_junit::SerializeError> {
    let mut xml = Vec::new();
    write(report, options, &mut xml)?;
    String::from_utf8(xml).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e).into())
}

/// How many testcases [`write`] builds before it writes them out.
const BATCH: usize = 256;

/// Writes the same document as serialising [`to_junit`], without ever holding all of its testcases:
/// quick-junit builds a whole document in memory before writing it (about 680 bytes a testcase: 68 MB at
/// 100,000 tests, more than smart-rerun's own peak without it). The testcases are built twice instead,
/// once to count them (the `testsuite` tag, written first, carries the totals) and once in batches of
/// [`BATCH`], each serialised by quick-junit in a document of its own whose testcases are copied out.
/// Counting builds only each testcase's status ([`Detail::Status`]), through the same layout code.
pub fn write(
    report: &RunReport,
    options: &JunitOptions,
    out: impl Write,
) -> Result<(), quick_junit::SerializeError> {
    write_in_batches(report, options, out, BATCH)
}

fn write_in_batches(
    report: &RunReport,
    options: &JunitOptions,
    out: impl Write,
    batch: usize,
) -> Result<(), quick_junit::SerializeError> {
    let mut out = NonCharacters::new(out);
    // The totals, counted by quick-junit itself: a testcase is added, then dropped.
    let mut counted = TestSuite::new("");
    for case in testcases(report, options, Detail::Status) {
        counted.add_test_case(case);
        counted.test_cases.clear();
    }
    let mut suite = suite_head(report, options);
    suite.tests = counted.tests;
    suite.failures = counted.failures;
    suite.errors = counted.errors;
    suite.skipped = counted.skipped;
    let mut head = Report::new(options.suite_name.as_str());
    head.add_test_suite(suite);
    let head = document(&head)?;
    // The testcases go where the testsuite ends; the suite has properties, so it is never `<testsuite/>`.
    let at = head
        .rfind(SUITE_END)
        .ok_or_else(|| io::Error::other("quick-junit wrote no </testsuite> tag"))?;
    out.write_all(&head.as_bytes()[..at])?;
    let mut cases = TestSuite::new("");
    for case in testcases(report, options, Detail::Full) {
        cases.test_cases.push(case);
        if cases.test_cases.len() >= batch {
            write_testcases(&mut cases, &mut out)?;
        }
    }
    write_testcases(&mut cases, &mut out)?;
    out.write_all(&head.as_bytes()[at..])?;
    out.finish()?;
    Ok(())
}

/// How quick-junit ends a testsuite inside `testsuites` (indented by 4), from the newline before it.
const SUITE_END: &str = "\n    </testsuite>";

/// Writes `cases`' testcases as quick-junit does inside a document, and empties it.
fn write_testcases(
    cases: &mut TestSuite,
    out: &mut impl Write,
) -> Result<(), quick_junit::SerializeError> {
    if cases.test_cases.is_empty() {
        return Ok(());
    }
    let mut batch = Report::new("");
    batch.add_test_suite(std::mem::replace(cases, TestSuite::new("")));
    let xml = document(&batch)?;
    // From the newline before the first testcase to the one before `</testsuite>`: the suite has no
    // properties or output, and any `<` in a name or text is escaped, so this is exactly the testcases.
    let first = xml
        .find("<testcase")
        .and_then(|at| xml[..at].rfind('\n'))
        .ok_or_else(|| io::Error::other("quick-junit wrote no testcase"))?;
    let end = xml
        .rfind(SUITE_END)
        .ok_or_else(|| io::Error::other("quick-junit wrote no </testsuite> tag"))?;
    out.write_all(&xml.as_bytes()[first..end])?;
    Ok(())
}

/// quick-junit's serialisation of `report`, as text.
fn document(report: &Report) -> Result<String, quick_junit::SerializeError> {
    let mut xml = Vec::new();
    report.serialize(&mut xml)?;
    String::from_utf8(xml).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e).into())
}

/// quick-junit drops ANSI escapes and the control characters XML 1.0 forbids; U+FFFE and U+FFFF, which
/// XML forbids too, are dropped here, so any text a test prints leaves the file well-formed.
///
/// Passes UTF-8 through without U+FFFE and U+FFFF (`EF BF BE`, `EF BF BF`), also when a write splits one.
struct NonCharacters<W: Write> {
    out: W,
    /// The start of a possible U+FFFE or U+FFFF at the end of the last write, held back.
    held: Vec<u8>,
}

impl<W: Write> NonCharacters<W> {
    fn new(out: W) -> Self {
        NonCharacters {
            out,
            held: Vec::new(),
        }
    }

    /// Writes what was held back, and flushes.
    fn finish(mut self) -> io::Result<()> {
        self.out.write_all(&self.held)?;
        self.out.flush()
    }
}

impl<W: Write> Write for NonCharacters<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let joined;
        let data = if self.held.is_empty() {
            buf
        } else {
            joined = [self.held.as_slice(), buf].concat();
            self.held.clear();
            &joined
        };
        let mut kept = 0;
        let mut at = 0;
        while let Some(found) = data[at..].iter().position(|&b| b == 0xef) {
            let found = at + found;
            match data[found..] {
                [0xef, 0xbf, 0xbe | 0xbf, ..] => {
                    self.out.write_all(&data[kept..found])?;
                    kept = found + 3;
                    at = kept;
                }
                [0xef] | [0xef, 0xbf] => {
                    self.out.write_all(&data[kept..found])?;
                    self.held.extend_from_slice(&data[found..]);
                    return Ok(buf.len());
                }
                _ => at = found + 1,
            }
        }
        self.out.write_all(&data[kept..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Builds the whole JUnit report in memory: what [`write`] streams, kept for the tests that read it back.
#[cfg(test)]
pub fn to_junit(report: &RunReport, options: &JunitOptions) -> Report {
    let mut suite = suite_head(report, options);
    suite.add_test_cases(testcases(report, options, Detail::Full));
    let mut junit = Report::new(options.suite_name.as_str());
    junit.add_test_suite(suite);
    junit
}

/// The testsuite without its testcases: name, timestamp, time and smart-rerun's properties.
fn suite_head(report: &RunReport, options: &JunitOptions) -> TestSuite {
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
    suite
}

/// How much of each testcase [`testcases`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    Full,
    /// Only its status, unnamed: enough for quick-junit to count it, at a fraction of the cost.
    Status,
}

/// Every testcase of the document, in order, built one test at a time.
fn testcases<'a>(
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
    let status = match test.outcome {
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
    };
    if build.detail == Detail::Status {
        return TestCase::new("", status);
    }
    let (classname, name) = pytest_names(&test.nodeid);
    let mut case = TestCase::new(name, status);
    case.set_classname(classname);
    case.set_time(secs(test.duration_seconds));
    build.locations.add(&mut case, test);
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

fn per_attempt(test: &TestResult, build: &mut Build) -> Vec<TestCase> {
    if test.attempts.len() < 2 {
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
    r.set_message(message(a))
        .set_type(type_of(a))
        .set_time(secs(a.duration_seconds));
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

/// The `type` attribute, which the Surefire schema requires on every failure, error and rerun element.
const FALLBACK_TYPE: &str = "smart-rerun.failure";

fn type_of(a: &Attempt) -> String {
    a.exception
        .as_ref()
        .map_or_else(|| FALLBACK_TYPE.to_owned(), |e| e.type_name.clone())
}

/// Orders flaky or rerun elements as the Surefire schema's sequence wants them: every `*Failure` before
/// every `*Error` (`failure*, rerunFailure*, flakyFailure*, skipped?, error?, rerunError*, flakyError*`),
/// each kind in the order the attempts ran.
fn schema_order(mut runs: Vec<TestRerun>) -> Vec<TestRerun> {
    runs.sort_by_key(|r| r.kind == NonSuccessKind::Error);
    runs
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

    /// The first implementation of [`pytest_names`], kept as its oracle.
    fn pytest_names_by_vectors(nodeid: &str) -> (String, String) {
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

    #[test]
    fn names_match_the_first_implementation_on_odd_ids() {
        for nodeid in [
            "",
            "a.py",
            "dir/a.py",
            "a.py::",
            "a.py::::x",
            "a.py::C:::x",
            "a.py::C::D::x[p::q]",
            "x/y.py::t[[a]]",
            "pkg/mod.py::pkg.mod.func",
            "a.pyx::t",
            "dir/a.py[weird]",
            "ü/ñ.py::Ç::t[é]",
        ] {
            assert_eq!(
                pytest_names(nodeid),
                pytest_names_by_vectors(nodeid),
                "{nodeid:?}"
            );
        }
    }

    use crate::model::{Outcome, Phase};
    use crate::sample;
    use quick_junit::{FlakyOrRerun, NonSuccessKind, TestCaseStatus};

    fn xml(report: &RunReport, compat: JunitCompat) -> String {
        let options = JunitOptions {
            compat,
            ..JunitOptions::default()
        };
        to_xml(report, &options).unwrap()
    }

    /// Each testcase's `name` and the names of its child elements, in document order.
    fn testcase_children(xml: &str) -> Vec<(String, Vec<String>)> {
        let mut cases = Vec::new();
        let mut current: Option<(String, Vec<String>)> = None;
        let mut depth = 0usize;
        let mut case_depth = 0usize;
        let mut rest = xml;
        while let Some(open) = rest.find('<') {
            let close = open + rest[open..].find('>').expect("tags are closed");
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                depth -= 1;
                if name == "testcase" {
                    cases.extend(current.take());
                }
                continue;
            }
            let empty = tag.ends_with('/');
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap();
            if name == "testcase" {
                let attr = tag.split(" name=\"").nth(1).unwrap();
                current = Some((attr[..attr.find('"').unwrap()].to_owned(), Vec::new()));
                case_depth = depth + 1;
            } else if let Some((_, children)) = &mut current {
                if depth == case_depth {
                    children.push(name.to_owned());
                }
            }
            if empty {
                if name == "testcase" {
                    cases.extend(current.take());
                }
            } else {
                depth += 1;
            }
        }
        cases
    }

    /// Asserts the Surefire schema's testcase sequence: failure*, rerunFailure*, flakyFailure*, skipped?,
    /// error?, rerunError*, flakyError*, system-out?, system-err?; a leading `properties` (pytest's
    /// record_property convention, which the schema lacks) is the one addition.
    fn assert_surefire_order(xml: &str) {
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
        for (name, children) in testcase_children(xml) {
            let ranks: Vec<usize> = children
                .iter()
                .map(|c| {
                    ORDER
                        .iter()
                        .position(|(n, _)| n == c)
                        .unwrap_or_else(|| panic!("{name}: unexpected <{c}>"))
                })
                .collect();
            assert!(
                ranks
                    .windows(2)
                    .all(|w| w[0] < w[1] || (w[0] == w[1] && ORDER[w[0]].1)),
                "{name}: {children:?} is out of the schema's order"
            );
        }
    }

    /// Every character is one XML 1.0 allows.
    fn assert_xml_chars(xml: &str) {
        for c in xml.chars() {
            assert!(
                matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..),
                "{:?} is not allowed in XML",
                c
            );
        }
    }

    #[test]
    fn surefire_layout_snapshot() {
        let xml = xml(&sample::every_outcome(), JunitCompat::Surefire);
        assert_surefire_order(&xml);
        insta::assert_snapshot!("surefire", xml);
    }

    #[test]
    fn per_attempt_layout_snapshot() {
        let xml = xml(&sample::every_outcome(), JunitCompat::PerAttempt);
        assert_surefire_order(&xml);
        insta::assert_snapshot!("per_attempt", xml);
    }

    #[test]
    fn quick_junit_reads_back_flaky_runs_reruns_and_locations() {
        let report = sample::every_outcome();
        let parsed = Report::deserialize_from_str(&xml(&report, JunitCompat::Surefire)).unwrap();
        assert_eq!(parsed.test_suites.len(), 1);
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.name.as_str(), "pytest");
        // Every test, and the collection error as one more testcase.
        assert_eq!(suite.test_cases.len(), report.tests.len() + 1);
        assert_eq!(
            (suite.tests, suite.failures, suite.errors, suite.skipped),
            (8, 1, 2, 3)
        );
        let case = |name: &str| {
            suite
                .test_cases
                .iter()
                .find(|c| c.name.as_str() == name)
                .unwrap_or_else(|| panic!("no testcase {name}"))
        };

        let flaky = case("test_fetch[v2]");
        assert_eq!(
            flaky.classname.as_ref().map(|c| c.as_str()),
            Some("tests.test_api.TestUsers")
        );
        assert_eq!(
            flaky.extra.get("file").map(|v| v.as_str()),
            Some("tests/test_api.py")
        );
        assert_eq!(flaky.extra.get("line").map(|v| v.as_str()), Some("28"));
        let TestCaseStatus::Success { flaky_runs } = &flaky.status else {
            panic!("a flaky test passed: {:?}", flaky.status);
        };
        let kinds: Vec<NonSuccessKind> = flaky_runs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [NonSuccessKind::Failure, NonSuccessKind::Error]);
        assert_eq!(
            flaky_runs[0].ty.as_ref().map(|t| t.as_str()),
            Some("builtins.ConnectionError")
        );
        assert_eq!(
            flaky_runs[0].message.as_ref().map(|t| t.as_str()),
            Some("ConnectionError: [Errno 111] Connection refused")
        );
        assert!(
            flaky_runs[0]
                .stack_trace
                .as_ref()
                .unwrap()
                .as_str()
                .contains("client.get")
        );
        assert!(
            flaky_runs[0]
                .system_out
                .as_ref()
                .unwrap()
                .as_str()
                .contains("attempt 1 output")
        );
        assert!(
            flaky_runs
                .iter()
                .all(|r| r.timestamp.is_some() && r.time.is_some())
        );
        assert!(
            flaky
                .properties
                .iter()
                .any(|p| p.name.as_str() == "flaky" && p.value.as_str() == "true")
        );
        let note = flaky.system_out.as_ref().unwrap().as_str();
        assert!(
            note.contains("FLAKY") && note.contains("passed on attempt 3"),
            "{note}"
        );

        let failed = case("test_total");
        let TestCaseStatus::NonSuccess {
            kind, reruns, ty, ..
        } = &failed.status
        else {
            panic!("{:?}", failed.status);
        };
        assert_eq!(*kind, NonSuccessKind::Failure);
        assert_eq!(
            ty.as_ref().map(|t| t.as_str()),
            Some("builtins.AssertionError")
        );
        assert_eq!(reruns.kind, FlakyOrRerun::Rerun);
        assert_eq!(reruns.runs.len(), 2);
        assert!(
            reruns
                .runs
                .iter()
                .all(|r| r.kind == NonSuccessKind::Failure)
        );

        let error = case("test_migrate");
        let TestCaseStatus::NonSuccess { kind, reruns, .. } = &error.status else {
            panic!("{:?}", error.status);
        };
        assert_eq!(*kind, NonSuccessKind::Error);
        assert!(
            reruns.runs.len() == 2 && reruns.runs.iter().all(|r| r.kind == NonSuccessKind::Error)
        );

        for name in ["test_registry", "test_known_bug", "test_late"] {
            assert!(
                matches!(case(name).status, TestCaseStatus::Skipped { .. }),
                "{name}"
            );
        }
        let collection = case("tests.test_broken");
        let TestCaseStatus::NonSuccess { kind, ty, .. } = &collection.status else {
            panic!("{:?}", collection.status);
        };
        assert_eq!(*kind, NonSuccessKind::Error);
        assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("CollectionError"));
    }

    #[test]
    fn mixed_failures_and_errors_keep_the_schemas_order() {
        let mut report = sample::empty();
        let exc = |t: &str| crate::model::ExceptionInfo {
            type_name: t.into(),
            mro: vec![],
            message: "boom".into(),
        };
        let att =
            |n, phase| sample::failed_attempt(n, phase, exc("builtins.OSError"), "t.py", 3, "tb");
        report.tests = vec![
            // An error, then a failure: the later failure cannot be a rerunFailure after <error>.
            sample::test(
                "t.py::test_error_first",
                Outcome::Failed,
                1,
                vec![
                    att(1, Phase::Setup),
                    att(2, Phase::Call),
                    att(3, Phase::Call),
                ],
            ),
            sample::test(
                "t.py::test_failure_first",
                Outcome::Error,
                1,
                vec![
                    att(1, Phase::Call),
                    att(2, Phase::Teardown),
                    att(3, Phase::Call),
                ],
            ),
            sample::test(
                "t.py::test_flaky_mixed",
                Outcome::Flaky,
                1,
                vec![
                    att(1, Phase::Setup),
                    att(2, Phase::Call),
                    sample::passed_attempt(3),
                ],
            ),
        ];
        report.summarize();
        let xml = xml(&report, JunitCompat::Surefire);
        assert_surefire_order(&xml);
        let children: Vec<(String, Vec<String>)> = testcase_children(&xml);
        let of = |name: &str| children.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(
            of("test_error_first"),
            [
                "properties",
                "error",
                "rerunError",
                "rerunError",
                "system-out"
            ]
        );
        assert_eq!(
            of("test_failure_first"),
            [
                "properties",
                "failure",
                "rerunFailure",
                "rerunError",
                "system-out"
            ]
        );
        assert_eq!(
            of("test_flaky_mixed"),
            ["properties", "flakyFailure", "flakyError", "system-out"]
        );
        // Every failure, error and rerun element has the `type` the schema requires.
        let parsed = Report::deserialize_from_str(&xml).unwrap();
        for case in &parsed.test_suites[0].test_cases {
            match &case.status {
                TestCaseStatus::NonSuccess { ty, reruns, .. } => {
                    assert!(ty.is_some() && reruns.runs.iter().all(|r| r.ty.is_some()));
                }
                TestCaseStatus::Success { flaky_runs } => {
                    assert!(flaky_runs.iter().all(|r| r.ty.is_some()));
                }
                TestCaseStatus::Skipped { .. } => {}
            }
        }
    }

    /// quick-junit's whole document, the way smart-rerun wrote it before streaming: the oracle for
    /// [`write`].
    fn whole_document(report: &RunReport, options: &JunitOptions) -> String {
        let mut out = Vec::new();
        let mut filter = NonCharacters::new(&mut out);
        to_junit(report, options).serialize(&mut filter).unwrap();
        filter.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn streamed_batches_write_quick_junits_whole_document() {
        let reports = [
            sample::empty(),
            sample::every_outcome(),
            sample::hostile(),
            sample::large(7, 5, 300),
        ];
        for report in &reports {
            for compat in [
                JunitCompat::Surefire,
                JunitCompat::PerAttempt,
                JunitCompat::Gitlab,
            ] {
                let options = JunitOptions {
                    suite_name: "suite <&> \"name\"".into(),
                    compat,
                };
                let expected = whole_document(report, &options);
                for batch in [1, 2, 3, BATCH] {
                    let mut out = Vec::new();
                    write_in_batches(report, &options, &mut out, batch).unwrap();
                    let got = String::from_utf8(out).unwrap();
                    assert!(
                        got == expected,
                        "{compat:?}, batches of {batch}, {} tests: streamed {} bytes, whole {}",
                        report.tests.len(),
                        got.len(),
                        expected.len()
                    );
                }
            }
        }
    }

    #[test]
    fn noncharacters_are_dropped_also_when_a_write_splits_them() {
        let text = "a\u{fffe}b\u{ffff}c\u{fffd}d\u{e000}\u{fffe}";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut out = Vec::new();
            let mut filter = NonCharacters::new(&mut out);
            filter.write_all(&bytes[..split]).unwrap();
            filter.write_all(&bytes[split..]).unwrap();
            filter.finish().unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "abc\u{fffd}d\u{e000}",
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_saved_report_is_what_to_xml_renders() {
        let report = sample::hostile();
        let options = JunitOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        save(&report, &options, &path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            to_xml(&report, &options).unwrap()
        );
    }

    #[test]
    fn hostile_text_leaves_the_xml_well_formed() {
        let report = sample::hostile();
        for compat in [JunitCompat::Surefire, JunitCompat::PerAttempt] {
            let xml = xml(&report, compat);
            assert_xml_chars(&xml);
            assert!(!xml.contains("<script") && !xml.contains("<img"));
            assert!(!xml.contains('\u{1b}'));
            assert_surefire_order(&xml);
            let parsed = Report::deserialize_from_str(&xml).unwrap();
            let names: Vec<&str> = parsed.test_suites[0]
                .test_cases
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            assert!(
                names
                    .iter()
                    .any(|n| n.contains("</details> </pre> <script>")),
                "{names:?}"
            );
        }
        // The message attribute is one line of bounded length; the whole traceback is in the body.
        let xml = xml(&report, JunitCompat::Surefire);
        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let case = &parsed.test_suites[0].test_cases[0];
        let TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        } = &case.status
        else {
            panic!()
        };
        assert!(message.as_ref().unwrap().as_str().chars().count() <= 1001);
        assert!(description.as_ref().unwrap().as_str().len() > 100_000);
    }
}
