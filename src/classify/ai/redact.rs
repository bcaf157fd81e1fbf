//! What leaves the machine: tracebacks trimmed and secrets scrubbed before a failure is sent to an AI
//! endpoint. The main type is [`Redactor`]: it knows the secret values of this process's environment
//! (variables named like `*TOKEN*`, `*SECRET*`, `*KEY*`, `*PASSWORD*`) and the configured tokens, and
//! also scrubs credentials by their shape: `Bearer x`, `Basic x`, `Authorization: x`, `user:pass@` in
//! URLs, and `password=x` style assignments.

use crate::classify::advisor::FailureQuery;

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
        let out = mask_values(text, &self.tokens);
        let out = mask_values(&out, &self.env_secrets);
        let out = scrub_url_credentials(&out);
        let out = scrub_schemes(&out);
        scrub_assignments(&out)
    }

    /// The query as it may be sent: every text field scrubbed; with `trim`, the traceback and message
    /// cut to a budget. Without `trim` (redaction off), only the configured tokens are scrubbed.
    pub fn query(&self, q: &FailureQuery, redact: bool) -> FailureQuery {
        let clean = |s: &str| {
            if redact {
                self.scrub(s)
            } else {
                self.scrub_tokens(s)
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
}
