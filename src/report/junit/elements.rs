//! The parts of a testcase that come from one attempt: status, flaky and rerun elements, message, type and
//! captured output.

use crate::model::{Attempt, Phase};
use crate::report::truncate;
use quick_junit::{NonSuccessKind, TestCaseStatus, TestRerun};
use std::time::Duration;

pub(super) fn skipped(message: Option<&str>, ty: Option<&str>) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    if let Some(m) = message {
        status.set_message(m);
    }
    if let Some(t) = ty {
        status.set_type(t);
    }
    status
}

pub(super) fn kind_of(a: &Attempt) -> NonSuccessKind {
    match a.phase {
        Some(Phase::Call) | None => NonSuccessKind::Failure,
        Some(Phase::Setup | Phase::Teardown | Phase::Crash) => NonSuccessKind::Error,
    }
}

pub(super) fn rerun(a: &Attempt) -> TestRerun {
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
pub(super) const FALLBACK_TYPE: &str = "smart-rerun.failure";

pub(super) fn type_of(a: &Attempt) -> String {
    a.exception
        .as_ref()
        .map_or_else(|| FALLBACK_TYPE.to_owned(), |e| e.type_name.clone())
}

/// Orders flaky or rerun elements as the Surefire schema's sequence wants them: every `*Failure` before
/// every `*Error` (`failure*, rerunFailure*, flakyFailure*, skipped?, error?, rerunError*, flakyError*`),
/// each kind in the order the attempts ran.
pub(super) fn schema_order(mut runs: Vec<TestRerun>) -> Vec<TestRerun> {
    runs.sort_by_key(|r| r.kind == NonSuccessKind::Error);
    runs
}

/// `Type: first line of the message`, as pytest's junitxml puts in `message`.
pub(super) fn message(a: &Attempt) -> String {
    match &a.exception {
        Some(e) => truncate(&e.headline(), 1000),
        None => "failed".into(),
    }
}

/// The captured sections of one stream (`Captured stdout call`, ...), joined.
pub(super) fn captured(a: &Attempt, stream: &str) -> Option<String> {
    let parts: Vec<String> = a
        .captured
        .iter()
        .filter(|s| s.name.contains(stream))
        .map(|s| format!("----- {} -----\n{}", s.name, s.text))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}
