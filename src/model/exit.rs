//! [`ExitCode`]: how a run ended, pytest's way, ordered by how bad it is.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// smart-rerun's exit codes, which follow pytest's. The order is severity, for merging the reports of
/// several jobs: an internal or usage error outranks an interrupt, which outranks failures, which outrank
/// "no tests", which outranks success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
#[repr(i32)]
pub enum ExitCode {
    /// Nothing failed (flaky tests passed on a rerun).
    #[default]
    Ok = 0,
    TestsFailed = 1,
    Interrupted = 2,
    InternalError = 3,
    UsageError = 4,
    NoTestsCollected = 5,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    fn severity(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::NoTestsCollected => 1,
            ExitCode::TestsFailed => 2,
            ExitCode::Interrupted => 3,
            ExitCode::UsageError => 4,
            ExitCode::InternalError => 5,
        }
    }
}

impl Ord for ExitCode {
    fn cmp(&self, other: &Self) -> Ordering {
        self.severity().cmp(&other.severity())
    }
}

impl PartialOrd for ExitCode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<ExitCode> for i32 {
    fn from(code: ExitCode) -> i32 {
        code.code()
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // 0 to 5: always a u8.
        std::process::ExitCode::from(code as u8)
    }
}

/// A number that is not one of the exit codes.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a smart-rerun exit code (0 to 5)")]
pub struct UnknownExitCode(i32);

impl TryFrom<i32> for ExitCode {
    type Error = UnknownExitCode;
    fn try_from(code: i32) -> Result<Self, Self::Error> {
        Ok(match code {
            0 => ExitCode::Ok,
            1 => ExitCode::TestsFailed,
            2 => ExitCode::Interrupted,
            3 => ExitCode::InternalError,
            4 => ExitCode::UsageError,
            5 => ExitCode::NoTestsCollected,
            other => return Err(UnknownExitCode(other)),
        })
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_worst_exit_code() {
        use ExitCode::*;
        let mut codes = vec![
            InternalError,
            Ok,
            UsageError,
            TestsFailed,
            NoTestsCollected,
            Interrupted,
        ];
        codes.sort();
        assert_eq!(
            codes,
            [
                Ok,
                NoTestsCollected,
                TestsFailed,
                Interrupted,
                UsageError,
                InternalError
            ]
        );
    }

    #[test]
    fn serialises_as_pytest_numbers_and_refuses_others() {
        for n in 0..=5 {
            let code: ExitCode = serde_json::from_value(serde_json::json!(n)).unwrap();
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(n));
        }
        let err = serde_json::from_value::<ExitCode>(serde_json::json!(7)).unwrap_err();
        assert!(
            err.to_string().contains("7 is not a smart-rerun exit code"),
            "{err}"
        );
    }
}
