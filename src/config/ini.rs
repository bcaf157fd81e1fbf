//! Finds the line of a key in a pytest configuration file, so an error can point at it. pytest itself
//! reads the values (the collector reports them through `getini`, with pytest's own discovery rules); this
//! only locates them, in pytest.ini / .pytest.ini / tox.ini `[pytest]`, setup.cfg `[tool:pytest]`, and
//! pyproject.toml / pytest.toml `[tool.pytest.ini_options]`, `[tool.pytest]` or `[pytest]`.

const SECTIONS: &[&str] = &[
    "pytest",
    "tool:pytest",
    "tool.pytest.ini_options",
    "tool.pytest",
];

/// The 1-based line where `key` is set in a pytest section of `text`.
pub(crate) fn locate(text: &str, key: &str) -> Option<u32> {
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let header = header.trim().trim_matches('"');
            in_section = SECTIONS.contains(&header);
            continue;
        }
        if !in_section || line.starts_with([' ', '\t']) {
            continue;
        }
        let Some(rest) = trimmed.strip_prefix(key) else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with('=') || rest.starts_with(':') {
            return u32::try_from(n + 1).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_keys_in_each_file_type() {
        let ini = "[pytest]\naddopts = -q\nsmart_rerun_max = 3\nsmart_rerun = true\n";
        assert_eq!(locate(ini, "smart_rerun_max"), Some(3));
        assert_eq!(
            locate(ini, "smart_rerun"),
            Some(4),
            "a prefix of another key must not match"
        );
        let cfg = "[metadata]\nsmart_rerun_max = 9\n[tool:pytest]\nsmart_rerun_max: 2\n";
        assert_eq!(locate(cfg, "smart_rerun_max"), Some(4));
        let toml =
            "[project]\nname='x'\n\n[tool.pytest.ini_options]\nsmart_rerun_delay = \"0.5\"\n";
        assert_eq!(locate(toml, "smart_rerun_delay"), Some(5));
        let toml9 = "[tool.pytest]\nsmart_rerun_backoff = \"exp\"\n";
        assert_eq!(locate(toml9, "smart_rerun_backoff"), Some(2));
        assert_eq!(
            locate("[other]\nsmart_rerun_max = 1\n", "smart_rerun_max"),
            None
        );
    }
}
