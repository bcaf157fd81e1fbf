//! The quarantine column of the top flaky tests: each shown test that an entry of the quarantine file
//! names (exactly, or by a glob when no entry names it exactly, as a run matches them), with the
//! entry's state on the day the page is written. Reason, owner and issue are the file's text, shown by
//! the page as text only.

use crate::quarantine::{Entry, Quarantine};
use serde::Serialize;
use std::collections::BTreeMap;

/// An entry within this many days of its expiry is `expiring`: someone should renew or fix it soon.
pub(crate) const EXPIRING_DAYS: u64 = 7;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    Active,
    Expiring,
    Expired,
}

/// One test's quarantine, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Quarantined {
    pub state: State,
    pub reason: String,
    pub owner: Option<String>,
    pub issue: Option<String>,
    /// The last day of the quarantine (`YYYY-MM-DD`).
    pub expires: String,
    /// The entry's node id or glob, and where it is: `FILE:LINE`.
    pub entry: String,
    pub at: String,
}

/// The state of each of `nodeids` that `quarantine` names, on `today`.
pub(crate) fn states<'a>(
    quarantine: &Quarantine,
    nodeids: impl IntoIterator<Item = &'a str>,
    today: chrono::NaiveDate,
) -> BTreeMap<String, Quarantined> {
    let file = quarantine.path.display().to_string();
    let soon = today + chrono::Days::new(EXPIRING_DAYS);
    let find = |nodeid: &str| -> Option<&Entry> {
        quarantine
            .entries
            .iter()
            .find(|e| e.nodeid == nodeid)
            .or_else(|| quarantine.entries.iter().find(|e| e.matches(nodeid)))
    };
    nodeids
        .into_iter()
        .filter_map(|nodeid| {
            let e = find(nodeid)?;
            let state = if e.expires < today {
                State::Expired
            } else if e.expires <= soon {
                State::Expiring
            } else {
                State::Active
            };
            Some((
                nodeid.to_owned(),
                Quarantined {
                    state,
                    reason: e.reason.clone(),
                    owner: e.owner.clone(),
                    issue: e.issue.clone(),
                    expires: e.expires.to_string(),
                    entry: e.nodeid.clone(),
                    at: format!("{file}:{}", e.line),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn each_test_gets_its_entrys_state_on_the_day() {
        let q = Quarantine::parse(
            Path::new("q.toml"),
            "[[test]]\nnodeid = \"t.py::*\"\nreason = \"glob\"\nexpires = 2027-03-01\n\
             [[test]]\nnodeid = \"t.py::a\"\nreason = \"<b>exact</b>\"\nexpires = 2027-01-05\nowner = \"payments\"\n\
             [[test]]\nnodeid = \"u.py::old\"\nreason = \"old\"\nexpires = 2026-12-01\n",
        )
        .unwrap();
        let today: chrono::NaiveDate = "2026-12-30".parse().unwrap();
        let s = states(&q, ["t.py::a", "t.py::b", "u.py::old", "v.py::free"], today);
        assert_eq!(s.len(), 3);
        assert_eq!(s["t.py::a"].state, State::Expiring);
        assert_eq!(s["t.py::a"].reason, "<b>exact</b>");
        assert_eq!(s["t.py::a"].owner.as_deref(), Some("payments"));
        assert_eq!(s["t.py::a"].at, "q.toml:5");
        assert_eq!(s["t.py::b"].state, State::Active);
        assert_eq!(s["t.py::b"].entry, "t.py::*");
        assert_eq!(s["u.py::old"].state, State::Expired);
        // The last day is still active; the day after, expired.
        let on = |d: &str| {
            states(&q, ["t.py::b"], d.parse().unwrap())["t.py::b"]
                .state
                .clone()
        };
        assert_eq!(on("2027-02-21"), State::Active);
        assert_eq!(on("2027-03-01"), State::Expiring);
        assert_eq!(on("2027-03-02"), State::Expired);
    }
}
