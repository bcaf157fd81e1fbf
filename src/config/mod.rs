//! Settings from their layers, validated into [`Settings`]. Each raw value keeps where it came from
//! ([`Source`]), so a usage error names the key, the place (file and line, variable, flag, or the test's
//! node id), the bad value and what is allowed — and every bad value is reported, not only the first.
//!
//! Layers, lowest first: built-in defaults < pytest ini keys < `SMART_RERUN_*` environment < command
//! line < the test's own `@pytest.mark.smart_rerun` (see [`marker`]). Every key is listed once in [`keys`].

pub(crate) mod args;
#[cfg(test)]
mod generate;
pub(crate) mod ini;
#[cfg(test)]
mod inputs;
pub(crate) mod keys;
pub(crate) mod marker;

use crate::policy::{Backoff, ErrorName, RetryPolicy};
pub use keys::{Group, KEYS, Key, Kind};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A pytest ini key; the line is found by [`ini::locate`] when it can be.
    Ini {
        file: String,
        line: Option<u32>,
    },
    /// pytest's `-o KEY=VALUE` in the pytest command (or its `addopts`): the ini layer, not the file.
    Override,
    Env(&'static str),
    /// A command-line flag, e.g. `--max` (or the matching GitHub Action input).
    Flag(&'static str),
    /// The same setting given to pytest through the plugin in the wheel, as `--smart-rerun-max`; holds the
    /// binary's flag (`--max`), from which the pytest option's name follows.
    PytestOption(&'static str),
    /// A test's `smart_rerun` (or migrated `flaky`) marker.
    Marker {
        nodeid: String,
    },
    /// The AI endpoint's translation of a policy in plain words (`smart-rerun policy`).
    Translated,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ini {
                file,
                line: Some(line),
            } => write!(f, "{file}:{line}"),
            Source::Ini { file, line: None } => write!(f, "{file}"),
            Source::Override => f.write_str("pytest -o"),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(flag) => write!(f, "command line {flag}"),
            Source::PytestOption(flag) => write!(f, "pytest option {}", pytest_option(flag)),
            Source::Marker { nodeid } => write!(f, "marker on {nodeid}"),
            Source::Translated => f.write_str("the AI endpoint's answer"),
        }
    }
}

/// The pytest plugin's name for the binary's flag: `--max` is `--smart-rerun-max`, `--rerun` is
/// `--smart-rerun`.
pub fn pytest_option(flag: &str) -> String {
    match flag {
        "--rerun" => "--smart-rerun".to_owned(),
        _ => format!("--smart-rerun-{}", flag.trim_start_matches('-')),
    }
}

/// One raw, unvalidated value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw {
    pub value: String,
    pub source: Source,
}

/// Raw values of one or more merged layers, by ini key; absent = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawLayer {
    pub values: BTreeMap<&'static str, Raw>,
}

impl RawLayer {
    /// Overlays `other` (a higher-precedence layer) on `self`.
    pub(crate) fn update(&mut self, other: &RawLayer) {
        for (k, v) in &other.values {
            self.values.insert(k, v.clone());
        }
    }

    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<String>, source: Source) {
        self.values.insert(
            key,
            Raw {
                value: value.into(),
                source,
            },
        );
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Raw> {
        self.values.get(key)
    }

    /// The `SMART_RERUN_*` variables that are set (an empty value counts as unset).
    pub(crate) fn from_env(lookup: impl Fn(&str) -> Option<String>) -> RawLayer {
        let mut layer = RawLayer::default();
        for k in KEYS {
            if let Some(v) = lookup(k.env).filter(|v| !v.trim().is_empty()) {
                layer.set(k.ini, v, Source::Env(k.env));
            }
        }
        layer
    }

    /// Marks the keys pytest took from `-o KEY=VALUE` (not from the file, whose line would mislead).
    pub(crate) fn mark_overrides(&mut self, names: &[String]) {
        for name in names {
            if let Some(raw) = self.values.get_mut(name.as_str()) {
                raw.source = Source::Override;
            }
        }
    }

    /// The ini values pytest reported (`getini`), with the file and line where each is set.
    pub(crate) fn from_ini(
        values: &BTreeMap<String, Option<String>>,
        inifile: Option<&Path>,
    ) -> RawLayer {
        let mut layer = RawLayer::default();
        let text = inifile.and_then(|p| std::fs::read_to_string(p).ok());
        for k in KEYS {
            let Some(Some(value)) = values.get(k.ini) else {
                continue;
            };
            let file = inifile
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "pytest configuration".into());
            let line = text.as_deref().and_then(|t| ini::locate(t, k.ini));
            layer.set(k.ini, value.trim(), Source::Ini { file, line });
        }
        layer
    }
}

