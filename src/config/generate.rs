//! The files written from the settings table ([`KEYS`]): the configuration reference (docs/settings.md),
//! and the wheel's option table (python/pytest_smart_rerun/_settings.py); the collector gets its `addini`
//! list at run time ([`super::keys::python_ini_keys`]). A test fails when a file is stale;
//! `UPDATE_SETTINGS=1 cargo test --lib settings` rewrites them.

use super::{Group, KEYS, Key, Kind, pytest_option};
use std::fmt::Write;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "UPDATE_SETTINGS=1 cargo test --lib settings";
const UPDATE_ENV: &str = "UPDATE_SETTINGS";

/// Where the generated part of docs/settings.md starts; the hand-written introduction above it is kept.
const DOCS_MARKER: &str = "<!-- Generated from src/config/keys.rs";

/// A Python string literal (JSON's escaping is Python's for these texts).
fn py(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// The pytest option with its value (`--smart-rerun-max N`); a switch has no value.
fn pytest_usage(k: &Key) -> String {
    match k.kind {
        Kind::Bool => pytest_option(k.flag),
        _ => format!("{} {}", pytest_option(k.flag), k.value_name()),
    }
}

fn flag_usage(k: &Key) -> String {
    match k.kind {
        Kind::Bool => format!("{} [BOOL]", k.flag),
        _ => format!("{} {}", k.flag, k.value_name()),
    }
}

/// Inline code in a Markdown table cell: the pipes of `none|linear|exp` must not split the cell.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

/// The wheel's table: (ini key, the binary's flag, kind, help) per setting.
pub(super) fn plugin_settings() -> String {
    let mut out = format!(
        "\"\"\"The settings the pytest plugin offers, one row per setting of the smart-rerun binary.\n\n\
         Generated from src/config/keys.rs: do not edit; `{REGENERATE}` rewrites it.\n\"\"\"\n\n\
         # (ini key, the binary's flag, kind, help). kind: \"bool\" is a switch (with a hidden\n\
         # --smart-rerun-no-NAME to turn it off), \"secret\" takes a token, handed to the binary in the\n\
         # environment; anything else takes a value and is the option's metavar. The pytest option is the ini\n\
         # key spelt with dashes.\nKEYS = (\n"
    );
    for k in KEYS {
        let kind = match k.kind {
            Kind::Bool => "bool",
            Kind::Secret => "secret",
            other => other.value_name(),
        };
        let _ = writeln!(
            out,
            "    ({}, {}, {}, {}),",
            py(k.ini),
            py(k.flag),
            py(kind),
            py(&k.help_with_default())
        );
    }
    out.push_str(")\n");
    out
}

/// docs/settings.md: the hand-written introduction of `current` (everything above the marker), then the
/// reference.
pub(super) fn settings_docs(current: &str) -> String {
    let intro = match current.find(DOCS_MARKER) {
        Some(at) => &current[..at],
        None => "# Settings\n\n",
    };
    let mut out = format!(
        "{intro}{DOCS_MARKER}: do not edit below this line; `{REGENERATE}` rewrites it. -->\n\n"
    );
    out.push_str("| setting | flag | variable | default |\n| --- | --- | --- | --- |\n");
    for k in KEYS {
        let _ = writeln!(
            out,
            "| [{}](#{}) | {} | {} | {} |",
            code(k.ini),
            k.ini,
            code(&flag_usage(k)),
            code(k.env),
            k.default
        );
    }
    for group in Group::ALL {
        let _ = write!(out, "\n## {}\n", group.title());
        for k in KEYS.iter().filter(|k| k.group == group) {
            let _ = write!(out, "\n### {}\n\n{}.", k.ini, k.help);
            if !k.details.is_empty() {
                let _ = write!(out, " {}", k.details);
            }
            out.push_str("\n\n| | |\n| --- | --- |\n");
            let mut row = |name: &str, value: String| {
                let _ = writeln!(out, "| {name} | {value} |");
            };
            row("ini key", code(k.ini));
            row("flag", code(&flag_usage(k)));
            row("variable", code(k.env));
            let mut option = code(&pytest_usage(k));
            if k.kind == Kind::Bool && k.ini != "smart_rerun" {
                let off = format!("--smart-rerun-no-{}", k.flag.trim_start_matches("--"));
                let _ = write!(option, " (off: {})", code(&off));
            }
            row("pytest option", option);
            row("action input", k.action_input.map_or("none".into(), code));
            row(
                "component input",
                k.component_input.map_or("none".into(), code),
            );
            row("allowed", k.kind.allowed().replace('|', "\\|"));
            row("default", k.default.to_owned());
        }
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares a generated file with the one in the tree; rewrites it under `UPDATE_SETTINGS=1`.
fn check(path: &Path, expected: &str) {
    let full = root().join(path);
    let actual = std::fs::read_to_string(&full).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os(UPDATE_ENV).is_some() {
        std::fs::write(&full, expected).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        return;
    }
    panic!(
        "{} is stale: the settings table (src/config/keys.rs) changed. Run `{REGENERATE}` to regenerate it.",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reference_is_current() {
        let path = Path::new("docs/settings.md");
        let current = std::fs::read_to_string(root().join(path)).unwrap_or_default();
        check(path, &settings_docs(&current));
    }

    #[test]
    fn settings_of_the_pytest_plugin_are_current() {
        check(
            Path::new("python/pytest_smart_rerun/_settings.py"),
            &plugin_settings(),
        );
    }

    #[test]
    fn the_reference_keeps_its_introduction_and_lists_every_way_to_set_a_key() {
        let docs = settings_docs(
            "# Settings\n\nHand-written.\n\n<!-- Generated from src/config/keys.rs: old -->\nold table\n",
        );
        assert!(docs.starts_with("# Settings\n\nHand-written.\n\n<!-- Generated"));
        assert!(!docs.contains("old table"));
        assert!(
            docs.contains(REGENERATE),
            "the file says how to regenerate it"
        );
        assert!(docs.contains(
            "| pytest option | `--smart-rerun-fail-on-flaky` (off: `--smart-rerun-no-fail-on-flaky`) |"
        ));
        assert!(docs.contains("| flag | `--backoff none\\|linear\\|exp` |"));
        assert!(docs.contains("| action input | `annotations` |"));
        assert!(docs.contains("| component input | `junit` |"));
        for k in KEYS {
            assert!(docs.contains(&format!("\n### {}\n", k.ini)), "{}", k.ini);
        }
    }
}
