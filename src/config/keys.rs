//! Every setting once: its pytest ini key, its environment variable and its command-line flag. The CLI,
//! the environment reader, the `config` subcommand, the collector's `addini` list and the docs all follow
//! this table (a test checks the collector and the README against it).

/// What kind of value a key takes; decides validation and the "what is allowed" text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// A whole number, at least this much.
    Count(u32),
    Seconds,
    Backoff,
    JunitCompat,
    ErrorNames,
    Path,
    Url,
    /// A secret: never printed.
    Secret,
    /// `mcp` or `http`.
    AiProtocol,
    /// Free text (a label).
    Text,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The pytest ini key, which also names the setting.
    pub ini: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

macro_rules! keys {
    ($($ini:literal, $env:literal, $flag:literal, $kind:expr, $help:literal;)*) => {
        /// Every setting, in the order `smart-rerun config` prints them.
        pub const KEYS: &[Key] = &[$(Key { ini: $ini, env: $env, flag: $flag, kind: $kind, help: $help }),*];
    };
}

keys! {
    "smart_rerun", "SMART_RERUN", "--rerun", Kind::Bool,
        "rerun every failing test (true) or only tests marked @pytest.mark.smart_rerun (false)";
    "smart_rerun_max", "SMART_RERUN_MAX", "--max", Kind::Count(1),
        "total attempts per test, the first run included";
    "smart_rerun_delay", "SMART_RERUN_DELAY", "--delay", Kind::Seconds,
        "seconds between a failed attempt and the next attempt";
    "smart_rerun_backoff", "SMART_RERUN_BACKOFF", "--backoff", Kind::Backoff,
        "how the delay grows: none, linear or exp";
    "smart_rerun_max_delay", "SMART_RERUN_MAX_DELAY", "--max-delay", Kind::Seconds,
        "cap, in seconds, for a backed-off delay";
    "smart_rerun_jitter", "SMART_RERUN_JITTER", "--jitter", Kind::Seconds,
        "up to this many random seconds added to each delay";
    "smart_rerun_errors", "SMART_RERUN_ERRORS", "--errors", Kind::ErrorNames,
        "only rerun failures whose exception class or a base class is listed";
    "smart_rerun_max_failures", "SMART_RERUN_MAX_FAILURES", "--max-failures", Kind::Count(0),
        "when more tests than this fail in the first round, the build is broken: rerun nothing";
    "smart_rerun_max_reruns", "SMART_RERUN_MAX_RERUNS", "--max-reruns", Kind::Count(0),
        "cap on the total number of reruns in the run";
    "smart_rerun_fail_on_flaky", "SMART_RERUN_FAIL_ON_FLAKY", "--fail-on-flaky", Kind::Bool,
        "flaky tests make the run exit 1";
    "smart_rerun_early_stop", "SMART_RERUN_EARLY_STOP", "--early-stop", Kind::Bool,
        "stop retrying a test that failed the same way twice (a confirmed deterministic failure)";
    "smart_rerun_prestart", "SMART_RERUN_PRESTART", "--prestart", Kind::Bool,
        "start the next round's pytest as soon as a test fails, and hold it before it reads conftest files until its tests are chosen (saves the interpreter and plugin start-up of every rerun round)";
    "smart_rerun_report", "SMART_RERUN_REPORT", "--report", Kind::Path,
        "write the JSON report here";
    "smart_rerun_junit_xml", "SMART_RERUN_JUNIT_XML", "--junit-xml", Kind::Path,
        "write the flaky-aware JUnit XML report here";
    "smart_rerun_junit_compat", "SMART_RERUN_JUNIT_COMPAT", "--junit-compat", Kind::JunitCompat,
        "JUnit layout: surefire (flaky/rerun elements), per-attempt (one testcase per attempt) or gitlab (surefire plus a skipped companion per flaky test) [default under GitLab CI: gitlab]";
    "smart_rerun_markdown", "SMART_RERUN_MARKDOWN", "--markdown", Kind::Path,
        "write the Markdown report (job summary, PR/MR comment) here";
    "smart_rerun_ai", "SMART_RERUN_AI", "--ai", Kind::Bool,
        "classify failures with an AI endpoint";
    "smart_rerun_ai_endpoint", "SMART_RERUN_AI_ENDPOINT", "--ai-endpoint", Kind::Url,
        "the MCP (or plain HTTP) endpoint for AI classification";
    "smart_rerun_ai_token", "SMART_RERUN_AI_TOKEN", "--ai-token", Kind::Secret,
        "bearer token for the AI endpoint; use {{ env:NAME }} in ini files";
    "smart_rerun_ai_report", "SMART_RERUN_AI_REPORT", "--ai-report", Kind::Path,
        "write the AI classification trail here";
    "smart_rerun_ai_cache", "SMART_RERUN_AI_CACHE", "--ai-cache", Kind::Path,
        "persistent cache of AI classifications by failure fingerprint";
    "smart_rerun_ai_redact", "SMART_RERUN_AI_REDACT", "--ai-redact", Kind::Bool,
        "trim tracebacks and scrub secrets before anything is sent";
    "smart_rerun_ai_protocol", "SMART_RERUN_AI_PROTOCOL", "--ai-protocol", Kind::AiProtocol,
        "how to reach the AI endpoint: mcp (a Streamable HTTP tool call) or http (POST the failure as JSON)";
    "smart_rerun_ai_tool", "SMART_RERUN_AI_TOOL", "--ai-tool", Kind::Text,
        "the MCP tool that classifies a failure [default: classify_failure]";
    "smart_rerun_ai_timeout", "SMART_RERUN_AI_TIMEOUT", "--ai-timeout", Kind::Seconds,
        "the AI budget for the whole run, in seconds; each call also stops after 10 s [default: 60]";
    "smart_rerun_github_annotations", "SMART_RERUN_GITHUB_ANNOTATIONS", "--github-annotations", Kind::Bool,
        "in GitHub Actions, annotate failed (error) and flaky (warning) tests at their file and line";
    "smart_rerun_github_summary", "SMART_RERUN_GITHUB_SUMMARY", "--github-summary", Kind::Bool,
        "in GitHub Actions, append the Markdown report to the job summary";
    "smart_rerun_github_comment", "SMART_RERUN_GITHUB_COMMENT", "--github-comment", Kind::Bool,
        "in GitHub Actions, keep one sticky comment with the results on the pull request";
    "smart_rerun_github_comment_key", "SMART_RERUN_GITHUB_COMMENT_KEY", "--github-comment-key", Kind::Text,
        "this job's section in the sticky comment [default: the job id and matrix values]";
    "smart_rerun_github_stop_commands", "SMART_RERUN_GITHUB_STOP_COMMANDS", "--github-stop-commands", Kind::Bool,
        "in GitHub Actions, stop pytest's output from issuing workflow commands (flag or variable only)";
    "smart_rerun_github_token", "SMART_RERUN_GITHUB_TOKEN", "--github-token", Kind::Secret,
        "token for the PR comment [default: GITHUB_TOKEN]; prefer the variable to the flag";
    "smart_rerun_gitlab_note", "SMART_RERUN_GITLAB_NOTE", "--gitlab-note", Kind::Bool,
        "in GitLab CI, keep one sticky note with the results on the merge request";
    "smart_rerun_gitlab_note_key", "SMART_RERUN_GITLAB_NOTE_KEY", "--gitlab-note-key", Kind::Text,
        "this job's section in the sticky note [default: CI_JOB_NAME]";
    "smart_rerun_gitlab_token", "SMART_RERUN_GITLAB_TOKEN", "--gitlab-token", Kind::Secret,
        "token for the MR note, with the api scope [default: GITLAB_TOKEN; CI_JOB_TOKEN cannot write notes]";
}

