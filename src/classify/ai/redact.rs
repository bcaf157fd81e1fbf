//! What leaves the machine: tracebacks trimmed and secrets scrubbed before a failure is sent to an AI
//! endpoint. The main type is [`Redactor`]: it knows the secret values of this process's environment
//! (variables named like `*TOKEN*`, `*SECRET*`, `*KEY*`, `*PASSWORD*`) and the configured tokens, and
//! also scrubs credentials by their shape: private key blocks, the token formats of the big providers
//! (the families gitleaks and detect-secrets know: AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI,
//! npm, PyPI, JWTs), `Bearer x`, `Basic x`, `Authorization: x`, `user:pass@` in URLs, `password=x` style
//! assignments, and, last, long random-looking values after `=` or `:` or in quotes. What was scrubbed is
//! counted by kind ([`Redactions`]) for the AI report; the values never are.

use crate::classify::advisor::FailureQuery;
use regex::{Captures, Regex};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Replaces every scrubbed value.
pub const MASK: &str = "***";

/// Environment variables whose names contain one of these (upper-cased) hold secrets.
const SECRET_NAMES: [&str; 6] = ["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL"];

/// Shorter values are too likely to be ordinary words or numbers to scrub everywhere.
const MIN_SECRET_LEN: usize = 6;

/// Assignments to names containing one of these have their value scrubbed (`password=x`, `"token": "x"`).
const SECRET_FIELDS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
];

/// Traceback budget: this many lines from the start and from the end, and at most this many characters.
const HEAD_LINES: usize = 15;
const TAIL_LINES: usize = 45;
const MAX_TRACEBACK_CHARS: usize = 6000;
const MAX_MESSAGE_CHARS: usize = 2000;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Secret values of the environment, longest first (so a secret containing another is masked whole).
    env_secrets: Vec<String>,
    /// The configured tokens: scrubbed even with redaction off.
    tokens: Vec<String>,
}

impl Redactor {
    /// A redactor for these environment variables plus `extra` values (the configured tokens).
    pub fn new<I, K, V>(env: I, extra: &[&str]) -> Redactor
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
    pub fn from_process_env(extra: &[&str]) -> Redactor {
        Redactor::new(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            extra,
        )
    }

    /// Only the configured tokens, which are scrubbed whether redaction is on or off.
    pub fn scrub_tokens(&self, text: &str) -> String {
        mask_values(text, &self.tokens)
    }

    /// Known values, then credentials recognised by their shape.
    pub fn scrub(&self, text: &str) -> String {
        self.scrub_counted(text, &mut Redactions::default())
    }

