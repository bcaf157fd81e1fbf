//! Every setting once: [`KEYS`] holds its pytest ini key, environment variable, command-line flag, value
//! kind, default, GitHub Action and GitLab component inputs and description. Everything else follows this
//! table: the flags of `run` and `config` ([`super::args`]), the environment reader, `smart-rerun config`,
//! the collector's `addini` list and the wheel's pytest options (generated files), the action's and the
//! component's inputs (checked by tests) and the configuration reference, docs/settings.md (generated:
//! `UPDATE_SETTINGS=1 cargo test --lib settings` rewrites every generated file).

/// What kind of value a key takes; decides validation, the value's name in `--help` and the "what is
/// allowed" text.
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
    /// Free text (a label), shown in `--help` under this name.
    Text(&'static str),
}

/// Where a setting is listed in `--help` and in the configuration reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Policy,
    Reports,
    Ai,
    Github,
    Gitlab,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Policy,
        Group::Reports,
        Group::Ai,
        Group::Github,
        Group::Gitlab,
    ];

    /// The heading of the group.
    pub fn title(self) -> &'static str {
        match self {
            Group::Policy => "Retry policy",
            Group::Reports => "Reports",
            Group::Ai => "AI classification",
            Group::Github => "GitHub Actions",
            Group::Gitlab => "GitLab CI",
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The pytest ini key, which also names the setting.
    pub ini: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    pub kind: Kind,
    pub group: Group,
    /// The value when nothing sets it, as text for people (`2`, `none`, `no limit`).
    pub default: &'static str,
    /// The GitHub Action's input (action.yml) that sets it, if any.
    pub action_input: Option<&'static str>,
    /// The GitLab CI/CD component's input (templates/smart-rerun.yml) that sets it, if any.
    pub component_input: Option<&'static str>,
    /// One sentence, no final full stop: `--help`, pytest's `--help` and the ini key's help.
    pub help: &'static str,
    /// More for the configuration reference (full sentences), or empty.
    pub details: &'static str,
    /// The value may hold a password (a database URL): like a token's, it reaches smart-rerun through its
    /// variable, never a command line (which any process can read), and pytest's environment loses it.
    pub credentials: bool,
}

impl Key {
    const fn new(
        ini: &'static str,
        env: &'static str,
        flag: &'static str,
        kind: Kind,
        group: Group,
        default: &'static str,
        help: &'static str,
    ) -> Key {
        Key {
            ini,
            env,
            flag,
            kind,
            group,
            default,
            action_input: None,
            component_input: None,
            help,
            details: "",
            credentials: false,
        }
    }

    const fn credentials(mut self) -> Key {
        self.credentials = true;
        self
    }

    /// A token, or a value that may hold a password: kept off command lines and out of pytest's reach.
    pub fn is_sensitive(&self) -> bool {
        self.kind == Kind::Secret || self.credentials
    }

    const fn action(mut self, input: &'static str) -> Key {
        self.action_input = Some(input);
        self
    }

    const fn component(mut self, input: &'static str) -> Key {
        self.component_input = Some(input);
        self
    }

    const fn details(mut self, text: &'static str) -> Key {
        self.details = text;
        self
    }

    /// The help line with its default: `--help`, pytest's `--help` and the ini key's help.
    pub fn help_with_default(&self) -> String {
        // "none" is the value of `--backoff`, and elsewhere no value at all, which goes without saying.
        if self.default == "none" && !self.kind.values().contains(&"none") {
            return self.help.to_owned();
        }
        format!("{} [default: {}]", self.help, self.default)
    }

    /// The value's name after the flag (`--max N`); `BOOL` for a switch, whose value is optional.
    pub fn value_name(&self) -> &'static str {
        self.kind.value_name()
    }
}

use Group::{Ai, Github, Gitlab, Policy, Reports};