/// One bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub key: String,
    pub source: Source,
    /// The offending value; `None` for secrets, which are never printed.
    pub value: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(
                f,
                "{} = '{}' ({}): {}",
                self.key, v, self.source, self.problem
            ),
            None => write!(f, "{} ({}): {}", self.key, self.source, self.problem),
        }
    }
}

/// Every bad value of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid setting: {one}"),
            many => {
                write!(f, "{} invalid settings:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// A value that must never be printed or written.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Settings of the AI classifier (see `classify::ai`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AiSettings {
    pub enabled: bool,
    pub endpoint: Option<String>,
    pub token: Option<Secret>,
    pub report: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub redact: bool,
    /// The AI budget for the whole run; past it the heuristics decide alone.
    pub timeout: Duration,
    pub protocol: AiProtocol,
    /// The MCP tool to call.
    pub tool: String,
}

/// How the AI endpoint is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum AiProtocol {
    /// An MCP tool call over Streamable HTTP.
    #[default]
    Mcp,
    /// POST the failure as JSON, read the answer as JSON.
    Http,
}

impl AiProtocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AiProtocol::Mcp => "mcp",
            AiProtocol::Http => "http",
        }
    }
}

/// What smart-rerun does in GitHub Actions (ignored elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GithubSettings {
    pub annotations: bool,
    pub summary: bool,
    pub comment: bool,
    /// This job's section of the sticky comment; `None`: the job id and matrix values.
    pub comment_key: Option<String>,
    /// Wrap pytest's output in `::stop-commands::`. Read before pytest starts, so from the environment
    /// and flags only: an ini value comes too late to take effect.
    pub stop_commands: bool,
    /// `None`: fall back to `GITHUB_TOKEN`.
    pub token: Option<Secret>,
}

impl Default for GithubSettings {
    fn default() -> Self {
        GithubSettings {
            annotations: true,
            summary: true,
            comment: true,
            comment_key: None,
            stop_commands: true,
            token: None,
        }
    }
}

/// What smart-rerun does in GitLab CI (ignored elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GitlabSettings {
    pub note: bool,
    /// This job's section of the sticky note; `None`: the job's name.
    pub note_key: Option<String>,
    /// `None`: fall back to `GITLAB_TOKEN`.
    pub token: Option<Secret>,
}

impl Default for GitlabSettings {
    fn default() -> Self {
        GitlabSettings {
            note: true,
            note_key: None,
            token: None,
        }
    }
}

