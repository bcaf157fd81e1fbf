//! `smart-rerun quarantine check|suggest`: validate the checked-in quarantine file (and fail on entries
//! past their expiry), or propose entries for the tests history knows as flaky. The main type is
//! [`QuarantineArgs`]; [`main`] runs it and returns the exit code.

use super::locate::{Source, locate};
use super::{DEFAULT_PATH, Quarantine, QuarantineError, entry_toml};
use crate::history::{COMMAND_TIMEOUT, Location, Store, cli::parse_age};
use crate::model::ExitCode;
use crate::report::terminal::sanitize_line;
use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub(crate) struct QuarantineArgs {
    /// The quarantine file [default: as a run finds it: SMART_RERUN_QUARANTINE, then the
    /// smart_rerun_quarantine key of the pytest configuration, then .smart-rerun/quarantine.toml].
    #[arg(long, global = true, value_name = "PATH", visible_alias = "quarantine")]
    pub file: Option<PathBuf>,
    /// The interpreter for `python -m pytest`, asked for its configuration when no COMMAND is given.
    #[arg(long, global = true, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(subcommand)]
    pub command: QuarantineCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// Check the file: a broken file is a usage error (exit 4) naming the file, line and field; an entry
    /// past its expiry date fails the check (exit 1).
    Check {
        /// Check expiry against this date instead of today (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
        /// The pytest command whose configuration names the file, as for `run`, e.g. `-- pytest -c
        /// ci.ini` [default: python -m pytest, asked only when a configuration mentions the key].
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print `[[test]]` entries for the tests history knows as flaky and the file does not list yet,
    /// to review and append.
    Suggest {
        /// Where history lives [env: SMART_RERUN_HISTORY].
        #[arg(long, value_name = "URL", env = "SMART_RERUN_HISTORY")]
        history: Option<String>,
        /// The period of history looked at.
        #[arg(long, value_name = "AGE", default_value = "30d")]
        since: String,
        /// Only tests that were flaky in at least this many runs of the period.
        #[arg(long, value_name = "N", default_value_t = 2)]
        min_flaky: u64,
        /// How long the suggested quarantines last.
        #[arg(long, value_name = "AGE", default_value = "30d")]
        expires_in: String,
        /// The pytest command whose configuration names the file, as for `check`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
}

fn usage(message: &str) -> ExitCode {
    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {message}");
    ExitCode::UsageError
}

fn today_utc() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

pub(crate) fn main(args: QuarantineArgs) -> ExitCode {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => return usage(&format!("cannot read the current directory: {e}")),
    };
    let command = match &args.command {
        QuarantineCommand::Check { command, .. } | QuarantineCommand::Suggest { command, .. } => {
            command.as_slice()
        }
    };
    let source = Source {
        flag: args.file.as_deref(),
        python: args.python.as_deref(),
        command,
    };
    let located = match locate(&source, "--file", &cwd) {
        Ok(l) => l,
        Err(e) => return usage(&e.to_string()),
    };
    let shown = located
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    // The default path is loaded as written, so messages name it relative to the current directory.
    let loaded = match located.path.as_deref() {
        Some(path) => Quarantine::load_for_run(Some(path), &cwd),
        None => Quarantine::load(&shown),
    };
    let quarantine = match loaded {
        Ok(q) => q,
        Err(QuarantineError::Missing { path }) => {
            return usage(&format!(
                "the quarantine file {path} ({}) does not exist: name an existing file",
                located.from.as_deref().unwrap_or("smart_rerun_quarantine")
            ));
        }
        Err(e) => return usage(&e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    match args.command {
        QuarantineCommand::Check { today, .. } => {
            let today = match today.as_deref().map(str::parse::<chrono::NaiveDate>) {
                None => today_utc(),
                Some(Ok(d)) => d,
                Some(Err(_)) => {
                    return usage(&format!(
                        "--today: '{}' is not a date: use YYYY-MM-DD",
                        today.unwrap_or_default()
                    ));
                }
            };
            let Some(q) = quarantine else {
                let _ = writeln!(
                    out,
                    "smart-rerun: no quarantine file at {}: nothing is quarantined",
                    shown.display()
                );
                return ExitCode::Ok;
            };
            let expired = q.expired(today);
            for e in &expired {
                let _ = writeln!(
                    out,
                    "{}:{}: {} expired on {} ({}): renew it with a new date or remove it",
                    q.path.display(),
                    e.line,
                    sanitize_line(&e.nodeid),
                    e.expires,
                    sanitize_line(&e.reason)
                );
            }
            let next = q
                .entries
                .iter()
                .filter(|e| e.expires >= today)
                .map(|e| e.expires)
                .min();
            let _ = writeln!(
                out,
                "smart-rerun: {} quarantined in {}{}{}",
                crate::report::counted(q.entries.len(), "test"),
                q.path.display(),
                match expired.len() {
                    0 => String::new(),
                    n => format!(", {n} expired"),
                },
                next.map(|d| format!(", the next expiry on {d}"))
                    .unwrap_or_default()
            );
            if expired.is_empty() {
                ExitCode::Ok
            } else {
                ExitCode::TestsFailed
            }
        }
        QuarantineCommand::Suggest {
            history,
            since,
            min_flaky,
            expires_in,
            ..
        } => {
            let Some(text) = history else {
                return usage("no history given: pass --history URL or set SMART_RERUN_HISTORY");
            };
            let location = match Location::parse(&text) {
                Ok(l) => l,
                Err(e) => return usage(&format!("--history: {e}")),
            };
            let since_ms = match parse_age(&since) {
                Ok(a) => crate::timestamp::now_ms().saturating_sub(a),
                Err(e) => return usage(&format!("--since: {e}")),
            };
            let expires = match parse_age(&expires_in) {
                Ok(a) => {
                    let days = (a / 86_400_000).max(1);
                    let today = today_utc();
                    today
                        .checked_add_days(chrono::Days::new(days.unsigned_abs()))
                        .unwrap_or(today)
                }
                Err(e) => return usage(&format!("--expires-in: {e}")),
            };
            let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return usage(&e.to_string()),
            };
            let flaky = match store.flaky_tests(since_ms) {
                Ok(f) => f,
                Err(e) => {
                    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {e}");
                    return ExitCode::InternalError;
                }
            };
            let listed = |nodeid: &str| {
                quarantine
                    .as_ref()
                    .is_some_and(|q| q.entries.iter().any(|e| e.matches(nodeid)))
            };
            let mut n = 0;
            for t in flaky
                .iter()
                .filter(|t| t.flaky_runs >= min_flaky && !listed(&t.nodeid))
            {
                let reason = format!(
                    "flaky in {} of its {} runs since {} (suggested by smart-rerun)",
                    t.flaky_runs, t.runs, &since
                );
                let _ = writeln!(out, "{}", entry_toml(&t.nodeid, &reason, expires));
                n += 1;
            }
            if n == 0 {
                let _ = writeln!(
                    anstream::stderr(),
                    "smart-rerun: no test to suggest: none flaky in {min_flaky} or more runs of the last {since} that {} does not list",
                    shown.display()
                );
            }
            ExitCode::Ok
        }
    }
}
