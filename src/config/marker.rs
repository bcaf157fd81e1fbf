//! Per-test policy from markers: `@pytest.mark.smart_rerun(max=4, delay=0.5, backoff="exp",
//! errors=["TimeoutError"], flaky="fail")` on a test, a class or a module (`pytestmark`), and, for
//! migration, pytest-rerunfailures' `@pytest.mark.flaky(reruns=N, reruns_delay=S)` (and the `flaky`
//! package's `max_runs`). The collector reports each test's markers closest first; the closest marker
//! that sets a key wins.

use super::{ConfigError, Source, parse_bool, parse_count, parse_seconds};
use crate::policy::{Backoff, ErrorName, RetryPolicy};
use serde_json::Value;
use std::time::Duration;

/// The keyword arguments `smart_rerun` accepts.
pub(crate) const SMART_RERUN_KWARGS: &[&str] = &[
    "max",
    "delay",
    "backoff",
    "errors",
    "flaky",
    "max_delay",
    "jitter",
];

/// A test's own policy settings; `None` = inherit the global value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MarkerPolicy {
    pub max_attempts: Option<u32>,
    pub delay: Option<Duration>,
    pub backoff: Option<Backoff>,
    pub max_delay: Option<Duration>,
    pub jitter: Option<Duration>,
    pub errors: Option<Vec<ErrorName>>,
    pub fail_on_flaky: Option<bool>,
    /// Which marker it came from: `smart_rerun` or `flaky`.
    pub from: &'static str,
}

impl MarkerPolicy {
    /// The test's policy: the global one with this marker's settings on top. A marked test is rerun even
    /// when the global switch is off.
    pub(crate) fn apply(&self, global: &RetryPolicy) -> RetryPolicy {
        let mut p = global.clone();
        p.enabled = true;
        if let Some(v) = self.max_attempts {
            p.max_attempts = v;
        }
        if let Some(v) = self.delay {
            p.delay = v;
        }
        if let Some(v) = self.backoff {
            p.backoff = v;
        }
        if let Some(v) = self.max_delay {
            p.max_delay = Some(v);
        }
        if let Some(v) = self.jitter {
            p.jitter = v;
        }
        if let Some(v) = &self.errors {
            p.errors = v.clone();
        }
        if let Some(v) = self.fail_on_flaky {
            p.fail_on_flaky = v;
        }
        p
    }
}

