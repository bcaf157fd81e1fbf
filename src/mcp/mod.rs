//! `smart-rerun mcp`: a Model Context Protocol server for coding agents over the run history and saved
//! reports ([`server`]), read only. Over stdio by default, or Streamable HTTP behind a bearer token
//! ([`http`]). The answers are built in [`data`] and [`quarantine`].

pub(crate) mod data;
mod http;
pub(crate) mod quarantine;
pub(crate) mod server;
#[cfg(test)]
mod tests;

use crate::history::Location;
use crate::model::ExitCode;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable holding the HTTP bearer token, unless `--token-env` names another.
pub(crate) const DEFAULT_TOKEN_ENV: &str = "SMART_RERUN_MCP_TOKEN";

#[derive(Debug, Clone, Args)]
pub(crate) struct McpArgs {
    /// The history to serve: a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB. Read only.
    #[arg(long, value_name = "URL", env = "SMART_RERUN_HISTORY")]
    pub history: Option<String>,
    /// A saved JSON report (`run --report`) to serve; repeat for several: the newest run is the
    /// latest. Re-read at each request.
    #[arg(long = "report", value_name = "PATH")]
    pub reports: Vec<PathBuf>,
    /// Serve Streamable HTTP on this address instead of stdio: PORT, HOST:PORT (127.0.0.1 unless
    /// given). Needs a bearer token in the environment.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// The environment variable holding the HTTP bearer token.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_TOKEN_ENV)]
    pub token_env: String,
    /// The quarantine file whose tests `quarantine_suggest` leaves out [default: found as a run finds
    /// it: SMART_RERUN_QUARANTINE, the smart_rerun_quarantine key of the pytest configuration, then
    /// .smart-rerun/quarantine.toml].
    #[arg(long, value_name = "PATH")]
    pub quarantine: Option<PathBuf>,
    /// The interpreter for `python -m pytest`, asked for its configuration when it names the file.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

/// The quarantine file `quarantine_suggest` reads, found as `quarantine check` finds it. Pytest that
/// cannot be asked leaves the default path, with a warning; a file named but missing is a usage error.
fn quarantine_file(args: &McpArgs) -> Result<PathBuf, ExitCode> {
    let cwd = std::env::current_dir()
        .map_err(|e| usage(&format!("cannot read the current directory: {e}")))?;
    let lost = format!(
        "quarantine_suggest reads {}",
        crate::quarantine::DEFAULT_PATH
    );
    let located = crate::quarantine::locate::locate_optional(
        args.quarantine.as_deref(),
        args.python.as_deref(),
        &cwd,
        &lost,
    )
    .map_err(|e| usage(&e))?;
    match located.and_then(|l| Some((l.path?, l.from))) {
        Some((path, from)) if !cwd.join(&path).is_file() => Err(usage(&format!(
            "the quarantine file {} ({}) does not exist",
            path.display(),
            from.as_deref().unwrap_or("smart_rerun_quarantine")
        ))),
        // Named from the current directory where it lies below it, as the answers show it.
        Some((path, _)) => Ok(path
            .strip_prefix(&cwd)
            .map_or_else(|_| path.clone(), Path::to_path_buf)),
        None => Ok(PathBuf::from(crate::quarantine::DEFAULT_PATH)),
    }
}

fn usage(message: &str) -> ExitCode {
    let _ = writeln!(anstream::stderr(), "smart-rerun: error: {message}");
    ExitCode::UsageError
}

/// Parses `--http`: `PORT`, `HOST:PORT` or `[V6]:PORT`; a bare port binds 127.0.0.1.
pub(crate) fn parse_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let t = t
        .strip_prefix(':')
        .map_or_else(|| t.to_owned(), |port| format!("127.0.0.1:{port}"));
    let t = t.replacen("localhost:", "127.0.0.1:", 1);
    t.parse().map_err(|_| {
        format!("'{text}' is not an address: use PORT, HOST:PORT (an IP address) or [IPv6]:PORT, e.g. 127.0.0.1:8765")
    })
}

/// Runs `smart-rerun mcp` until the client goes away (stdio) or the process is stopped (HTTP).
pub(crate) fn main(args: McpArgs) -> ExitCode {
    let history = match args.history.as_deref().map(Location::parse).transpose() {
        Ok(h) => h,
        Err(e) => return usage(&format!("--history: {e}")),
    };
    if history.is_none() && args.reports.is_empty() {
        return usage(
            "nothing to serve: pass --history URL (or set SMART_RERUN_HISTORY) and/or --report PATH",
        );
    }
    if let Some(Location::Sqlite(path)) = &history {
        if !path.exists() {
            return usage(&format!(
                "--history: there is no history database at {}: record runs with `smart-rerun run --history` or `smart-rerun history import` first",
                path.display()
            ));
        }
    }
    for path in &args.reports {
        if let Err(e) = crate::model::RunReport::load(path) {
            return usage(&format!("--report: {}", crate::errors::chain(&e)));
        }
    }
    let http = match args.http.as_deref().map(parse_addr).transpose() {
        Ok(a) => a,
        Err(e) => return usage(&format!("--http: {e}")),
    };
    let token = match http {
        None => None,
        Some(_) => match std::env::var(&args.token_env) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            _ => {
                return usage(&format!(
                    "--http needs a bearer token: set the environment variable {} (--token-env names another); the token is never taken from a flag",
                    args.token_env
                ));
            }
        },
    };
    let quarantine_file = match quarantine_file(&args) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let sources = server::Sources {
        history,
        reports: args.reports,
        quarantine_file,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                anstream::stderr(),
                "smart-rerun: error: cannot start the MCP server: {e}"
            );
            return ExitCode::InternalError;
        }
    };
    let result = runtime.block_on(async move {
        match (http, token) {
            (Some(addr), Some(token)) => http::serve(addr, token, sources).await,
            _ => serve_stdio(sources).await,
        }
    });
    match result {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "smart-rerun: error: {e}");
            ExitCode::InternalError
        }
    }
}

async fn serve_stdio(sources: server::Sources) -> Result<(), String> {
    use rmcp::ServiceExt;
    let service = server::SmartRerunServer::new(sources)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session over stdio failed to start: {e}"))?;
    service
        .waiting()
        .await
        .map_err(|e| format!("the MCP session over stdio failed: {e}"))?;
    Ok(())
}
