//! End-to-end tests: the real binary, real pytest, real processes, on fixture projects.

mod action;
mod ai;
mod common;
mod config;
mod core;
mod dashboard;
mod fake_github;
mod github;
mod gitlab;
mod history;
#[cfg(unix)]
mod history_pg;
mod history_retries;
mod https;
#[cfg(unix)]
mod install;
#[cfg(target_os = "linux")]
mod lifetime;
mod mcp_server;
#[cfg(unix)]
mod plugin;
mod policy;
#[cfg(unix)]
mod postgres;
#[cfg(unix)]
mod process;
mod quarantine;
mod render;
mod reports;
mod schema;
mod selection;
mod snapshots;
#[cfg(target_os = "linux")]
mod warm;
