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
    /// pytest has printed its last line and is exiting, with this status (null: the session never
    /// finished).
    Done {
        exitstatus: Option<i32>,
    },
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
    pub inifile: Option<String>,
    #[serde(default)]
    pub invocation_dir: Option<String>,
    #[serde(default)]
    pub ini: std::collections::BTreeMap<String, Option<String>>,
    /// The ini keys set with pytest's `-o KEY=VALUE` rather than in the ini file.
    #[serde(default)]
    pub ini_overrides: Vec<String>,
    #[serde(default)]
    pub plugins: Vec<String>,
    #[serde(default)]
    pub numprocesses: u32,
    /// In-process rerun plugins that are loaded (pytest-rerunfailures, flaky, pytest-retry), with their
    /// run-wide switches.
    #[serde(default)]
    pub rerun_plugins: std::collections::BTreeMap<String, serde_json::Value>,
    /// The user's `--junitxml` path (relative to the invocation dir), taken over by smart-rerun.
    #[serde(default)]
    pub junitxml: Option<String>,
    #[serde(default)]
    pub junit_suite_name: Option<String>,
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
    /// The exit status pytest's main() returned, once it has printed everything; the interpreter may still
    /// be shutting down.
    pub done: Option<i32>,
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
            let worker = worker_path(path);
            if worker.exists() {
                round.read_file(&worker)?;
            }
        }
        Ok(round)
    }

    fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        let mut tail = Tail::new(path.to_path_buf());
        tail.poll(self)?;
        Ok(())
    }

    /// Parses one complete line.
    fn feed(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(event) => self.apply(event),
            Err(_) => self.bad_lines += 1,
        }
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
            Event::Done { exitstatus } => self.done = exitstatus,
            Event::Unknown => {}
        }
    }
}

/// Where xdist's first worker writes its collection, beside the controller's events file.
pub fn worker_path(events: &Path) -> std::path::PathBuf {
    let mut name = events.as_os_str().to_owned();
    name.push(".gw0");
    name.into()
}

/// Follows a growing events file while pytest runs: each [`Tail::poll`] parses the lines completed since
/// the last. A line still being written stays pending; if pytest dies mid-line, it is never parsed.
#[derive(Debug)]
pub struct Tail {
    path: std::path::PathBuf,
    offset: u64,
    pending: Vec<u8>,
}

impl Tail {
    pub fn new(path: std::path::PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// Reads what was appended since the last poll into `round`. Returns whether anything new was parsed.
    pub fn poll(&mut self, round: &mut RoundEvents) -> std::io::Result<bool> {
        use std::io::{Seek, SeekFrom};
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut any = false;
        loop {
            let n = reader.read_until(b'\n', &mut self.pending)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            if self.pending.last() != Some(&b'\n') {
                break;
            }
            round.feed(&self.pending);
            self.pending.clear();
            any = true;
        }
        Ok(any)
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

    #[test]
    fn a_tail_parses_lines_as_they_are_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut tail = Tail::new(path.clone());
        let mut round = RoundEvents::default();
        assert!(!tail.poll(&mut round).unwrap());
        write!(f, r#"{{"event":"hello","protocol":1}}"#).unwrap();
        assert!(
            !tail.poll(&mut round).unwrap(),
            "half a line is not parsed yet"
        );
        writeln!(f).unwrap();
        write!(f, r#"{{"event":"start","#).unwrap();
        assert!(tail.poll(&mut round).unwrap());
        assert!(round.hello && round.started.is_empty());
        writeln!(f, r#""nodeid":"t.py::a"}}"#).unwrap();
        assert!(tail.poll(&mut round).unwrap());
        assert_eq!(round.started, vec!["t.py::a".to_owned()]);
    }
}