/// The validated settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The global policy; markers override it per test.
    pub policy: RetryPolicy,
    pub max_failures: Option<u32>,
    pub max_reruns: Option<u32>,
    /// Stop retrying a failure confirmed deterministic (the same fingerprint twice).
    pub early_stop: bool,
    /// Start a rerun round's pytest early and hold it until its tests are chosen.
    pub prestart: bool,
    /// Start rerun rounds from a warm snapshot of the first round's pytest, forked after collection.
    pub fork: bool,
    pub report: Option<PathBuf>,
    pub junit_xml: Option<PathBuf>,
    pub junit_compat: crate::report::junit::JunitCompat,
    pub markdown: Option<PathBuf>,
    /// Where history lives: a PostgreSQL URL as given, or a SQLite path resolved like the other paths
    /// (`sqlite:` kept). Checked when history is opened: a bad one is a warning, not a usage error.
    pub history: Option<String>,
    /// Repeats for tests history has never seen (0: off).
    pub new_test_repeats: u32,
    /// History adjusts retries: more attempts for known flaky tests, none after a known failure.
    pub history_policy: bool,
    /// Attempts a known flaky test gets under `history_policy`.
    pub history_max: u32,
    /// The flake rate (percent of its recent runs) that makes a test known flaky.
    pub history_flaky_percent: u32,
    /// The quarantine file; none set is `.smart-rerun/quarantine.toml` in the current directory.
    pub quarantine: Option<PathBuf>,
    /// Days an expired quarantine entry still protects its tests.
    pub quarantine_grace_days: u32,
    /// The `--junitxml` path in the user's pytest arguments, which smart-rerun takes over (set by the
    /// runner from what pytest reports).
    pub pytest_junitxml: Option<PathBuf>,
    /// pytest's `junit_suite_name`, for the JUnit report.
    pub junit_suite_name: Option<String>,
    pub ai: AiSettings,
    pub github: GithubSettings,
    pub gitlab: GitlabSettings,
    /// Where each key's value came from (keys left at their default are absent).
    pub sources: BTreeMap<&'static str, Source>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: RetryPolicy::default(),
            max_failures: None,
            max_reruns: None,
            early_stop: true,
            prestart: true,
            fork: cfg!(target_os = "linux"),
            report: None,
            junit_xml: None,
            junit_compat: Default::default(),
            markdown: None,
            history: None,
            new_test_repeats: 0,
            history_policy: false,
            history_max: 5,
            history_flaky_percent: 5,
            quarantine: None,
            quarantine_grace_days: 7,
            pytest_junitxml: None,
            junit_suite_name: None,
            ai: AiSettings {
                redact: true,
                timeout: Duration::from_secs(60),
                tool: "classify_failure".into(),
                ..AiSettings::default()
            },
            github: GithubSettings::default(),
            gitlab: GitlabSettings::default(),
            sources: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Validates merged raw values; collects every problem. `env` resolves `{{ env:NAME }}`; `cwd` anchors
    /// relative paths from flags and variables, an ini file's own directory those from ini keys.
    pub(crate) fn from_layer(
        layer: &RawLayer,
        env: &dyn Fn(&str) -> Option<String>,
        cwd: &Path,
    ) -> Result<Settings, ConfigErrors> {
        let mut s = Settings::default();
        let mut errors = Vec::new();
        for (&key, raw) in &layer.values {
            let Some(k) = keys::key(key) else { continue };
            let value = match expand_env(&raw.value, env) {
                Ok(v) => v,
                Err(problem) => {
                    errors.push(error(k, raw, problem));
                    continue;
                }
            };
            if let Err(problem) = s.apply(k, &value, raw, cwd) {
                errors.push(error(k, raw, problem));
                continue;
            }
            s.sources.insert(k.ini, raw.source.clone());
        }
        // GitLab's test report ignores the flaky elements: unless the user chose a layout, write the one
        // in which a flaky test is visible there.
        if !s.sources.contains_key("smart_rerun_junit_compat")
            && env("GITLAB_CI").as_deref() == Some("true")
        {
            s.junit_compat = crate::report::junit::JunitCompat::Gitlab;
            s.sources
                .insert("smart_rerun_junit_compat", Source::Env("GITLAB_CI"));
        }
        if s.ai.enabled && s.ai.endpoint.is_none() {
            // Allowed: the heuristics decide alone. Noted by the classifier, not an error.
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn apply(&mut self, k: &Key, value: &str, raw: &Raw, cwd: &Path) -> Result<(), String> {
        let p = &mut self.policy;
        match k.ini {
            "smart_rerun" => p.enabled = parse_bool(value)?,
            "smart_rerun_max" => p.max_attempts = parse_count(value, 1)?,
            "smart_rerun_delay" => p.delay = parse_seconds(value)?,
            "smart_rerun_backoff" => {
                p.backoff = value
                    .parse::<Backoff>()
                    .map_err(|_| format!("use {}", Backoff::ALLOWED))?
            }
            "smart_rerun_max_delay" => p.max_delay = Some(parse_seconds(value)?),
            "smart_rerun_jitter" => p.jitter = parse_seconds(value)?,
            "smart_rerun_errors" => p.errors = ErrorName::parse_list(value)?,
            "smart_rerun_max_failures" => self.max_failures = Some(parse_count(value, 0)?),
            "smart_rerun_max_reruns" => self.max_reruns = Some(parse_count(value, 0)?),
            "smart_rerun_fail_on_flaky" => p.fail_on_flaky = parse_bool(value)?,
            "smart_rerun_early_stop" => self.early_stop = parse_bool(value)?,
            "smart_rerun_prestart" => self.prestart = parse_bool(value)?,
            "smart_rerun_fork" => self.fork = parse_bool(value)?,
            "smart_rerun_report" => self.report = Some(resolve_path(value, &raw.source, cwd)?),
            "smart_rerun_junit_xml" => {
                self.junit_xml = Some(resolve_path(value, &raw.source, cwd)?)
            }
            "smart_rerun_junit_compat" => {
                self.junit_compat =
                    <crate::report::junit::JunitCompat as clap::ValueEnum>::from_str(
                        value.trim(),
                        true,
                    )
                    .map_err(|_| format!("use {}", Kind::JunitCompat.allowed()))?
            }
            "smart_rerun_markdown" => self.markdown = Some(resolve_path(value, &raw.source, cwd)?),
            "smart_rerun_history" => self.history = history_location(value, &raw.source, cwd),
            "smart_rerun_quarantine" => {
                self.quarantine = Some(resolve_path(value, &raw.source, cwd)?)
            }
            "smart_rerun_quarantine_grace_days" => {
                self.quarantine_grace_days = parse_count(value, 0)?
            }
            "smart_rerun_new_test_repeats" => self.new_test_repeats = parse_count(value, 0)?,
            "smart_rerun_history_policy" => self.history_policy = parse_bool(value)?,
            "smart_rerun_history_max" => self.history_max = parse_count(value, 1)?,
            "smart_rerun_history_flaky_percent" => {
                self.history_flaky_percent = parse_count(value, 0)?
            }
            "smart_rerun_ai" => self.ai.enabled = parse_bool(value)?,
            "smart_rerun_ai_endpoint" => self.ai.endpoint = Some(parse_url(value)?),
            "smart_rerun_ai_token" => self.ai.token = Some(Secret(value.to_owned())),
            "smart_rerun_ai_report" => {
                self.ai.report = Some(resolve_path(value, &raw.source, cwd)?)
            }
            "smart_rerun_ai_cache" => self.ai.cache = Some(resolve_path(value, &raw.source, cwd)?),
            "smart_rerun_ai_redact" => self.ai.redact = parse_bool(value)?,
            "smart_rerun_ai_protocol" => {
                self.ai.protocol = match value.trim().to_ascii_lowercase().as_str() {
                    "mcp" => AiProtocol::Mcp,
                    "http" => AiProtocol::Http,
                    _ => return Err(format!("use {}", Kind::AiProtocol.allowed())),
                }
            }
            "smart_rerun_ai_tool" => {
                let tool = value.trim();
                if tool.is_empty() {
                    return Err("is empty: name the MCP tool, e.g. classify_failure".into());
                }
                self.ai.tool = tool.to_owned()
            }
            "smart_rerun_ai_timeout" => self.ai.timeout = parse_seconds(value)?,
            "smart_rerun_github_annotations" => self.github.annotations = parse_bool(value)?,
            "smart_rerun_github_summary" => self.github.summary = parse_bool(value)?,
            "smart_rerun_github_comment" => self.github.comment = parse_bool(value)?,
            "smart_rerun_github_comment_key" => {
                let key = value.trim();
                if key.is_empty() {
                    return Err("is empty: use a label such as 'tests (3.12)'".into());
                }
                self.github.comment_key = Some(key.to_owned())
            }
            "smart_rerun_github_stop_commands" => self.github.stop_commands = parse_bool(value)?,
            "smart_rerun_github_token" => self.github.token = Some(Secret(value.to_owned())),
            "smart_rerun_gitlab_note" => self.gitlab.note = parse_bool(value)?,
            "smart_rerun_gitlab_note_key" => {
                let key = value.trim();
                if key.is_empty() {
                    return Err("is empty: use a label such as 'pytest 1/3'".into());
                }
                self.gitlab.note_key = Some(key.to_owned())
            }
            "smart_rerun_gitlab_token" => self.gitlab.token = Some(Secret(value.to_owned())),
            other => return Err(format!("unknown setting {other}")),
        }
        Ok(())
    }

    /// The effective value of a key as text (`***` for secrets), for `smart-rerun config`.
    pub(crate) fn display_value(&self, k: &Key) -> String {
        let p = &self.policy;
        let secs = |d: Duration| format!("{}", d.as_secs_f64());
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(none)".to_owned(), |p| p.display().to_string())
        };
        match k.ini {
            "smart_rerun" => p.enabled.to_string(),
            "smart_rerun_max" => p.max_attempts.to_string(),
            "smart_rerun_delay" => secs(p.delay),
            "smart_rerun_backoff" => p.backoff.to_string(),
            "smart_rerun_max_delay" => p.max_delay.map_or("(none)".into(), secs),
            "smart_rerun_jitter" => secs(p.jitter),
            "smart_rerun_errors" => {
                if p.errors.is_empty() {
                    "(any exception)".into()
                } else {
                    p.errors
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                }
            }
            "smart_rerun_max_failures" => self
                .max_failures
                .map_or("(no limit)".into(), |n| n.to_string()),
            "smart_rerun_max_reruns" => self
                .max_reruns
                .map_or("(no limit)".into(), |n| n.to_string()),
            "smart_rerun_fail_on_flaky" => p.fail_on_flaky.to_string(),
            "smart_rerun_early_stop" => self.early_stop.to_string(),
            "smart_rerun_prestart" => self.prestart.to_string(),
            "smart_rerun_fork" => self.fork.to_string(),
            "smart_rerun_report" => path(&self.report),
            "smart_rerun_junit_xml" => path(&self.junit_xml),
            "smart_rerun_junit_compat" => match self.junit_compat {
                crate::report::junit::JunitCompat::Surefire => "surefire".into(),
                crate::report::junit::JunitCompat::PerAttempt => "per-attempt".into(),
                crate::report::junit::JunitCompat::Gitlab => "gitlab".into(),
            },
            "smart_rerun_markdown" => path(&self.markdown),
            "smart_rerun_quarantine" => self.quarantine.as_ref().map_or_else(
                || crate::quarantine::DEFAULT_PATH.to_owned(),
                |p| p.display().to_string(),
            ),
            "smart_rerun_quarantine_grace_days" => self.quarantine_grace_days.to_string(),
            "smart_rerun_new_test_repeats" => self.new_test_repeats.to_string(),
            "smart_rerun_history_policy" => self.history_policy.to_string(),
            "smart_rerun_history_max" => self.history_max.to_string(),
            "smart_rerun_history_flaky_percent" => self.history_flaky_percent.to_string(),
            "smart_rerun_history" => self
                .history
                .as_deref()
                .and_then(|h| crate::history::Location::parse(h).ok())
                .map_or("(none)".into(), |l| l.redacted()),
            "smart_rerun_ai" => self.ai.enabled.to_string(),
            "smart_rerun_ai_endpoint" => {
                self.ai.endpoint.clone().unwrap_or_else(|| "(none)".into())
            }
            "smart_rerun_ai_token" => {
                if self.ai.token.is_some() {
                    "*** (set)".into()
                } else {
                    "(none)".into()
                }
            }
            "smart_rerun_ai_report" => path(&self.ai.report),
            "smart_rerun_ai_cache" => path(&self.ai.cache),
            "smart_rerun_ai_redact" => self.ai.redact.to_string(),
            "smart_rerun_ai_protocol" => self.ai.protocol.as_str().into(),
            "smart_rerun_ai_tool" => self.ai.tool.clone(),
            "smart_rerun_ai_timeout" => secs(self.ai.timeout),
            "smart_rerun_github_annotations" => self.github.annotations.to_string(),
            "smart_rerun_github_summary" => self.github.summary.to_string(),
            "smart_rerun_github_comment" => self.github.comment.to_string(),
            "smart_rerun_github_comment_key" => self
                .github
                .comment_key
                .clone()
                .unwrap_or_else(|| "(job and matrix)".into()),
            "smart_rerun_github_stop_commands" => self.github.stop_commands.to_string(),
            "smart_rerun_github_token" => {
                if self.github.token.is_some() {
                    "*** (set)".into()
                } else {
                    "(GITHUB_TOKEN)".into()
                }
            }
            "smart_rerun_gitlab_note" => self.gitlab.note.to_string(),
            "smart_rerun_gitlab_note_key" => self
                .gitlab
                .note_key
                .clone()
                .unwrap_or_else(|| "(CI_JOB_NAME)".into()),
            "smart_rerun_gitlab_token" => {
                if self.gitlab.token.is_some() {
                    "*** (set)".into()
                } else {
                    "(GITLAB_TOKEN)".into()
                }
            }
            _ => String::new(),
        }
    }
}

