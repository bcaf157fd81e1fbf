//! Settings from their layers, validated into a [`Settings`]. Each raw value keeps where it came from
//! ([`Source`]) so a usage error can name the key, the place, the bad value and what is allowed, and every
//! bad value is reported, not only the first.
//!
//! Layers, lowest first: built-in defaults < command line. (pytest ini keys, `SMART_RERUN_*` variables and
//! markers slot in between through [`RawLayer::update`].)

use crate::cli::RunArgs;
use crate::policy::{Backoff, ErrorName, RetryPolicy};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A command-line flag, e.g. `--max`.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(flag) => write!(f, "command line {flag}"),
        }
    }
}

/// One raw, unvalidated value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub value: String,
    pub source: Source,
}

/// Raw values of one layer; `None` = not set there.
#[derive(Debug, Clone, Default)]
pub struct RawLayer {
    pub max: Option<Raw>,
    pub delay: Option<Raw>,
    pub backoff: Option<Raw>,
    pub errors: Option<Raw>,
    pub report: Option<Raw>,
}

impl RawLayer {
    /// Overlays `other` (a higher-precedence layer) on `self`.
    pub fn update(&mut self, other: &RawLayer) {
        fn take(dst: &mut Option<Raw>, src: &Option<Raw>) {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        take(&mut self.max, &other.max);
        take(&mut self.delay, &other.delay);
        take(&mut self.backoff, &other.backoff);
        take(&mut self.errors, &other.errors);
        take(&mut self.report, &other.report);
    }

    fn from_args(args: &RunArgs) -> RawLayer {
        let flag = |v: &Option<String>, name: &'static str| {
            v.as_ref().map(|value| Raw {
                value: value.clone(),
                source: Source::Flag(name),
            })
        };
        RawLayer {
            max: flag(&args.max, "--max"),
            delay: flag(&args.delay, "--delay"),
            backoff: flag(&args.backoff, "--backoff"),
            errors: flag(&args.errors, "--errors"),
            report: args.report.as_ref().map(|p| Raw {
                value: p.display().to_string(),
                source: Source::Flag("--report"),
            }),
        }
    }
}

/// One bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub source: Source,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = '{}' ({}): {}",
            self.key, self.value, self.source, self.problem
        )
    }
}

/// Every bad value of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid setting: {one}"),
            many => {
                write!(f, "{} invalid settings:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated settings of a run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub policy: RetryPolicy,
    pub report: Option<PathBuf>,
}

impl Settings {
    pub fn from_run_args(args: &RunArgs) -> Result<Settings, ConfigErrors> {
        Settings::from_layer(&RawLayer::from_args(args))
    }

    /// Validates merged raw values; collects every problem.
    pub fn from_layer(layer: &RawLayer) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut policy = RetryPolicy::default();
        let mut check = |key: &'static str, raw: &Raw, result: Result<(), String>| {
            if let Err(problem) = result {
                errors.push(ConfigError {
                    key,
                    source: raw.source.clone(),
                    value: raw.value.clone(),
                    problem,
                });
            }
        };
        if let Some(raw) = &layer.max {
            check(
                "max",
                raw,
                parse_attempts(&raw.value).map(|n| policy.max_attempts = n),
            );
        }
        if let Some(raw) = &layer.delay {
            check(
                "delay",
                raw,
                parse_seconds(&raw.value).map(|d| policy.delay = d),
            );
        }
        if let Some(raw) = &layer.backoff {
            check(
                "backoff",
                raw,
                raw.value.parse::<Backoff>().map(|b| policy.backoff = b),
            );
        }
        if let Some(raw) = &layer.errors {
            check(
                "errors",
                raw,
                ErrorName::parse_list(&raw.value).map(|e| policy.errors = e),
            );
        }
        let report = layer.report.as_ref().map(|r| PathBuf::from(&r.value));
        if errors.is_empty() {
            Ok(Settings { policy, report })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// A whole number of attempts, 1 or more.
pub fn parse_attempts(value: &str) -> Result<u32, String> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 && n <= u32::MAX as i64 => Ok(n as u32),
        Ok(_) => {
            Err("must be a whole number, 1 or more (the first run counts as an attempt)".into())
        }
        Err(_) => Err("is not a whole number: use 1 or more".into()),
    }
}

/// A number of seconds, 0 or more.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Ok(_) => Err("must be a number of seconds, 0 or more".into()),
        Err(_) => Err("is not a number: use seconds, 0 or more (e.g. 0.5)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(value: &str, name: &'static str) -> Option<Raw> {
        Some(Raw {
            value: value.into(),
            source: Source::Flag(name),
        })
    }

    #[test]
    fn each_bad_value_is_reported_with_key_source_and_what_is_allowed() {
        let rows: &[(&str, RawLayer, &str)] = &[
            (
                "max 0",
                RawLayer {
                    max: flag("0", "--max"),
                    ..Default::default()
                },
                "max = '0' (command line --max): must be a whole number, 1 or more",
            ),
            (
                "max word",
                RawLayer {
                    max: flag("three", "--max"),
                    ..Default::default()
                },
                "max = 'three' (command line --max): is not a whole number",
            ),
            (
                "negative delay",
                RawLayer {
                    delay: flag("-1", "--delay"),
                    ..Default::default()
                },
                "delay = '-1' (command line --delay): must be a number of seconds, 0 or more",
            ),
            (
                "nan delay",
                RawLayer {
                    delay: flag("nan", "--delay"),
                    ..Default::default()
                },
                "must be a number of seconds",
            ),
            (
                "word delay",
                RawLayer {
                    delay: flag("soon", "--delay"),
                    ..Default::default()
                },
                "is not a number",
            ),
            (
                "backoff",
                RawLayer {
                    backoff: flag("fib", "--backoff"),
                    ..Default::default()
                },
                "use none, linear or exp",
            ),
            (
                "errors",
                RawLayer {
                    errors: flag("Timeout Error", "--errors"),
                    ..Default::default()
                },
                "is not an exception name",
            ),
        ];
        for (name, layer, expected) in rows {
            let err = Settings::from_layer(layer).unwrap_err();
            assert!(err.to_string().contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn all_bad_values_are_reported_together() {
        let layer = RawLayer {
            max: flag("0", "--max"),
            delay: flag("x", "--delay"),
            backoff: flag("y", "--backoff"),
            ..Default::default()
        };
        let err = Settings::from_layer(&layer).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().starts_with("3 invalid settings:"));
    }

    #[test]
    fn higher_layers_win() {
        let mut base = RawLayer {
            max: flag("3", "--max"),
            delay: flag("1", "--delay"),
            ..Default::default()
        };
        base.update(&RawLayer {
            max: flag("5", "--max"),
            ..Default::default()
        });
        let s = Settings::from_layer(&base).unwrap();
        assert_eq!(s.policy.max_attempts, 5);
        assert_eq!(s.policy.delay, Duration::from_secs(1));
    }
}
