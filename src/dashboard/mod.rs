//! `smart-rerun dashboard`: a static, self-contained flake dashboard built from the run history — one
//! `index.html` with its CSS, script and data inline, which works from `file://`, as a CI artifact and
//! on GitHub or GitLab Pages, with no network. The data is aggregated in SQL ([`data`]); the page is
//! assembled with the data embedded safely ([`html`]) and drawn by a small script of its own (charts
//! are SVG it draws itself; every text from tests is set as text, never as markup).

pub(crate) mod data;
pub(crate) mod html;
pub(crate) mod quarantine;
#[cfg(test)]
mod tests;

use crate::history::cli::{failed, parse_age, usage};
use crate::history::{COMMAND_TIMEOUT, HistoryError, Location, Store};
use crate::model::ExitCode;
use crate::quarantine::Quarantine;
use crate::quarantine::locate::locate_optional;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub(crate) struct DashboardArgs {
    /// Where history lives: a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "URL", env = "SMART_RERUN_HISTORY")]
    pub history: Option<String>,
    /// The directory to write the site into (index.html); created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The period shown, back from now: 90d, 12w, 24h; `all` for all of history.
    #[arg(long, value_name = "AGE", default_value = "90d")]
    pub since: String,
    /// Only the runs of this branch.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The page's title.
    #[arg(long, value_name = "TEXT", default_value = "Flaky tests")]
    pub title: String,
    /// The quarantine file for the tests table's quarantine column [default: as a run finds it:
    /// SMART_RERUN_QUARANTINE, the smart_rerun_quarantine key of the pytest configuration, then
    /// .smart-rerun/quarantine.toml; no file, no column].
    #[arg(long, value_name = "PATH")]
    pub quarantine: Option<PathBuf>,
    /// The interpreter for `python -m pytest`, asked for its configuration when it names the file.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

/// The quarantine file of the column, found as `quarantine check` finds it. The file's own problems are
/// usage errors; pytest that cannot be asked only loses the column, with a warning.
fn quarantine_file(args: &DashboardArgs) -> Result<Option<Quarantine>, ExitCode> {
    let cwd = std::env::current_dir()
        .map_err(|e| usage(&format!("cannot read the current directory: {e}")))?;
    let located = locate_optional(
        args.quarantine.as_deref(),
        args.python.as_deref(),
        &cwd,
        "no quarantine column",
    )
    .map_err(|e| usage(&e))?;
    let Some(located) = located else {
        return Ok(None);
    };
    let loaded = match located.path.as_deref() {
        Some(path) => Quarantine::load_for_run(Some(path), &cwd),
        None => Quarantine::load(std::path::Path::new(crate::quarantine::DEFAULT_PATH)),
    };
    loaded.map_err(|e| usage(&e.to_string()))
}

/// Runs `smart-rerun dashboard` and returns the exit code.
pub(crate) fn main(args: DashboardArgs) -> ExitCode {
    let Some(text) = args.history.as_deref() else {
        return usage("no history given: pass --history URL or set SMART_RERUN_HISTORY");
    };
    let location = match Location::parse(text) {
        Ok(l) => l,
        Err(e) => return usage(&format!("--history: {e}")),
    };
    let now = crate::timestamp::now_ms();
    let since = if args.since.trim() == "all" {
        None
    } else {
        match parse_age(&args.since) {
            Ok(age) => Some(now.saturating_sub(age)),
            Err(e) => return usage(&format!("--since: {e} (or `all`)")),
        }
    };
    let quarantine = match quarantine_file(&args) {
        Ok(q) => q,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let mut store = match Store::open(&location, false, COMMAND_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let shown = store.location().redacted();
    let dashboard = match data::load(
        store.backend(),
        &args.title,
        since,
        args.branch.as_deref(),
        now,
    ) {
        Ok(mut d) => {
            if let Some(q) = &quarantine {
                let today = chrono::DateTime::from_timestamp_millis(now)
                    .unwrap_or_default()
                    .date_naive();
                d.quarantine = Some(quarantine::states(
                    q,
                    d.tests.iter().map(|t| t.nodeid.as_str()),
                    today,
                ));
            }
            d
        }
        Err(source) => {
            return failed(&HistoryError::Query {
                what: "read",
                location: shown,
                source,
            });
        }
    };
    let page = match html::page(&dashboard) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: error: cannot encode the dashboard's data: {e}"
            );
            return ExitCode::InternalError;
        }
    };
    let index = args.out.join("index.html");
    let written = std::fs::create_dir_all(&args.out)
        .and_then(|()| crate::output::write_atomic(&index, |f| f.write_all(page.as_bytes())));
    if let Err(e) = written {
        let _ = writeln!(
            anstream::stderr(),
            "smart-rerun: error: --out: cannot write {}: {e}",
            index.display()
        );
        return ExitCode::UsageError;
    }
    let _ = writeln!(
        std::io::stdout(),
        "smart-rerun: wrote {} ({}, {} flaky or failing, {} KiB in {:.2} s)",
        index.display(),
        crate::report::counted(dashboard.runs.len(), "run"),
        crate::report::counted(dashboard.tests.len(), "test"),
        page.len().div_ceil(1024),
        started.elapsed().as_secs_f64()
    );
    ExitCode::Ok
}