fn error(k: &Key, raw: &Raw, problem: String) -> ConfigError {
    ConfigError {
        key: k.ini.to_owned(),
        source: raw.source.clone(),
        value: (!k.is_sensitive()).then(|| raw.value.clone()),
        problem,
    }
}

/// Replaces each `{{ env:NAME }}` with the variable's value; a missing variable is an error that names it.
pub(crate) fn expand_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("has '{{' without a closing '}}': write {{ env:NAME }}".into());
        };
        let inner = after[..end].trim();
        let Some(name) = inner.strip_prefix("env:").map(str::trim) else {
            return Err(format!(
                "'{{{{ {inner} }}}}' is not a placeholder: write {{{{ env:NAME }}}}"
            ));
        };
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(format!("'{name}' is not an environment variable name"));
        }
        match env(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "is not true or false: use {}",
            Kind::Bool.allowed()
        )),
    }
}

/// A whole number, `min` or more.
pub(crate) fn parse_count(value: &str, min: u32) -> Result<u32, String> {
    let extra = if min == 1 {
        " (the first run counts as an attempt)"
    } else {
        ""
    };
    match value.trim().parse::<i64>() {
        Ok(n) if n >= min as i64 && n <= u32::MAX as i64 => Ok(n as u32),
        Ok(_) => Err(format!("must be a whole number, {min} or more{extra}")),
        Err(_) => Err(format!("is not a whole number: use {min} or more")),
    }
}

