//! Command-line interface: clap definitions and the `main` that dispatches subcommands. Exit codes are
//! decided here, in one place, and follow pytest's (see [`ExitCode`]).

use crate::ci::github;
use crate::config;
use crate::devstats;
use crate::model::ExitCode;
use crate::model::RunReport;
use crate::report::{junit, markdown, terminal};
use crate::runner::{self, RunConfig};
use crate::signals::Interrupts;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "smart-rerun",
    version,
    about = "Run pytest, rerun only the tests that failed in fresh processes, and tell flaky from broken.",
    after_help = "Exit codes follow pytest's: 0 nothing failed (flaky tests passed), 1 failures remain, \
                  2 interrupted, 3 internal error, 4 usage error, 5 no tests collected."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to use colour: auto honours NO_COLOR, CLICOLOR_FORCE and whether stdout is a terminal.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the suite and rerun the tests that fail: `smart-rerun run [OPTIONS] [-- COMMAND...]`.
    Run(RunArgs),
    /// Print the effective settings for this project and command, and where each value came from
    /// (default, pytest ini file and line, SMART_RERUN_* variable, or flag). Runs no test.
    Config(RunArgs),
    /// Re-render saved JSON reports; several reports (matrix shards) merge into one.
    Render(RenderArgs),
    /// Write saved JSON reports into the pull request's sticky comment, one section per job (the
    /// privileged `workflow_run` job of the fork-safe recipe, or a final job after matrix shards). The
    /// token comes from SMART_RERUN_GITHUB_TOKEN or GITHUB_TOKEN. Under GitLab CI (GITLAB_CI=true): the
    /// merge request's sticky note, with SMART_RERUN_GITLAB_TOKEN or GITLAB_TOKEN, --pr being the merge
    /// request's IID and --repo the project's ID or path.
    Comment(CommentArgs),
    /// Translate a retry policy in plain words into settings, through the AI endpoint the settings name
    /// (smart_rerun_ai_endpoint, MCP or plain HTTP), check them as any configuration is checked, and print
    /// them as the block for pytest's configuration file, or write them into it (--write). Runs no test.
    Policy(PolicyArgs),
    /// Memory across runs: import saved reports, list flaky tests, show a test's runs, prune old runs
    /// (see docs/history.md).
    History(crate::history::cli::HistoryArgs),
    /// The checked-in quarantine list (.smart-rerun/quarantine.toml): check it, or suggest entries from
    /// history (see docs/history.md).
    Quarantine(crate::quarantine::cli::QuarantineArgs),
    /// Serve the history and saved reports to coding agents over the Model Context Protocol, read
    /// only: stdio, or Streamable HTTP behind a bearer token (see docs/mcp.md).
    Mcp(crate::mcp::McpArgs),
    /// Write a static flake dashboard from the history: one self-contained index.html (flake rate over
    /// time, the most flaky tests, each test's runs, failures shared by several tests), no network
    /// needed (see docs/dashboard.md).
    Dashboard(crate::dashboard::DashboardArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PolicyArgs {
    /// The policy, e.g. "retry network errors up to 4 times with exponential backoff".
    #[arg(value_name = "SENTENCE")]
    pub(crate) sentence: String,
    /// Write the settings into the configuration file pytest reads for this project (a new pytest.ini in
    /// its rootdir when there is none), keeping everything else in it.
    #[arg(long)]
    pub(crate) write: bool,
    /// The MCP tool (or, over plain HTTP, the `task`) that translates.
    #[arg(long, value_name = "NAME", default_value = crate::translate::DEFAULT_TOOL)]
    pub(crate) policy_tool: String,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CommentArgs {
    /// Saved smart-rerun JSON reports (`--report a.json b.json`, or the flag repeated).
    #[arg(long = "report", value_name = "REPORT.json", required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// The pull request [default: the event's, else the one the reports name].
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
    /// The repository [default: GITHUB_REPOSITORY].
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// One section with this key for all the reports, merged, instead of one section per job.
    #[arg(long, value_name = "KEY")]
    pub comment_key: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RenderFormat {
    Json,
    Junit,
    Markdown,
    Terminal,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RenderArgs {
    /// The output format.
    #[arg(long, value_enum)]
    pub format: RenderFormat,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Markdown size budget in bytes [default: 65536, a PR comment's limit].
    #[arg(long, value_name = "BYTES", default_value_t = markdown::COMMENT_BUDGET)]
    pub budget: usize,
    /// JUnit layout [default: surefire; gitlab under GitLab CI].
    #[arg(long, value_enum)]
    pub junit_compat: Option<junit::JunitCompat>,
    /// Saved smart-rerun JSON reports.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct RunArgs {
    /// One flag per setting, from the settings table (src/config/keys.rs).
    #[command(flatten)]
    pub settings: config::args::SettingArgs,
    /// The interpreter for `python -m pytest` when no COMMAND is given [default: $VIRTUAL_ENV, ./.venv,
    /// then python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Keep the collector's event files and print where (for debugging smart-rerun itself).
    #[arg(long, hide = true)]
    pub keep_temp: bool,
    /// Set by the pytest plugin in the wheel when `pytest --smart-rerun` hands the run over: the flags
    /// were `--smart-rerun-*` pytest options, and errors are worded as pytest words its usage errors.
    #[arg(long, hide = true)]
    pub from_pytest: bool,
    /// How pytest is run, e.g. `-- pytest tests/ -x` or `-- uv run pytest` [default: python -m pytest].
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// The command-line layer of the settings, with the environment's `SMART_RERUN_*` layer under it.
    pub(crate) fn layer(&self) -> config::RawLayer {
        let mut layer = config::RawLayer::from_env(|n| std::env::var(n).ok());
        layer.update(&self.settings.layer(self.from_pytest));
        layer
    }
}

/// Parses `args` and runs; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    crate::hardening::protect_process();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::Ok
                }
                _ => ExitCode::UsageError,
            };
        }
    };
    // reqwest, rmcp and octocrab speak TLS through rustls; pick its ring provider once, for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    match cli.command {
        Command::Run(args) => run(args),
        Command::Config(args) => show_config(args),
        Command::Render(args) => render(args),
        Command::Comment(args) => comment(args),
        Command::Policy(args) => policy(args),
        Command::History(args) => crate::history::cli::main(args),
        Command::Quarantine(args) => crate::quarantine::cli::main(args),
        Command::Mcp(args) => crate::mcp::main(args),
        Command::Dashboard(args) => crate::dashboard::main(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    if args.from_pytest {
        PYTEST_WORDING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let cwd = match current_dir() {
        Ok(cwd) => cwd,
        Err(code) => return code,
    };
    // The layer is read once: the GitHub token then leaves the environment, so pytest and the tested
    // code never inherit it.
    let layer = args.layer();
    forget_github_token();
    crate::ci::gitlab::forget_token();
    let (settings, invalid) = validate_layer(&layer, &cwd);
    if let Some(errors) = invalid.as_ref().filter(|_| args.from_pytest) {
        // A bad `--smart-rerun-*` option is a usage error of the pytest command the user typed: said at
        // once, as pytest says its own, before pytest starts again (the ini file's values are read by
        // pytest, so they are checked once it has started, before any test runs).
        let options: Vec<_> = errors
            .0
            .iter()
            .filter(|e| matches!(e.source, config::Source::PytestOption(_)))
            .cloned()
            .collect();
        if !options.is_empty() {
            return fail(
                ExitCode::UsageError,
                &config::ConfigErrors(options).to_string(),
            );
        }
    }
    let command = match pytest_command(&args, &cwd) {
        Ok(c) => c,
        Err(e) => return fail_invalid(invalid, ExitCode::UsageError, &e.to_string()),
    };
    // A checked-in quarantine file that does not parse is a usage error before any test runs.
    if let Err(e) =
        crate::quarantine::Quarantine::load_for_run(settings.quarantine.as_deref(), &cwd)
    {
        return fail_invalid(invalid, ExitCode::UsageError, &e.to_string());
    }
    let interrupts = match Interrupts::install() {
        Ok(i) => i,
        Err(e) => {
            return fail(
                ExitCode::InternalError,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let mut config = RunConfig::new(command, cwd, settings.clone(), layer);
    config.keep_temp = args.keep_temp;
    let env = |n: &str| std::env::var(n).ok();
    let github = (crate::ci::Platform::detect(&env) == crate::ci::Platform::GitHub)
        .then(|| github::GithubEnv::read(&env));
    // In GitHub Actions, pytest's output (and test names smart-rerun prints) must not issue workflow
    // commands: see ci::github::commands.
    let guard = match github {
        Some(_) => github::commands::CommandGuard::new(std::io::stdout()),
        None => github::commands::CommandGuard::disabled(std::io::stdout()),
    };
    let mut progress = match github::commands::GuardedProgress::new(
        terminal::TerminalProgress::stdout(),
        guard,
        settings.github.stop_commands,
    ) {
        Ok(progress) => progress,
        Err(e) => return fail(ExitCode::InternalError, &e.to_string()),
    };
    let started = Instant::now();
    // Always there, and idle unless smart_rerun_ai is on: the ini values that may switch it on are only
    // known once pytest has started, so the advisor reads the settings the runner hands it.
    let mut advisor = crate::classify::ai::AiAdvisor::new().with_interrupts(interrupts.clone());
    let prior = Box::new(crate::history::HistoryPrior::default());
    let outcome = runner::run(
        &config,
        &interrupts,
        &mut progress,
        Some(&mut advisor),
        Some(prior),
    );
    let (_, mut guard) = progress.into_parts();
    let (mut report, settings, trail) = match outcome {
        Ok(done) => done,
        Err(e) => {
            guard.resume();
            return fail_invalid(invalid, e.exit_code(), &crate::errors::chain(&e));
        }
    };
    if let Some(gh) = &github {
        report.ci = Some(github::ci_info(gh, &settings.github));
    }
    let gitlab = crate::ci::Platform::detect(&env) == crate::ci::Platform::GitLab;
    if gitlab {
        report.ci = Some(crate::ci::gitlab::ci_info(&settings.gitlab, &env));
    }
    // What history knows of the failed and flaky tests goes into the report before any of it is
    // written; this run is recorded once the reports are out. Neither can change the exit code. An
    // interrupted run is left out: it is partial, and a cancelled CI step has seconds left to live.
    let history = crate::history::RunHistory::start(
        settings
            .history
            .as_deref()
            .filter(|_| !report.run.interrupted),
        &mut report,
        &mut std::io::stderr(),
    );
    // The summary lists test names and messages: commands stay stopped over it, even when pytest's
    // output was let through.
    let stopped = guard.stop();
    let code = finish(&report, &settings, started.elapsed(), stopped.err());
    history.record(
        &report,
        &env,
        Path::new(&report.run.cwd),
        &mut std::io::stderr(),
    );
    guard.resume();
    if let Some(path) = settings.ai.report.as_ref().filter(|_| settings.ai.enabled) {
        // Optional like the AI itself: a trail that cannot be written is said, and the exit code stays.
        if let Err(e) =
            crate::classify::ai::write_report(path, &settings.ai, &advisor, &trail, &report.run)
        {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: failed to write the AI report {}: {e}",
                path.display()
            );
        }
    }
    if let Some(gh) = &github {
        if let Some(config::Source::Ini { file, line }) =
            settings.sources.get("smart_rerun_github_stop_commands")
        {
            println!(
                "smart-rerun: smart_rerun_github_stop_commands in {file}{} is read after pytest's output has \
                 started, so it has no effect; set SMART_RERUN_GITHUB_STOP_COMMANDS or --github-stop-commands",
                line.map(|l| format!(":{l}")).unwrap_or_default()
            );
        }
        let written = github::Written {
            report: settings.report.clone(),
            junit: settings
                .junit_xml
                .clone()
                .or_else(|| settings.pytest_junitxml.clone()),
        };
        let mut gh_settings = settings.github.clone();
        if report.run.interrupted && gh_settings.comment {
            // Cancelled: the runner kills the step seconds after its signal, too soon for API retries.
            println!("smart-rerun: no PR comment: the run was interrupted");
            gh_settings.comment = false;
        }
        // Whatever happens here, the exit code stays the tests'.
        let published = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            github::publish(
                &report,
                &gh_settings,
                gh,
                &env,
                &written,
                code.code(),
                &mut std::io::stdout(),
            )
        }));
        if published.is_err() {
            println!(
                "::warning title=smart-rerun::smart-rerun failed while reporting to GitHub (a bug; please report it). The tests' result is unchanged."
            );
        }
    }
    if gitlab {
        crate::ci::gitlab::publish_run(&report, &settings, &mut std::io::stdout());
    }
    match invalid {
        // pytest stopped before the settings verdict (a usage error of its own, a wrapper that lost the
        // environment): the bad values were not reported with the others, so report them now.
        Some(errors) if code != ExitCode::UsageError => {
            fail(ExitCode::UsageError, &errors.to_string())
        }
        // A usage or internal error is also said on stderr, where scripts and CI logs look for errors;
        // the summary on stdout has it too.
        _ if matches!(code, ExitCode::UsageError | ExitCode::InternalError)
            && !report.run.exit_reason.is_empty() =>
        {
            fail(code, &report.run.exit_reason)
        }
        _ => code,
    }
}

/// Removes `SMART_RERUN_GITHUB_TOKEN` from this process's environment once it has been read, so the
/// pytest processes (the code under test) do not inherit it.
fn forget_github_token() {
    if let Some(k) = config::keys::key("smart_rerun_github_token") {
        if std::env::var_os(k.env).is_some() {
            // SAFETY: called from `run` before any thread is started (signal handlers, runtimes); nothing
            // else reads or writes the environment concurrently.
            unsafe { std::env::remove_var(k.env) };
        }
    }
}

/// Validates the environment and command-line layer. On bad values, also returns the settings made of
/// the good ones: the run goes on to collection, so that one message lists every bad value — ini keys
/// and markers included — and the collector stops pytest before any test runs.
fn validate_layer(
    layer: &config::RawLayer,
    cwd: &Path,
) -> (config::Settings, Option<config::ConfigErrors>) {
    let env = |n: &str| std::env::var(n).ok();
    match config::Settings::from_layer(layer, &env, cwd) {
        Ok(s) => (s, None),
        Err(errors) => {
            let mut valid = layer.clone();
            for e in &errors.0 {
                valid.values.remove(e.key.as_str());
            }
            let settings = config::Settings::from_layer(&valid, &env, cwd).unwrap_or_default();
            (settings, Some(errors))
        }
    }
}

/// Reports bad settings, if any, before another error that stopped the run.
fn fail_invalid(invalid: Option<config::ConfigErrors>, code: ExitCode, message: &str) -> ExitCode {
    match invalid {
        Some(errors) => {
            let _ = fail(code, message);
            fail(ExitCode::UsageError, &errors.to_string())
        }
        None => fail(code, message),
    }
}

/// The command of every round: the user's, or `python -m pytest` with the interpreter users expect.
fn pytest_command(
    args: &RunArgs,
    cwd: &Path,
) -> Result<Vec<OsString>, runner::command::CommandError> {
    if !args.command.is_empty() {
        return Ok(args.command.clone());
    }
    let (python, _) =
        runner::command::find_python(args.python.as_deref(), std::env::var_os("VIRTUAL_ENV"), cwd)?;
    Ok(vec![python.into_os_string(), "-m".into(), "pytest".into()])
}

fn render(args: RenderArgs) -> ExitCode {
    let mut reports = Vec::new();
    for path in &args.reports {
        match RunReport::load(path) {
            Ok(r) => reports.push(r),
            Err(e) => return fail(ExitCode::UsageError, &crate::errors::chain(&e)),
        }
    }
    let Some(report) = RunReport::merge(reports) else {
        return fail(ExitCode::UsageError, "no report given");
    };
    let env = |n: &str| std::env::var(n).ok();
    let text = match args.format {
        RenderFormat::Json => {
            let mut buf = Vec::new();
            if let Err(e) = report.write_json(&mut buf) {
                return fail(ExitCode::InternalError, &e.to_string());
            }
            String::from_utf8_lossy(&buf).into_owned()
        }
        RenderFormat::Junit => {
            // As for `run`: GitLab's test report needs its layout to show flaky tests at all.
            let gitlab = crate::ci::Platform::detect(&env) == crate::ci::Platform::GitLab;
            let options = junit::JunitOptions {
                compat: args.junit_compat.unwrap_or(if gitlab {
                    junit::JunitCompat::Gitlab
                } else {
                    junit::JunitCompat::Surefire
                }),
                ..Default::default()
            };
            match junit::to_xml(&report, &options) {
                Ok(xml) => xml,
                Err(e) => return fail(ExitCode::InternalError, &e.to_string()),
            }
        }
        RenderFormat::Markdown => {
            let mut links = crate::ci::markdown_links(&env, report.run.rootdir.as_deref());
            links.report_hint = Some(
                args.reports
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            markdown::render(&report, &links, args.budget)
        }
        RenderFormat::Terminal => terminal::render_summary(&report),
    };
    let written = match &args.output {
        Some(path) => crate::output::write_atomic(path, |f| f.write_all(text.as_bytes())),
        None => {
            let mut out = anstream::stdout();
            out.write_all(text.as_bytes()).and_then(|_| out.flush())
        }
    };
    match written {
        Ok(()) => ExitCode::Ok,
        // A closed pipe (`| head`) is a reader that has seen enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => fail(
            ExitCode::InternalError,
            &format!("failed to write the output: {e}"),
        ),
    }
}

fn comment(args: CommentArgs) -> ExitCode {
    let mut reports = Vec::new();
    for path in &args.reports {
        match RunReport::load(path) {
            Ok(r) => reports.push((
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                r,
            )),
            Err(e) => return fail(ExitCode::UsageError, &crate::errors::chain(&e)),
        }
    }
    let env = |n: &str| std::env::var(n).ok();
    if crate::ci::Platform::detect(&env) == crate::ci::Platform::GitLab {
        let request = crate::ci::gitlab::CommentRequest {
            mr: args.pr,
            project: args.repo.clone(),
            key: args.comment_key.clone(),
        };
        return match crate::ci::gitlab::comment_from_reports(reports, &request, &env) {
            Ok(outcome) => {
                outcome.print(&mut std::io::stdout());
                ExitCode::Ok
            }
            Err(e) => fail(ExitCode::UsageError, &e.to_string()),
        };
    }
    let gh = github::GithubEnv::read(&env);
    let request = github::CommentRequest {
        pr: args.pr,
        repo: args.repo.clone(),
        key: args.comment_key.clone(),
        token: env("SMART_RERUN_GITHUB_TOKEN"),
    };
    let mut out = std::io::stdout();
    match github::comment_from_reports(reports, &request, &gh, &env) {
        Ok(github::CommentStatus::Posted(p)) => {
            let _ = writeln!(
                out,
                "smart-rerun: PR comment {}{}",
                if p.created { "created" } else { "updated" },
                p.url.map(|u| format!(": {u}")).unwrap_or_default()
            );
        }
        Ok(github::CommentStatus::Skipped(why)) => {
            let _ = writeln!(out, "smart-rerun: no PR comment: {why}");
        }
        Ok(github::CommentStatus::Failed(line)) => {
            // A warning, not a failed job: the tests' verdict is the CI run's, not this job's.
            if gh.step_summary.is_some() || env("GITHUB_ACTIONS").as_deref() == Some("true") {
                let _ = writeln!(
                    out,
                    "::warning title=smart-rerun PR comment::{}",
                    github::commands::escape_data(&line)
                );
            } else {
                let _ = writeln!(anstream::stderr(), "smart-rerun: warning: {line}");
            }
        }
        Ok(github::CommentStatus::Off) => {}
        Err(e) => return fail(ExitCode::UsageError, &e.to_string()),
    }
    ExitCode::Ok
}

/// The settings in force for `args` and what pytest said of its session, without running a test; on
/// failure, the error has been printed and the exit code is returned.
fn probe(args: &RunArgs) -> Result<(runner::events::SessionStart, config::Settings), ExitCode> {
    let cwd = current_dir()?;
    let layer = args.layer();
    // Bad values here are validated again over the ini values, so all of them are listed together.
    let (base, invalid) = validate_layer(&layer, &cwd);
    let command = match pytest_command(args, &cwd) {
        Ok(c) => c,
        Err(e) => return Err(fail_invalid(invalid, ExitCode::UsageError, &e.to_string())),
    };
    let config = RunConfig::new(command, cwd, base, layer);
    let (session, settings) = match runner::probe_settings(&config) {
        Ok(found) => found,
        Err(e) => {
            return Err(fail_invalid(
                invalid,
                e.exit_code(),
                &crate::errors::chain(&e),
            ));
        }
    };
    match settings {
        Ok(s) => Ok((session, s)),
        Err(errors) => Err(fail(ExitCode::UsageError, &errors.to_string())),
    }
}

fn show_config(args: RunArgs) -> ExitCode {
    let (session, settings) = match probe(&args) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let mut out = anstream::stdout();
    let _ = writeln!(
        out,
        "smart-rerun {} with pytest {} (rootdir {}, configfile {})",
        env!("CARGO_PKG_VERSION"),
        session.pytest_version,
        session.rootdir,
        session.inifile.as_deref().unwrap_or("none")
    );
    let width = config::KEYS.iter().map(|k| k.ini.len()).max().unwrap_or(0);
    for key in config::KEYS {
        let source = settings
            .sources
            .get(key.ini)
            .map_or_else(|| "default".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:width$}  {:<24}  {source}",
            key.ini,
            settings.display_value(key)
        );
    }
    ExitCode::Ok
}

