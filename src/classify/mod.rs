//! Telling flaky from broken. The main type is [`Classification`]: a category, a confidence, an action
//! and a one-line reason with its evidence, and where it came from.
//!
//! Every failed attempt gets a [`fingerprint`] and a [`heuristics`] classification. Outcomes observed on
//! reruns outrank any guess ([`observe`]): passing after failing is flakiness; failing again with the same
//! fingerprint, for a failure nothing marks as transient, confirms a deterministic failure, and by
//! default no further attempts are spent on it.

pub mod advisor;
pub mod ai;
pub mod fingerprint;
pub mod heuristics;

use crate::report::{Attempt, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    FlakyNetwork,
    FlakyTiming,
    FlakyResource,
    Environmental,
    Deterministic,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::FlakyNetwork,
        Category::FlakyTiming,
        Category::FlakyResource,
        Category::Environmental,
        Category::Deterministic,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::FlakyNetwork => "flaky-network",
            Category::FlakyTiming => "flaky-timing",
            Category::FlakyResource => "flaky-resource",
            Category::Environmental => "environmental",
            Category::Deterministic => "deterministic",
            Category::Unknown => "unknown",
        }
    }

    /// Failures of this kind may pass on a rerun even when they repeat the same way.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Category::FlakyNetwork | Category::FlakyTiming | Category::FlakyResource
        )
    }

    /// "a network", "an environmental", ... for reasons.
    fn article(self) -> &'static str {
        match self {
            Category::FlakyNetwork => "a network",
            Category::FlakyTiming => "a timing",
            Category::FlakyResource => "a resource",
            Category::Environmental => "an environmental",
            Category::Deterministic => "a deterministic",
            Category::Unknown => "an unclassified",
        }
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| format!("'{s}' is not a category"))
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Retry,
    RetryWithDelay { seconds: f64 },
    StopRetry,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Retry => f.write_str("retry"),
            Action::RetryWithDelay { seconds } => write!(f, "retry_with_delay({seconds}s)"),
            Action::StopRetry => f.write_str("stop_retry"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassificationSource {
    /// The offline heuristics.
    Heuristic,
    /// What the reruns showed (a pass after a failure, the same failure again).
    Observed,
    /// The AI endpoint.
    Ai,
    /// The AI cache.
    Cache,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub category: Category,
    /// 0 to 1.
    pub confidence: f64,
    pub action: Action,
    pub reason: String,
    pub source: ClassificationSource,
}

/// Fingerprints and classifies a failed attempt in place (offline heuristics).
pub fn annotate(attempt: &mut Attempt) {
    if attempt.outcome.is_failure() {
        attempt.fingerprint = Some(fingerprint::fingerprint(attempt));
        attempt.classification = Some(heuristics::classify(attempt));
    }
}

/// Whether the latest failed attempt repeats the previous one's fingerprint for a failure nothing marks as
/// transient: a confirmed deterministic failure, not worth more attempts.
pub fn confirmed_deterministic(attempts: &[Attempt]) -> bool {
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
pub fn observe(outcome: Outcome, attempts: &[Attempt]) -> Option<Classification> {
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
