//! Failure fingerprints: the exception type, its message with the parts that change from run to run
//! normalised away (numbers, addresses, temp paths, timestamps, UUIDs), and the crash frame. Two attempts
//! with the same fingerprint failed the same way.

use crate::model::Attempt;

/// The normalised message: what stays the same when a failure repeats.
pub(crate) fn normalize(message: &str) -> String {
    // Only the first lines carry the failure; pytest's assertion explanations below can hold addresses.
    let head: String = message.lines().take(5).collect::<Vec<_>>().join("\n");
    let mut out = String::with_capacity(head.len());
    let chars: Vec<char> = head.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..chars.len().min(i + 64)].iter().collect();
        if let Some(len) = uuid_len(&rest) {
            out.push_str("<uuid>");
            i += len;
        } else if rest.starts_with("0x") && rest[2..].starts_with(|c: char| c.is_ascii_hexdigit()) {
            out.push_str("<addr>");
            i += 2;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
        } else if let Some(len) = temp_path_len(&chars[i..]) {
            out.push_str("<tmp>");
            i += len;
        } else if c.is_ascii_digit() {
            // Dates, times, ports, durations, counts: any run of digits and the separators between them.
            out.push('#');
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ':' | '-' | 'T')
                        && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())))
            {
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn uuid_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() < 36 {
        return None;
    }
    let ok = b[..36].iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    ok.then_some(36)
}

/// A temp path (`/tmp/...`, `/var/folders/...`, `C:\Users\x\AppData\Local\Temp\...`) up to whitespace or
/// a quote.
fn temp_path_len(chars: &[char]) -> Option<usize> {
    let head: String = chars.iter().take(40).collect();
    let lower = head.to_ascii_lowercase();
    let starts = [
        "/tmp/",
        "/var/folders/",
        "/private/var/folders/",
        "/private/tmp/",
    ];
    // `get`, not `[1..]`: the text at hand may start with a multi-byte character (ids and messages in
    // any language).
    let windows = lower.len() > 3
        && lower.get(1..).is_some_and(|s| s.starts_with(":\\"))
        && lower.contains("\\temp\\");
    if !starts.iter().any(|s| lower.starts_with(s)) && !windows {
        return None;
    }
    Some(
        chars
            .iter()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | ')' | ','))
            .count(),
    )
}

/// The fingerprint of a failed attempt: 16 hex digits, stable across runs and machines (FNV-1a), so an
/// AI cache can be keyed on it.
pub(crate) fn fingerprint(attempt: &Attempt) -> String {
    let mut h = Fnv::new();
    match &attempt.exception {
        Some(e) => {
            h.write(e.type_name.as_bytes());
            h.write(b"\0");
            h.write(normalize(&e.message).as_bytes());
        }
        None => h.write(b"<no exception>"),
    }
    h.write(b"\0");
    if let Some(c) = &attempt.crash {
        h.write(c.file.as_bytes());
        h.write(b":");
        h.write(c.line.to_string().as_bytes());
    }
    if let Some(p) = attempt.phase {
        h.write(format!("{p:?}").as_bytes());
    }
    format!("{:016x}", h.0)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_to_run_noise_is_normalised_away() {
        let rows = [
            (
                "<Foo object at 0x7f3a2b1c9d40> is not ready",
                "<Foo object at <addr>> is not ready",
            ),
            (
                "timed out after 30.5s on port 54321",
                "timed out after #s on port #",
            ),
            (
                "at 2026-11-25T18:01:19.123 request failed",
                "at # request failed",
            ),
            (
                "file /tmp/pytest-of-root/pytest-12/test_x0/data.db is locked",
                "file <tmp> is locked",
            ),
            (
                "job 123e4567-e89b-12d3-a456-426614174000 lost",
                "job <uuid> lost",
            ),
            ("assert 1 == 2", "assert # == #"),
            ("AssertionError: grüße", "AssertionError: grüße"),
            ("日本語 テスト failed", "日本語 テスト failed"),
            (
                r"C:\Users\me\AppData\Local\Temp\x1\f.txt gone",
                "<tmp> gone",
            ),
        ];
        for (raw, expected) in rows {
            assert_eq!(normalize(raw), expected, "{raw}");
        }
    }

    #[test]
    fn the_same_failure_gets_the_same_fingerprint_and_a_different_one_does_not() {
        use crate::model::{ExceptionInfo, Location, Outcome, Phase};
        let attempt = |msg: &str, line: u32| Attempt {
            number: 1,
            round: 1,
            outcome: Outcome::Failed,
            phase: Some(Phase::Call),
            duration_seconds: 0.1,
            finished_at: None,
            exception: Some(ExceptionInfo {
                type_name: "builtins.ValueError".into(),
                mro: vec![],
                message: msg.into(),
            }),
            crash: Some(Location {
                file: "t.py".into(),
                line,
            }),
            test_location: None,
            traceback: None,
            captured: vec![],
            also_failed: vec![],
            worker: None,
            fingerprint: None,
            classification: None,
        };
        assert_eq!(
            fingerprint(&attempt("id 0x1f bad", 3)),
            fingerprint(&attempt("id 0xab bad", 3))
        );
        assert_ne!(
            fingerprint(&attempt("id 0x1f bad", 3)),
            fingerprint(&attempt("id 0x1f bad", 4))
        );
        assert_ne!(
            fingerprint(&attempt("bad", 3)),
            fingerprint(&attempt("worse", 3))
        );
        assert_eq!(fingerprint(&attempt("x", 1)).len(), 16);
    }
}