/// `smart-rerun policy SENTENCE`: the translation as the configuration file's block, or written into it.
fn policy(args: PolicyArgs) -> ExitCode {
    use crate::translate::{self, write};
    let (session, settings) = match probe(&args.run) {
        Ok(found) => found,
        Err(code) => return code,
    };
    if settings.ai.endpoint.is_none() {
        return fail(
            ExitCode::UsageError,
            &translate::TranslateError::NoEndpoint.to_string(),
        );
    }
    let checked = translate::ask(&settings.ai, &args.sentence, &args.policy_tool)
        .and_then(|answer| translate::check(&answer, Path::new(&session.rootdir)));
    let translation = match checked {
        Ok(t) => t,
        Err(e) => return fail(ExitCode::InternalError, &e.to_string()),
    };
    let file = session
        .inifile
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&session.rootdir).join("pytest.ini"));
    let mut err = anstream::stderr();
    for note in &translation.notes {
        let _ = writeln!(err, "smart-rerun: note: {note}");
    }
    if args.write {
        if let Err(e) = write::write(&file, &translation) {
            return fail(ExitCode::InternalError, &e.to_string());
        }
        let _ = writeln!(
            anstream::stdout(),
            "smart-rerun: wrote {} setting{} to {}",
            translation.settings.len(),
            if translation.settings.len() == 1 {
                ""
            } else {
                "s"
            },
            file.display()
        );
    } else {
        let _ = write!(
            anstream::stdout(),
            "{}",
            write::block(write::Form::of(&file), &translation, &args.sentence)
        );
    }
    ExitCode::Ok
}

