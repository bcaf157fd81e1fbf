//! Offline heuristics, always on: a failure's exception classes (the MRO the collector reports) and message
//! patterns decide a category, a confidence, an action and a one-line reason that cites the evidence.
//! Outcomes observed on reruns outrank these guesses (see [`super::observe`]).

use crate::model::{Action, Category, Classification, ClassificationSource};
use crate::model::{Attempt, Phase};

/// A rule: any of these classes (short or qualified, matched against the MRO) or message fragments
/// (lowercase) means this category.
struct Rule {
    category: Category,
    classes: &'static [&'static str],
    patterns: &'static [&'static str],
    action: Action,
}

const RULES: &[Rule] = &[
    Rule {
        category: Category::FlakyResource,
        classes: &["sqlite3.OperationalError"],
        patterns: &[
            "address already in use",
            "database is locked",
            "too many open files",
            "resource temporarily unavailable",
            "device or resource busy",
            "deadlock detected",
            "lock wait timeout",
            "cannot allocate memory",
            "errno 98",
            "errno 24",
        ],
        action: Action::RetryWithDelay { seconds: 1.0 },
    },
    Rule {
        category: Category::FlakyTiming,
        classes: &[
            "TimeoutError",
            "socket.timeout",
            "asyncio.exceptions.TimeoutError",
            "concurrent.futures._base.TimeoutError",
            "requests.exceptions.Timeout",
            "httpx.TimeoutException",
            "selenium.common.exceptions.TimeoutException",
        ],
        patterns: &[
            "timed out",
            "timeout",
            "deadline exceeded",
            "took too long",
            "did not finish within",
        ],
        action: Action::Retry,
    },
    Rule {
        category: Category::FlakyNetwork,
        classes: &[
            "ConnectionError",
            "ConnectionResetError",
            "ConnectionRefusedError",
            "ConnectionAbortedError",
            "BrokenPipeError",
            "socket.gaierror",
            "requests.exceptions.ConnectionError",
            "urllib3.exceptions.ProtocolError",
            "urllib3.exceptions.NewConnectionError",
            "urllib3.exceptions.MaxRetryError",
            "http.client.RemoteDisconnected",
            "httpx.ConnectError",
            "httpx.ReadError",
            "httpx.RemoteProtocolError",
            "aiohttp.client_exceptions.ClientConnectionError",
            "ssl.SSLEOFError",
        ],
        patterns: &[
            "connection reset",
            "connection refused",
            "connection aborted",
            "could not connect to server",
            "broken pipe",
            "name or service not known",
            "temporary failure in name resolution",
            "nodename nor servname",
            "failed to resolve",
            "network is unreachable",
            "no route to host",
            "remote end closed connection",
            "502 bad gateway",
            "503 service unavailable",
            "504 gateway timeout",
            "502 server error",
            "503 server error",
            "504 server error",
            "status code 502",
            "status code 503",
            "status code 504",
            "eof occurred in violation of protocol",
        ],
        action: Action::RetryWithDelay { seconds: 2.0 },
    },
    Rule {
        category: Category::Environmental,
        classes: &["PermissionError"],
        patterns: &[
            "no space left on device",
            "read-only file system",
            "permission denied",
            "command not found",
            "environment variable",
            "disk quota exceeded",
        ],
        action: Action::StopRetry,
    },
    Rule {
        category: Category::Deterministic,
        classes: &[
            "ImportError",
            "ModuleNotFoundError",
            "SyntaxError",
            "IndentationError",
            "NameError",
            "UnboundLocalError",
            "TypeError",
            "AttributeError",
            "ZeroDivisionError",
            "NotImplementedError",
            "RecursionError",
        ],
        patterns: &[
            "fixture '",
            "is not defined",
            "unexpected keyword argument",
            "has no attribute",
        ],
        action: Action::StopRetry,
    },
];

