//! A quarantined test in the document. Its failure does not fail the run, so it must not read as a
//! failure in CI test views either: GitLab's test report, GitHub JUnit viewers and Jenkins count every
//! `failure` and `error` as failing and turn the report red. A quarantined test that failed is written
//! `skipped` instead, typed `smart-rerun.quarantined`, with a message naming its entry (`quarantined:
//! REASON (owner, expires DATE)`) and, as the element's text (the text GitLab shows for a skipped
//! test), the failure itself: each failed attempt and the first one's traceback. Its properties carry
//! the entry for tools that read them; a quarantined test that passed or was flaky keeps its status and
//! gets the same properties.

use super::elements::{captured, message};
use crate::model::{QuarantineInfo, TestResult};
use crate::report::truncate;
use quick_junit::{Property, TestCase, TestCaseStatus};

/// The `type` of a quarantined failure's `skipped` element.
pub(super) const TYPE: &str = "smart-rerun.quarantined";

/// `quarantined: REASON (owner, expires DATE)`; an expired entry that still protects the test in its
/// grace days says `expired DATE`.
pub(super) fn headline(q: &QuarantineInfo) -> String {
    let mut parts: Vec<String> = q.owner.iter().cloned().collect();
    parts.push(format!(
        "{} {}",
        if q.expired { "expired" } else { "expires" },
        q.expires
    ));
    truncate(
        &format!("quarantined: {} ({})", q.reason, parts.join(", ")),
        1000,
    )
}

/// The status of a quarantined test that failed: skipped, with the failure as its text.
pub(super) fn status(test: &TestResult, q: &QuarantineInfo) -> TestCaseStatus {
    let failures: Vec<_> = test
        .attempts
        .iter()
        .filter(|a| a.outcome.is_failure())
        .collect();
    let mut text = format!(
        "smart-rerun: QUARANTINED - {}, {}; the quarantine ({}:{}) keeps it from failing the run\n",
        test.outcome.as_str(),
        crate::report::counted(failures.len(), "failed attempt"),
        q.file,
        q.line
    );
    if failures.is_empty() {
        if let Some(why) = test.stopped_because.as_deref() {
            text.push_str(&format!("{why}\n"));
        }
    }
    for a in &failures {
        text.push_str(&format!("attempt {} failed: {}\n", a.number, message(a)));
    }
    if let Some((a, tb)) = failures.first().and_then(|a| {
        a.traceback
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| (a, t))
    }) {
        text.push_str(&format!(
            "\nTraceback of attempt {}:\n{}",
            a.number,
            truncate(tb, 64 * 1024)
        ));
    }
    let mut status = TestCaseStatus::skipped();
    status
        .set_message(headline(q))
        .set_type(TYPE)
        .set_description(text);
    status
}

/// The attempts and output of a quarantined test that failed: its last failed attempt's captured
/// streams.
pub(super) fn add_output(case: &mut TestCase, test: &TestResult) {
    if test.attempts.len() > 1 {
        case.add_property(Property::new("attempts", test.attempts.len().to_string()));
    }
    let last = test.last_failure();
    if let Some(out) = last.and_then(|a| captured(a, "stdout")) {
        case.set_system_out(out);
    }
    if let Some(err) = last.and_then(|a| captured(a, "stderr")) {
        case.set_system_err(err);
    }
}

/// `quarantined` and the entry's fields, as testcase properties.
pub(super) fn add_properties(case: &mut TestCase, q: &QuarantineInfo) {
    case.add_property(Property::new("quarantined", "true"));
    case.add_property(Property::new("quarantine.reason", q.reason.as_str()));
    if let Some(owner) = &q.owner {
        case.add_property(Property::new("quarantine.owner", owner.as_str()));
    }
    if let Some(issue) = &q.issue {
        case.add_property(Property::new("quarantine.issue", issue.as_str()));
    }
    case.add_property(Property::new("quarantine.expires", q.expires.as_str()));
    if q.expired {
        case.add_property(Property::new("quarantine.expired", "true"));
    }
    case.add_property(Property::new(
        "quarantine.entry",
        format!("{}:{}", q.file, q.line),
    ));
}
