//! The seam between the runner and an AI classifier. The main trait is [`Advisor`]: after each round the
//! runner hands it the new failures (one [`FailureQuery`] per distinct fingerprint) and applies what comes
//! back — a category, a confidence, a reason, and an action that may shorten or lengthen the delay or stop
//! retrying. An advisor can never fail or hang the run: it returns what it has by its deadline, and the
//! runner keeps the heuristics' classification for everything else.

use crate::model::PolicyInfo;
use crate::model::{Action, Category, Classification, ClassificationSource};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One failure, as sent to the classifier (after redaction, when on).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct FailureQuery {
    pub nodeid: String,
    pub fingerprint: String,
    pub exception_type: String,
    /// The exception's classes, most derived first.
    pub exception_bases: Vec<String>,
    pub message: String,
    /// Trimmed (and, with redaction, scrubbed) traceback.
    pub traceback: String,
    /// Earlier attempts of this test: `(attempt, outcome, exception type)`.
    pub attempts: Vec<AttemptSummary>,
    /// The offline heuristics' view, for the classifier to confirm or overrule.
    pub heuristic: Classification,
    pub policy: PolicyInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct AttemptSummary {
    pub number: u32,
    pub outcome: String,
    pub exception_type: Option<String>,
}

/// An advisor's answer for one fingerprint, already validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Advice {
    pub fingerprint: String,
    pub classification: Classification,
}

/// Classifies failures; implemented by the MCP and plain-HTTP clients.
pub(crate) trait Advisor {
    /// Answers what it can for `queries` (distinct fingerprints) within `deadline`. Notes (endpoint
    /// down, 401, garbage, ...) are returned as one-line strings for the run's warnings.
    /// `settings` are the run's settings in force, read at each call: the pytest ini values are only known
    /// once the first round has started.
    fn advise(
        &mut self,
        settings: &crate::config::AiSettings,
        queries: &[FailureQuery],
        deadline: Duration,
    ) -> (Vec<Advice>, Vec<String>);
}

/// Checks a classifier's raw answer: the category must be known, the confidence within 0..1, a suggested
/// delay within `max_delay`. Returns the classification or why it was ignored.
pub(crate) fn validate_answer(
    category: &str,
    confidence: Option<f64>,
    reason: Option<&str>,
    action: Option<&str>,
    delay_seconds: Option<f64>,
    max_delay: Duration,
    source: ClassificationSource,
) -> Result<Classification, String> {
    let category: Category = category.parse().map_err(|e: String| format!("{e}; known: flaky-network, flaky-timing, flaky-resource, environmental, deterministic, unknown"))?;
    let confidence = confidence.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&confidence) || confidence.is_nan() {
        return Err(format!("confidence {confidence} is outside 0..1"));
    }
    let action = match (action.map(str::trim), delay_seconds) {
        (Some("stop_retry") | Some("stop"), _) => Action::StopRetry,
        (Some("retry_with_delay"), Some(s)) | (None | Some("retry"), Some(s)) => {
            if !s.is_finite() || s < 0.0 {
                return Err(format!("delay {s} is not a number of seconds"));
            }
            if s > max_delay.as_secs_f64() {
                return Err(format!(
                    "delay {s}s is above the cap of {}s",
                    max_delay.as_secs_f64()
                ));
            }
            Action::RetryWithDelay { seconds: s }
        }
        (Some("retry_with_delay"), None) => return Err("retry_with_delay without a delay".into()),
        (None | Some("retry"), None) => Action::Retry,
        (Some(other), _) => {
            return Err(format!(
                "'{other}' is not an action: use retry, retry_with_delay or stop_retry"
            ));
        }
    };
    let reason = reason
        .map(|r| {
            r.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        })
        .unwrap_or_default();
    Ok(Classification {
        category,
        confidence,
        action,
        reason,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_outside_the_contract_are_refused_with_a_reason() {
        let cap = Duration::from_secs(30);
        let ok = validate_answer(
            "flaky-network",
            Some(0.8),
            Some("reset by peer\nmore"),
            Some("retry_with_delay"),
            Some(2.0),
            cap,
            ClassificationSource::Ai,
        )
        .unwrap();
        assert_eq!(ok.action, Action::RetryWithDelay { seconds: 2.0 });
        assert_eq!(ok.reason, "reset by peer");
        type Row<'a> = (&'a str, Option<f64>, Option<&'a str>, Option<f64>, &'a str);
        let rows: [Row; 5] = [
            ("cosmic-rays", Some(0.5), None, None, "not a category"),
            ("deterministic", Some(1.5), None, None, "outside 0..1"),
            (
                "flaky-timing",
                Some(0.5),
                Some("retry_with_delay"),
                Some(3600.0),
                "above the cap",
            ),
            (
                "flaky-timing",
                Some(0.5),
                Some("pray"),
                None,
                "not an action",
            ),
            (
                "flaky-timing",
                Some(0.5),
                Some("retry_with_delay"),
                None,
                "without a delay",
            ),
        ];
        for (cat, conf, action, delay, expected) in rows {
            let err = validate_answer(
                cat,
                conf,
                None,
                action,
                delay,
                cap,
                ClassificationSource::Ai,
            )
            .unwrap_err();
            assert!(err.contains(expected), "{cat}: {err}");
        }
        let stop = validate_answer(
            "deterministic",
            Some(0.9),
            None,
            Some("stop_retry"),
            None,
            cap,
            ClassificationSource::Ai,
        )
        .unwrap();
        assert_eq!(stop.action, Action::StopRetry);
    }
}
