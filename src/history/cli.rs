//! `smart-rerun history …`: import saved reports, list flaky tests, show one test's runs, prune old
//! runs. The main type is [`HistoryArgs`]; [`main`] runs it and returns the exit code.

use super::{COMMAND_TIMEOUT, HistoryError, Location, Store, query, record};
use crate::model::{ExitCode, RunReport};
use crate::report::markdown;
use crate::report::terminal::sanitize_line;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub(crate) struct HistoryArgs {
    /// Where history lives: a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, global = true, value_name = "URL", env = "SMART_RERUN_HISTORY")]
    pub history: Option<String>,
    #[command(subcommand)]
    pub command: HistoryCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum HistoryCommand {
    /// Record saved JSON reports (`--report` files of earlier runs), one run each; a report recorded
    /// before is left as it is.
    Import {
        #[arg(required = true, value_name = "REPORT.json")]
        reports: Vec<PathBuf>,
    },
    /// The tests that were flaky at least once in a period, most flaky first.
    Flaky {
        /// The period, back from now: 30d, 12h, 2w [default: all of history].
        #[arg(long, value_name = "AGE")]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One test's newest runs, with the exception and fingerprint of each failed attempt.
    Show {
        /// The test's pytest node id.
        nodeid: String,
        /// How many runs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// What history says of the failed and flaky tests of a saved report (as a run with --history
    /// would say it), without recording the report.
    Explain {
        #[arg(value_name = "REPORT.json")]
        report: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete the runs older than an age, and their tests.
    Prune {
        /// Keep the runs of this period, back from now: 90d, 12w.
        #[arg(long, value_name = "AGE", required = true)]
        keep: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Markdown,
}

/// Parses an age such as `90d`, `12h`, `2w`, `30m` into milliseconds.
pub(crate) fn parse_age(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("'{t}' is not an age: use a number and a unit, e.g. 30d, 12h, 2w"))?;
    let ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(format!(
                "'{t}' has no known unit: use m (minutes), h (hours), d (days) or w (weeks), e.g. 30d"
            ));
        }
    };
    n.checked_mul(ms)
        .ok_or_else(|| format!("'{t}' is too long an age"))
}

fn now_ms() -> i64 {
    crate::timestamp::now_ms()
}

pub(crate) fn usage(message: &str) -> ExitCode {
    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {message}");
    ExitCode::UsageError
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.replace(['\n', '\r'], " ")
}

/// A store error: the user's input (a missing file, a newer schema) is a usage error, a database
/// that fails is an internal error.
pub(crate) fn failed(e: &HistoryError) -> ExitCode {
    let code = match e {
        HistoryError::Missing(_) | HistoryError::Schema { .. } => ExitCode::UsageError,
        _ => ExitCode::InternalError,
    };
    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {}", chain(e));
    code
}

/// Runs a `history` subcommand.
pub(crate) fn main(args: HistoryArgs) -> ExitCode {
    let Some(text) = args.history.as_deref() else {
        return usage("no history given: pass --history URL or set SMART_RERUN_HISTORY");
    };
    let location = match Location::parse(text) {
        Ok(l) => l,
        Err(e) => return usage(&format!("--history: {e}")),
    };
    let mut out = std::io::stdout().lock();
    let written = match args.command {
        HistoryCommand::Import { reports } => return import(&location, &reports, &mut out),
        HistoryCommand::Flaky { since, format } => {
            let since = match since.as_deref().map(parse_age).transpose() {
                Ok(age) => age.map_or(i64::MIN, |a| now_ms().saturating_sub(a)),
                Err(e) => return usage(&format!("--since: {e}")),
            };
            let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            match store.flaky_tests(since) {
                Ok(tests) => write_flaky(&tests, format, &mut out),
                Err(e) => return failed(&e),
            }
        }
        HistoryCommand::Show {
            nodeid,
            limit,
            format,
        } => {
            let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            match store.test_runs(&nodeid, limit as i64) {
                Ok(runs) => write_show(&nodeid, &runs, format, &mut out),
                Err(e) => return failed(&e),
            }
        }
        HistoryCommand::Explain { report, format } => {
            let report = match RunReport::load(&report) {
                Ok(r) => r,
                Err(e) => return usage(&chain(&e)),
            };
            let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            match store.lookup_report(&report) {
                Ok(found) => write_explain(&report, &found, format, &mut out),
                Err(e) => return failed(&e),
            }
        }
        HistoryCommand::Prune { keep } => {
            let keep = match parse_age(&keep) {
                Ok(k) => k,
                Err(e) => return usage(&format!("--keep: {e}")),
            };
            let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            match store.prune(now_ms().saturating_sub(keep)) {
                Ok(n) => writeln!(
                    out,
                    "smart-rerun: pruned {} from {}",
                    crate::report::counted(n as usize, "run"),
                    location
                ),
                Err(e) => return failed(&e),
            }
        }
    };
    match written {
        Ok(()) => ExitCode::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: error: failed to write the output: {e}"
            );
            ExitCode::InternalError
        }
    }
}

