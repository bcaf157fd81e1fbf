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
//! - A quarantined test that failed is `skipped` (type `smart-rerun.quarantined`), its failure in the
//!   element's text: its failure does not fail the run, so CI test views must not count it as failing
//!   (see [`quarantined`]).
//!
//! [`JunitCompat::PerAttempt`] writes one testcase per attempt instead, for tools that count runs.
//! [`JunitCompat::Gitlab`] (the default under GitLab CI) adds a skipped `name [flaky]` companion to each
//! flaky test, because GitLab's test report ignores the flaky elements and shows no output for a passed
//! test.

mod cases;
mod elements;
mod noncharacters;
mod quarantined;

use crate::model::RunReport;
use cases::{Detail, testcases};
use elements::secs;
use noncharacters::NonCharacters;
use quick_junit::{Property, Report, TestSuite};
use std::io::{self, Write};

/// How attempts are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JunitCompat {
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
pub(crate) struct JunitOptions {
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
pub(crate) fn pytest_names(nodeid: &str) -> (String, String) {
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
pub(crate) fn save(
    report: &RunReport,
    options: &JunitOptions,
    path: &std::path::Path,
) -> io::Result<()> {
    crate::output::write_atomic(path, |file| {
        let mut out = io::BufWriter::new(file);
        write(report, options, &mut out).map_err(io::Error::other)?;
        out.flush()
    })
}

/// The JUnit XML document for `report`.
pub(crate) fn to_xml(
    report: &RunReport,
    options: &JunitOptions,
) -> Result<String, quick_junit::SerializeError> {
    let mut xml = Vec::new();
    write(report, options, &mut xml)?;
    String::from_utf8(xml).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e).into())
}

/// How many testcases [`write`] builds before it writes them out.
const BATCH: usize = 256;

/// Writes the same document as serialising `to_junit` (tests), without ever holding all of its testcases:
/// quick-junit builds a whole document in memory before writing it (about 680 bytes a testcase: 68 MB at
/// 100,000 tests, more than smart-rerun's own peak without it). The testcases are built twice instead,
/// once to count them (the `testsuite` tag, written first, carries the totals) and once in batches of
/// [`BATCH`], each serialised by quick-junit in a document of its own whose testcases are copied out.
/// Counting builds only each testcase's status ([`Detail::Status`]), through the same layout code.
pub(crate) fn write(
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

/// Builds the whole JUnit report in memory: what [`write`] streams, kept for the tests that read it back.
#[cfg(test)]
pub(crate) fn to_junit(report: &RunReport, options: &JunitOptions) -> Report {
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
    if s.quarantined_failures > 0 {
        suite.add_property(Property::new(
            "smart-rerun.quarantined-failures",
            s.quarantined_failures.to_string(),
        ));
    }
    suite
}

#[cfg(test)]
mod tests;