/// A number of seconds, 0 or more.
pub(crate) fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().trim_end_matches('s').parse::<f64>() {
        Ok(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Ok(_) => Err("must be a number of seconds, 0 or more".into()),
        Err(_) => Err("is not a number: use seconds, 0 or more (e.g. 0.5)".into()),
    }
}

fn parse_url(value: &str) -> Result<String, String> {
    let v = value.trim();
    if (v.starts_with("http://") || v.starts_with("https://")) && v.len() > "https://".len() {
        Ok(v.to_owned())
    } else {
        Err(format!("is not a URL: use {}", Kind::Url.allowed()))
    }
}

/// A history location: empty is none; a URL is kept as given; a SQLite file is resolved like any path.
fn history_location(value: &str, source: &Source, cwd: &Path) -> Option<String> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.contains("://") && !v.starts_with("sqlite:") {
        return Some(v.to_owned());
    }
    let (prefix, path) = match v.strip_prefix("sqlite:") {
        Some(p) => ("sqlite:", p.strip_prefix("//").unwrap_or(p)),
        None => ("", v),
    };
    match resolve_path(path, source, cwd) {
        Ok(p) => Some(format!("{prefix}{}", p.display())),
        Err(_) => Some(v.to_owned()),
    }
}

fn resolve_path(value: &str, source: &Source, cwd: &Path) -> Result<PathBuf, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("is empty: use a file path".into());
    }
    let p = PathBuf::from(v);
    if p.is_absolute() {
        return Ok(p);
    }
    // Like pytest's own path-valued ini keys, a relative path in an ini file is relative to that file.
    let base = match source {
        Source::Ini { file, .. } => Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.to_path_buf()),
        _ => cwd.to_path_buf(),
    };
    Ok(base.join(p))
}

#[cfg(test)]
mod tests;
