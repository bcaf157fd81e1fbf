//! The retry policy: how many attempts a test gets, how long to wait between them, and which failures may
//! be retried at all. The main type is [`RetryPolicy`]; delays come from the pure [`BackoffIter`] so they
//! can be checked without sleeping, and [`schedule`] turns per-test ready times into the next round.

mod schedule;
mod step;

pub(crate) use schedule::plan_next_round;
pub(crate) use step::{Step, StopReason, next_step};

use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default total attempts per test, as in the reference plugin.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 2;

/// How the delay grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backoff {
    /// Every retry waits `delay`.
    #[default]
    None,
    /// The k-th retry waits `delay × k`.
    Linear,
    /// The k-th retry waits `delay × 2^(k-1)`.
    Exp,
}

impl Backoff {
    pub const ALLOWED: &'static str = "none, linear or exp";
}

impl FromStr for Backoff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Backoff::None),
            "linear" => Ok(Backoff::Linear),
            "exp" | "exponential" => Ok(Backoff::Exp),
            other => Err(format!(
                "'{other}' is not a backoff: use {}",
                Backoff::ALLOWED
            )),
        }
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backoff::None => "none",
            Backoff::Linear => "linear",
            Backoff::Exp => "exp",
        })
    }
}

/// An exception name from the `errors` allow-list: a short class name (`TimeoutError`) or a qualified one
/// (`requests.exceptions.ConnectionError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ErrorName(String);

