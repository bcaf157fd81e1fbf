//! GitLab CI: the sticky merge request note through a local server that answers as GitLab's
//! notes, merge request and user APIs do, the job's environment made of GitLab's predefined variables,
//! the JUnit layout GitLab's test report reads, and the CI/CD component file.

use crate::common::{self, Project, RunOutput, bin, python, repo_root};
use crate::https::{self, Server, Tls};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod component;
mod note;

const TOKEN: &str = "glpat-e2e-s3cr3t-t0ken";
const ME: u64 = 99;
const MARKER: &str = "<!-- smart-rerun:sticky v1 -->";

/// One flaky test (fails on its first attempt, with text GitLab would act on), one that passes.
const SUITE: &str = r#"
def test_flaky(attempt):
    assert attempt >= 2, "reset by peer, see #1 and !2"

def test_ok():
    pass
"#;

const FAILING: &str = "def test_broken():\n    assert 1 == 2\n";

// ---------------------------------------------------------------------------------------------------
// A fake GitLab: std::net on 127.0.0.1, one connection at a time, `Connection: close`, bounded in time.

#[derive(Debug, Clone)]
struct Note {
    id: u64,
    mr: u64,
    body: String,
    author: u64,
    system: bool,
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    body: String,
}

/// A canned answer for the next requests that match `method` and a path ending in `suffix`.
struct Canned {
    method: &'static str,
    suffix: String,
    status: u16,
    body: String,
    times: u32,
}

#[derive(Default)]
struct State {
    notes: Vec<Note>,
    next_id: u64,
    /// Merge requests by commit, for `repository/commits/:sha/merge_requests`.
    commit_mrs: Vec<(String, Value)>,
    /// Merge request iids of project 42 that exist.
    mrs: Vec<u64>,
    canned: Vec<Canned>,
    requests: Vec<Request>,
    /// On the next POST, first create a note as another job of ours would have (the create race).
    rival_before_post: Option<String>,
    /// After the next PUT, overwrite the note with this (another job's stale write).
    clobber_after_put: Option<String>,
    /// Answer every request with a 302 to the same path under this origin (a moved instance, or a
    /// hostile proxy).
    redirect_to: Option<String>,
}

struct FakeGitLab {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGitLab {
    fn start() -> FakeGitLab {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            mrs: vec![7, 9],
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: never outlives a test by much, whatever happens.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &s),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        FakeGitLab {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v4", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn add_note(&self, mr: u64, body: &str, author: u64) -> u64 {
        let mut s = self.state();
        s.next_id += 1;
        let id = s.next_id;
        s.notes.push(Note {
            id,
            mr,
            body: body.to_owned(),
            author,
            system: false,
        });
        id
    }

    fn can(&self, method: &'static str, suffix: &str, status: u16, body: Value, times: u32) {
        self.state().canned.push(Canned {
            method,
            suffix: suffix.to_owned(),
            status,
            body: body.to_string(),
            times,
        });
    }

    /// Notes of ours (marker, written by the token's user) on merge request `mr`.
    fn our_notes(&self, mr: u64) -> Vec<Note> {
        self.state()
            .notes
            .iter()
            .filter(|n| n.mr == mr && n.author == ME && n.body.contains(MARKER))
            .cloned()
            .collect()
    }

    fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let (mut token, mut length) = (None, 0usize);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "private-token" => token = Some(value.trim().to_owned()),
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length.min(4 << 20)];
    let _ = reader.read_exact(&mut body);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let request = Request {
        method,
        path: path.strip_prefix("/api/v4").unwrap_or(path).to_owned(),
        query: query.to_owned(),
        token,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, headers, body) = {
        let mut s = state.lock().unwrap();
        s.requests.push(request.clone());
        answer(&mut s, &request)
    };
    let reason = common::reason_phrase(status);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
}

fn not_found() -> (u16, Vec<(String, String)>, String) {
    (404, vec![], json!({"message": "404 Not found"}).to_string())
}

fn note_json(n: &Note) -> Value {
    json!({"id": n.id, "body": n.body, "system": n.system, "author": {"id": n.author, "username": format!("user{}", n.author)}, "noteable_type": "MergeRequest"})
}