/// Classifies one failed attempt from its exception and message alone.
pub(crate) fn classify(attempt: &Attempt) -> Classification {
    if attempt.phase == Some(Phase::Crash) {
        return Classification {
            category: Category::Unknown,
            confidence: 0.3,
            action: Action::Retry,
            reason: "pytest died while the test ran (a crash, os._exit or a kill): the cause is not visible from here".into(),
            source: ClassificationSource::Heuristic,
        };
    }
    let Some(exc) = &attempt.exception else {
        return unknown("no exception was reported".into());
    };
    let mro: Vec<&str> = if exc.mro.is_empty() {
        vec![exc.type_name.as_str()]
    } else {
        exc.mro.iter().map(String::as_str).collect()
    };
    // Class evidence first, most derived class first: a TimeoutError is timing even though it is an
    // OSError, a ConnectionResetError network although a ConnectionError subclass of OSError.
    for (depth, class) in mro.iter().enumerate() {
        for rule in RULES {
            if rule.classes.iter().any(|c| class_matches(c, class)) {
                let via = if depth == 0 {
                    String::new()
                } else {
                    format!(" (a subclass of {})", short(class))
                };
                return Classification {
                    category: rule.category,
                    confidence: if depth == 0 { 0.85 } else { 0.75 },
                    action: rule.action,
                    reason: format!(
                        "{}{via} is {} error",
                        short(mro[0]),
                        rule.category.article()
                    ),
                    source: ClassificationSource::Heuristic,
                };
            }
        }
    }
    let message = exc.message.to_lowercase();
    for rule in RULES {
        if let Some(p) = rule.patterns.iter().find(|p| message.contains(*p)) {
            return Classification {
                category: rule.category,
                confidence: 0.7,
                action: rule.action,
                reason: format!(
                    "{} with message matching \"{p}\": {} error",
                    short(mro[0]),
                    rule.category.article()
                ),
                source: ClassificationSource::Heuristic,
            };
        }
    }
    unknown(format!(
        "{}: no known transient or deterministic pattern",
        short(mro[0])
    ))
}

fn unknown(reason: String) -> Classification {
    Classification {
        category: Category::Unknown,
        confidence: 0.3,
        action: Action::Retry,
        reason,
        source: ClassificationSource::Heuristic,
    }
}

fn short(qualified: &str) -> &str {
    qualified.strip_prefix("builtins.").unwrap_or(qualified)
}