/// Parses one test's markers (`{"smart_rerun": [{"kwargs": {..}, "args": [..]}, ..], "flaky": [..]}`).
/// Every bad argument is returned, each naming the test.
pub(crate) fn parse(
    nodeid: &str,
    markers: &Value,
) -> Result<Option<MarkerPolicy>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let list = |name: &str| {
        markers
            .get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let own = list("smart_rerun");
    let flaky = list("flaky");
    let source = || Source::Marker {
        nodeid: nodeid.to_owned(),
    };
    let bad = |errors: &mut Vec<ConfigError>, key: &str, value: &Value, problem: String| {
        errors.push(ConfigError {
            key: key.to_owned(),
            source: source(),
            value: Some(show(value)),
            problem,
        });
    };

    if !own.is_empty() {
        let mut policy = MarkerPolicy {
            from: "smart_rerun",
            ..MarkerPolicy::default()
        };
        // Closest first: apply the farthest first so closer markers overwrite.
        for mark in own.iter().rev() {
            if let Some(args) = mark
                .get("args")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                errors.push(ConfigError {
                    key: "smart_rerun".into(),
                    source: source(),
                    value: Some(args.iter().map(show).collect::<Vec<_>>().join(", ")),
                    problem: format!(
                        "takes keyword arguments only: {}",
                        SMART_RERUN_KWARGS.join(", ")
                    ),
                });
            }
            let Some(kwargs) = mark.get("kwargs").and_then(Value::as_object) else {
                continue;
            };
            for (key, value) in kwargs {
                let result = match key.as_str() {
                    "max" => integer(value)
                        .and_then(|n| parse_count(&n, 1))
                        .map(|n| policy.max_attempts = Some(n)),
                    "delay" => number(value)
                        .and_then(|s| parse_seconds(&s))
                        .map(|d| policy.delay = Some(d)),
                    "max_delay" => number(value)
                        .and_then(|s| parse_seconds(&s))
                        .map(|d| policy.max_delay = Some(d)),
                    "jitter" => number(value)
                        .and_then(|s| parse_seconds(&s))
                        .map(|d| policy.jitter = Some(d)),
                    "backoff" => string(value)
                        .and_then(|s| {
                            s.parse::<Backoff>()
                                .map_err(|_| format!("use {}", Backoff::ALLOWED))
                        })
                        .map(|b| policy.backoff = Some(b)),
                    "errors" => names(value).map(|e| policy.errors = Some(e)),
                    "flaky" => flaky_action(value).map(|f| policy.fail_on_flaky = Some(f)),
                    other => Err(format!(
                        "'{other}' is not an argument of smart_rerun: use {}",
                        SMART_RERUN_KWARGS.join(", ")
                    )),
                };
                if let Err(problem) = result {
                    bad(&mut errors, key, value, problem);
                }
            }
        }
        return if errors.is_empty() {
            Ok(Some(policy))
        } else {
            Err(errors)
        };
    }

    if let Some(mark) = flaky.first() {
        // pytest-rerunfailures: flaky(reruns=1, reruns_delay=0, ...), reruns also as the first positional
        // argument; the `flaky` package: flaky(max_runs=2, min_passes=1).
        let mut policy = MarkerPolicy {
            from: "flaky",
            ..MarkerPolicy::default()
        };
        let kwargs = mark
            .get("kwargs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let first_arg = mark
            .get("args")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned();
        let reruns = kwargs.get("reruns").cloned().or(first_arg);
        match (reruns, kwargs.get("max_runs")) {
            (Some(v), _) => match integer(&v).and_then(|n| parse_count(&n, 0)) {
                Ok(n) => policy.max_attempts = Some(n.saturating_add(1)),
                Err(p) => bad(&mut errors, "reruns", &v, format!("{p} (flaky marker)")),
            },
            (None, Some(v)) => match integer(v).and_then(|n| parse_count(&n, 1)) {
                Ok(n) => policy.max_attempts = Some(n),
                Err(p) => bad(&mut errors, "max_runs", v, format!("{p} (flaky marker)")),
            },
            // pytest-rerunfailures' default: one rerun.
            (None, None) => policy.max_attempts = Some(2),
        }
        if let Some(v) = kwargs.get("reruns_delay") {
            match number(v).and_then(|s| parse_seconds(&s)) {
                Ok(d) => policy.delay = Some(d),
                Err(p) => bad(
                    &mut errors,
                    "reruns_delay",
                    v,
                    format!("{p} (flaky marker)"),
                ),
            }
        }
        return if errors.is_empty() {
            Ok(Some(policy))
        } else {
            Err(errors)
        };
    }
    Ok(None)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn integer(v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        // The collector passes repr() of values it cannot encode; a numeric string is fine.
        Value::String(s) if s.trim().parse::<i64>().is_ok() => Ok(s.clone()),
        Value::Bool(_) => Err("must be a whole number, not a boolean".into()),
        _ => Err("is not a whole number".into()),
    }
}

fn number(v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Bool(_) => Err("must be a number of seconds, not a boolean".into()),
        _ => Err("is not a number of seconds".into()),
    }
}

fn string(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| "must be a string".into())
}

fn names(v: &Value) -> Result<Vec<ErrorName>, String> {
    match v {
        Value::String(s) => ErrorName::parse_list(s),
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for item in items {
                match item.as_str().map(ErrorName::parse) {
                    Some(Ok(n)) => out.push(n),
                    Some(Err(e)) => bad.push(e),
                    None => bad.push(format!("{item} is not a string")),
                }
            }
            if bad.is_empty() {
                Ok(out)
            } else {
                Err(bad.join("; "))
            }
        }
        _ => Err("must be a list of exception names or a comma-separated string".into()),
    }
}

