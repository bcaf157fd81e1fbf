//! The checked-in quarantine list, [`Quarantine`]: `.smart-rerun/quarantine.toml`, one `[[test]]` per
//! quarantined test with the reason, the date the quarantine expires and optionally its owner. The file
//! is the only way history may ever change a test's verdict, so it is reviewed like code: every problem
//! names the file, the line and the field, and `smart-rerun run` refuses a broken file before any test
//! runs.
//!
//! ```toml
//! [[test]]
//! nodeid = "tests/test_api.py::test_fetch"
//! reason = "the sandbox API drops connections under load"
//! expires = 2027-01-31
//! owner = "payments"
//! ```

mod apply;
pub(crate) mod cli;
pub(crate) mod locate;

pub(crate) use apply::apply;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where `run` and `quarantine check` look, relative to the current directory.
pub(crate) const DEFAULT_PATH: &str = ".smart-rerun/quarantine.toml";

/// One quarantined test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub nodeid: String,
    pub reason: String,
    pub expires: chrono::NaiveDate,
    pub owner: Option<String>,
    /// A ticket or link tracking the fix.
    pub issue: Option<String>,
    /// The 1-based line of its `[[test]]`.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantine {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum QuarantineError {
    #[error("cannot read the quarantine file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the quarantine file {path} (smart_rerun_quarantine) does not exist: name an existing file, \
         or leave the setting out for .smart-rerun/quarantine.toml"
    )]
    Missing { path: String },
    #[error("{path}:{line}: {field}: {problem}")]
    Invalid {
        path: String,
        line: usize,
        /// The field (`nodeid`, `reason`, `expires`, `owner`), `test` for an entry as a whole, or
        /// `syntax`.
        field: String,
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    test: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    nodeid: Option<Spanned<toml::Value>>,
    reason: Option<Spanned<toml::Value>>,
    expires: Option<Spanned<toml::Value>>,
    owner: Option<Spanned<toml::Value>>,
    issue: Option<Spanned<toml::Value>>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Quarantine {
    /// Reads the file at `path`; `Ok(None)` when there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<Quarantine>, QuarantineError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Quarantine::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(QuarantineError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The file a run uses: `set` (the `smart_rerun_quarantine` setting), which must exist, else
    /// [`DEFAULT_PATH`] under `cwd`, which may not.
    pub(crate) fn load_for_run(
        set: Option<&Path>,
        cwd: &Path,
    ) -> Result<Option<Quarantine>, QuarantineError> {
        match set {
            Some(path) => {
                Quarantine::load(path)?
                    .map(Some)
                    .ok_or_else(|| QuarantineError::Missing {
                        path: path.display().to_string(),
                    })
            }
            None => Quarantine::load(&cwd.join(DEFAULT_PATH)),
        }
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<Quarantine, QuarantineError> {
        let shown = path.display().to_string();
        let invalid = |line: usize, field: &str, problem: String| QuarantineError::Invalid {
            path: shown.clone(),
            line,
            field: field.to_owned(),
            problem,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            let message = e.message().trim().to_owned();
            // serde names an unknown field in its message; say which field it is.
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
                // A value TOML itself refuses (a 30th of February): name the key of its line.
                .or_else(|| {
                    let l = text.lines().nth(line - 1)?;
                    let key = l.split_once('=')?.0.trim();
                    (!key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .then(|| key.to_owned())
                })
                .unwrap_or_else(|| "syntax".to_owned());
            let known = ["nodeid", "reason", "expires", "owner", "issue", "syntax"];
            let problem = if known.contains(&field.as_str()) {
                message
            } else {
                "is not a field of a quarantine entry: use nodeid, reason, expires, owner and issue \
                 (or one [[test]] table per test)"
                    .to_owned()
            };
            invalid(line, &field, problem)
        })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.test.len());
        for spanned in raw.test {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let string = |field: &str,
                          v: Option<Spanned<toml::Value>>,
                          what: &str|
             -> Result<Option<(String, usize)>, QuarantineError> {
                let Some(v) = v else { return Ok(None) };
                let at = line_of(text, v.span().start);
                match v.into_inner() {
                    toml::Value::String(s) if !s.trim().is_empty() => Ok(Some((s, at))),
                    toml::Value::String(_) => Err(invalid(at, field, format!("is empty: {what}"))),
                    other => Err(invalid(
                        at,
                        field,
                        format!("is not a string ({}): {what}", other.type_str()),
                    )),
                }
            };
            let nodeid_what =
                "give the test's pytest node id, e.g. \"tests/test_api.py::test_fetch\"";
            let reason_what = "say why the test is quarantined, e.g. a ticket";
            let Some((nodeid, nodeid_line)) = string("nodeid", raw.nodeid, nodeid_what)? else {
                return Err(invalid(
                    line,
                    "nodeid",
                    format!("is missing: {nodeid_what}"),
                ));
            };
            let Some((reason, _)) = string("reason", raw.reason, reason_what)? else {
                return Err(invalid(
                    line,
                    "reason",
                    format!("is missing: {reason_what}"),
                ));
            };
            let owner = string("owner", raw.owner, "name a person or team, or leave it out")?
                .map(|(o, _)| o);
            let issue = string("issue", raw.issue, "give a ticket or link, or leave it out")?
                .map(|(i, _)| i);
            let expires_what = "give the date the quarantine ends, e.g. expires = 2027-01-31";
            let Some(expires) = raw.expires else {
                return Err(invalid(
                    line,
                    "expires",
                    format!("is missing: {expires_what}"),
                ));
            };
            let at = line_of(text, expires.span().start);
            let expires = match expires.into_inner() {
                toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => {
                    let date = d.date.expect("a datetime without time has a date");
                    chrono::NaiveDate::from_ymd_opt(
                        i32::from(date.year),
                        u32::from(date.month),
                        u32::from(date.day),
                    )
                    .ok_or_else(|| invalid(at, "expires", format!("{date} is not a date")))?
                }
                toml::Value::String(s) => s.trim().parse::<chrono::NaiveDate>().map_err(|_| {
                    invalid(
                        at,
                        "expires",
                        format!("'{s}' is not a date: {expires_what}"),
                    )
                })?,
                other => {
                    return Err(invalid(
                        at,
                        "expires",
                        format!("is not a date ({}): {expires_what}", other.type_str()),
                    ));
                }
            };
            if let Some(first) = entries.iter().find(|e| e.nodeid == nodeid) {
                return Err(invalid(
                    nodeid_line,
                    "nodeid",
                    format!("is quarantined twice: also at line {}", first.line),
                ));
            }
            entries.push(Entry {
                nodeid,
                reason,
                expires,
                owner,
                issue,
                line,
            });
        }
        Ok(Quarantine {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The entries whose quarantine has ended by `today` (a quarantine runs through its expiry date).
    pub(crate) fn expired(&self, today: chrono::NaiveDate) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.expires < today).collect()
    }
}

/// One `[[test]]` table for `quarantine suggest`, with the strings quoted and escaped by TOML's rules.
pub(crate) fn entry_toml(nodeid: &str, reason: &str, expires: chrono::NaiveDate) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[[test]]\nnodeid = {}\nreason = {}\nexpires = {expires}\n",
        quote(nodeid),
        quote(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Quarantine, QuarantineError> {
        Quarantine::parse(Path::new(".smart-rerun/quarantine.toml"), text)
    }

    #[test]
    fn a_valid_file_reads_every_field() {
        let q = parse(
            "# reviewed weekly\n[[test]]\nnodeid = \"t.py::a[x y]\"\nreason = \"TICKET-1\"\nexpires = 2027-01-31\nowner = \"payments\"\n\n[[test]]\nnodeid = \"t.py::b\"\nreason = \"slow CI\"\nexpires = \"2026-12-01\"\n",
        )
        .unwrap();
        assert_eq!(q.entries.len(), 2);
        assert_eq!(q.entries[0].nodeid, "t.py::a[x y]");
        assert_eq!(q.entries[0].owner.as_deref(), Some("payments"));
        assert_eq!(q.entries[0].line, 2);
        assert_eq!(
            q.entries[1].expires,
            chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(q.entries[1].line, 8);
        let expired = q.expired(chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].nodeid, "t.py::b");
        assert!(
            q.expired(chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())
                .is_empty()
        );
        assert!(parse("").unwrap().entries.is_empty());
    }

    #[test]
    fn every_problem_names_the_file_line_and_field() {
        let head = "[[test]]\nnodeid = \"t.py::a\"\nreason = \"r\"\n";
        let rows: &[(String, &str)] = &[
            (
                format!("{head}expires = 2027-02-30\n"),
                ":4: expires: invalid date",
            ),
            (
                format!("{head}expires = \"soon\"\n"),
                ":4: expires: 'soon' is not a date",
            ),
            (
                format!("{head}expires = 2027-01-01T10:00:00Z\n"),
                ":4: expires: is not a date (datetime)",
            ),
            (format!("{head}\n"), ":1: expires: is missing"),
            (
                format!("{head}expires = 2027-01-01\nreviewer = \"x\"\n"),
                ":5: reviewer: is not a field",
            ),
            (
                "[[test]]\nreason = \"r\"\nexpires = 2027-01-01\n".into(),
                ":1: nodeid: is missing",
            ),
            (
                "[[test]]\nnodeid = 3\nreason = \"r\"\nexpires = 2027-01-01\n".into(),
                ":2: nodeid: is not a string (integer)",
            ),
            (
                "[[test]]\nnodeid = \"t.py::a\"\nreason = \" \"\nexpires = 2027-01-01\n".into(),
                ":3: reason: is empty",
            ),
            (
                format!(
                    "{head}expires = 2027-01-01\n[[test]]\nnodeid = \"t.py::a\"\nreason = \"again\"\nexpires = 2027-01-01\n"
                ),
                ":6: nodeid: is quarantined twice: also at line 1",
            ),
            ("[[test]\nnodeid = \"x\"\n".into(), ":1: syntax:"),
            ("[tests]\nx = 1\n".into(), ":1: tests: is not a field"),
        ];
        for (text, want) in rows {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(".smart-rerun/quarantine.toml:") && err.contains(want),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn suggested_entries_are_valid_toml_whatever_the_node_id() {
        let nodeid = "t.py::test_x[\"quoted\" \\ back\nline]";
        let text = entry_toml(
            nodeid,
            "flaked 3 of the last 20 runs",
            chrono::NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
        );
        let q = parse(&text).unwrap();
        assert_eq!(q.entries[0].nodeid, nodeid);
        assert_eq!(
            q.entries[0].expires,
            chrono::NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
        );
    }
}
