//! Command-line interface: clap definitions and the `main` that dispatches subcommands. Exit codes are
//! decided here, in one place, and follow pytest's (see [`ExitCode`]).

use crate::config;
use crate::report::{RunReport, terminal};
use crate::runner::{self, ExitCode, RunConfig, signals::Interrupts};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "smart-rerun",
    version,
    about = "Run pytest, rerun only the tests that failed in fresh processes, and tell flaky from broken.",
    after_help = "Exit codes follow pytest's: 0 nothing failed (flaky tests passed), 1 failures remain, \
                  2 interrupted, 3 internal error, 4 usage error, 5 no tests collected."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to use colour: auto honours NO_COLOR, CLICOLOR_FORCE and whether stdout is a terminal.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the suite and rerun the tests that fail: `smart-rerun run [OPTIONS] [-- COMMAND...]`.
    Run(RunArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Total attempts per test, the first run included (at least 1) [default: 2].
    #[arg(long, value_name = "N")]
    pub max: Option<String>,
    /// Seconds between a test's failed attempt and its next attempt [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<String>,
    /// How the delay grows: none (delay), linear (delay×k) or exp (delay×2^(k-1)) for the k-th retry.
    #[arg(long, value_name = "none|linear|exp")]
    pub backoff: Option<String>,
    /// Only rerun failures whose exception class, or a base class, is one of these (comma-separated,
    /// short like TimeoutError or qualified like requests.exceptions.ConnectionError).
    #[arg(long, value_name = "NAME[,NAME...]")]
    pub errors: Option<String>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// The interpreter for `python -m pytest` when no COMMAND is given [default: $VIRTUAL_ENV, ./.venv,
    /// then python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Keep the collector's event files and print where (for debugging smart-rerun itself).
    #[arg(long, hide = true)]
    pub keep_temp: bool,
    /// How pytest is run, e.g. `-- pytest tests/ -x` or `-- uv run pytest` [default: python -m pytest].
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Parses `args` and runs; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => ExitCode::UsageError.code(),
            };
        }
    };
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    match cli.command {
        Command::Run(args) => run(args).code(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            return fail(
                ExitCode::InternalError,
                &format!("cannot read the current directory: {e}"),
            );
        }
    };
    let settings = match config::Settings::from_run_args(&args) {
        Ok(s) => s,
        Err(errors) => return fail(ExitCode::UsageError, &errors.to_string()),
    };
    let command = if args.command.is_empty() {
        match runner::command::find_python(
            args.python.as_deref(),
            std::env::var_os("VIRTUAL_ENV"),
            &cwd,
        ) {
            Ok((python, _)) => vec![python.into_os_string(), "-m".into(), "pytest".into()],
            Err(e) => return fail(ExitCode::UsageError, &e.to_string()),
        }
    } else {
        args.command.clone()
    };
    let interrupts = match Interrupts::install() {
        Ok(i) => i,
        Err(e) => {
            return fail(
                ExitCode::InternalError,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let mut config = RunConfig::new(command, cwd, settings.policy.clone());
    config.keep_temp = args.keep_temp;
    let mut observer = terminal::TerminalObserver::stdout();
    let report = match runner::run(&config, &interrupts, &mut observer) {
        Ok(report) => report,
        Err(e) => return fail(e.exit_code(), &error_chain(&e)),
    };
    finish(&report, &settings)
}

fn finish(report: &RunReport, settings: &config::Settings) -> ExitCode {
    let _ = terminal::print_summary(report, anstream::stdout());
    let mut code = exit_code_of(report.run.exit_code);
    if let Some(path) = &settings.report {
        if let Err(e) = report.save(path) {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: failed to write the JSON report {}: {e}",
                path.display()
            );
            if code == ExitCode::Ok {
                code = ExitCode::InternalError;
            }
        }
    }
    code
}

fn exit_code_of(code: i32) -> ExitCode {
    match code {
        0 => ExitCode::Ok,
        1 => ExitCode::TestsFailed,
        2 => ExitCode::Interrupted,
        4 => ExitCode::UsageError,
        5 => ExitCode::NoTestsCollected,
        _ => ExitCode::InternalError,
    }
}

fn fail(code: ExitCode, message: &str) -> ExitCode {
    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {message}");
    code
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