/// Looks a key up by its ini name.
pub fn key(ini: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.ini == ini)
}

impl Kind {
    /// What values are allowed, for error messages.
    pub fn allowed(self) -> String {
        match self {
            Kind::Bool => "true or false (also 1/0, yes/no, on/off)".into(),
            Kind::Count(min) => format!("a whole number, {min} or more"),
            Kind::Seconds => "a number of seconds, 0 or more (e.g. 0.5)".into(),
            Kind::Backoff => "none, linear or exp".into(),
            Kind::JunitCompat => "surefire, per-attempt or gitlab".into(),
            Kind::ErrorNames => {
                "comma-separated exception class names, short (TimeoutError) or qualified (requests.exceptions.ConnectionError)".into()
            }
            Kind::Path => "a file path".into(),
            Kind::Url => "an http:// or https:// URL".into(),
            Kind::Secret => "a token, or {{ env:NAME }}".into(),
            Kind::AiProtocol => "mcp or http".into(),
            Kind::Text => "any text".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_consistent_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(seen.insert(k.ini), "{} twice", k.ini);
            assert_eq!(k.env, k.ini.to_ascii_uppercase(), "env name of {}", k.ini);
            assert!(k.flag.starts_with("--"), "{}", k.flag);
        }
    }

    #[test]
    fn the_readme_documents_every_key_in_one_options_row() {
        let readme = include_str!("../../README.md");
        for k in KEYS {
            // A table row naming the flag (with or without its value), the variable and the ini key.
            let row = readme.lines().find(|line| {
                line.starts_with('|')
                    && (line.contains(&format!("`{} ", k.flag))
                        || line.contains(&format!("`{}`", k.flag)))
                    && line.contains(&format!("`{}`", k.env))
                    && line.contains(&format!("`{}`", k.ini))
            });
            assert!(
                row.is_some(),
                "README.md's Options table has no row with {}, {} and {}",
                k.flag,
                k.env,
                k.ini
            );
            assert!(
                readme.contains(&format!("\n{} = ", k.ini))
                    || readme.contains(&format!("# {} ", k.ini)),
                "README.md's pytest.ini example does not show {}",
                k.ini
            );
        }
    }

