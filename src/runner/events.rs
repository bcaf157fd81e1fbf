//! The collector's JSON-lines protocol, read back. One [`Event`] per line; a torn last line (pytest died
//! mid-write) is dropped, never an error. The plugin side is `collector.py`; both carry `PROTOCOL`.
//!
//! The collector is embedded in this binary, so a complete line that is not an event this binary knows
//! (an unknown kind, outcome or phase, a missing field) is a bug, reported with its line number
//! ([`ReadError::Event`]), never read as some default.
//!
//! Events are handed over one by one as they are read ([`Tail::poll`]), not gathered per round: the runner
//! folds each into the run's state and drops it, so a round of 100,000 tests is never held in memory.

use crate::model::Phase;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Version of the line protocol spoken by the embedded `collector.py`.
pub(crate) const PROTOCOL: u32 = 1;

#[derive(Debug)]
pub(crate) enum Event {
    Hello,
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
    Interrupted,
    SessionFinish(SessionFinish),
    /// pytest has printed its last line and is exiting, with this status (null: the session never
    /// finished).
    Done {
        exitstatus: Option<i32>,
    },
    /// The first round's failures were drawn briefly (`render.py`): which of these tests will not be
    /// rerun? The collector (or xdist worker `worker`) waits for the answer file.
    RenderQuery {
        worker: Option<String>,
        nodeids: Vec<String>,
    },
    /// A failure that stays failed, drawn in full: it replaces the brief traceback of the test's
    /// attempt in this round.
    Rendered {
        nodeid: String,
        phase: Phase,
        traceback: Option<String>,
    },
}

/// The kind of an event: its `event` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventKind {
    Hello,
    SessionStart,
    Collected,
    CollectError,
    Start,
    Test,
    Interrupted,
    SessionFinish,
    Done,
    RenderQuery,
    Rendered,
}

/// A complete line that is not an event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
    #[error("no event kind")]
    Tag(#[source] serde_json::Error),
    #[error("malformed {kind:?} event")]
    Payload {
        kind: EventKind,
        #[source]
        source: serde_json::Error,
    },
}

/// Why an events file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("failed to read the file")]
    Io(#[from] std::io::Error),
    #[error("line {line} is not a collector event")]
    Event {
        /// 1-based.
        line: u64,
        #[source]
        source: EventError,
    },
}

/// A test's outcome as the collector reports it (pytest's terminal summary's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    Passed,
    Failed,
    /// Setup or teardown failed.
    Error,
    Skipped,
    Xfailed,
    Xpassed,
}

impl From<TestOutcome> for crate::model::Outcome {
    fn from(outcome: TestOutcome) -> Self {
        use crate::model::Outcome;
        match outcome {
            TestOutcome::Passed => Outcome::Passed,
            TestOutcome::Failed => Outcome::Failed,
            TestOutcome::Error => Outcome::Error,
            TestOutcome::Skipped => Outcome::Skipped,
            TestOutcome::Xfailed => Outcome::Xfailed,
            TestOutcome::Xpassed => Outcome::Xpassed,
        }
    }
}

impl Event {
    /// Parses one complete line.
    ///
    /// The collector writes the `event` tag last, so a serde internally tagged enum would first buffer
    /// every line into an untyped tree to find it: for the collection of 100,000 tests, tens of MiB. The
    /// tag is read instead in a first pass that skips everything else, then the line straight into its type.
    pub(crate) fn parse(line: &str) -> Result<Event, EventError> {
        #[derive(Deserialize)]
        struct Tag {
            event: EventKind,
        }
        #[derive(Deserialize)]
        struct Hello {
            #[allow(dead_code)]
            protocol: u32,
        }
        #[derive(Deserialize)]
        struct CollectError {
            nodeid: String,
            traceback: Option<String>,
        }
        #[derive(Deserialize)]
        struct Start {
            nodeid: String,
        }
        #[derive(Deserialize)]
        struct Done {
            exitstatus: Option<i32>,
        }
        #[derive(Deserialize)]
        struct RenderQuery {
            worker: Option<String>,
            nodeids: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Rendered {
            nodeid: String,
            phase: Phase,
            traceback: Option<String>,
        }
        #[derive(Deserialize)]
        struct Interrupted {
            #[allow(dead_code)]
            message: Option<String>,
        }
        let kind = serde_json::from_str::<Tag>(line)
            .map_err(EventError::Tag)?
            .event;
        let payload = |line| Payload { kind, line };
        Ok(match kind {
            EventKind::Hello => payload(line).parse::<Hello>().map(|_| Event::Hello)?,
            EventKind::SessionStart => Event::SessionStart(payload(line).parse()?),
            EventKind::Collected => Event::Collected(payload(line).parse()?),
            EventKind::CollectError => {
                let CollectError { nodeid, traceback } = payload(line).parse()?;
                Event::CollectError { nodeid, traceback }
            }
            EventKind::Start => Event::Start {
                nodeid: payload(line).parse::<Start>()?.nodeid,
            },
            EventKind::Test => Event::Test(payload(line).parse()?),
            EventKind::Interrupted => payload(line)
                .parse::<Interrupted>()
                .map(|_| Event::Interrupted)?,
            EventKind::SessionFinish => Event::SessionFinish(payload(line).parse()?),
            EventKind::Done => Event::Done {
                exitstatus: payload(line).parse::<Done>()?.exitstatus,
            },
            EventKind::RenderQuery => {
                let RenderQuery { worker, nodeids } = payload(line).parse()?;
                Event::RenderQuery { worker, nodeids }
            }
            EventKind::Rendered => {
                let Rendered {
                    nodeid,
                    phase,
                    traceback,
                } = payload(line).parse()?;
                Event::Rendered {
                    nodeid,
                    phase,
                    traceback,
                }
            }
        })
    }
}

/// A line whose kind is known, to be read into that kind's type.
struct Payload<'a> {
    kind: EventKind,
    line: &'a str,
}

