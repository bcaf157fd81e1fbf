//! Developer statistics for the benchmark harness (`scripts/bench`): a hidden option, not a user feature.
//!
//! With `SMART_RERUN_STATS=PATH` in its environment, `smart-rerun run` writes a small JSON file at the end
//! of the run with what the harness cannot see from outside: smart-rerun's *own* peak RSS (see
//! [`max_rss_kib`]; `wait4` on the binary would include its pytest children), how long writing the JSON
//! and JUnit reports and printing the summary took, and each round's timing. Nothing is written without
//! the variable, and a failure to write it only prints a warning.

use crate::model::{RoundKind, RunReport};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// The environment variable naming the statistics file.
pub(crate) const STATS_ENV: &str = "SMART_RERUN_STATS";

/// What `SMART_RERUN_STATS` receives. Times are in seconds.
#[derive(Debug, Serialize)]
pub(crate) struct DevStats {
    pub stats_version: u32,
    /// smart-rerun's own peak resident set size in KiB, children excluded; `null` where unsupported.
    pub max_rss_kib: Option<u64>,
    /// smart-rerun's own CPU time (user + system, all its threads, children excluded); `null` where
    /// unsupported. What following the rounds costs beside the pytest processes.
    pub own_cpu_seconds: Option<f64>,
    /// `runner::run`: every round, the waits between them and reading the events.
    pub run_seconds: f64,
    /// Printing the terminal summary.
    pub summary_seconds: f64,
    /// Writing the JSON report (`--report`); `null` without one.
    pub report_write_seconds: Option<f64>,
    /// Writing the JUnit XML files (`--junit-xml`, or pytest's own option); `null` without one.
    pub junit_write_seconds: Option<f64>,
    pub tests: usize,
    pub rounds: Vec<RoundStats>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RoundStats {
    pub number: u32,
    pub kind: RoundKind,
    pub selected: usize,
    /// Wall time of the round's pytest process, spawn to exit.
    pub seconds: f64,
}

impl DevStats {
    pub(crate) fn new(
        report: &RunReport,
        run: Duration,
        summary: Duration,
        report_write: Option<Duration>,
        junit_write: Option<Duration>,
    ) -> Self {
        DevStats {
            stats_version: 1,
            max_rss_kib: max_rss_kib(),
            own_cpu_seconds: own_cpu_seconds(),
            run_seconds: run.as_secs_f64(),
            summary_seconds: summary.as_secs_f64(),
            report_write_seconds: report_write.map(|d| d.as_secs_f64()),
            junit_write_seconds: junit_write.map(|d| d.as_secs_f64()),
            tests: report.tests.len(),
            rounds: report
                .run
                .rounds
                .iter()
                .map(|r| RoundStats {
                    number: r.number,
                    kind: r.kind,
                    selected: r.selected,
                    seconds: r.duration_seconds,
                })
                .collect(),
        }
    }

    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        body.push(b'\n');
        std::fs::write(path, body)
    }
}

/// This process's peak resident set size in KiB, its children excluded.
///
/// On Linux this is `VmHWM` from /proc/self/status, the peak of this program's own memory map.
/// `getrusage(RUSAGE_SELF).ru_maxrss` is no good there: the kernel carries the peak of the image the process
/// had before `execve` over into it, so a smart-rerun started by a 15 MiB Python (vfork/posix_spawn + exec)
/// reported at least 15 MiB. Other Unix systems fall back to ru_maxrss.
#[cfg(unix)]
pub(crate) fn max_rss_kib() -> Option<u64> {
    if cfg!(target_os = "linux") {
        if let Some(kib) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            return Some(kib);
        }
    }
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let raw = u64::try_from(usage.ru_maxrss).ok()?;
    // ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS.
    if cfg!(target_os = "macos") {
        Some(raw / 1024)
    } else {
        Some(raw)
    }
}

/// This process's CPU time so far, user + system, its children excluded.
#[cfg(unix)]
pub(crate) fn own_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

#[cfg(not(unix))]
pub fn own_cpu_seconds() -> Option<f64> {
    None
}

/// The `VmHWM:   1234 kB` line of /proc/PID/status.
#[cfg_attr(not(unix), allow(dead_code))]
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

#[cfg(not(unix))]
pub fn max_rss_kib() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn own_peak_rss_is_reported_and_grows_with_allocation() {
        let before = max_rss_kib().expect("getrusage works on unix");
        assert!(before > 0);
        // Touch 64 MiB so the peak must move.
        let block = vec![1u8; 64 << 20];
        assert_eq!(
            block
                .iter()
                .step_by(4096)
                .map(|&b| b as usize)
                .sum::<usize>(),
            64 << 8
        );
        let after = max_rss_kib().unwrap();
        // Other tests share the process, so only the block itself is a sure lower bound.
        assert!(
            after >= before && after >= 64 * 1024,
            "{before} KiB -> {after} KiB"
        );
    }

    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let status =
            "Name:\tsmart-rerun\nVmPeak:\t  20000 kB\nVmHWM:\t    7204 kB\nVmRSS:\t    7000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(7204));
        assert_eq!(vm_hwm_kib("VmRSS:\t 1 kB\n"), None);
        assert_eq!(vm_hwm_kib("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn stats_file_has_the_fields_the_harness_reads() {
        let rounds = serde_json::from_value(serde_json::json!([
            {"number": 1, "kind": "first", "started_at": "", "duration_seconds": 0.5, "selected": 3, "exit_status": 1},
            {"number": 2, "kind": "rerun", "started_at": "", "duration_seconds": 0.25, "selected": 1, "exit_status": 0}
        ]))
        .expect("rounds");
        let report = RunReport {
            schema_version: crate::model::SCHEMA_VERSION,
            tool: Default::default(),
            run: crate::model::RunInfo {
                rounds,
                ..Default::default()
            },
            summary: Default::default(),
            tests: Vec::new(),
            collection_errors: Vec::new(),
            warnings: Vec::new(),
            ci: None,
        };
        let stats = DevStats::new(
            &report,
            Duration::from_millis(800),
            Duration::from_millis(2),
            Some(Duration::from_millis(5)),
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        stats.save(&path).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["stats_version"], 1);
        assert_eq!(value["run_seconds"], 0.8);
        assert_eq!(value["report_write_seconds"], 0.005);
        assert!(value["junit_write_seconds"].is_null());
        assert_eq!(value["rounds"][1]["kind"], "rerun");
        assert_eq!(value["rounds"][1]["selected"], 1);
        assert_eq!(value["rounds"][0]["seconds"], 0.5);
        assert_eq!(value["max_rss_kib"].is_u64(), cfg!(unix));
        assert_eq!(value["own_cpu_seconds"].is_f64(), cfg!(unix));
    }
}