    /// [`Redactor::scrub`], counting what it masked in `seen`.
    pub fn scrub_counted(&self, text: &str, seen: &mut Redactions) -> String {
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

    /// The query as it may be sent: every text field scrubbed; with `trim`, the traceback and message
    /// cut to a budget. Without `trim` (redaction off), only the configured tokens are scrubbed.
    pub fn query(&self, q: &FailureQuery, redact: bool) -> FailureQuery {
        self.query_counted(q, redact, &mut Redactions::default())
    }

    /// [`Redactor::query`], counting what it masked in `seen`.
    pub fn query_counted(
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
pub struct Redactions(BTreeMap<&'static str, usize>);

impl Redactions {
    fn add(&mut self, kind: &'static str, n: usize) {
        if n > 0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    /// Adds another set of counts to these.
    pub fn merge(&mut self, other: &Redactions) {
        for (kind, n) in &other.0 {
            self.add(kind, *n);
        }
    }

    pub fn get(&self, kind: &str) -> usize {
        self.0.get(kind).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
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

/// Secrets recognised by their shape, most specific first. A rule with a capture group masks only the
/// group (the value after its name); one without masks the whole match.
static SHAPES: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        (
            "private-key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
        ),
        ("aws-access-key-id", r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
        (
            "aws-secret-access-key",
            r#"(?i:aws)[A-Za-z0-9_.\-]{0,30}?(?i:secret|private)[A-Za-z0-9_.\- ]{0,20}?["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})\b"#,
        ),
        ("github-token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b"),
        ("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
        ("gitlab-token", r"\bgl(?:pat|dt|ptt|rt|soat|cbt|imt|oas|ft|ffct|agent)-[A-Za-z0-9_\-]{20,}"),
        ("slack-token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
        ("slack-webhook", r"hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{20,}"),
        ("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}"),
        ("openai-key", r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
        ("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("pypi-token", r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"),
        ("jwt", r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"),
    ]
    .into_iter()
    .map(|(kind, re)| (kind, Regex::new(re).expect("a valid secret pattern")))
    .collect()
});

/// A value after `=` or `:` (spaces and a quote allowed) or inside quotes: the candidates of the
/// high-entropy fallback.
static QUOTED_OR_ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:[=:][ \t]*["']?|["'])([A-Za-z0-9+/_\-]{20,}={0,2})"#).expect("a valid pattern")
});

fn scrub_shapes(text: &str, seen: &mut Redactions) -> String {
    let mut out = text.to_owned();
    for (kind, re) in SHAPES.iter() {
        let mut n = 0;
        let replaced = re.replace_all(&out, |caps: &Captures<'_>| {
            n += 1;
            mask_group(caps)
        });
        if n > 0 {
            out = replaced.into_owned();
            seen.add(kind, n);
        }
    }
    out
}

/// The whole match masked, or only its first group when the rule has one.
fn mask_group(caps: &Captures<'_>) -> String {
    let whole = caps.get(0).expect("a match");
    match caps.get(1) {
        Some(value) => {
            let text = whole.as_str();
            let (start, end) = (value.start() - whole.start(), value.end() - whole.start());
            format!("{}{MASK}{}", &text[..start], &text[end..])
        }
        None => MASK.to_owned(),
    }
}

fn scrub_random_values(text: &str, seen: &mut Redactions) -> String {
    let mut n = 0;
    let out = QUOTED_OR_ASSIGNED.replace_all(text, |caps: &Captures<'_>| {
        let value = caps.get(1).expect("the value group").as_str();
        if looks_random(value) {
            n += 1;
            mask_group(caps)
        } else {
            caps[0].to_owned()
        }
    });
    seen.add("high-entropy", n);
    out.into_owned()
}

/// Whether a value looks like a generated secret rather than a word, an identifier, a path or a hash.
/// Shannon entropy per character tells random text (4.1 or more for 20 random base-62 characters) from
/// identifiers and paths (rarely above 3.9); hex strings (hashes, ids) are kept: they are evidence, and
/// their alphabet caps them at 4.
fn looks_random(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    if body.len() < 20 || body.starts_with('/') {
        return false;
    }
    if body.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return false;
    }
    // A path: some segment between slashes is a lower-case word.
    if body.contains('/')
        && body
            .split('/')
            .any(|seg| seg.len() >= 2 && seg.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return false;
    }
    let upper = body.bytes().any(|b| b.is_ascii_uppercase());
    let lower = body.bytes().any(|b| b.is_ascii_lowercase());
    let digit = body.bytes().any(|b| b.is_ascii_digit());
    if !digit || !(upper || lower) {
        return false;
    }
    let entropy = shannon_entropy(body);
    if upper && lower {
        // CamelCase identifiers mix cases too, but in words: their lower-case runs are long (5 or so
        // on average) where a random string's are short (under 2 for base 62).
        entropy >= 4.0 && mean_lower_run(body) < 3.0
    } else {
        body.len() >= 32 && entropy >= 4.3
    }
}

fn mean_lower_run(s: &str) -> f64 {
    let runs: Vec<usize> = s
        .split(|c: char| !c.is_ascii_lowercase())
        .map(str::len)
        .filter(|&n| n > 0)
        .collect();
    if runs.is_empty() {
        0.0
    } else {
        runs.iter().sum::<usize>() as f64 / runs.len() as f64
    }
}

fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let len = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / len;
            -p * p.log2()
        })
        .sum()
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
pub fn trim_traceback(tb: &str) -> String {
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

/// `scheme://user:pass@host` and `scheme://token@host` → `scheme://***@host`.
pub fn scrub_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`')
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `Bearer x`, `Basic x` and `Authorization: x` (any scheme) → the same with `***`.
fn scrub_schemes(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let word_start = i == 0 || !is_word(text[..i].chars().next_back().unwrap_or(' '));
        let mut matched = None;
        if word_start && text.is_char_boundary(i) {
            for (word, min) in [("bearer", 1usize), ("basic", 6)] {
                if lower[i..].starts_with(word) {
                    let after = i + word.len();
                    let spaces = text[after..]
                        .chars()
                        .take_while(|c| *c == ' ' || *c == '\t')
                        .count();
                    if spaces == 0 {
                        continue;
                    }
                    let start = after + spaces;
                    let len = text[start..]
                        .chars()
                        .take_while(|&c| {
                            c.is_ascii_alphanumeric()
                                || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
                        })
                        .count();
                    if len >= min {
                        matched = Some((start, start + len));
                        break;
                    }
                }
            }
            if matched.is_none() && lower[i..].starts_with("authorization") {
                let after = i + "authorization".len();
                let rest = &text[after..];
                let skip = rest
                    .chars()
                    .take_while(|c| matches!(c, '"' | '\'' | ' '))
                    .count();
                if rest[skip..].starts_with([':', '=']) {
                    let start = after + skip + 1;
                    let pad = text[start..]
                        .chars()
                        .take_while(|c| matches!(c, ' ' | '"' | '\''))
                        .count();
                    let start = start + pad;
                    let len = text[start..]
                        .find(['\n', '\r', '"', '\'', ',', '}'])
                        .unwrap_or(text.len() - start);
                    if len > 0 {
                        matched = Some((start, start + len));
                    }
                }
            }
        }
        match matched {
            Some((start, end)) => {
                out.push_str(&text[i..start]);
                out.push_str(MASK);
                i = end;
            }
            None => {
                let c = text[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8().max(1);
                // Stay on char boundaries for multi-byte text.
                while i < bytes.len() && !text.is_char_boundary(i) {
                    i += 1;
                }
            }
        }
    }
    out
}

/// `password=x`, `api_token: "x"`, `?token=x&` → the value masked.
fn scrub_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if !is_word(c) || (i > 0 && is_word(text[..i].chars().next_back().unwrap_or(' '))) {
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let name_len = text[i..]
            .find(|c: char| !(is_word(c) || c == '-'))
            .unwrap_or(text.len() - i);
        let name = &text[i..i + name_len];
        out.push_str(name);
        i += name_len;
        let lname = name.to_ascii_lowercase();
        if !SECRET_FIELDS.iter().any(|f| lname.contains(f)) {
            continue;
        }
        // Optional closing quote of a JSON key, spaces, then `=` or `:` (not `==`, not `::`).
        let rest = &text[i..];
        let gap = rest
            .chars()
            .take_while(|c| matches!(c, '"' | '\'' | ' '))
            .count();
        let after_gap = &rest[gap..];
        if !after_gap.starts_with(['=', ':']) {
            continue;
        }
        if after_gap[1..].starts_with(['=', ':']) {
            continue;
        }
        let value_at = gap + 1;
        let pad = rest[value_at..].chars().take_while(|c| *c == ' ').count();
        let value_start = value_at + pad;
        let quote = rest[value_start..]
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\''));
        let (vs, ve) = match quote {
            Some(q) => {
                let s = value_start + 1;
                match rest[s..].find(q) {
                    Some(e) => (s, s + e),
                    None => continue,
                }
            }
            None => {
                let e = rest[value_start..]
                    .find(|c: char| {
                        c.is_whitespace()
                            || matches!(c, '&' | ',' | ';' | ')' | '}' | ']' | '"' | '\'')
                    })
                    .unwrap_or(rest.len() - value_start);
                (value_start, value_start + e)
            }
        };
        if ve == vs {
            continue;
        }
        out.push_str(&rest[..vs]);
        out.push_str(MASK);
        i += ve;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(
            [
                ("SECRET_TOKEN", "tok-5ecret-value-42"),
                ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
                ("DB_PASSWORD", "hunter22"),
                ("API_KEY", "short"),
                ("HOME", "/home/someone-long"),
                ("PATH", "/usr/bin:/bin"),
            ],
            &["configured-ai-token"],
        )
    }

    #[test]
    fn secrets_are_scrubbed_by_value_and_by_shape() {
        let r = redactor();
        let rows = [
            (
                "ValueError: bad token tok-5ecret-value-42 for user",
                "ValueError: bad token *** for user",
            ),
            ("key wJalrXUtnFEMI/K7MDENG!", "key ***!"),
            ("login hunter22 failed", "login *** failed"),
            // Too short to scrub by value: "short" is a word.
            ("a short story", "a short story"),
            // Not a secret's name.
            ("in /home/someone-long", "in /home/someone-long"),
            ("sent configured-ai-token", "sent ***"),
            (
                "headers={'Authorization': 'Bearer abc.def-ghi'}",
                "headers={'Authorization': '***'}",
            ),
            ("Authorization: Bearer abc.def", "Authorization: ***"),
            ("got bearer eyJhbGciOi.x.y back", "got bearer *** back"),
            ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***"),
            ("Basic auth is off", "Basic auth is off"),
            (
                "GET https://alice:pa55w0rd@db.example.com:5432/x failed",
                "GET https://***@db.example.com:5432/x failed",
            ),
            (
                "clone https://ghp_abcdef@github.com/o/r",
                "clone https://***@github.com/o/r",
            ),
            ("mail me at a@b.c", "mail me at a@b.c"),
            ("https://example.com/a@b", "https://example.com/a@b"),
            (
                "url=http://h/?token=abc123&x=1",
                "url=http://h/?token=***&x=1",
            ),
            ("{\"password\": \"pw-1\"}", "{\"password\": \"***\"}"),
            ("api_key = 'sk-live-1'", "api_key = '***'"),
            ("assert token == 'abc'", "assert token == 'abc'"),
            ("def test_token():", "def test_token():"),
            ("naïve Bearer ünï", "naïve Bearer ünï"),
        ];
        for (raw, expected) in rows {
            assert_eq!(r.scrub(raw), expected, "{raw}");
        }
    }

    #[test]
    fn long_tracebacks_keep_their_head_and_tail() {
        let tb: String = (1..=200).map(|i| format!("line {i}\n")).collect();
        let t = trim_traceback(&tb);
        assert!(t.starts_with("line 1\n"));
        assert!(t.contains("(140 lines trimmed by smart-rerun)"));
        assert!(t.trim_end().ends_with("line 200"));
        let wide = "x".repeat(50_000);
        let t = trim_traceback(&wide);
        assert!(t.chars().count() < MAX_TRACEBACK_CHARS + 100);
        assert_eq!(trim_traceback("short\ntb"), "short\ntb");
    }

    #[test]
    fn a_query_is_scrubbed_everywhere_and_tokens_even_without_redaction() {
        use crate::model::{Action, Category, Classification, ClassificationSource};
        let r = redactor();
        let q = FailureQuery {
            nodeid: "t.py::test[tok-5ecret-value-42]".into(),
            fingerprint: "0123456789abcdef".into(),
            exception_type: "builtins.ValueError".into(),
            exception_bases: vec!["builtins.ValueError".into()],
            message: "https://u:p4ss@h failed with configured-ai-token".into(),
            traceback: "E   hunter22\n".repeat(100),
            attempts: vec![],
            heuristic: Classification {
                category: Category::Unknown,
                confidence: 0.3,
                action: Action::Retry,
                reason: "hunter22".into(),
                source: ClassificationSource::Heuristic,
            },
            policy: crate::model::PolicyInfo::from(&crate::policy::RetryPolicy::default()),
        };
        let sent = serde_json::to_string(&r.query(&q, true)).unwrap();
        for secret in [
            "tok-5ecret-value-42",
            "p4ss",
            "configured-ai-token",
            "hunter22",
        ] {
            assert!(!sent.contains(secret), "{secret} in {sent}");
        }
        assert!(sent.contains("lines trimmed"));
        let raw = r.query(&q, false);
        assert!(raw.message.contains("p4ss"), "no redaction: URL kept");
        assert!(
            raw.traceback.contains("hunter22"),
            "no redaction: env values kept"
        );
        assert!(
            !raw.message.contains("configured-ai-token"),
            "tokens always go"
        );
        assert_eq!(raw.traceback.lines().count(), 100);
    }

    /// Fake secrets in each provider's format, built at run time so that no secret scanner mistakes this
    /// file for a leak: (kind, the secret, the text it appears in).
    fn shaped() -> Vec<(&'static str, String, String)> {
        let b62 = "Zq8xK2mP7vL4nR9sT1wY6bC3dF5gH0jA";
        let pem_body = format!("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n{b62}\n{b62}");
        let rows: Vec<(&'static str, String, &str)> = vec![
            (
                "aws-access-key-id",
                format!("AKIA{}", "Q7RT2XKW9PLM4ZNB"),
                "key id {} in config",
            ),
            (
                "aws-secret-access-key",
                format!("{b62}{}", "aB3/+x9Y"),
                "aws_secret_access_key = {}",
            ),
            (
                "github-token",
                format!("ghp_{b62}a1B2"),
                "push with {} failed",
            ),
            (
                "github-token",
                format!("github_pat_11AB{}_{b62}", "CDEF1234gh"),
                "token {} rejected",
            ),
            (
                "gitlab-token",
                format!("glpat-{}", &b62[..20]),
                "PRIVATE {} used",
            ),
            (
                "jwt",
                format!(
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}",
                    &b62[..22]
                ),
                "session {} expired",
            ),
            (
                "private-key",
                format!(
                    "-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"
                ),
                "key:\n{}\nloaded",
            ),
            (
                "slack-token",
                format!("xoxb-1234567890-{}", &b62[..24]),
                "slack {} revoked",
            ),
            (
                "stripe-key",
                format!("sk_live_{}", &b62[..24]),
                "charge with {} declined",
            ),
            ("google-api-key", format!("AIza{}abc", b62), "maps {} quota"),
            (
                "openai-key",
                format!("sk-proj-{b62}"),
                "model call with {} failed",
            ),
            ("npm-token", format!("npm_{}abcd", b62), "publish {} denied"),
            (
                "pypi-token",
                format!("pypi-AgEIcHlwaS5vcmc{b62}{b62}"),
                "upload {} refused",
            ),
            (
                "high-entropy",
                "Xy7Kq2Lm9Pz4Rt8Wv3Nb6Hs1".to_owned(),
                "client_ref = \"{}\"",
            ),
            (
                "high-entropy",
                "Xy7Kq2Lm9Pz4Rt8Wv3Nb6Hs1Jd5".to_owned(),
                "session: {}",
            ),
        ];
        rows.into_iter()
            .map(|(kind, secret, text)| {
                let text = text.replace("{}", &secret);
                (kind, secret, text)
            })
            .collect()
    }

    #[test]
    fn each_known_secret_shape_is_scrubbed_and_counted_by_kind() {
        let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
        for (kind, secret, text) in shaped() {
            let mut seen = Redactions::default();
            let out = r.scrub_counted(&text, &mut seen);
            assert!(!out.contains(&secret), "{kind}: {out}");
            // Nothing of the secret's distinctive middle survives either.
            assert!(
                !out.contains(&secret[4..secret.len().min(16)]),
                "{kind}: {out}"
            );
            assert!(out.contains(MASK), "{kind}: {out}");
            assert_eq!(seen.get(kind), 1, "{kind}: {seen:?} for {text:?}");
            let counted: usize = seen.0.values().sum();
            assert_eq!(counted, 1, "{kind} counted twice: {seen:?}");
        }
    }

    #[test]
    fn evidence_that_is_not_secret_is_kept() {
        let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
        for text in [
            r#"File "/home/runner/work/project/src/service/client.py", line 42, in fetch"#,
            "assert response.status == 200: got 503 from http://localhost:8080/api/v2/items",
            "commit = 3f786850e387550fdab836ed7e6dc881de23001b",
            "request_id: 123e4567-e89b-12d3-a456-426614174000",
            "test_id = 'tests/test_api.py::TestClient::test_retries_3_times_with_backoff'",
            "name: TestLoginRetriesThreeTimesWithBackoff2",
            "AssertionError: assert 'expected_value_for_the_check' == 'actual_value_seen_here'",
            "ModuleNotFoundError: No module named 'application_settings_production'",
        ] {
            let mut seen = Redactions::default();
            let out = r.scrub_counted(text, &mut seen);
            assert_eq!(out, text, "{seen:?}");
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn a_truncated_private_key_is_scrubbed_to_the_end() {
        let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
        let out = r.scrub(
            "key = -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n...",
        );
        assert_eq!(out, "key = ***");
    }

    #[test]
    fn counts_add_up_over_a_query() {
        let r = redactor();
        let mut seen = Redactions::default();
        let text = format!(
            "tok-5ecret-value-42 and {} at postgresql://u:pw@db/app",
            shaped()[2].1
        );
        r.scrub_counted(&text, &mut seen);
        r.scrub_counted("hunter22", &mut seen);
        assert_eq!(seen.get("secret-variable"), 2, "{seen:?}");
        assert_eq!(seen.get("github-token"), 1);
        assert_eq!(seen.get("url-credentials"), 1);
        assert_eq!(
            serde_json::to_value(&seen).unwrap(),
            serde_json::json!({"github-token": 1, "secret-variable": 2, "url-credentials": 1})
        );
    }
}
