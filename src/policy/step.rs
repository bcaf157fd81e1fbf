//! The retry decision after a failed attempt: [`next_step`], a pure function of the test's policy and
//! what its attempts showed.

use super::RetryPolicy;
use std::fmt;

/// What to do after a test's failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Run it again, not before `at` (seconds since the epoch): the failure's end plus the delay.
    Retry {
        at: f64,
    },
    Stop(StopReason),
}

/// Why a failed test gets no further attempt; its `Display` is the report's `stopped_because`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StopReason {
    /// Reruns are off (`smart_rerun = false`) for a test without a marker that turns them on.
    Disabled,
    AttemptLimit {
        max_attempts: u32,
    },
    /// The exception (`class`, or a crash) is not in the `errors` allow-list.
    NotAllowed {
        class: String,
        allowed: Vec<String>,
    },
    /// The same failure twice, nothing transient about it: the attempts left would fail the same way.
    /// `waits` is the seconds of delay they would have waited.
    Deterministic {
        attempts_left: u32,
        waits: f64,
    },
    /// History saw this failure (its fingerprint) fail the test for good in `runs` earlier runs, never
    /// passing on a rerun (`history_policy`).
    KnownFailure {
        runs: u32,
        attempts_left: u32,
        waits: f64,
    },
}

impl StopReason {
    /// Attempts not spent, and the seconds of delay they would have waited, for a stop that saved them.
    pub(crate) fn saved(&self) -> Option<(u32, f64)> {
        match *self {
            StopReason::Deterministic {
                attempts_left,
                waits,
            }
            | StopReason::KnownFailure {
                attempts_left,
                waits,
                ..
            } => Some((attempts_left, waits)),
            _ => None,
        }
    }
}

fn remaining(attempts_left: u32) -> String {
    match attempts_left {
        1 => "1 remaining attempt was".to_owned(),
        n => format!("{n} remaining attempts were"),
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Disabled => {
                f.write_str("reruns are off for unmarked tests (smart_rerun = false)")
            }
            StopReason::AttemptLimit { max_attempts } => {
                write!(f, "reached the attempt limit ({max_attempts})")
            }
            StopReason::NotAllowed { class, allowed } => write!(
                f,
                "{class} is not in the errors allow-list ({})",
                allowed.join(", ")
            ),
            StopReason::Deterministic { attempts_left, .. } => write!(
                f,
                "failed the same way twice: a deterministic failure, so the {} not spent (smart_rerun_early_stop)",
                remaining(*attempts_left)
            ),
            StopReason::KnownFailure {
                runs,
                attempts_left,
                ..
            } => write!(
                f,
                "history saw this failure fail the test for good in {runs} earlier runs, never passing on a rerun, so the {} not spent (smart_rerun_history_policy)",
                remaining(*attempts_left)
            ),
        }
    }
}

/// The step after failed attempt number `runs` of the test `nodeid`, which ended at `stop` (seconds since
/// the epoch) with an exception whose class and bases are `mro` (empty for a crash). `deterministic`:
/// early stop is on and the attempts confirm a deterministic failure.
pub(crate) fn next_step(
    policy: &RetryPolicy,
    nodeid: &str,
    runs: u32,
    mro: &[String],
    deterministic: bool,
    stop: f64,
) -> Step {
    let reason = if !policy.enabled {
        StopReason::Disabled
    } else if runs >= policy.max_attempts {
        StopReason::AttemptLimit {
            max_attempts: policy.max_attempts,
        }
    } else if !policy.allows(mro) {
        StopReason::NotAllowed {
            class: mro.first().map_or("a crash", |s| s.as_str()).to_owned(),
            allowed: policy
                .errors
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        }
    } else if deterministic {
        StopReason::Deterministic {
            attempts_left: policy.max_attempts - runs,
            waits: (runs..policy.max_attempts)
                .map(|k| policy.delay_for(nodeid, k).as_secs_f64())
                .sum(),
        }
    } else {
        return Step::Retry {
            at: stop + policy.delay_for(nodeid, runs).as_secs_f64(),
        };
    };
    Step::Stop(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Backoff, ErrorName};
    use std::time::Duration;

    fn policy(max_attempts: u32, delay: u64, errors: &[&str]) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            delay: Duration::from_secs(delay),
            backoff: Backoff::Exp,
            errors: errors
                .iter()
                .map(|e| ErrorName::parse(e).unwrap())
                .collect(),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn each_failed_attempt_is_retried_after_its_delay_or_stopped_with_a_reason() {
        let conn = vec![
            "requests.exceptions.ConnectionError".to_owned(),
            "builtins.OSError".to_owned(),
        ];
        let value = vec!["builtins.ValueError".to_owned()];
        let off = RetryPolicy {
            enabled: false,
            ..policy(3, 0, &[])
        };
        /// What, the policy, attempts so far, the exception's classes, confirmed deterministic, the step.
        type Case<'a> = (&'a str, RetryPolicy, u32, &'a [String], bool, Step);
        let cases: Vec<Case<'_>> = vec![
            (
                "first failure",
                policy(3, 2, &[]),
                1,
                &value,
                false,
                Step::Retry { at: 102.0 },
            ),
            (
                "exp backoff",
                policy(4, 2, &[]),
                2,
                &value,
                false,
                Step::Retry { at: 104.0 },
            ),
            (
                "a base class is allowed",
                policy(3, 0, &["OSError"]),
                1,
                &conn,
                false,
                Step::Retry { at: 100.0 },
            ),
            (
                "attempt limit",
                policy(3, 2, &[]),
                3,
                &value,
                false,
                Step::Stop(StopReason::AttemptLimit { max_attempts: 3 }),
            ),
            (
                "reruns off",
                off,
                1,
                &value,
                false,
                Step::Stop(StopReason::Disabled),
            ),
            (
                "not allowed",
                policy(3, 0, &["OSError", "TimeoutError"]),
                1,
                &value,
                false,
                Step::Stop(StopReason::NotAllowed {
                    class: "builtins.ValueError".into(),
                    allowed: vec!["OSError".into(), "TimeoutError".into()],
                }),
            ),
            (
                "a crash is not on an allow-list",
                policy(3, 0, &["OSError"]),
                1,
                &[],
                false,
                Step::Stop(StopReason::NotAllowed {
                    class: "a crash".into(),
                    allowed: vec!["OSError".into()],
                }),
            ),
            (
                "deterministic, with the delays it saves",
                policy(5, 1, &[]),
                2,
                &value,
                true,
                Step::Stop(StopReason::Deterministic {
                    attempts_left: 3,
                    waits: 2.0 + 4.0 + 8.0,
                }),
            ),
        ];
        for (what, policy, runs, mro, deterministic, expected) in cases {
            assert_eq!(
                next_step(&policy, "t.py::test_a", runs, mro, deterministic, 100.0),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn stop_reasons_read_as_the_report_shows_them() {
        assert_eq!(
            StopReason::Deterministic {
                attempts_left: 1,
                waits: 0.0
            }
            .to_string(),
            "failed the same way twice: a deterministic failure, so the 1 remaining attempt was not spent (smart_rerun_early_stop)"
        );
        assert_eq!(
            StopReason::AttemptLimit { max_attempts: 2 }.to_string(),
            "reached the attempt limit (2)"
        );
    }
}