impl ErrorName {
    /// Parses one name; it must look like a dotted Python identifier.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        let valid = !name.is_empty()
            && name.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            });
        if valid {
            Ok(ErrorName(name.to_owned()))
        } else {
            Err(format!(
                "'{name}' is not an exception name: use a class name such as TimeoutError or a qualified one such as requests.exceptions.ConnectionError"
            ))
        }
    }

    /// Parses a comma-separated list, reporting every bad entry.
    pub(crate) fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        let mut names = Vec::new();
        let mut bad = Vec::new();
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            match Self::parse(part) {
                Ok(n) => names.push(n),
                Err(e) => bad.push(e),
            }
        }
        if bad.is_empty() {
            Ok(names)
        } else {
            Err(bad.join("; "))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this name denotes `qualified` (`module.QualName`, as the collector reports each class of an
    /// exception's MRO). A short name matches the last component; a qualified one must match in full,
    /// where `builtins.` may be left out.
    pub(crate) fn matches(&self, qualified: &str) -> bool {
        let name = self.0.as_str();
        if name == qualified {
            return true;
        }
        if !name.contains('.') {
            return qualified.rsplit('.').next() == Some(name);
        }
        qualified.strip_prefix("builtins.") == Some(name)
            || name.strip_prefix("builtins.") == Some(qualified)
    }
}

/// The policy one test runs under: the global one, possibly overridden by the test's own marker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Whether failures of this test are rerun at all (`smart_rerun = false` turns reruns off for
    /// unmarked tests).
    pub enabled: bool,
    /// Total attempts, the first run included; at least 1.
    pub max_attempts: u32,
    #[serde(with = "secs")]
    pub delay: Duration,
    pub backoff: Backoff,
    /// Upper bound for a backed-off delay.
    #[serde(with = "opt_secs")]
    pub max_delay: Option<Duration>,
    /// Up to this much is added to each delay, spread over tests so retries don't land together.
    #[serde(with = "secs")]
    pub jitter: Duration,
    /// Empty: every failure may be rerun. Otherwise only failures whose exception class, or a base
    /// class, matches a name.
    pub errors: Vec<ErrorName>,
    /// A flaky result fails the run.
    pub fail_on_flaky: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            enabled: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            delay: Duration::ZERO,
            backoff: Backoff::None,
            max_delay: None,
            jitter: Duration::ZERO,
            errors: Vec::new(),
            fail_on_flaky: false,
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry, in order: the first item is the wait before attempt 2.
    pub(crate) fn delays(&self) -> BackoffIter {
        BackoffIter {
            delay: self.delay,
            backoff: self.backoff,
            max_delay: self.max_delay,
            retry: 0,
            remaining: self.max_attempts.saturating_sub(1),
        }
    }

    /// The wait between a test's failed attempt `attempt` (1-based) and the next one: the scheduler's
    /// delays are [`RetryPolicy::delays`], read past `max_attempts` for a marker that allows more.
    pub(crate) fn delay_after(&self, attempt: u32) -> Duration {
        let mut delays = BackoffIter {
            remaining: u32::MAX,
            ..self.delays()
        };
        delays
            .nth(attempt.max(1) as usize - 1)
            .unwrap_or(Duration::ZERO)
    }

    /// The wait after failed attempt `attempt` of the test `key` (its node id), jitter included. The
    /// jitter is a hash of the test and the attempt, not a random draw: retries still spread out, and the
    /// schedule stays a pure function.
    pub(crate) fn delay_for(&self, key: &str, attempt: u32) -> Duration {
        let base = self.delay_after(attempt);
        if self.jitter.is_zero() {
            return base;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes().chain(attempt.to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let fraction = (h >> 11) as f64 / (1u64 << 53) as f64;
        base + self.jitter.mul_f64(fraction)
    }

    /// Whether a failure whose exception has these MRO names (most derived first) may be retried under
    /// the allow-list. A failure without an exception type (a crash) matches only an empty list.
    pub(crate) fn allows(&self, mro: &[String]) -> bool {
        self.errors.is_empty()
            || mro
                .iter()
                .any(|class| self.errors.iter().any(|n| n.matches(class)))
    }
}

/// The k-th retry's delay (k from 1): `delay`, `delay × k` or `delay × 2^(k-1)`, capped at `max_delay`.
fn backoff_delay(
    delay: Duration,
    backoff: Backoff,
    max_delay: Option<Duration>,
    k: u32,
) -> Duration {
    let k = k.max(1);
    let raw = match backoff {
        Backoff::None => delay,
        Backoff::Linear => delay.saturating_mul(k),
        // 2^(k-1) overflows u32 past k = 32; saturate rather than wrap.
        Backoff::Exp => delay.saturating_mul(1u32.checked_shl(k - 1).unwrap_or(u32::MAX)),
    };
    match max_delay {
        Some(cap) => raw.min(cap),
        None => raw,
    }
}

/// The delays before each retry of one test: drain it to see the whole schedule without sleeping.
#[derive(Debug, Clone)]
pub struct BackoffIter {
    delay: Duration,
    backoff: Backoff,
    max_delay: Option<Duration>,
    retry: u32,
    remaining: u32,
}

impl Iterator for BackoffIter {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.retry += 1;
        Some(backoff_delay(
            self.delay,
            self.backoff,
            self.max_delay,
            self.retry,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for BackoffIter {}

/// The global policy as the report shows it.
impl From<&RetryPolicy> for crate::model::PolicyInfo {
    fn from(p: &RetryPolicy) -> Self {
        crate::model::PolicyInfo {
            enabled: p.enabled,
            max_attempts: p.max_attempts,
            delay_seconds: p.delay.as_secs_f64(),
            backoff: p.backoff.to_string(),
            max_delay_seconds: p.max_delay.map(|d| d.as_secs_f64()),
            errors: p.errors.iter().map(|e| e.as_str().to_owned()).collect(),
        }
    }
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_schedules_follow_the_documented_formulas() {
        let cases: &[(Backoff, u32, &[u64])] = &[
            (Backoff::None, 4, &[500, 500, 500]),
            (Backoff::Linear, 4, &[500, 1000, 1500]),
            (Backoff::Exp, 5, &[500, 1000, 2000, 4000]),
            (Backoff::Exp, 1, &[]),
        ];
        for (backoff, max, expected) in cases {
            let policy = RetryPolicy {
                max_attempts: *max,
                delay: ms(500),
                backoff: *backoff,
                ..Default::default()
            };
            let got: Vec<u64> = policy.delays().map(|d| d.as_millis() as u64).collect();
            assert_eq!(got, *expected, "{backoff} with max {max}");
            assert_eq!(policy.delays().len(), expected.len());
        }
    }

    #[test]
    fn max_delay_caps_the_backoff_and_huge_exponents_saturate() {
        assert_eq!(
            backoff_delay(ms(100), Backoff::Exp, Some(ms(350)), 3),
            ms(350)
        );
        assert_eq!(
            backoff_delay(ms(100), Backoff::Exp, Some(ms(350)), 2),
            ms(200)
        );
        let huge = backoff_delay(Duration::from_secs(1), Backoff::Exp, None, 200);
        assert!(huge >= Duration::from_secs(u32::MAX as u64));
        assert_eq!(
            backoff_delay(ms(100), Backoff::Exp, Some(ms(100)), 200),
            ms(100)
        );
    }

    #[test]
    fn jitter_stays_within_its_bound_and_differs_between_tests() {
        let p = RetryPolicy {
            delay: ms(100),
            jitter: ms(50),
            ..Default::default()
        };
        let delays: Vec<Duration> = (0..20)
            .map(|i| p.delay_for(&format!("t.py::test_{i}"), 1))
            .collect();
        assert!(
            delays.iter().all(|d| *d >= ms(100) && *d < ms(150)),
            "{delays:?}"
        );
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "jitter spreads tests apart"
        );
        assert_eq!(
            p.delay_for("t.py::a", 1),
            p.delay_for("t.py::a", 1),
            "and is repeatable"
        );
        assert_eq!(
            RetryPolicy {
                delay: ms(100),
                ..Default::default()
            }
            .delay_for("x", 1),
            ms(100)
        );
    }

    #[test]
    fn delay_after_an_attempt_is_the_retry_that_follows_it() {
        let p = RetryPolicy {
            max_attempts: 4,
            delay: ms(100),
            backoff: Backoff::Linear,
            ..Default::default()
        };
        assert_eq!(p.delay_after(1), ms(100));
        assert_eq!(p.delay_after(3), ms(300));
    }

    #[test]
    fn error_names_match_short_qualified_and_base_classes() {
        let mro = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let timeout = mro(&[
            "builtins.TimeoutError",
            "builtins.OSError",
            "builtins.Exception",
            "builtins.BaseException",
        ]);
        let requests = mro(&[
            "requests.exceptions.ConnectionError",
            "requests.exceptions.RequestException",
            "builtins.OSError",
        ]);
        let rows: &[(&str, &Vec<String>, bool)] = &[
            ("TimeoutError", &timeout, true),
            ("OSError", &timeout, true),
            ("builtins.TimeoutError", &timeout, true),
            ("ValueError", &timeout, false),
            ("requests.exceptions.ConnectionError", &requests, true),
            ("requests.exceptions.RequestException", &requests, true),
            ("ConnectionError", &requests, true),
            ("urllib3.exceptions.ConnectionError", &requests, false),
            ("exceptions.ConnectionError", &requests, false),
        ];
        for (name, mro, expected) in rows {
            let p = RetryPolicy {
                errors: vec![ErrorName::parse(name).unwrap()],
                ..Default::default()
            };
            assert_eq!(p.allows(mro), *expected, "{name} vs {mro:?}");
        }
        assert!(RetryPolicy::default().allows(&[]));
        let p = RetryPolicy {
            errors: vec![ErrorName::parse("TimeoutError").unwrap()],
            ..Default::default()
        };
        assert!(
            !p.allows(&[]),
            "a crash has no exception class and is not on any allow-list"
        );
    }

    #[test]
    fn error_lists_report_every_bad_name() {
        assert_eq!(
            ErrorName::parse_list("TimeoutError, a.b.C,").unwrap().len(),
            2
        );
        let err = ErrorName::parse_list("1bad,Good,no-dash").unwrap_err();
        assert!(err.contains("'1bad'") && err.contains("'no-dash'"), "{err}");
    }

    #[test]
    fn backoff_parses_the_documented_names_only() {
        assert_eq!("EXP".parse::<Backoff>(), Ok(Backoff::Exp));
        assert_eq!("linear".parse::<Backoff>(), Ok(Backoff::Linear));
        assert!(
            "fibonacci"
                .parse::<Backoff>()
                .unwrap_err()
                .contains("none, linear or exp")
        );
    }
}
