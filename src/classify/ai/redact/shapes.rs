//! Secrets recognised by what they look like: the providers' token formats, and long random-looking
//! values.

use super::{MASK, Redactions};
use regex::{Captures, Regex};
use std::sync::LazyLock;

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

pub(super) fn scrub_shapes(text: &str, seen: &mut Redactions) -> String {
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

pub(super) fn scrub_random_values(text: &str, seen: &mut Redactions) -> String {
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
