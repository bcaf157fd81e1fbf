//! What leaves the machine: tracebacks trimmed and secrets scrubbed before a failure is sent to an AI
//! endpoint. The main type is [`Redactor`]: it knows the secret values of this process's environment
//! (variables named like `*TOKEN*`, `*SECRET*`, `*KEY*`, `*PASSWORD*`) and the configured tokens, and
//! also scrubs credentials by their shape: private key blocks, the token formats of the big providers
//! (the families gitleaks and detect-secrets know: AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI,
//! npm, PyPI, JWTs), `Bearer x`, `Basic x`, `Authorization: x`, `user:pass@` in URLs, `password=x` style
//! assignments, and, last, long random-looking values after `=` or `:` or in quotes. What was scrubbed is
//! counted by kind ([`Redactions`]) for the AI report; the values never are.

mod shapes;
mod syntax;

use crate::classify::advisor::FailureQuery;
use shapes::{scrub_random_values, scrub_shapes};
use std::collections::BTreeMap;
pub(crate) use syntax::scrub_url_credentials;
use syntax::{scrub_assignments, scrub_schemes};

/// Replaces every scrubbed value.
pub(crate) const MASK: &str = "***";

/// Environment variables whose names contain one of these (upper-cased) hold secrets.
const SECRET_NAMES: [&str; 6] = ["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL"];

/// Shorter values are too likely to be ordinary words or numbers to scrub everywhere.
const MIN_SECRET_LEN: usize = 6;

/// Traceback budget: this many lines from the start and from the end, and at most this many characters.
const HEAD_LINES: usize = 15;
const TAIL_LINES: usize = 45;
const MAX_TRACEBACK_CHARS: usize = 6000;
const MAX_MESSAGE_CHARS: usize = 2000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    /// Secret values of the environment, longest first (so a secret containing another is masked whole).
    env_secrets: Vec<String>,
    /// The configured tokens: scrubbed even with redaction off.
    tokens: Vec<String>,
}

impl Redactor {
    /// A redactor for these environment variables plus `extra` values (the configured tokens).
    pub(crate) fn new<I, K, V>(env: I, extra: &[&str]) -> Redactor
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let env_secrets = env
            .into_iter()
            .filter(|(k, _)| {
                let name = k.as_ref().to_ascii_uppercase();
                SECRET_NAMES.iter().any(|s| name.contains(s))
            })
            .map(|(_, v)| v.as_ref().to_owned())
            .collect();
        let tokens = extra.iter().map(|s| (*s).to_owned()).collect();
        Redactor {
            env_secrets: longest_first(env_secrets),
            tokens: longest_first(tokens),
        }
    }

    /// A redactor for this process's environment and `extra` values.
    pub(crate) fn from_process_env(extra: &[&str]) -> Redactor {
        Redactor::new(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            extra,
        )
    }

    /// Only the configured tokens, which are scrubbed whether redaction is on or off.
    pub(crate) fn scrub_tokens(&self, text: &str) -> String {
        mask_values(text, &self.tokens)
    }

    /// Known values, then credentials recognised by their shape.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.scrub_counted(text, &mut Redactions::default())
    }

    /// [`Redactor::scrub`], counting what it masked in `seen`.
    pub(crate) fn scrub_counted(&self, text: &str, seen: &mut Redactions) -> String {
        let out = stage(text.to_owned(), seen, "configured-token", |t| {
            mask_values(t, &self.tokens)
        });
        let out = stage(out, seen, "secret-variable", |t| {
            mask_values(t, &self.env_secrets)
        });
        let out = scrub_shapes(&out, seen);
        let out = stage(out, seen, "url-credentials", scrub_url_credentials);
        let out = stage(out, seen, "authorization", scrub_schemes);
        let out = stage(out, seen, "secret-assignment", scrub_assignments);
        scrub_random_values(&out, seen)
    }

    /// [`Redactor::query_counted`] without the counts.
    #[cfg(test)]
    pub(crate) fn query(&self, q: &FailureQuery, redact: bool) -> FailureQuery {
        self.query_counted(q, redact, &mut Redactions::default())
    }

    /// The query as it may be sent: every text field scrubbed; with `redact`, the traceback and message
    /// cut to a budget. Without it (redaction off), only the configured tokens are scrubbed. What was
    /// masked is counted in `seen`.
    pub(crate) fn query_counted(
        &self,
        q: &FailureQuery,
        redact: bool,
        seen: &mut Redactions,
    ) -> FailureQuery {
        let seen = std::cell::RefCell::new(seen);
        let clean = |s: &str| {
            let mut seen = seen.borrow_mut();
            if redact {
                self.scrub_counted(s, &mut seen)
            } else {
                stage(s.to_owned(), &mut seen, "configured-token", |t| {
                    mask_values(t, &self.tokens)
                })
            }
        };
        let mut q = q.clone();
        q.nodeid = clean(&q.nodeid);
        q.exception_type = clean(&q.exception_type);
        q.exception_bases = q.exception_bases.iter().map(|b| clean(b)).collect();
        if redact {
            q.message = cap_chars(&q.message, MAX_MESSAGE_CHARS);
            q.traceback = trim_traceback(&q.traceback);
        }
        q.message = clean(&q.message);
        q.traceback = clean(&q.traceback);
        q.heuristic.reason = clean(&q.heuristic.reason);
        q
    }
}

/// What the redactor scrubbed, by kind ("github-token", "secret-variable", ...): counts, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Redactions(BTreeMap<&'static str, usize>);

impl Redactions {
    pub(super) fn add(&mut self, kind: &'static str, n: usize) {
        if n > 0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, kind: &str) -> usize {
        self.0.get(kind).copied().unwrap_or(0)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs one scrubbing stage and counts the masks it added.
fn stage(
    text: String,
    seen: &mut Redactions,
    kind: &'static str,
    f: impl FnOnce(&str) -> String,
) -> String {
    let before = text.matches(MASK).count();
    let out = f(&text);
    seen.add(kind, out.matches(MASK).count().saturating_sub(before));
    out
}

fn longest_first(mut values: Vec<String>) -> Vec<String> {
    values.retain(|v| v.trim().chars().count() >= MIN_SECRET_LEN);
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    values.dedup();
    values
}

fn mask_values(text: &str, values: &[String]) -> String {
    let mut out = text.to_owned();
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    out
}

/// The first and last lines of a long traceback, with how many were left out, within a character budget.
pub(crate) fn trim_traceback(tb: &str) -> String {
    let lines: Vec<&str> = tb.lines().collect();
    let text = if lines.len() > HEAD_LINES + TAIL_LINES {
        let cut = lines.len() - HEAD_LINES - TAIL_LINES;
        let mut t = lines[..HEAD_LINES].join("\n");
        t.push_str(&format!("\n... ({cut} lines trimmed by smart-rerun) ...\n"));
        t.push_str(&lines[lines.len() - TAIL_LINES..].join("\n"));
        t
    } else {
        tb.to_owned()
    };
    let chars = text.chars().count();
    if chars <= MAX_TRACEBACK_CHARS {
        return text;
    }
    // The end holds the error itself: keep more of it.
    let head = MAX_TRACEBACK_CHARS / 4;
    let tail = MAX_TRACEBACK_CHARS - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(chars - tail).collect();
    format!(
        "{start}\n... ({} characters trimmed by smart-rerun) ...\n{end}",
        chars - head - tail
    )
}

fn cap_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push_str(" ... (trimmed by smart-rerun)");
        t
    }
}

#[cfg(test)]
mod tests;
