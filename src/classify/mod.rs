//! Telling flaky from broken. The main type is [`Classification`]: a category, a confidence, an action
//! and a one-line reason with its evidence, and where it came from.
//!
//! Every failed attempt gets a [`fingerprint`] and a [`heuristics`] classification. Outcomes observed on
//! reruns outrank any guess ([`observe`]): passing after failing is flakiness; failing again with the same
//! fingerprint, for a failure nothing marks as transient, confirms a deterministic failure, and by
//! default no further attempts are spent on it.

pub(crate) mod advisor;
pub(crate) mod ai;
pub(crate) mod fingerprint;
pub(crate) mod heuristics;

use crate::model::{Action, Attempt, Category, Classification, ClassificationSource, Outcome};

/// Fingerprints and classifies a failed attempt in place (offline heuristics).
pub(crate) fn annotate(attempt: &mut Attempt) {
    if attempt.outcome.is_failure() {
        attempt.fingerprint = Some(fingerprint::fingerprint(attempt));
        attempt.classification = Some(heuristics::classify(attempt));
    }
}

/// Whether the latest failed attempt repeats the previous one's fingerprint for a failure nothing marks as
/// transient: a confirmed deterministic failure, not worth more attempts.
pub(crate) fn confirmed_deterministic(attempts: &[Attempt]) -> bool {
    let mut failures = attempts.iter().rev().filter(|a| a.outcome.is_failure());
    let (Some(last), Some(prev)) = (failures.next(), failures.next()) else {
        return false;
    };
    let transient = |a: &Attempt| {
        a.classification
            .as_ref()
            .is_some_and(|c| c.category.is_transient())
    };
    last.fingerprint.is_some()
        && last.fingerprint == prev.fingerprint
        && !transient(last)
        && !transient(prev)
}

/// The test-level verdict from its attempts: observations first, then the failures' own classifications.
pub(crate) fn observe(outcome: Outcome, attempts: &[Attempt]) -> Option<Classification> {
    let failures: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_failure()).collect();
    let first = *failures.first()?;
    let guess = first.classification.clone();
    if outcome == Outcome::Flaky {
        let passed_on = attempts
            .iter()
            .rev()
            .find(|a| !a.outcome.is_failure())
            .map_or(0, |a| a.number);
        let (category, why) = match &guess {
            Some(g) if g.category.is_transient() => (g.category, format!(" ({})", g.reason)),
            _ => (Category::Unknown, String::new()),
        };
        return Some(Classification {
            category,
            confidence: 0.95,
            action: Action::Retry,
            reason: format!("passed on attempt {passed_on} after failing{why}"),
            source: ClassificationSource::Observed,
        });
    }
    if failures.len() >= 2 {
        let last = failures[failures.len() - 1];
        let prev = failures[failures.len() - 2];
        if confirmed_deterministic(attempts) {
            return Some(Classification {
                category: Category::Deterministic,
                confidence: 0.9,
                action: Action::StopRetry,
                reason: format!(
                    "failed the same way on attempts {} and {} (fingerprint {})",
                    prev.number,
                    last.number,
                    last.fingerprint.as_deref().unwrap_or("")
                ),
                source: ClassificationSource::Observed,
            });
        }
        if last.fingerprint != prev.fingerprint {
            let mut g = guess.unwrap_or_else(|| heuristics::classify(first));
            g.reason = format!("{}; later attempts failed differently", g.reason);
            return Some(g);
        }
    }
    guess
}
