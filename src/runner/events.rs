//! The collector's JSON-lines protocol, read back. One [`Event`] per line; a torn last line (pytest died
//! mid-write) is dropped, never an error. The plugin side is `collector.py`; both carry `PROTOCOL`.

use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Version of the line protocol spoken by the embedded `collector.py`.
pub const PROTOCOL: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Hello {
        protocol: u32,
    },
    SessionStart(SessionStart),
    Collected(Collected),
    CollectError {
        nodeid: String,
        traceback: Option<String>,
    },
    Start {
        nodeid: String,
    },
    Test(TestEvent),
    Interrupted {
        #[allow(dead_code)]
        message: Option<String>,
    },
    SessionFinish(SessionFinish),
    /// Lines from a newer collector that this binary does not know; ignored.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionStart {
    pub protocol: u32,
    pub pytest_version: String,
    pub python_version: String,
    pub python_executable: Option<String>,
    pub rootdir: String,
    #[allow(dead_code)]
    pub inifile: Option<String>,
    #[serde(default)]
    pub ini: HashMap<String, Option<String>>,
    #[serde(default)]
    pub plugins: Vec<String>,
    #[serde(default)]
    pub numprocesses: u32,
}

#[derive(Debug, Deserialize)]
pub struct Collected {
    /// Absolute paths; items refer to them by index.
    pub files: Vec<String>,
    /// `[nodeid, file index, 1-based line or null]`.
    pub items: Vec<(String, usize, Option<u32>)>,
    /// Marker kwargs by item index, for the items that carry `smart_rerun` or `flaky` markers.
    #[serde(default)]
    pub markers: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct TestEvent {
    pub nodeid: String,
    pub outcome: String,
    #[serde(default)]
    pub duration: f64,
    /// Wall-clock end of the test, seconds since the epoch.
    pub stop: f64,
    pub reason: Option<String>,
    pub worker: Option<String>,
    #[serde(default)]
    pub failures: Vec<FailureEvent>,
}

#[derive(Debug, Deserialize)]
pub struct FailureEvent {
    pub phase: String,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    #[serde(default)]
    pub mro: Vec<String>,
    pub message: Option<String>,
    pub crash_path: Option<String>,
    pub crash_line: Option<u32>,
    pub test_line: Option<u32>,
    pub traceback: Option<String>,
    #[serde(default)]
    pub sections: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionFinish {
    pub exitstatus: i32,
    pub shouldstop: Option<String>,
    pub shouldfail: Option<String>,
    #[serde(default)]
    pub testsfailed: u64,
}

/// Everything one round's collector wrote.
#[derive(Debug, Default)]
pub struct RoundEvents {
    pub hello: bool,
    pub session: Option<SessionStart>,
    pub collected: Option<Collected>,
    pub collect_errors: Vec<(String, String)>,
    /// Tests that started, in order.
    pub started: Vec<String>,
    pub tests: Vec<TestEvent>,
    pub interrupted: bool,
    pub finish: Option<SessionFinish>,
    /// Lines that could not be parsed (other than a torn last line).
    pub bad_lines: usize,
}

impl RoundEvents {
    /// Reads the round's events file, and the collection that xdist's first worker wrote beside it
    /// (`<path>.gw0`): under xdist the controller never collects.
    pub fn read(path: &Path) -> std::io::Result<RoundEvents> {
        let mut round = RoundEvents::default();
        if path.exists() {
            round.read_file(path)?;
        }
        if round.collected.is_none() {
            let mut name = path.as_os_str().to_owned();
            name.push(".gw0");
            let worker = Path::new(&name);
            if worker.exists() {
                round.read_file(worker)?;
            }
        }
        Ok(round)
    }

    fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::open(path)?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            // Bytes that are not UTF-8 cannot come from the collector (it encodes with "replace"), but a
            // torn line could split a character: read raw and convert lossily.
            let mut raw = Vec::new();
            let n = reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                break;
            }
            let complete = raw.last() == Some(&b'\n');
            line.push_str(&String::from_utf8_lossy(&raw));
            match serde_json::from_str::<Event>(line.trim_end()) {
                Ok(event) => self.apply(event),
                Err(_) if !complete => break,
                Err(_) => self.bad_lines += 1,
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Hello { protocol: _ } => self.hello = true,
            Event::SessionStart(s) => self.session = Some(s),
            Event::Collected(c) => {
                // Under xdist each worker collects; the first collection is the suite's.
                if self.collected.is_none() {
                    self.collected = Some(c);
                }
            }
            Event::CollectError { nodeid, traceback } => self
                .collect_errors
                .push((nodeid, traceback.unwrap_or_default())),
            Event::Start { nodeid } => self.started.push(nodeid),
            Event::Test(t) => self.tests.push(t),
            Event::Interrupted { .. } => self.interrupted = true,
            Event::SessionFinish(f) => self.finish = Some(f),
            Event::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"event":"hello","protocol":1}}"#).unwrap();
        writeln!(f, r#"{{"event":"start","nodeid":"t.py::a"}}"#).unwrap();
        writeln!(f, r#"{{"event":"future_thing","x":1}}"#).unwrap();
        write!(f, r#"{{"event":"test","nodeid":"t.py::a","outc"#).unwrap();
        drop(f);
        let round = RoundEvents::read(&path).unwrap();
        assert!(round.hello);
        assert_eq!(round.started, vec!["t.py::a".to_owned()]);
        assert!(round.tests.is_empty());
        assert_eq!(round.bad_lines, 0);
    }

    #[test]
    fn a_missing_file_is_an_empty_round() {
        let dir = tempfile::tempdir().unwrap();
        let round = RoundEvents::read(&dir.path().join("nothing")).unwrap();
        assert!(!round.hello && round.session.is_none());
    }
}