/// `unguarded`: workflow commands could not be stopped over the summary, which then is not printed (it
/// holds test names and messages, which could issue commands); the reports still hold all of it.
fn finish(
    report: &RunReport,
    settings: &config::Settings,
    run_time: Duration,
    unguarded: Option<github::commands::NoStopToken>,
) -> ExitCode {
    let summary_started = Instant::now();
    match unguarded {
        None => {
            let _ = terminal::print_summary(report, anstream::stdout());
        }
        Some(e) => {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: the summary is not printed: {e}; the reports hold it"
            );
        }
    }
    let summary_time = summary_started.elapsed();
    let mut code = report.run.exit_code;
    let mut report_time = None;
    let mut failed_write = |what: &str, path: &Path, e: std::io::Error| {
        let _ = writeln!(
            anstream::stderr(),
            "smart-rerun: failed to write the {what} {}: {e}",
            path.display()
        );
        if code == ExitCode::Ok {
            code = ExitCode::InternalError;
        }
    };
    if let Some(path) = &settings.report {
        let save_started = Instant::now();
        let saved = report.save(path);
        report_time = Some(save_started.elapsed());
        if let Err(e) = saved {
            failed_write("JSON report", path, e);
        }
    }
    let junit_options = junit::JunitOptions {
        suite_name: settings
            .junit_suite_name
            .clone()
            .unwrap_or_else(|| "pytest".into()),
        compat: settings.junit_compat,
    };
    let mut junit_paths: Vec<&PathBuf> = settings
        .junit_xml
        .iter()
        .chain(&settings.pytest_junitxml)
        .collect();
    junit_paths.dedup();
    let junit_started = Instant::now();
    let junit_time = (!junit_paths.is_empty()).then(|| {
        for path in junit_paths {
            if let Err(e) = junit::save(report, &junit_options, path) {
                failed_write("JUnit XML report", path, e);
            }
        }
        junit_started.elapsed()
    });
    if let Some(path) = &settings.markdown {
        let mut links =
            crate::ci::markdown_links(&|n| std::env::var(n).ok(), report.run.rootdir.as_deref());
        links.report_hint = settings.report.as_ref().map(|p| p.display().to_string());
        let text = markdown::render(report, &links, markdown::COMMENT_BUDGET);
        if let Err(e) = crate::output::write_atomic(path, |f| f.write_all(text.as_bytes())) {
            failed_write("Markdown report", path, e);
        }
    }
    // Hidden, for the benchmark harness (bench/run.py): see src/devstats.rs.
    if let Some(path) = std::env::var_os(devstats::STATS_ENV) {
        let stats =
            devstats::DevStats::new(report, run_time, summary_time, report_time, junit_time);
        if let Err(e) = stats.save(Path::new(&path)) {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: failed to write {}: {e}",
                devstats::STATS_ENV
            );
        }
    }
    code
}

/// Errors are worded as pytest's own usage errors (`ERROR: ...`) when `pytest --smart-rerun` handed the
/// run over: the user typed a pytest command.
static PYTEST_WORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The working directory, or the internal error said on stderr.
fn current_dir() -> Result<std::path::PathBuf, ExitCode> {
    std::env::current_dir().map_err(|e| {
        fail(
            ExitCode::InternalError,
            &format!("cannot read the current directory: {e}"),
        )
    })
}

fn fail(code: ExitCode, message: &str) -> ExitCode {
    let prefix = match PYTEST_WORDING.load(std::sync::atomic::Ordering::Relaxed) {
        true => "ERROR: smart-rerun: ",
        false => "smart-rerun: error: ",
    };
    let _ = writeln!(anstream::stderr(), "{prefix}{message}");
    code
}