/// Every setting, in the order `smart-rerun config` prints them.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    Key::new("smart_rerun", "SMART_RERUN", "--rerun", Kind::Bool, Policy, "true",
        "Rerun every failing test (true) or only tests marked @pytest.mark.smart_rerun (false)")
        .action("rerun"),
    Key::new("smart_rerun_max", "SMART_RERUN_MAX", "--max", Kind::Count(1), Policy, "2",
        "Total attempts per test, the first run included (at least 1)")
        .action("max")
        .component("max"),
    Key::new("smart_rerun_delay", "SMART_RERUN_DELAY", "--delay", Kind::Seconds, Policy, "0",
        "Seconds between a test's failed attempt and its next attempt")
        .action("delay")
        .component("delay")
        .details("The delay is not a sleep that blocks the suite: rounds are scheduled so that each test has waited its delay, and a test that failed early in a long first round has usually waited it already when the round ends."),
    Key::new("smart_rerun_backoff", "SMART_RERUN_BACKOFF", "--backoff", Kind::Backoff, Policy, "none",
        "How the delay grows: none (delay), linear (delay×k) or exp (delay×2^(k-1)) for the k-th retry")
        .action("backoff")
        .component("backoff"),
    Key::new("smart_rerun_max_delay", "SMART_RERUN_MAX_DELAY", "--max-delay", Kind::Seconds, Policy, "none (no cap)",
        "Cap, in seconds, for a backed-off delay")
        .action("max-delay"),
    Key::new("smart_rerun_jitter", "SMART_RERUN_JITTER", "--jitter", Kind::Seconds, Policy, "0",
        "Up to this many seconds added to each delay, a share fixed by the test and the attempt, so retries of different tests don't land together")
        .action("jitter")
        .details("The share is not a random draw: it is a hash of the test's node id and the attempt number, so the same run waits the same times and the schedule can be tested without sleeping."),
    Key::new("smart_rerun_errors", "SMART_RERUN_ERRORS", "--errors", Kind::ErrorNames, Policy, "any exception",
        "Only rerun failures whose exception class, or a base class, is one of these (comma-separated, short like TimeoutError or qualified like requests.exceptions.ConnectionError)")
        .action("errors")
        .component("errors"),
    Key::new("smart_rerun_max_failures", "SMART_RERUN_MAX_FAILURES", "--max-failures", Kind::Count(0), Policy, "no limit",
        "When more tests than this fail in the first round, the build is broken, not flaky: rerun nothing")
        .action("max-failures")
        .details("The report and the summary say why nothing was rerun."),
    Key::new("smart_rerun_max_reruns", "SMART_RERUN_MAX_RERUNS", "--max-reruns", Kind::Count(0), Policy, "no limit",
        "Cap on the total number of reruns in the run")
        .action("max-reruns")
        .details("Tests left over keep their result, with the reason."),
    Key::new("smart_rerun_fail_on_flaky", "SMART_RERUN_FAIL_ON_FLAKY", "--fail-on-flaky", Kind::Bool, Policy, "false",
        "Flaky tests (failed, then passed) make the run exit 1")
        .action("fail-on-flaky")
        .component("fail-on-flaky"),
    Key::new("smart_rerun_early_stop", "SMART_RERUN_EARLY_STOP", "--early-stop", Kind::Bool, Policy, "true",
        "Stop retrying a test that failed the same way twice (same exception, normalised message and crash site), a confirmed deterministic failure; false spends every attempt")
        .action("early-stop"),
    Key::new("smart_rerun_prestart", "SMART_RERUN_PRESTART", "--prestart", Kind::Bool, Policy, "true",
        "Start a rerun round's pytest as soon as a test fails, held before it reads any conftest until its tests are chosen; false starts each round's pytest when the round starts")
        .action("prestart")
        .details("A prestarted round skips the interpreter's and the plugins' start-up. Windows starts each round's pytest when the round starts."),
    Key::new("smart_rerun_fork", "SMART_RERUN_FORK", "--fork", Kind::Bool, Policy, "true (Linux)",
        "Start rerun rounds warm: forked from a snapshot of the first round's pytest taken right after collection, before any test or fixture ran, so a rerun round pays no imports, conftest or collection; false starts each rerun round's pytest afresh")
        .action("fork")
        .component("fork")
        .details("A rerun round falls back to a fresh pytest, saying why in one line, where forking is unsafe: a thread other than the main one alive after collection, pytest-xdist, or a platform other than Linux. An ini value of false takes effect from the first rerun round on (the snapshot is then never used)."),
    Key::new("smart_rerun_report", "SMART_RERUN_REPORT", "--report", Kind::Path, Reports, "none",
        "Write the JSON report here")
        .action("report")
        .component("report")
        .details("The report follows schema/report.schema.json. A relative path in an ini file is relative to that file, elsewhere to the current directory."),
    Key::new("smart_rerun_junit_xml", "SMART_RERUN_JUNIT_XML", "--junit-xml", Kind::Path, Reports, "none",
        "Write flaky-aware JUnit XML here (a --junitxml in the pytest command is taken over the same way)")
        .action("junit-xml")
        .component("junit"),
    Key::new("smart_rerun_junit_compat", "SMART_RERUN_JUNIT_COMPAT", "--junit-compat", Kind::JunitCompat, Reports, "surefire (gitlab under GitLab CI)",
        "JUnit layout: surefire (flakyFailure/rerunFailure elements), per-attempt (one testcase per attempt) or gitlab (surefire plus a skipped `name [flaky]` testcase per flaky test)")
        .action("junit-compat")
        .component("junit-compat")
        .details("GitLab's test report ignores Surefire's flaky elements; the gitlab layout keeps a flaky test passed and adds the skipped companion that the report shows."),
    Key::new("smart_rerun_markdown", "SMART_RERUN_MARKDOWN", "--markdown", Kind::Path, Reports, "none",
        "Write the Markdown report (for job summaries and PR/MR comments) here")
        .action("markdown")
        .component("markdown"),
    Key::new("smart_rerun_history", "SMART_RERUN_HISTORY", "--history", Kind::Text("URL"), Reports, "none",
        "Remember every run here and say in the reports what history knows of each failed or flaky test: a file path or sqlite:PATH (SQLite), or postgres://USER@HOST:PORT/DB")
        .action("history")
        .component("history")
        .credentials()
        .details("See docs/history.md. A relative path in an ini file is relative to that file. A history that cannot be opened, read or written is one warning line: the run and its exit code stay as they are, and history adds at most 4.5 seconds to a run. TLS connections to PostgreSQL are not supported yet."),
    Key::new("smart_rerun_new_test_repeats", "SMART_RERUN_NEW_TEST_REPEATS", "--new-test-repeats", Kind::Count(0), Reports, "0",
        "Run each test that history has never seen this many more times, in a rerun round: a new test that fails on any repeat is a new flaky test, and fails the run (needs --history)")
        .action("new-test-repeats")
        .component("new-test-repeats")
        .details("See docs/history.md. Tests that pass in the first round and that no earlier run in the history ran are repeated; a history with no runs yet repeats nothing, and neither does a run where more than a third of the suite is new (the history is probably another suite's)."),
    Key::new("smart_rerun_history_policy", "SMART_RERUN_HISTORY_POLICY", "--history-policy", Kind::Bool, Reports, "false",
        "Let history adjust retries: a test that flaked in at least smart_rerun_history_flaky_percent % of its last 50 runs gets up to smart_rerun_history_max attempts, and a failure that history saw fail the same way for good in two earlier runs stops after its first attempt (needs --history)")
        .action("history-policy")
        .component("history-policy")
        .details("See docs/history.md. A marker's own max still wins over the history's; the stop is said in the report (`stopped_because`), and early_stop = false turns it off too."),
    Key::new("smart_rerun_history_max", "SMART_RERUN_HISTORY_MAX", "--history-max", Kind::Count(1), Reports, "5",
        "Attempts (the first run included) a known flaky test gets under --history-policy")
        .action("history-max")
        .component("history-max"),
    Key::new("smart_rerun_history_flaky_percent", "SMART_RERUN_HISTORY_FLAKY_PERCENT", "--history-flaky-percent", Kind::Count(0), Reports, "5",
        "Under --history-policy, the share of its last 50 runs (in percent) in which a test flaked that makes it known flaky")
        .action("history-flaky-percent")
        .component("history-flaky-percent"),
    Key::new("smart_rerun_quarantine", "SMART_RERUN_QUARANTINE", "--quarantine", Kind::Path, Reports, ".smart-rerun/quarantine.toml",
        "The quarantine file: tests listed there still run and are reported, in their own section, but their failure does not fail the run")
        .action("quarantine")
        .component("quarantine")
        .details("See docs/history.md. A missing file is no quarantine; a file that does not parse is a usage error naming its file, line and field. A relative path in an ini file is relative to that file, elsewhere to the current directory."),
    Key::new("smart_rerun_quarantine_grace_days", "SMART_RERUN_QUARANTINE_GRACE_DAYS", "--quarantine-grace-days", Kind::Count(0), Reports, "7",
        "Days an expired quarantine entry still protects its tests, with a warning naming the entry; after them it protects nothing")
        .action("quarantine-grace-days")
        .component("quarantine-grace-days"),
    Key::new("smart_rerun_ai", "SMART_RERUN_AI", "--ai", Kind::Bool, Ai, "false",
        "Classify failures with an AI endpoint (MCP or plain HTTP) on top of the offline heuristics")
        .action("ai"),
    Key::new("smart_rerun_ai_endpoint", "SMART_RERUN_AI_ENDPOINT", "--ai-endpoint", Kind::Url, Ai, "none",
        "The MCP (or plain HTTP) endpoint for AI classification")
        .action("ai-endpoint"),
    Key::new("smart_rerun_ai_token", "SMART_RERUN_AI_TOKEN", "--ai-token", Kind::Secret, Ai, "none",
        "Bearer token for the AI endpoint, never printed; prefer SMART_RERUN_AI_TOKEN (or {{ env:NAME }} in an ini file): a command line is visible to other processes")
        .action("ai-token"),
    Key::new("smart_rerun_ai_report", "SMART_RERUN_AI_REPORT", "--ai-report", Kind::Path, Ai, "none",
        "Write the AI classification trail here")
        .action("ai-report"),
    Key::new("smart_rerun_ai_cache", "SMART_RERUN_AI_CACHE", "--ai-cache", Kind::Path, Ai, "none",
        "Persistent cache of AI classifications, by failure fingerprint")
        .action("ai-cache"),
    Key::new("smart_rerun_ai_redact", "SMART_RERUN_AI_REDACT", "--ai-redact", Kind::Bool, Ai, "true",
        "Trim tracebacks and scrub secrets before anything is sent")
        .action("ai-redact"),
    Key::new("smart_rerun_ai_protocol", "SMART_RERUN_AI_PROTOCOL", "--ai-protocol", Kind::AiProtocol, Ai, "mcp",
        "How to reach the AI endpoint: mcp (a tool call over Streamable HTTP) or http (POST the failure as JSON)")
        .action("ai-protocol"),
    Key::new("smart_rerun_ai_tool", "SMART_RERUN_AI_TOOL", "--ai-tool", Kind::Text("NAME"), Ai, "classify_failure",
        "The MCP tool that classifies a failure")
        .action("ai-tool"),
    Key::new("smart_rerun_ai_timeout", "SMART_RERUN_AI_TIMEOUT", "--ai-timeout", Kind::Seconds, Ai, "60",
        "The AI budget for the whole run, in seconds; each call also stops after 10 s")
        .action("ai-timeout")
        .details("Past the budget the offline heuristics decide alone; the AI never fails the run."),
    Key::new("smart_rerun_github_annotations", "SMART_RERUN_GITHUB_ANNOTATIONS", "--github-annotations", Kind::Bool, Github, "true",
        "In GitHub Actions: annotate failed tests (errors) and flaky tests (warnings) at their file and line")
        .action("annotations"),
    Key::new("smart_rerun_github_summary", "SMART_RERUN_GITHUB_SUMMARY", "--github-summary", Kind::Bool, Github, "true",
        "In GitHub Actions: append the Markdown report to the job summary")
        .action("summary"),
    Key::new("smart_rerun_github_comment", "SMART_RERUN_GITHUB_COMMENT", "--github-comment", Kind::Bool, Github, "true",
        "In GitHub Actions: keep one sticky comment with the results on the pull request")
        .action("comment"),
    Key::new("smart_rerun_github_comment_key", "SMART_RERUN_GITHUB_COMMENT_KEY", "--github-comment-key", Kind::Text("KEY"), Github, "job and matrix (the job id and the matrix values)",
        "This job's section of the sticky PR comment")
        .action("comment-key"),
    Key::new("smart_rerun_github_stop_commands", "SMART_RERUN_GITHUB_STOP_COMMANDS", "--github-stop-commands", Kind::Bool, Github, "true",
        "In GitHub Actions: stop pytest's output from issuing workflow commands")
        .action("stop-commands")
        .details("A flag or variable only: the ini key is read after pytest's output has started, so it has no effect (smart-rerun says so)."),
    Key::new("smart_rerun_github_token", "SMART_RERUN_GITHUB_TOKEN", "--github-token", Kind::Secret, Github, "GITHUB_TOKEN",
        "Token for the PR comment, never printed; prefer the variable: a command line is visible to other processes")
        .action("github-token")
        .details("smart-rerun takes SMART_RERUN_GITHUB_TOKEN out of the environment once read, so the tests never see it."),
    Key::new("smart_rerun_gitlab_note", "SMART_RERUN_GITLAB_NOTE", "--gitlab-note", Kind::Bool, Gitlab, "true",
        "In GitLab CI: keep one sticky note with the results on the merge request")
        .component("mr-note")
        .details("It needs a token with the api scope in SMART_RERUN_GITLAB_TOKEN: CI_JOB_TOKEN cannot write notes."),
    Key::new("smart_rerun_gitlab_note_key", "SMART_RERUN_GITLAB_NOTE_KEY", "--gitlab-note-key", Kind::Text("KEY"), Gitlab, "CI_JOB_NAME",
        "This job's section of the sticky merge request note"),
    Key::new("smart_rerun_gitlab_token", "SMART_RERUN_GITLAB_TOKEN", "--gitlab-token", Kind::Secret, Gitlab, "GITLAB_TOKEN",
        "Token for the merge request note (a project access token with the api scope), never printed; prefer a masked CI/CD variable to the flag"),
];

