//! A translation as pytest configuration: shown as the block for the project's configuration file, or
//! written into that file with everything else in it kept — comments, order, other sections, and the
//! continuation lines of other keys. A key the file already sets is replaced where it stands.
//!
//! The file decides the form: `pytest.ini`, `.pytest.ini` and `tox.ini` take a `[pytest]` section,
//! `setup.cfg` `[tool:pytest]`; `pyproject.toml` takes `[tool.pytest.ini_options]` (or the `[tool.pytest]`
//! table pytest 9 reads, when the file already uses it), `pytest.toml` a `[pytest]` table. TOML is edited
//! through `toml_edit`, which keeps the document's formatting.

use super::Translation;
use std::path::Path;

/// How a configuration file holds pytest's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// An ini-style file and its section.
    Ini(&'static str),
    /// `pyproject.toml`.
    Pyproject,
    /// `pytest.toml`: a top-level `[pytest]` table.
    PytestToml,
}

impl Form {
    /// The form of the file at `path`, by its name, as pytest tells them apart.
    pub(crate) fn of(path: &Path) -> Form {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some("setup.cfg") => Form::Ini("tool:pytest"),
            Some("pyproject.toml") => Form::Pyproject,
            Some(n) if n.ends_with(".toml") => Form::PytestToml,
            _ => Form::Ini("pytest"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML, so it was left as it was: {detail}")]
    Toml { path: String, detail: String },
    #[error("{path}: {what} is not a table, so it was left as it was")]
    NotATable { path: String, what: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The block to paste into a file of `form`, headed by a comment quoting the sentence.
pub(crate) fn block(form: Form, t: &Translation, sentence: &str) -> String {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let sentence = crate::classify::ai::one_line(&words.join(" "), 200);
    let mut out = format!("# smart-rerun policy: {sentence}\n");
    match form {
        Form::Ini(section) => {
            out.push_str(&format!("[{section}]\n"));
            for (key, value) in &t.settings {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        Form::Pyproject | Form::PytestToml => {
            let table = if form == Form::Pyproject {
                "tool.pytest.ini_options"
            } else {
                "pytest"
            };
            out.push_str(&format!("[{table}]\n"));
            for (key, value) in &t.settings {
                out.push_str(&format!(
                    "{key} = {}\n",
                    toml_edit::Value::from(value.as_str())
                ));
            }
        }
    }
    out
}

/// Writes the translation into the configuration file at `path` (created, as a `pytest.ini`-style file
/// of its form, when it does not exist), replaced whole so a reader never sees half of it.
pub(crate) fn write(path: &Path, t: &Translation) -> Result<(), WriteError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(WriteError::Read {
                path: shown,
                source,
            });
        }
    };
    let edited = match Form::of(path) {
        Form::Ini(section) => edit_ini(&text, section, &t.settings),
        form => edit_toml(&text, form, &t.settings).map_err(|e| e.at(&shown))?,
    };
    crate::output::write_atomic(path, |f| std::io::Write::write_all(f, edited.as_bytes())).map_err(
        |source| WriteError::Write {
            path: shown,
            source,
        },
    )
}

/// Sets `settings` in `[section]` of an ini-style `text`: a key that is there is replaced in place (with
/// its continuation lines), a new one goes after the section's last line, a missing section at the end.
pub(crate) fn edit_ini(text: &str, section: &str, settings: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.last_mut().unwrap().push('\n');
    }
    let header = |l: &str| {
        let t = l.trim();
        (!l.starts_with([' ', '\t']) && t.starts_with('[') && t.ends_with(']'))
            .then(|| t[1..t.len() - 1].trim().to_owned())
    };
    let Some(start) = lines
        .iter()
        .position(|l| header(l).as_deref() == Some(section))
    else {
        let mut out = lines.concat();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("[{section}]\n"));
        for (key, value) in settings {
            out.push_str(&format!("{key} = {value}\n"));
        }
        return out;
    };
    for (key, value) in settings {
        let end = lines[start + 1..]
            .iter()
            .position(|l| header(l).is_some())
            .map_or(lines.len(), |i| start + 1 + i);
        let line = format!("{key} = {value}\n");
        let found = (start + 1..end).find(|&i| sets_key(&lines[i], key));
        match found {
            Some(i) => {
                let continued = lines[i + 1..end]
                    .iter()
                    .take_while(|l| is_continuation(l))
                    .count();
                lines.splice(i..=i + continued, [line]);
            }
            None => {
                // After the section's last non-blank line, so blank lines before the next section stay.
                let last = (start..end)
                    .rev()
                    .find(|&i| !lines[i].trim().is_empty())
                    .unwrap_or(start);
                lines.insert(last + 1, line);
            }
        }
    }
    lines.concat()
}

/// Whether an ini line sets `key` (`key = ...` or `key: ...` at the line's start).
fn sets_key(line: &str, key: &str) -> bool {
    if line.starts_with([' ', '\t']) {
        return false;
    }
    line.strip_prefix(key)
        .map(str::trim_start)
        .is_some_and(|rest| rest.starts_with('=') || rest.starts_with(':'))
}

/// An indented line that carries on the value above it (not a blank line or an indented comment).
fn is_continuation(line: &str) -> bool {
    let t = line.trim();
    line.starts_with([' ', '\t']) && !t.is_empty() && !t.starts_with(['#', ';'])
}

enum TomlProblem {
    Parse(String),
    NotATable(&'static str),
}

impl TomlProblem {
    fn at(self, path: &str) -> WriteError {
        match self {
            TomlProblem::Parse(detail) => WriteError::Toml {
                path: path.to_owned(),
                detail,
            },
            TomlProblem::NotATable(what) => WriteError::NotATable {
                path: path.to_owned(),
                what,
            },
        }
    }
}

fn edit_toml(text: &str, form: Form, settings: &[(&str, String)]) -> Result<String, TomlProblem> {
    use toml_edit::{DocumentMut, Item, Table, value};
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| TomlProblem::Parse(e.message().to_owned()))?;
    fn table_in<'a>(
        parent: &'a mut Table,
        key: &str,
        what: &'static str,
        implicit: bool,
    ) -> Result<&'a mut Table, TomlProblem> {
        let item = parent.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(implicit);
            Item::Table(t)
        });
        item.as_table_mut().ok_or(TomlProblem::NotATable(what))
    }
    let table = match form {
        Form::Pyproject => {
            let tool = table_in(doc.as_table_mut(), "tool", "[tool]", true)?;
            // pytest 9 reads `[tool.pytest]` itself; a file that already uses it keeps using it.
            let native = tool
                .get("pytest")
                .and_then(Item::as_table)
                .is_some_and(|t| t.iter().any(|(k, _)| k != "ini_options"));
            let pytest = table_in(tool, "pytest", "[tool.pytest]", true)?;
            if native {
                pytest
            } else {
                table_in(pytest, "ini_options", "[tool.pytest.ini_options]", false)?
            }
        }
        _ => table_in(doc.as_table_mut(), "pytest", "[pytest]", false)?,
    };
    for (key, v) in settings {
        table[*key] = value(v.as_str());
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Vec<(&'static str, String)> {
        vec![
            ("smart_rerun_max", "5".into()),
            ("smart_rerun_backoff", "exp".into()),
        ]
    }

    #[test]
    fn forms_follow_the_file_name() {
        assert_eq!(Form::of(Path::new("a/pytest.ini")), Form::Ini("pytest"));
        assert_eq!(Form::of(Path::new("tox.ini")), Form::Ini("pytest"));
        assert_eq!(Form::of(Path::new("setup.cfg")), Form::Ini("tool:pytest"));
        assert_eq!(Form::of(Path::new("pyproject.toml")), Form::Pyproject);
        assert_eq!(Form::of(Path::new(".pytest.toml")), Form::PytestToml);
    }

    #[test]
    fn an_ini_section_keeps_its_comments_and_other_keys_and_replaces_in_place() {
        let text = "# project settings\n[pytest]\n; the suite\naddopts = -ra\nsmart_rerun_max = 2\n\
                    markers =\n    slow: slow tests\n    net: network\n\n[flake8]\nmax-line-length = 100\n";
        let out = edit_ini(text, "pytest", &settings());
        assert_eq!(
            out,
            "# project settings\n[pytest]\n; the suite\naddopts = -ra\nsmart_rerun_max = 5\n\
             markers =\n    slow: slow tests\n    net: network\nsmart_rerun_backoff = exp\n\n\
             [flake8]\nmax-line-length = 100\n"
        );
        // Writing the same policy again changes nothing.
        assert_eq!(edit_ini(&out, "pytest", &settings()), out);
    }

    #[test]
    fn a_multi_line_value_is_replaced_whole() {
        let text = "[pytest]\nsmart_rerun_errors =\n    ConnectionError\n    # an indented comment stays\naddopts = -q\n";
        let out = edit_ini(
            text,
            "pytest",
            &[("smart_rerun_errors", "TimeoutError".into())],
        );
        assert_eq!(
            out,
            "[pytest]\nsmart_rerun_errors = TimeoutError\n    # an indented comment stays\naddopts = -q\n"
        );
    }

    #[test]
    fn a_missing_section_or_file_is_added_at_the_end() {
        let out = edit_ini("[metadata]\nname = x", "tool:pytest", &settings());
        assert_eq!(
            out,
            "[metadata]\nname = x\n\n[tool:pytest]\nsmart_rerun_max = 5\nsmart_rerun_backoff = exp\n"
        );
        assert_eq!(
            edit_ini("", "pytest", &settings()),
            "[pytest]\nsmart_rerun_max = 5\nsmart_rerun_backoff = exp\n"
        );
    }

    #[test]
    fn pyproject_keeps_its_formatting_and_gains_ini_options() {
        let text = "[project]\nname = \"x\"  # the name\n\n[tool.ruff]\nline-length = 100\n";
        let out = edit_toml(text, Form::Pyproject, &settings()).ok().unwrap();
        assert!(out.starts_with(text), "{out}");
        assert!(
            out.ends_with(
                "[tool.pytest.ini_options]\nsmart_rerun_max = \"5\"\nsmart_rerun_backoff = \"exp\"\n"
            ),
            "{out}"
        );
        let existing =
            "[tool.pytest.ini_options]\n# keep me\naddopts = \"-ra\"\nsmart_rerun_max = \"2\"\n";
        let out = edit_toml(existing, Form::Pyproject, &settings())
            .ok()
            .unwrap();
        assert_eq!(
            out,
            "[tool.pytest.ini_options]\n# keep me\naddopts = \"-ra\"\nsmart_rerun_max = \"5\"\nsmart_rerun_backoff = \"exp\"\n"
        );
    }

    #[test]
    fn pyproject_with_pytest_9_native_table_is_written_there() {
        let text = "[tool.pytest]\nminversion = \"9.0\"\n";
        let out = edit_toml(text, Form::Pyproject, &settings()).ok().unwrap();
        assert_eq!(
            out,
            "[tool.pytest]\nminversion = \"9.0\"\nsmart_rerun_max = \"5\"\nsmart_rerun_backoff = \"exp\"\n"
        );
    }

    #[test]
    fn broken_toml_is_left_alone_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pyproject.toml");
        std::fs::write(&path, "[tool.pytest.ini_options\n").unwrap();
        let t = Translation {
            settings: settings(),
            notes: vec![],
        };
        let e = write(&path, &t).unwrap_err().to_string();
        assert!(e.contains("pyproject.toml is not valid TOML"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[tool.pytest.ini_options\n"
        );
        std::fs::write(&path, "tool = 3\n").unwrap();
        let e = write(&path, &t).unwrap_err().to_string();
        assert!(e.contains("[tool] is not a table"), "{e}");
    }

    #[test]
    fn blocks_quote_the_sentence_on_one_line() {
        let t = Translation {
            settings: settings(),
            notes: vec![],
        };
        assert_eq!(
            block(Form::Ini("pytest"), &t, "retry\nfive times"),
            "# smart-rerun policy: retry five times\n[pytest]\nsmart_rerun_max = 5\nsmart_rerun_backoff = exp\n"
        );
        assert_eq!(
            block(Form::Pyproject, &t, "x"),
            "# smart-rerun policy: x\n[tool.pytest.ini_options]\nsmart_rerun_max = \"5\"\nsmart_rerun_backoff = \"exp\"\n"
        );
    }
}