/// `name` is short (`TimeoutError`) or qualified; `class` qualified (`builtins.TimeoutError`).
fn class_matches(name: &str, class: &str) -> bool {
    if name.contains('.') {
        class == name
    } else {
        short(class) == name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExceptionInfo, Outcome};

    fn failed(mro: &[&str], message: &str) -> Attempt {
        Attempt {
            number: 1,
            round: 1,
            outcome: Outcome::Failed,
            phase: Some(Phase::Call),
            duration_seconds: 0.0,
            finished_at: None,
            exception: Some(ExceptionInfo {
                type_name: mro[0].into(),
                mro: mro.iter().map(|s| s.to_string()).collect(),
                message: message.into(),
            }),
            crash: None,
            test_location: None,
            traceback: None,
            captured: vec![],
            also_failed: vec![],
            worker: None,
            fingerprint: None,
            classification: None,
        }
    }

    /// Real exception hierarchies and messages, as CPython and common libraries raise them.
    #[test]
    fn real_failures_are_classified_with_their_evidence() {
        let os = [
            "builtins.OSError",
            "builtins.Exception",
            "builtins.BaseException",
        ];
        let with = |head: &[&'static str]| head.iter().copied().chain(os).collect::<Vec<_>>();
        let rows: Vec<(Vec<&str>, &str, Category, &str)> = vec![
            (
                with(&["builtins.ConnectionResetError", "builtins.ConnectionError"]),
                "[Errno 104] Connection reset by peer",
                Category::FlakyNetwork,
                "ConnectionResetError is a network",
            ),
            (
                with(&[
                    "builtins.ConnectionRefusedError",
                    "builtins.ConnectionError",
                ]),
                "[Errno 111] Connection refused",
                Category::FlakyNetwork,
                "network",
            ),
            (
                vec![
                    "requests.exceptions.ConnectionError",
                    "requests.exceptions.RequestException",
                    "builtins.OSError",
                ],
                "HTTPSConnectionPool(host='api', port=443): Max retries exceeded",
                Category::FlakyNetwork,
                "requests.exceptions.ConnectionError is a network",
            ),
            (
                vec!["socket.gaierror", "builtins.OSError"],
                "[Errno -3] Temporary failure in name resolution",
                Category::FlakyNetwork,
                "network",
            ),
            (
                vec![
                    "requests.exceptions.HTTPError",
                    "requests.exceptions.RequestException",
                    "builtins.OSError",
                ],
                "503 Server Error: Service Unavailable for url: https://x",
                Category::FlakyNetwork,
                "matching \"503 server error\"",
            ),
            (
                with(&["builtins.TimeoutError"]),
                "inventory sync did not finish within 2.0s",
                Category::FlakyTiming,
                "TimeoutError is a timing",
            ),
            (
                vec!["builtins.AssertionError", "builtins.Exception"],
                "assert False\n +  where False = wait_until(ready, timeout=5)",
                Category::FlakyTiming,
                "matching \"timeout\"",
            ),
            (
                vec![
                    "sqlite3.OperationalError",
                    "sqlite3.DatabaseError",
                    "sqlite3.Error",
                    "builtins.Exception",
                ],
                "database is locked",
                Category::FlakyResource,
                "sqlite3.OperationalError is a resource",
            ),
            (
                with(&[]),
                "[Errno 98] Address already in use",
                Category::FlakyResource,
                "matching \"address already in use\"",
            ),
            (
                with(&[]),
                "[Errno 24] Too many open files",
                Category::FlakyResource,
                "resource",
            ),
            (
                with(&["builtins.PermissionError"]),
                "[Errno 13] Permission denied: '/etc/x'",
                Category::Environmental,
                "PermissionError is an environmental",
            ),
            (
                with(&[]),
                "[Errno 28] No space left on device",
                Category::Environmental,
                "environmental",
            ),
            (
                vec![
                    "builtins.ModuleNotFoundError",
                    "builtins.ImportError",
                    "builtins.Exception",
                ],
                "No module named 'nope'",
                Category::Deterministic,
                "ModuleNotFoundError is a deterministic",
            ),
            (
                vec!["builtins.NameError", "builtins.Exception"],
                "name 'x' is not defined",
                Category::Deterministic,
                "deterministic",
            ),
            (
                vec!["builtins.TypeError", "builtins.Exception"],
                "f() takes 1 positional argument but 2 were given",
                Category::Deterministic,
                "deterministic",
            ),
            (
                vec!["builtins.SyntaxError", "builtins.Exception"],
                "invalid syntax",
                Category::Deterministic,
                "deterministic",
            ),
            (
                vec!["builtins.AssertionError", "builtins.Exception"],
                "assert 1 == 2",
                Category::Unknown,
                "no known",
            ),
            (
                vec!["builtins.ValueError", "builtins.Exception"],
                "broken for good",
                Category::Unknown,
                "no known",
            ),
        ];
        for (mro, message, category, reason) in rows {
            let c = classify(&failed(&mro, message));
            assert_eq!(c.category, category, "{mro:?} {message}: {}", c.reason);
            assert!(
                c.reason.contains(reason),
                "{mro:?}: reason {:?} lacks {reason:?}",
                c.reason
            );
            assert!((0.0..=1.0).contains(&c.confidence));
        }
    }

    #[test]
    fn a_crash_is_unknown_and_retried() {
        let mut a = failed(&["smart_rerun.PytestCrash"], "pytest died");
        a.phase = Some(Phase::Crash);
        let c = classify(&a);
        assert_eq!((c.category, c.action), (Category::Unknown, Action::Retry));
    }
}