impl<'a> Payload<'a> {
    fn parse<T: Deserialize<'a>>(self) -> Result<T, EventError> {
        serde_json::from_str(self.line).map_err(|source| EventError::Payload {
            kind: self.kind,
            source,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SessionStart {
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
pub(crate) struct Collected {
    /// Absolute paths; items refer to them by index.
    pub files: Vec<String>,
    /// `[nodeid, file index, 1-based line or null]`.
    pub items: Vec<(String, usize, Option<u32>)>,
    /// Marker kwargs by item index, for the items that carry `smart_rerun` or `flaky` markers.
    #[serde(default)]
    pub markers: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TestEvent {
    pub nodeid: String,
    pub outcome: TestOutcome,
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
pub(crate) struct FailureEvent {
    pub phase: Phase,
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
pub(crate) struct SessionFinish {
    pub exitstatus: i32,
    pub shouldstop: Option<String>,
    pub shouldfail: Option<String>,
    #[serde(default)]
    pub testsfailed: u64,
}

/// Reads a whole events file, for a process that has ended; a missing file has no events.
pub(crate) fn read(path: &Path, on_event: impl FnMut(Event)) -> Result<(), ReadError> {
    Tail::new(path.to_path_buf()).poll(on_event).map(|_| ())
}

/// Where xdist's first worker writes its collection, beside the controller's events file.
pub(crate) fn worker_path(events: &Path) -> std::path::PathBuf {
    let mut name = events.as_os_str().to_owned();
    name.push(".gw0");
    name.into()
}

/// Follows a growing events file while pytest runs: each [`Tail::poll`] parses the lines completed since
/// the last. A line still being written stays pending; if pytest dies mid-line, it is never parsed.
#[derive(Debug)]
pub(crate) struct Tail {
    path: std::path::PathBuf,
    offset: u64,
    /// Complete lines read so far.
    lines: u64,
    pending: Vec<u8>,
}

impl Tail {
    pub(crate) fn new(path: std::path::PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            lines: 0,
            pending: Vec::new(),
        }
    }

    /// Hands each event appended since the last poll to `on_event`; blank lines are skipped. Returns
    /// whether any new line was complete.
    pub(crate) fn poll(&mut self, mut on_event: impl FnMut(Event)) -> Result<bool, ReadError> {
        use std::io::{Seek, SeekFrom};
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
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
            self.lines += 1;
            let parsed = parse_line(&self.pending).map_err(|source| ReadError::Event {
                line: self.lines,
                source,
            })?;
            if let Some(event) = parsed {
                on_event(event);
            }
            if self.pending.capacity() > PENDING_KEPT {
                // The collection of a large suite is one line of megabytes: let its buffer go.
                self.pending = Vec::new();
            } else {
                self.pending.clear();
            }
            any = true;
        }
        Ok(any)
    }
}

/// One complete line's event; `None` for a blank line.
fn parse_line(line: &[u8]) -> Result<Option<Event>, EventError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.is_empty() {
        return Ok(None);
    }
    Event::parse(text).map(Some)
}

/// The largest line buffer a [`Tail`] keeps between lines.
const PENDING_KEPT: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn all(path: &Path) -> Vec<Event> {
        let mut events = Vec::new();
        read(path, |e| events.push(e)).unwrap();
        events
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"event":"hello","protocol":1}}"#).unwrap();
        writeln!(f, r#"{{"nodeid":"t.py::a","time":1.5,"event":"start"}}"#).unwrap();
        writeln!(f).unwrap();
        write!(f, r#"{{"event":"test","nodeid":"t.py::a","outc"#).unwrap();
        drop(f);
        let events = all(&path);
        assert!(
            matches!(
                &events[..],
                [Event::Hello, Event::Start { nodeid }] if nodeid == "t.py::a"
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_complete_line_that_is_not_an_event_is_an_error_naming_the_line_and_the_value() {
        let test = |outcome: &str, phase: &str| {
            format!(
                r#"{{"event":"test","nodeid":"t.py::a","outcome":"{outcome}","stop":2,"failures":[{{"phase":"{phase}"}}]}}"#
            )
        };
        let cases = [
            (
                r#"{"event":"future_thing","x":1}"#.to_owned(),
                "future_thing",
            ),
            (test("exploded", "call"), "exploded"),
            (test("failed", "lunch"), "lunch"),
            (r#"{"event":"start"}"#.to_owned(), "nodeid"),
            (r#"{"nodeid":"t.py::a"}"#.to_owned(), "event"),
            ("not json at all".to_owned(), "expected"),
        ];
        for (line, named) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.jsonl");
            std::fs::write(
                &path,
                format!("{{\"event\":\"hello\",\"protocol\":1}}\n\n{line}\n"),
            )
            .unwrap();
            let err = read(&path, |_| {}).expect_err(&line);
            let ReadError::Event { line: at, source } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(*at, 3, "{line}");
            let chain = format!(
                "{err}: {source}: {}",
                std::error::Error::source(source).unwrap()
            );
            assert!(
                chain.starts_with("line 3 is not a collector event"),
                "{chain}"
            );
            assert!(chain.contains(named), "{line}: {chain}");
        }
    }

    #[test]
    fn the_render_events_are_typed() {
        let query = r#"{"worker":"gw1","nodeids":["t.py::a","t.py::b"],"event":"render_query"}"#;
        let Ok(Event::RenderQuery { worker, nodeids }) = Event::parse(query) else {
            panic!("not a render query");
        };
        assert_eq!(worker.as_deref(), Some("gw1"));
        assert_eq!(nodeids, ["t.py::a", "t.py::b"]);
        let rendered =
            r#"{"nodeid":"t.py::a","phase":"teardown","traceback":"full","event":"rendered"}"#;
        let Ok(Event::Rendered {
            nodeid,
            phase,
            traceback,
        }) = Event::parse(rendered)
        else {
            panic!("not a rendered failure");
        };
        assert_eq!(
            (nodeid.as_str(), phase, traceback.as_deref()),
            ("t.py::a", Phase::Teardown, Some("full"))
        );
        // The phase is one of the report's phases, never a free string.
        assert!(
            Event::parse(
                r#"{"nodeid":"t.py::a","phase":"lunch","traceback":null,"event":"rendered"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_missing_file_has_no_events() {
        let dir = tempfile::tempdir().unwrap();
        assert!(all(&dir.path().join("nothing")).is_empty());
    }

    #[test]
    fn the_tag_may_come_anywhere_and_the_payload_is_typed() {
        let line =
            r#"{"nodeid":"t.py::a","outcome":"passed","duration":0.5,"stop":2,"event":"test"}"#;
        let Ok(Event::Test(t)) = Event::parse(line) else {
            panic!("not a test event");
        };
        assert_eq!(
            (t.nodeid.as_str(), t.outcome),
            ("t.py::a", TestOutcome::Passed)
        );
        assert_eq!((t.duration, t.stop), (0.5, 2.0));
        let line =
            r#"{"event":"collected","files":["/r/t.py"],"items":[["t.py::a",0,3]],"markers":{}}"#;
        let Ok(Event::Collected(c)) = Event::parse(line) else {
            panic!("not a collection");
        };
        assert_eq!(c.items, vec![("t.py::a".to_owned(), 0, Some(3))]);
        assert!(
            Event::parse(r#"{"event":"hello"}"#).is_err(),
            "hello carries its protocol"
        );
        assert!(matches!(
            Event::parse(r#"{"event":"interrupted","message":null}"#),
            Ok(Event::Interrupted)
        ));
    }

    #[test]
    fn a_tail_parses_lines_as_they_are_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut tail = Tail::new(path.clone());
        let mut events = Vec::new();
        assert!(!tail.poll(|e| events.push(e)).unwrap());
        write!(f, r#"{{"event":"hello","protocol":1}}"#).unwrap();
        assert!(
            !tail.poll(|e| events.push(e)).unwrap(),
            "half a line is not parsed yet"
        );
        writeln!(f).unwrap();
        write!(f, r#"{{"event":"start","#).unwrap();
        assert!(tail.poll(|e| events.push(e)).unwrap());
        assert!(matches!(&events[..], [Event::Hello]));
        writeln!(f, r#""nodeid":"t.py::a"}}"#).unwrap();
        assert!(tail.poll(|e| events.push(e)).unwrap());
        assert!(matches!(&events[1..], [Event::Start { nodeid }] if nodeid == "t.py::a"));
    }

    #[test]
    fn a_long_line_does_not_keep_its_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let items: Vec<_> = (0..20_000)
            .map(|i| serde_json::json!([format!("t.py::test_{i}"), 0, i]))
            .collect();
        let line = serde_json::json!({"event": "collected", "files": ["/r/t.py"], "items": items});
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let mut tail = Tail::new(path);
        let mut items = 0;
        tail.poll(|e| {
            if let Event::Collected(c) = e {
                items = c.items.len();
            }
        })
        .unwrap();
        assert_eq!(items, 20_000);
        assert!(tail.pending.capacity() <= PENDING_KEPT);
    }
}
