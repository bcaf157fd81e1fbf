//! End-to-end tests: the real binary, real pytest, real processes, on fixture projects.

mod common;
mod config;
mod core;
#[cfg(unix)]
mod process;
mod reports;
mod selection;