    #[test]
    fn the_cli_accepts_every_flag_as_that_key() {
        use clap::Parser;
        for k in KEYS {
            let cli = crate::cli::Cli::try_parse_from(["smart-rerun", "run", k.flag, "1"])
                .unwrap_or_else(|e| panic!("{}: {e}", k.flag));
            let crate::cli::Command::Run(args) = cli.command else {
                panic!("not a run")
            };
            let layer = args.layer();
            let raw = layer
                .get(k.ini)
                .unwrap_or_else(|| panic!("{} sets nothing", k.flag));
            assert_eq!(raw.source, crate::config::Source::Flag(k.flag), "{}", k.ini);
            assert_eq!(raw.value, "1", "{}", k.ini);
        }
    }

    #[test]
    fn the_pytest_plugin_offers_every_key_as_an_option() {
        // python/pytest_smart_rerun/plugin.py: (ini key, the binary's flag, kind, help) per setting; the
        // pytest option is the ini key spelt with dashes, which is what config::pytest_option gives.
        let source = include_str!("../../python/pytest_smart_rerun/plugin.py");
        for k in KEYS {
            let row = format!("(\"{}\", \"{}\", \"", k.ini, k.flag);
            let rest = source
                .split_once(&row)
                .unwrap_or_else(|| panic!("plugin.py has no row {row}"))
                .1;
            // The third field: "bool", "secret", or the metavar of a value.
            let kind = &rest[..rest.find('"').unwrap()];
            match k.kind {
                Kind::Bool => assert_eq!(kind, "bool", "{}", k.ini),
                Kind::Secret => assert_eq!(kind, "secret", "{}", k.ini),
                _ => assert!(kind != "bool" && kind != "secret", "{}: {kind}", k.ini),
            }
            assert_eq!(
                crate::config::pytest_option(k.flag),
                format!("--{}", k.ini.replace('_', "-")),
                "{}",
                k.ini
            );
        }
        assert_eq!(
            source.matches("\n    (\"smart_rerun").count(),
            KEYS.len(),
            "plugin.py offers a key the binary does not know"
        );
    }

    #[test]
    fn the_python_package_has_the_crate_version() {
        let init = include_str!("../../python/pytest_smart_rerun/__init__.py");
        let line = format!("__version__ = \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(init.contains(&line), "__init__.py lacks {line}");
    }

    #[test]
    fn the_collector_registers_every_ini_key() {
        let source = crate::runner::COLLECTOR_SOURCE;
        for k in KEYS {
            assert!(
                source.contains(&format!("(\"{}\",", k.ini)),
                "collector.py does not addini {}",
                k.ini
            );
        }
    }
}
