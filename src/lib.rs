//! smart-rerun runs a pytest suite, reruns only the tests that failed — each round in a fresh pytest
//! process — under a retry policy, and reports flaky and broken tests where the team looks.
//!
//! Data flows one way: [`config`] → [`policy`] → [`runner`] → [`report`] (renderers) → [`ci`]; every
//! one of them speaks the vocabulary of [`model`], which depends on none of them. The binary in
//! `main.rs` only calls [`cli::main`].

// An item is `pub` only where something outside the crate can reach it, so the compiler finds dead code.
#![warn(unreachable_pub)]

pub mod ci;
pub(crate) mod classify;
pub mod cli;
pub mod config;
pub(crate) mod dashboard;
pub(crate) mod devstats;
mod errors;
mod hardening;
pub(crate) mod history;
pub(crate) mod mcp;
pub mod model;
pub(crate) mod output;
pub mod policy;
pub(crate) mod quarantine;
pub(crate) mod report;
pub(crate) mod runner;
#[cfg(test)]
pub(crate) mod sample;
pub(crate) mod signals;
pub(crate) mod timestamp;
pub(crate) mod translate;