fn import(location: &Location, reports: &[PathBuf], out: &mut dyn Write) -> ExitCode {
    // Every report is read before anything is written: a typo in the last name records nothing.
    let mut loaded = Vec::with_capacity(reports.len());
    for path in reports {
        match RunReport::load(path) {
            Ok(r) => loaded.push((path, r)),
            Err(e) => return usage(&chain(&e)),
        }
    }
    let mut store = match Store::open(location, true, COMMAND_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    for (path, report) in loaded {
        let run = record::RunRecord::from_report(&report);
        let started = std::time::Instant::now();
        match store.record(&run, &report) {
            Ok(record::Recorded::Run { tests }) => {
                let _ = writeln!(
                    out,
                    "smart-rerun: recorded {} ({} in {:.3} s, started {})",
                    path.display(),
                    crate::report::counted(tests as usize, "test"),
                    started.elapsed().as_secs_f64(),
                    report.run.started_at
                );
            }
            Ok(record::Recorded::AlreadyThere) => {
                let _ = writeln!(
                    out,
                    "smart-rerun: {} was recorded before; left as it is",
                    path.display()
                );
            }
            Err(e) => return failed(&e),
        }
    }
    ExitCode::Ok
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

fn write_flaky(
    tests: &[query::FlakyTest],
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, tests)?;
            writeln!(out)
        }
        Format::Markdown => {
            writeln!(
                out,
                "| Test | Flaky | Failed | Runs | Last flaky | First seen |"
            )?;
            writeln!(out, "| --- | ---: | ---: | ---: | --- | --- |")?;
            for t in tests {
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} | {} |",
                    markdown::inline(&t.nodeid).replace('`', "'"),
                    t.flaky_runs,
                    t.failed_runs,
                    t.runs,
                    day(&t.last_flaky),
                    day(&t.first_seen)
                )?;
            }
            Ok(())
        }
        Format::Table => {
            if tests.is_empty() {
                return writeln!(out, "no flaky test in this period");
            }
            writeln!(
                out,
                "{:>5} {:>6} {:>5}  {:<10}  {:<10}  TEST",
                "FLAKY", "FAILED", "RUNS", "LAST FLAKY", "FIRST SEEN"
            )?;
            for t in tests {
                writeln!(
                    out,
                    "{:>5} {:>6} {:>5}  {:<10}  {:<10}  {}",
                    t.flaky_runs,
                    t.failed_runs,
                    t.runs,
                    day(&t.last_flaky),
                    day(&t.first_seen),
                    sanitize_line(&t.nodeid)
                )?;
            }
            Ok(())
        }
    }
}

fn write_show(
    nodeid: &str,
    runs: &[query::TestRun],
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let doc = serde_json::json!({ "nodeid": nodeid, "runs": runs });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Markdown => {
            writeln!(out, "**{}**\n", markdown::inline(nodeid))?;
            writeln!(
                out,
                "| Started | Outcome | Attempts | Commit | Branch | Failure |"
            )?;
            writeln!(out, "| --- | --- | ---: | --- | --- | --- |")?;
            for r in runs {
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.started_at,
                    r.outcome,
                    r.attempts,
                    markdown::inline(&short(r.commit.as_deref())),
                    markdown::inline(r.branch.as_deref().unwrap_or("")),
                    markdown::inline(&failure_line(r))
                )?;
            }
            Ok(())
        }
        Format::Table => {
            if runs.is_empty() {
                return writeln!(out, "no run of {} in history", sanitize_line(nodeid));
            }
            writeln!(out, "{}", sanitize_line(nodeid))?;
            for r in runs {
                writeln!(
                    out,
                    "  {}  {:<8} {} attempt{}  {}{}{}",
                    r.started_at,
                    r.outcome,
                    r.attempts,
                    if r.attempts == 1 { " " } else { "s" },
                    short(r.commit.as_deref()),
                    r.branch
                        .as_deref()
                        .map(|b| format!(" ({})", sanitize_line(b)))
                        .unwrap_or_default(),
                    match failure_line(r) {
                        f if f.is_empty() => String::new(),
                        f => format!("  {}", sanitize_line(&f)),
                    }
                )?;
            }
            Ok(())
        }
    }
}

fn write_explain(
    report: &RunReport,
    found: &[(usize, crate::model::TestHistory)],
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let doc: Vec<_> = found
                .iter()
                .map(|(i, h)| {
                    let t = &report.tests[*i];
                    serde_json::json!({ "nodeid": t.nodeid, "outcome": t.outcome, "history": h })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Markdown => {
            writeln!(out, "| Test | Outcome | History |\n| --- | --- | --- |")?;
            for (i, h) in found {
                let t = &report.tests[*i];
                writeln!(
                    out,
                    "| {} | {} | {} |",
                    markdown::inline(&t.nodeid),
                    t.outcome.as_str(),
                    markdown::inline(&h.describe())
                )?;
            }
            Ok(())
        }
        Format::Table => {
            if found.is_empty() {
                return writeln!(out, "no failed or flaky test in this report");
            }
            for (i, h) in found {
                let t = &report.tests[*i];
                writeln!(
                    out,
                    "{:<7} {}\n        {}",
                    t.outcome.as_str().to_uppercase(),
                    sanitize_line(&t.nodeid),
                    sanitize_line(&h.describe())
                )?;
            }
            Ok(())
        }
    }
}

fn short(commit: Option<&str>) -> String {
    commit
        .map(|c| c.get(..7).unwrap_or(c))
        .unwrap_or("-")
        .to_owned()
}

fn failure_line(r: &query::TestRun) -> String {
    r.failures
        .first()
        .map(|f| {
            let kind = f.exception_type.as_deref().unwrap_or("failure");
            let kind = kind.strip_prefix("builtins.").unwrap_or(kind);
            let msg = f.message.as_deref().unwrap_or("");
            let fp = f
                .fingerprint
                .as_deref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default();
            crate::report::truncate(&format!("{kind}: {msg}{fp}"), 160)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_parse_with_their_unit() {
        assert_eq!(parse_age("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400_000));
        assert!(parse_age("90").unwrap_err().contains("no known unit"));
        assert!(parse_age("d").unwrap_err().contains("not an age"));
        assert!(parse_age("-3d").unwrap_err().contains("not an age"));
    }
}