fn flaky_action(v: &Value) -> Result<bool, String> {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("fail") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("pass") => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            parse_bool(s).map_err(|_| "use \"fail\" (flaky fails the run) or \"pass\"".into())
        }
        _ => Err("use \"fail\" (flaky fails the run) or \"pass\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_ok(markers: Value) -> MarkerPolicy {
        parse("t.py::test", &markers).unwrap().unwrap()
    }

    #[test]
    fn smart_rerun_kwargs_become_the_tests_policy() {
        let m = parse_ok(
            json!({"smart_rerun": [{"kwargs": {"max": 4, "delay": 0.5, "backoff": "exp", "errors": ["TimeoutError"], "flaky": "fail"}}]}),
        );
        let p = m.apply(&RetryPolicy {
            enabled: false,
            ..RetryPolicy::default()
        });
        assert!(
            p.enabled,
            "a marked test is rerun even with the global switch off"
        );
        assert_eq!(p.max_attempts, 4);
        assert_eq!(p.delay, Duration::from_millis(500));
        assert_eq!(p.backoff, Backoff::Exp);
        assert_eq!(p.errors, vec![ErrorName::parse("TimeoutError").unwrap()]);
        assert!(p.fail_on_flaky);
        let comma =
            parse_ok(json!({"smart_rerun": [{"kwargs": {"errors": "TimeoutError, OSError"}}]}));
        assert_eq!(comma.errors.unwrap().len(), 2);
    }

    #[test]
    fn the_closest_marker_wins_per_key() {
        // Function marker first, then class, then module.
        let m = parse_ok(json!({"smart_rerun": [
            {"kwargs": {"max": 5}},
            {"kwargs": {"max": 3, "delay": 2}},
            {"kwargs": {"backoff": "linear", "delay": 9}}
        ]}));
        assert_eq!(m.max_attempts, Some(5));
        assert_eq!(m.delay, Some(Duration::from_secs(2)));
        assert_eq!(m.backoff, Some(Backoff::Linear));
    }

    #[test]
    fn bad_marker_arguments_name_the_test_and_what_is_allowed() {
        let rows: &[(Value, &str)] = &[
            (
                json!({"kwargs": {"max": 0}}),
                "max = '0' (marker on t.py::test): must be a whole number, 1 or more",
            ),
            (json!({"kwargs": {"max": true}}), "not a boolean"),
            (json!({"kwargs": {"max": 2.5}}), "is not a whole number"),
            (json!({"kwargs": {"delay": -1}}), "delay = '-1'"),
            (json!({"kwargs": {"delay": "soon"}}), "is not a number"),
            (
                json!({"kwargs": {"backoff": "fib"}}),
                "use none, linear or exp",
            ),
            (
                json!({"kwargs": {"errors": ["ok", "not valid"]}}),
                "'not valid' is not an exception name",
            ),
            (json!({"kwargs": {"errors": 3}}), "must be a list"),
            (json!({"kwargs": {"flaky": "maybe"}}), "use \"fail\""),
            (
                json!({"kwargs": {"retries": 3}}),
                "'retries' is not an argument of smart_rerun",
            ),
            (
                json!({"kwargs": {}, "args": ["3"]}),
                "takes keyword arguments only",
            ),
        ];
        for (mark, expected) in rows {
            let errs = parse("t.py::test", &json!({"smart_rerun": [mark]})).unwrap_err();
            let text = errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(text.contains(expected), "{mark}: {text}");
        }
        let two = parse(
            "t.py::test",
            &json!({"smart_rerun": [{"kwargs": {"max": 0, "delay": -1}}]}),
        )
        .unwrap_err();
        assert_eq!(two.len(), 2, "every bad argument is reported");
    }

    #[test]
    fn rerunfailures_and_flaky_markers_migrate() {
        let m = parse_ok(json!({"flaky": [{"kwargs": {"reruns": 3, "reruns_delay": 1.5}}]}));
        assert_eq!(
            (m.max_attempts, m.delay, m.from),
            (Some(4), Some(Duration::from_millis(1500)), "flaky")
        );
        assert_eq!(
            parse_ok(json!({"flaky": [{"kwargs": {}, "args": ["2"]}]})).max_attempts,
            Some(3)
        );
        assert_eq!(
            parse_ok(json!({"flaky": [{"kwargs": {}}]})).max_attempts,
            Some(2)
        );
        assert_eq!(
            parse_ok(json!({"flaky": [{"kwargs": {"max_runs": 5}}]})).max_attempts,
            Some(5)
        );
        assert!(parse("t", &json!({"flaky": [{"kwargs": {"reruns": -1}}]})).is_err());
        // smart_rerun wins over flaky on the same test.
        let both = parse_ok(
            json!({"smart_rerun": [{"kwargs": {"max": 7}}], "flaky": [{"kwargs": {"reruns": 1}}]}),
        );
        assert_eq!((both.max_attempts, both.from), (Some(7), "smart_rerun"));
        assert_eq!(parse("t", &json!({})).unwrap(), None);
    }
}
