//! The classification vocabulary: [`Classification`] (a category, a confidence, an action and a one-line
//! reason with its evidence, and where it came from). The classifier in `classify` produces them.

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

    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn is_transient(self) -> bool {
        matches!(
            self,
            Category::FlakyNetwork | Category::FlakyTiming | Category::FlakyResource
        )
    }

    /// "a network", "an environmental", ... for reasons.
    pub(crate) fn article(self) -> &'static str {
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
