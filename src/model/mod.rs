//! The vocabulary every other module speaks, depending on nothing else of the crate: the run's result
//! ([`RunReport`] ... [`Attempt`], [`Outcome`]), the classification of a failure ([`Classification`]),
//! the [`ExitCode`], and the progress events the runner emits ([`ProgressEvent`]).
//!
//! Arrows point here: the runner builds the model and emits its events, the classifier reads attempts
//! from it, renderers and CI adapters read nothing else.

mod classification;
mod exit;
mod history;
mod progress;
mod report;

pub use classification::{Action, Category, Classification, ClassificationSource};
pub use exit::{ExitCode, UnknownExitCode};
pub(crate) use history::{HistoryRun, HistoryVerdict, Prior, TestHistory};
pub(crate) use progress::{PlannedTest, ProgressEvent, ProgressSink, RoundPlan};
pub use report::*;
