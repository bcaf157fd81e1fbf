//! Secrets recognised by where they stand: credentials in URLs, after an authorization scheme, and
//! assigned to a secret-looking name.

use super::MASK;

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

/// `scheme://user:pass@host` and `scheme://token@host` → `scheme://***@host`.
pub(crate) fn scrub_url_credentials(text: &str) -> String {
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
pub(super) fn scrub_schemes(text: &str) -> String {
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
pub(super) fn scrub_assignments(text: &str) -> String {
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