/// Looks a key up by its ini name.
/// The Python module the collector imports its ini keys from (`INI_KEYS`: name and help of every key),
/// written into each run's private directory beside it: registering them keeps `--strict-config` projects
/// working and lets the binary read them through pytest's own configuration discovery (getini).
pub(crate) fn python_ini_keys() -> String {
    let py = |text: &str| serde_json::to_string(text).expect("a string serialises");
    let mut out = String::from(
        "# smart-rerun's ini keys, written for this run from its settings table (src/config/keys.rs).\nINI_KEYS = (\n",
    );
    for k in KEYS {
        out.push_str(&format!(
            "    ({}, {}),\n",
            py(k.ini),
            py(&k.help_with_default())
        ));
    }
    out.push_str(")\n");
    out
}

pub(crate) fn key(ini: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.ini == ini)
}

impl Kind {
    /// The values an enumerated kind takes, in the order they are offered.
    pub fn values(self) -> &'static [&'static str] {
        match self {
            Kind::Backoff => &["none", "linear", "exp"],
            Kind::JunitCompat => &["surefire", "per-attempt", "gitlab"],
            Kind::AiProtocol => &["mcp", "http"],
            _ => &[],
        }
    }

    /// The value's name after the flag: `N`, `SECONDS`, or the allowed values (`none|linear|exp`).
    pub fn value_name(self) -> &'static str {
        match self {
            Kind::Bool => "BOOL",
            Kind::Count(_) => "N",
            Kind::Seconds => "SECONDS",
            Kind::Backoff => "none|linear|exp",
            Kind::JunitCompat => "surefire|per-attempt|gitlab",
            Kind::ErrorNames => "NAME[,NAME...]",
            Kind::Path => "PATH",
            Kind::Url => "URL",
            Kind::Secret => "TOKEN",
            Kind::AiProtocol => "mcp|http",
            Kind::Text(name) => name,
        }
    }

    /// What values are allowed, for error messages.
    pub fn allowed(self) -> String {
        match self {
            Kind::Bool => "true or false (also 1/0, yes/no, on/off)".into(),
            Kind::Count(min) => format!("a whole number, {min} or more"),
            Kind::Seconds => "a number of seconds, 0 or more (e.g. 0.5)".into(),
            Kind::Backoff | Kind::JunitCompat | Kind::AiProtocol => match self.values() {
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
                [] => unreachable!("an enumerated kind has values"),
            },
            Kind::ErrorNames => {
                "comma-separated exception class names, short (TimeoutError) or qualified (requests.exceptions.ConnectionError)".into()
            }
            Kind::Path => "a file path".into(),
            Kind::Url => "an http:// or https:// URL".into(),
            Kind::Secret => "a token, or {{ env:NAME }}".into(),
            Kind::Text(_) => "any text".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RawLayer, Settings, Source};
    use std::path::Path;

    #[test]
    fn names_are_consistent_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(seen.insert(k.ini), "{} twice", k.ini);
            assert_eq!(k.env, k.ini.to_ascii_uppercase(), "env name of {}", k.ini);
            assert!(k.flag.starts_with("--"), "{}", k.flag);
            assert!(
                !k.help.ends_with('.') && !k.help.is_empty(),
                "{}: the help is one sentence without a full stop",
                k.ini
            );
            assert!(
                k.details.is_empty() || k.details.ends_with('.'),
                "{}: details are full sentences",
                k.ini
            );
        }
        // Keys of a group stand together, so `config` and the reference list them in the same order.
        let groups: Vec<Group> = KEYS.iter().map(|k| k.group).collect();
        let mut order = groups.clone();
        order.dedup();
        assert_eq!(order, Group::ALL, "the groups, in order, once each");
    }

    #[test]
    fn enumerated_values_are_the_ones_the_settings_accept_and_show() {
        for k in KEYS.iter().filter(|k| !k.kind.values().is_empty()) {
            assert_eq!(k.value_name(), k.kind.values().join("|"), "{}", k.ini);
            for value in k.kind.values() {
                let mut layer = RawLayer::default();
                layer.set(k.ini, *value, Source::Flag(k.flag));
                let s = Settings::from_layer(&layer, &|_| None, Path::new("/"))
                    .unwrap_or_else(|e| panic!("{} = {value}: {e}", k.ini));
                assert_eq!(s.display_value(k), *value, "{}", k.ini);
            }
        }
        // `render --junit-compat` parses the same layouts with clap.
        let layouts: Vec<String> =
            <crate::report::junit::JunitCompat as clap::ValueEnum>::value_variants()
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value)
                .map(|v| v.get_name().to_owned())
                .collect();
        assert_eq!(layouts, Kind::JunitCompat.values());
        assert_eq!(crate::policy::Backoff::ALLOWED, Kind::Backoff.allowed());
    }

    #[test]
    fn documented_defaults_are_the_defaults() {
        let defaults = Settings::default();
        for k in KEYS {
            let shown = defaults.display_value(k);
            let shown = shown.trim_start_matches('(').trim_end_matches(')');
            assert!(
                k.default.starts_with(shown),
                "{}: the table says {:?}, the settings start at {shown:?}",
                k.ini,
                k.default
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
    fn the_pytest_option_is_the_ini_key_spelt_with_dashes() {
        for k in KEYS {
            assert_eq!(
                crate::config::pytest_option(k.flag),
                format!("--{}", k.ini.replace('_', "-")),
                "{}",
                k.ini
            );
        }
    }

    #[test]
    fn the_python_package_has_the_crate_version() {
        let init = include_str!("../../python/pytest_smart_rerun/__init__.py");
        let line = format!("__version__ = \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(init.contains(&line), "__init__.py lacks {line}");
    }

    #[test]
    fn the_collector_registers_every_ini_key() {
        assert!(crate::runner::COLLECTOR_SOURCE.contains("from _smart_rerun_keys import INI_KEYS"));
        let module = python_ini_keys();
        for k in KEYS {
            assert!(
                module.contains(&format!("(\"{}\", ", k.ini)),
                "the keys module lacks {}",
                k.ini
            );
        }
        assert!(
            module.contains(r#"("smart_rerun_max", "Total attempts per test"#),
            "{module}"
        );
    }
}
