//! End-to-end tests: the real binary, real pytest, real processes, on fixture projects.

mod action;
mod ai;
mod common;
mod config;
mod core;
mod fake_github;
mod github;
mod gitlab;
mod https;
#[cfg(unix)]
mod install;
#[cfg(unix)]
mod plugin;
#[cfg(unix)]
mod process;
mod reports;
mod schema;
mod selection;
mod snapshots;
#[cfg(target_os = "linux")]
mod warm;
