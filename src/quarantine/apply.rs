//! What the quarantine file does to a run: [`apply`] marks each test an entry protects with a
//! [`QuarantineInfo`] in the report model (renderers read that, never this module), and says which
//! entries have expired. An expired entry protects its tests for the grace days, with a warning naming
//! it; after them it protects nothing, and says so once.

use super::{Entry, Quarantine};
use crate::model::{QuarantineInfo, RunReport};

/// Whether `pattern` matches the whole of `text`: `*` is any run of characters (`::` included), `?` one
/// character, everything else (`[` too) itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and where in the text it was tried from: backtrack there on a mismatch.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn is_glob(nodeid: &str) -> bool {
    nodeid.contains(['*', '?'])
}

impl Entry {
    /// Whether this entry names `nodeid`, exactly or as a glob.
    pub(crate) fn matches(&self, nodeid: &str) -> bool {
        if is_glob(&self.nodeid) {
            glob_matches(&self.nodeid, nodeid)
        } else {
            self.nodeid == nodeid
        }
    }
}

/// Marks the tests `quarantine` protects on `today`, and returns the warnings to add to the report: one
/// per expired entry, whether it still protects its tests (within `grace_days` of its expiry) or no
/// longer does. An exact node id wins over a glob; among globs, the first in the file.
pub(crate) fn apply(
    report: &mut RunReport,
    quarantine: &Quarantine,
    today: chrono::NaiveDate,
    grace_days: u32,
) -> Vec<String> {
    let file = quarantine.path.display().to_string();
    let grace_end = |e: &Entry| e.expires + chrono::Days::new(u64::from(grace_days));
    // Entries that protect today, exact ones first.
    let protecting: Vec<&Entry> = {
        let mut v: Vec<&Entry> = quarantine
            .entries
            .iter()
            .filter(|e| today <= grace_end(e))
            .collect();
        v.sort_by_key(|e| is_glob(&e.nodeid));
        v
    };
    let exact: std::collections::HashMap<&str, &Entry> = protecting
        .iter()
        .filter(|e| !is_glob(&e.nodeid))
        .map(|e| (e.nodeid.as_str(), *e))
        .collect();
    let globs: Vec<&Entry> = protecting
        .iter()
        .copied()
        .filter(|e| is_glob(&e.nodeid))
        .collect();
    for t in &mut report.tests {
        let entry = exact
            .get(t.nodeid.as_str())
            .copied()
            .or_else(|| globs.iter().copied().find(|e| e.matches(&t.nodeid)));
        t.quarantine = entry.map(|e| {
            Box::new(QuarantineInfo {
                entry: e.nodeid.clone(),
                reason: e.reason.clone(),
                expires: e.expires.to_string(),
                owner: e.owner.clone(),
                issue: e.issue.clone(),
                file: file.clone(),
                line: e.line,
                expired: e.expires < today,
            })
        });
    }
    let days = |n: u32| format!("{n} day{}", if n == 1 { "" } else { "s" });
    quarantine
        .expired(today)
        .into_iter()
        .map(|e| {
            let end = grace_end(e);
            if today <= end {
                format!(
                    "the quarantine of '{}' ({file}:{}) expired on {}: it still protects its tests \
                     until {end} (smart_rerun_quarantine_grace_days = {grace_days}); renew or remove it",
                    e.nodeid, e.line, e.expires
                )
            } else {
                format!(
                    "the quarantine of '{}' ({file}:{}) expired on {} and its {} of grace ended on \
                     {end}: it no longer protects its tests; renew or remove it",
                    e.nodeid,
                    e.line,
                    e.expires,
                    days(grace_days)
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use std::path::Path;

    #[test]
    fn globs_match_star_and_question_mark_and_take_brackets_literally() {
        let rows = [
            ("tests/test_api.py::*", "tests/test_api.py::test_a", true),
            ("tests/test_api.py::*", "tests/test_db.py::test_a", false),
            ("*::test_fetch", "tests/a/test_x.py::C::test_fetch", true),
            ("t.py::test_?", "t.py::test_a", true),
            ("t.py::test_?", "t.py::test_ab", false),
            ("t.py::test_x[1]", "t.py::test_x[1]", true),
            ("t.py::test_x[*]", "t.py::test_x[a-b]", true),
            ("t.py::test_x[*]", "t.py::test_x1", false),
            ("*", "", true),
            ("a*b*c", "aXbYbc", true),
            ("a*b*c", "aXbYb", false),
        ];
        for (pattern, text, want) in rows {
            assert_eq!(glob_matches(pattern, text), want, "{pattern} ~ {text}");
        }
    }

    fn day(s: &str) -> chrono::NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn exact_entries_win_and_expired_ones_protect_only_for_the_grace_days() {
        let q = Quarantine::parse(
            Path::new("q.toml"),
            "[[test]]\nnodeid = \"t.py::*\"\nreason = \"glob\"\nexpires = 2027-01-31\n\
             [[test]]\nnodeid = \"t.py::a\"\nreason = \"exact\"\nexpires = 2027-01-31\nissue = \"BUG-1\"\n\
             [[test]]\nnodeid = \"u.py::old\"\nreason = \"old\"\nexpires = 2026-12-01\n",
        )
        .unwrap();
        let mut report = crate::sample::empty();
        report.tests = vec![
            crate::sample::test("t.py::a", Outcome::Failed, 1, vec![]),
            crate::sample::test("t.py::b", Outcome::Passed, 2, vec![]),
            crate::sample::test("u.py::old", Outcome::Failed, 3, vec![]),
            crate::sample::test("v.py::free", Outcome::Failed, 4, vec![]),
        ];
        let warnings = apply(&mut report, &q, day("2026-12-05"), 7);
        fn info(r: &RunReport, i: usize) -> Option<&QuarantineInfo> {
            r.tests[i].quarantine.as_deref()
        }
        assert_eq!(info(&report, 0).unwrap().reason, "exact");
        assert_eq!(info(&report, 0).unwrap().issue.as_deref(), Some("BUG-1"));
        assert_eq!(info(&report, 1).unwrap().entry, "t.py::*");
        assert!(info(&report, 2).unwrap().expired);
        assert_eq!(info(&report, 2).unwrap().line, 10);
        assert!(info(&report, 3).is_none());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0]
                .contains("'u.py::old' (q.toml:10) expired on 2026-12-01: it still protects")
                && warnings[0].contains("until 2026-12-08"),
            "{warnings:?}"
        );
        let warnings = apply(&mut report, &q, day("2026-12-09"), 7);
        assert!(info(&report, 2).is_none());
        assert!(
            warnings[0].contains("no longer protects its tests"),
            "{warnings:?}"
        );
        // The last day of grace still protects.
        apply(&mut report, &q, day("2026-12-08"), 7);
        assert!(info(&report, 2).is_some());
    }
}