/// Answers as GitLab's API v4 does, for the few routes smart-rerun uses.
fn answer(s: &mut State, r: &Request) -> (u16, Vec<(String, String)>, String) {
    if let Some(origin) = &s.redirect_to {
        let query = if r.query.is_empty() {
            String::new()
        } else {
            format!("?{}", r.query)
        };
        let location = format!("{origin}/api/v4{}{query}", r.path);
        return (302, vec![("Location".into(), location)], String::new());
    }
    if let Some(c) = s
        .canned
        .iter_mut()
        .find(|c| c.times > 0 && c.method == r.method && r.path.ends_with(&c.suffix))
    {
        c.times -= 1;
        return (c.status, vec![], c.body.clone());
    }
    if r.token.as_deref() != Some(TOKEN) {
        return (
            401,
            vec![],
            json!({"message": "401 Unauthorized"}).to_string(),
        );
    }
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let query = |name: &str| {
        r.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<usize>().ok())
    };
    match (r.method.as_str(), segs.as_slice()) {
        ("GET", ["user"]) => (
            200,
            vec![],
            json!({"id": ME, "username": "project_42_bot_1"}).to_string(),
        ),
        (
            "GET",
            [
                "projects",
                "42",
                "repository",
                "commits",
                sha,
                "merge_requests",
            ],
        ) => {
            let list: Vec<Value> = s
                .commit_mrs
                .iter()
                .filter(|(c, _)| c == sha)
                .map(|(_, mr)| mr.clone())
                .collect();
            (200, vec![], Value::Array(list).to_string())
        }
        (_, ["projects", "42", "merge_requests", iid, "notes", rest @ ..]) => {
            let Ok(mr) = iid.parse::<u64>() else {
                return not_found();
            };
            if !s.mrs.contains(&mr) {
                return not_found();
            }
            match (r.method.as_str(), rest) {
                ("GET", []) => {
                    let per_page = query("per_page").unwrap_or(20).clamp(1, 100);
                    let page = query("page").unwrap_or(1).max(1);
                    let all: Vec<&Note> = s.notes.iter().filter(|n| n.mr == mr).collect();
                    let pages = all.len().div_ceil(per_page).max(1);
                    let items: Vec<Value> = all
                        .iter()
                        .skip((page - 1) * per_page)
                        .take(per_page)
                        .map(|n| note_json(n))
                        .collect();
                    let next = if page < pages {
                        (page + 1).to_string()
                    } else {
                        String::new()
                    };
                    let headers = vec![
                        ("X-Page".into(), page.to_string()),
                        ("X-Per-Page".into(), per_page.to_string()),
                        ("X-Next-Page".into(), next),
                        ("X-Total".into(), all.len().to_string()),
                        ("X-Total-Pages".into(), pages.to_string()),
                    ];
                    (200, headers, Value::Array(items).to_string())
                }
                ("POST", []) => {
                    if let Some(rival) = s.rival_before_post.take() {
                        s.next_id += 1;
                        let id = s.next_id;
                        s.notes.push(Note {
                            id,
                            mr,
                            body: rival,
                            author: ME,
                            system: false,
                        });
                    }
                    let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
                    s.next_id += 1;
                    let note = Note {
                        id: s.next_id,
                        mr,
                        body: body["body"].as_str().unwrap_or("").to_owned(),
                        author: ME,
                        system: false,
                    };
                    let out = note_json(&note).to_string();
                    s.notes.push(note);
                    (201, vec![], out)
                }
                ("PUT", [id]) => {
                    let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
                    let clobber = s.clobber_after_put.take();
                    let Some(note) = s
                        .notes
                        .iter_mut()
                        .find(|n| n.id.to_string() == *id && n.mr == mr)
                    else {
                        return not_found();
                    };
                    if note.author != ME {
                        return (403, vec![], json!({"message": "403 Forbidden"}).to_string());
                    }
                    note.body = body["body"].as_str().unwrap_or("").to_owned();
                    let out = note_json(note).to_string();
                    if let Some(stale) = clobber {
                        note.body = stale;
                    }
                    (200, vec![], out)
                }
                ("DELETE", [id]) => {
                    let before = s.notes.len();
                    s.notes
                        .retain(|n| !(n.id.to_string() == *id && n.author == ME));
                    if s.notes.len() == before {
                        return not_found();
                    }
                    (204, vec![], String::new())
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

// ---------------------------------------------------------------------------------------------------
// The job: GitLab's predefined variables, pointing at the fake server.

fn gitlab_env(cmd: &mut Command, server: &FakeGitLab, p: &Project, vars: &[(&str, &str)]) {
    for name in [
        "GITLAB_TOKEN",
        "SMART_RERUN_GITLAB_TOKEN",
        "CI_JOB_TOKEN",
        "CI_MERGE_REQUEST_IID",
        "CI_MERGE_REQUEST_PROJECT_ID",
        "CI_NODE_INDEX",
        "CI_NODE_TOTAL",
        "SMART_RERUN_GITLAB_NOTE",
        "SMART_RERUN_JUNIT_COMPAT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("GITLAB_CI", "true")
        .env("CI", "true")
        .env("CI_API_V4_URL", server.api_url())
        .env("CI_SERVER_URL", format!("http://127.0.0.1:{}", server.port))
        .env("CI_PROJECT_ID", "42")
        .env("CI_PROJECT_DIR", p.path())
        .env("CI_PROJECT_URL", "https://gitlab.example.com/g/p")
        .env("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("CI_PIPELINE_ID", "500")
        .env("CI_PIPELINE_SOURCE", "merge_request_event")
        .env("CI_JOB_NAME", "pytest")
        .env("CI_JOB_URL", "https://gitlab.example.com/g/p/-/jobs/77")
        .env("CI_MERGE_REQUEST_IID", "7")
        .env("SMART_RERUN_GITLAB_TOKEN", TOKEN);
    for (k, v) in vars {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
}

/// `smart-rerun run ARGS -- python -m pytest` as a GitLab CI job with `vars` on top of the defaults
/// (an empty value unsets a variable).
fn run_job(p: &Project, server: &FakeGitLab, args: &[&str], vars: &[(&str, &str)]) -> RunOutput {
    let mut cmd = p.command(args);
    gitlab_env(&mut cmd, server, p, vars);
    cmd.arg("--").arg(python()).args(["-m", "pytest"]);
    let out = p.output(cmd);
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "the token was printed: {}",
        out.dump()
    );
    out
}

/// smart-rerun's lines about the note, from stdout (posted, skipped) and stderr (warnings).
fn note_lines(out: &RunOutput) -> Vec<&str> {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| {
            l.starts_with("smart-rerun: ")
                && (l.contains("merge request note") || l.contains("CI_JOB_TOKEN"))
        })
        .collect()
}

fn flaky_project() -> Project {
    let p = Project::new();
    p.file("tests/test_pay.py", SUITE);
    p
}
