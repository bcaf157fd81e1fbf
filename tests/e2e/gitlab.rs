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
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        302 => "Found",
        _ => "Whatever",
    };
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

// ---------------------------------------------------------------------------------------------------

#[test]
fn merge_request_pipeline_updates_the_marked_note_found_on_a_later_page() {
    let server = FakeGitLab::start();
    // 250 notes: a decoy with the marker by someone else on page 1, ours on page 3.
    server.add_note(7, &format!("{MARKER}\nforged by a reviewer"), 5);
    for i in 0..204 {
        server.add_note(7, &format!("review comment {i}"), 1 + i % 3);
    }
    let other_section = "<!-- smart-rerun:section key=\"pytest 2/2\" -->\n<!-- smart-rerun:pipeline 500 -->\n## the other job\n<!-- smart-rerun:end-section -->";
    let ours = server.add_note(7, &format!("{MARKER}\n{other_section}\n"), ME);
    for i in 0..45 {
        server.add_note(7, &format!("later comment {i}"), 2);
    }
    let p = flaky_project();
    // The tested code must not see the token smart-rerun posts with.
    p.file(
        "tests/test_env.py",
        "import os, pathlib\n\ndef test_env():\n    pathlib.Path('seen.txt').write_text(repr(os.environ.get('SMART_RERUN_GITLAB_TOKEN')))\n",
    );
    let out = run_job(
        &p,
        &server,
        &[],
        &[
            ("CI_JOB_NAME", "pytest 1/2"),
            ("CI_NODE_INDEX", "1"),
            ("CI_NODE_TOTAL", "2"),
        ],
    );
    out.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(p.path().join("seen.txt")).unwrap(),
        "None",
        "pytest inherited SMART_RERUN_GITLAB_TOKEN"
    );
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.token.as_deref() == Some(TOKEN)),
        "every call carries PRIVATE-TOKEN"
    );
    let pages: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/notes"))
        .map(|r| r.query.as_str())
        .collect();
    assert!(
        pages.iter().any(|q| q.contains("page=3"))
            && pages.iter().all(|q| q.contains("per_page=100")),
        "{pages:?}"
    );
    let writes = server.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PUT");
    assert_eq!(
        writes[0].path,
        format!("/projects/42/merge_requests/7/notes/{ours}")
    );
    let notes = server.our_notes(7);
    assert_eq!(notes.len(), 1);
    let body = &notes[0].body;
    assert!(
        body.contains("## the other job"),
        "the other job's section stays: {body}"
    );
    assert!(body.contains("key=\"pytest 1/2\""), "{body}");
    assert!(body.contains("test_flaky"), "{body}");
    assert!(
        body.contains("[CI run](https://gitlab.example.com/g/p/-/jobs/77)"),
        "{body}"
    );
    assert!(
        body.contains("https://gitlab.example.com/g/p/-/blob/0123456789abcdef0123456789abcdef01234567/tests/test_pay.py#L"),
        "links point at the file at the commit: {body}"
    );
    // Text from the test: no issue or merge request reference, no quick action.
    assert!(!body.contains("#1 ") && !body.contains("!2"), "{body}");
    assert!(
        body.lines().all(|l| !l.trim_start().starts_with('/')),
        "{body}"
    );
    let lines = note_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.dump());
    assert!(
        lines[0].contains("updated the merge request note on !7"),
        "{}",
        out.dump()
    );
    // The decoy by another author was left alone.
    assert!(
        server
            .state()
            .notes
            .iter()
            .any(|n| n.author == 5 && n.body.ends_with("forged by a reviewer"))
    );
}

#[test]
fn branch_pipeline_finds_the_merge_request_and_parallel_jobs_share_one_note() {
    let server = FakeGitLab::start();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    server.state().commit_mrs = vec![
        (
            sha.into(),
            json!({"iid": 3, "project_id": 42, "state": "merged"}),
        ),
        (
            sha.into(),
            json!({"iid": 9, "project_id": 42, "state": "opened"}),
        ),
    ];
    let p = flaky_project();
    let branch = [
        ("CI_MERGE_REQUEST_IID", ""),
        ("CI_PIPELINE_SOURCE", "push"),
        ("CI_NODE_TOTAL", "2"),
    ];
    let first = run_job(
        &p,
        &server,
        &[],
        &[&branch[..], &[("CI_NODE_INDEX", "1")]].concat(),
    );
    first.assert_code(0);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == format!("/projects/42/repository/commits/{sha}/merge_requests")),
        "the merge request is looked up from the commit"
    );
    assert!(
        note_lines(&first)[0].contains("posted the merge request note on !9"),
        "{}",
        first.dump()
    );
    std::fs::write(p.path().join("tests/test_more.py"), FAILING).unwrap();
    let second = run_job(
        &p,
        &server,
        &[],
        &[&branch[..], &[("CI_NODE_INDEX", "2")]].concat(),
    );
    second.assert_code(1);
    let notes = server.our_notes(9);
    assert_eq!(notes.len(), 1, "one note for both jobs: {notes:?}");
    let body = &notes[0].body;
    assert!(
        body.contains("key=\"pytest 1/2\"") && body.contains("key=\"pytest 2/2\""),
        "{body}"
    );
    assert!(body.contains("test_broken"), "{body}");
    let methods: Vec<String> = server.writes().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "PUT"]);
}

#[test]
fn refusals_are_one_warning_line_and_the_exit_code_stays() {
    // (what GitLab answers, the suite, the exit code it must keep, what the line must say)
    let cases: &[(&str, &str, i32, &[&str])] = &[
        (
            "401",
            FAILING,
            1,
            &["401", "401 Unauthorized", "expired, revoked or mistyped"],
        ),
        ("403", SUITE, 0, &["403", "403 Forbidden", "api scope"]),
        ("404", SUITE, 0, &["404", "404 Not found", "project 42"]),
    ];
    for (status, suite, code, says) in cases {
        let server = FakeGitLab::start();
        let p = Project::new();
        p.file("tests/test_a.py", suite);
        let vars: Vec<(&str, &str)> = match *status {
            "401" => vec![("SMART_RERUN_GITLAB_TOKEN", "glpat-revoked")],
            "404" => vec![("CI_MERGE_REQUEST_IID", "8")],
            _ => vec![],
        };
        if *status == "403" {
            server.can(
                "POST",
                "/notes",
                403,
                json!({"message": "403 Forbidden"}),
                1,
            );
        }
        let out = run_job(&p, &server, &[], &vars);
        out.assert_code(*code);
        let lines = note_lines(&out);
        assert_eq!(lines.len(), 1, "one line: {}", out.dump());
        assert!(
            lines[0].starts_with("smart-rerun: warning: merge request note not posted"),
            "{}",
            lines[0]
        );
        for s in *says {
            assert!(lines[0].contains(s), "{status}: {:?} lacks {s:?}", lines[0]);
        }
        assert!(!out.stderr.contains("glpat-revoked"), "{}", out.dump());
        assert!(server.our_notes(7).is_empty());
    }
}

#[test]
fn server_errors_and_rate_limits_are_retried_then_the_note_is_posted() {
    let server = FakeGitLab::start();
    server.can(
        "GET",
        "/user",
        429,
        json!({"message": "429 Too Many Requests"}),
        1,
    );
    server.can(
        "GET",
        "/notes",
        500,
        json!({"message": "500 Internal Server Error"}),
        1,
    );
    server.can(
        "POST",
        "/notes",
        502,
        json!({"message": "502 Bad Gateway"}),
        1,
    );
    let p = flaky_project();
    let started = Instant::now();
    let out = run_job(&p, &server, &[], &[]);
    out.assert_code(0);
    assert!(
        note_lines(&out)[0].contains("posted the merge request note on !7"),
        "{}",
        out.dump()
    );
    assert_eq!(server.our_notes(7).len(), 1);
    let posts = server
        .writes()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2, "the 502 was retried once");
    let users = server
        .requests()
        .iter()
        .filter(|r| r.path == "/user")
        .count();
    assert_eq!(users, 2, "the 429 was retried once");
    assert!(started.elapsed() < Duration::from_secs(60));

    // 5xx for good: one warning after the retries, exit code unchanged.
    let server = FakeGitLab::start();
    server.can(
        "GET",
        "/notes",
        503,
        json!({"message": "503 Service Unavailable"}),
        100,
    );
    let out = run_job(&flaky_project(), &server, &[], &[]);
    out.assert_code(0);
    let lines = note_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("503") && lines[0].contains("after retries"),
        "{}",
        out.dump()
    );
    let tries = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/notes"))
        .count();
    assert_eq!(tries, 4, "one call and three retries");
    assert!(server.writes().is_empty());
}

#[test]
fn jobs_racing_on_the_note_end_with_one_note_holding_both_sections() {
    // Another job of the same pipeline created the note between our read and our POST.
    let server = FakeGitLab::start();
    server.state().rival_before_post = Some(format!(
        "{MARKER}\n<!-- smart-rerun:section key=\"rival\" -->\n<!-- smart-rerun:pipeline 500 -->\nrival section\n<!-- smart-rerun:end-section -->\n"
    ));
    let out = run_job(&flaky_project(), &server, &[], &[]);
    out.assert_code(0);
    let notes = server.our_notes(7);
    assert_eq!(
        notes.len(),
        1,
        "ours was merged into the older one: {notes:?}"
    );
    assert!(
        notes[0].body.contains("rival section") && notes[0].body.contains("key=\"pytest\""),
        "{}",
        notes[0].body
    );
    let methods: Vec<String> = server.writes().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "DELETE", "PUT"]);

    // Another job overwrote the note with a copy it read before our write.
    let server = FakeGitLab::start();
    let id = server.add_note(7, &format!("{MARKER}\n"), ME);
    server.state().clobber_after_put = Some(format!("{MARKER}\n"));
    let out = run_job(&flaky_project(), &server, &[], &[]);
    out.assert_code(0);
    let note = server.our_notes(7).remove(0);
    assert_eq!(note.id, id);
    assert!(note.body.contains("key=\"pytest\""), "{}", note.body);
    assert_eq!(server.writes().len(), 2, "written again after the check");
}

#[test]
fn a_newer_pipeline_replaces_older_sections_and_an_older_one_stays_out() {
    let server = FakeGitLab::start();
    let old = "<!-- smart-rerun:section key=\"gone job\" -->\n<!-- smart-rerun:pipeline 400 -->\nold commit\n<!-- smart-rerun:end-section -->";
    server.add_note(7, &format!("{MARKER}\n{old}\n"), ME);
    run_job(&flaky_project(), &server, &[], &[]).assert_code(0);
    let body = server.our_notes(7)[0].body.clone();
    assert!(
        !body.contains("old commit") && body.contains("pipeline 500"),
        "{body}"
    );

    let out = run_job(&flaky_project(), &server, &[], &[("CI_PIPELINE_ID", "450")]);
    out.assert_code(0);
    assert!(
        note_lines(&out)[0].contains("already shows pipeline 500"),
        "{}",
        out.dump()
    );
    assert_eq!(server.our_notes(7)[0].body, body, "left as it is");
}

#[test]
fn the_job_token_alone_is_one_line_that_says_how_to_fix_it() {
    let server = FakeGitLab::start();
    let out = run_job(
        &flaky_project(),
        &server,
        &[],
        &[
            ("SMART_RERUN_GITLAB_TOKEN", ""),
            ("CI_JOB_TOKEN", "job-token-value"),
        ],
    );
    out.assert_code(0);
    let lines = note_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.dump());
    for s in [
        "CI_JOB_TOKEN cannot write notes",
        "project access token with the api scope",
        "masked CI/CD variable SMART_RERUN_GITLAB_TOKEN",
    ] {
        assert!(lines[0].contains(s), "{:?} lacks {s:?}", lines[0]);
    }
    assert!(!out.stderr.contains("job-token-value"));
    assert!(server.requests().is_empty(), "no call without a token");

    // GITLAB_TOKEN works too.
    let out = run_job(
        &flaky_project(),
        &server,
        &[],
        &[("SMART_RERUN_GITLAB_TOKEN", ""), ("GITLAB_TOKEN", TOKEN)],
    );
    assert!(note_lines(&out)[0].contains("posted"), "{}", out.dump());
}

#[test]
fn the_note_can_be_turned_off() {
    let server = FakeGitLab::start();
    let p = flaky_project();
    run_job(&p, &server, &["--gitlab-note", "false"], &[]).assert_code(0);
    run_job(&p, &server, &[], &[("SMART_RERUN_GITLAB_NOTE", "false")]).assert_code(0);
    p.file("pytest.ini", "[pytest]\nsmart_rerun_gitlab_note = false\n");
    let out = run_job(&p, &server, &[], &[]);
    out.assert_code(0);
    assert!(note_lines(&out).is_empty(), "{}", out.dump());
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn comment_posts_saved_reports_to_the_merge_request_one_section_per_job() {
    let server = FakeGitLab::start();
    let p = flaky_project();
    // Two parallel jobs save their reports without posting; the `ci` block names job and merge request.
    let mut saved = Vec::new();
    for node in ["1", "2"] {
        let out = run_job(
            &p,
            &server,
            &["--gitlab-note", "false"],
            &[("CI_NODE_INDEX", node), ("CI_NODE_TOTAL", "2")],
        );
        out.assert_code(0);
        assert_eq!(out.report()["ci"]["platform"], "gitlab");
        assert_eq!(out.report()["ci"]["pull_request"], 7);
        assert_eq!(
            out.report()["ci"]["comment_key"],
            format!("pytest {node}/2")
        );
        let path = p.path().join(format!("report-{node}.json"));
        std::fs::copy(p.report_path(), &path).unwrap();
        saved.push(path);
    }
    assert!(server.requests().is_empty());

    // A later job (no merge request variables of its own) posts both.
    let comment = |extra: &[&str], vars: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.current_dir(p.path())
            .arg("comment")
            .args(extra)
            .arg("--report")
            .args(&saved);
        gitlab_env(&mut cmd, &server, &p, vars);
        cmd.env_remove("CI_MERGE_REQUEST_IID");
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, log) = comment(&[], &[("CI_JOB_NAME", "report")]);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains(
            "posted the merge request note on !7 (sections \"pytest 1/2\", \"pytest 2/2\")"
        ),
        "{log}"
    );
    let body = server.our_notes(7)[0].body.clone();
    assert!(
        body.contains("key=\"pytest 1/2\"") && body.contains("key=\"pytest 2/2\""),
        "{body}"
    );
    assert!(!body.contains("key=\"report\""), "{body}");

    // One merged section on request.
    let (code, log) = comment(&["--comment-key", "all shards"], &[]);
    assert_eq!(code, Some(0), "{log}");
    let body = server.our_notes(7)[0].body.clone();
    assert!(body.contains("key=\"all shards\""), "{body}");
    assert_eq!(server.our_notes(7).len(), 1);

    // No token is a usage error here: posting is all `comment` is for.
    let (code, log) = comment(&[], &[("SMART_RERUN_GITLAB_TOKEN", "")]);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("SMART_RERUN_GITLAB_TOKEN"), "{log}");
    assert!(!log.contains(TOKEN));
}

#[test]
fn junit_under_gitlab_shows_a_flaky_test_as_passed_with_a_skipped_companion() {
    let server = FakeGitLab::start();
    let p = flaky_project();
    let junit = p.path().join("junit.xml");
    let junit_arg = junit.display().to_string();
    let out = run_job(
        &p,
        &server,
        &["--junit-xml", &junit_arg, "--gitlab-note=false"],
        &[],
    );
    out.assert_code(0);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"name="test_flaky [flaky]""#) && xml.contains("<skipped"),
        "{xml}"
    );
    assert!(
        !xml.contains("<failure"),
        "nothing turns GitLab's report red: {xml}"
    );
    assert!(xml.contains("AssertionError"), "{xml}");

    // A layout chosen by the user wins; outside GitLab the default is Surefire's. Each run starts the
    // attempt counter again, so test_flaky is flaky every time.
    let flaky_again = || {
        let _ = std::fs::remove_dir_all(p.counters());
    };
    flaky_again();
    let out = run_job(
        &p,
        &server,
        &[
            "--junit-xml",
            &junit_arg,
            "--gitlab-note=false",
            "--junit-compat",
            "surefire",
        ],
        &[],
    );
    assert_eq!(out.outcome("tests/test_pay.py::test_flaky"), "flaky");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("flakyFailure") && !xml.contains("[flaky]"),
        "{xml}"
    );
    flaky_again();
    let out = p.run(&["--junit-xml", &junit_arg], &[]);
    assert_eq!(out.outcome("tests/test_pay.py::test_flaky"), "flaky");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("flakyFailure") && !xml.contains("[flaky]"),
        "{xml}"
    );
    assert!(server.requests().is_empty());

    // `render` picks the same default from the same environment.
    let render = |gitlab: bool, extra: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["render", "--format", "junit"])
            .args(extra)
            .arg(p.report_path())
            .env_remove("GITLAB_CI")
            .env_remove("GITHUB_ACTIONS");
        if gitlab {
            cmd.env("GITLAB_CI", "true");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(render(true, &[]).contains("test_flaky [flaky]"));
    assert!(!render(false, &[]).contains("[flaky]"));
    assert!(!render(true, &["--junit-compat", "surefire"]).contains("[flaky]"));
}

// ---------------------------------------------------------------------------------------------------
// The CI/CD component.

fn component() -> (serde_yaml_ng::Mapping, String) {
    parse_component(
        &std::fs::read_to_string(repo_root().join("templates/smart-rerun.yml")).unwrap(),
    )
}

/// The component as the release commit has it: the dry run's stamped copy (scripts/release --stamp).
fn released_component() -> String {
    std::fs::read_to_string(https::dry_run().join("tree/templates/smart-rerun.yml")).unwrap()
}

fn parse_component(text: &str) -> (serde_yaml_ng::Mapping, String) {
    let (header, body) = text
        .split_once("\n---\n")
        .expect("a `---` after the spec header");
    let header: serde_yaml_ng::Value = serde_yaml_ng::from_str(header).unwrap();
    let inputs = header["spec"]["inputs"]
        .as_mapping()
        .expect("spec:inputs")
        .clone();
    (inputs, body.to_owned())
}

/// The body with each `$[[ inputs.x ]]` replaced as GitLab does: by `values`' entry, else the default.
fn interpolate(body: &str, inputs: &serde_yaml_ng::Mapping, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("]]").unwrap() + start + 2;
        let name = rest[start + 3..end - 2]
            .trim()
            .strip_prefix("inputs.")
            .unwrap();
        let value = match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v.to_string(),
            None => match &inputs
                .get(name)
                .unwrap_or_else(|| panic!("unknown input {name}"))["default"]
            {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                other => panic!("input {name} has no usable default: {other:?}"),
            },
        };
        out.push_str(&value);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every line of the `script`, `before_script` and `after_script` blocks of the raw template.
fn raw_script_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut indent: Option<usize> = None;
    for line in text.lines() {
        let depth = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some(d) = indent {
            if trimmed.is_empty() || depth > d {
                lines.push(line);
                continue;
            }
            indent = None;
        }
        if ["script:", "before_script:", "after_script:"]
            .iter()
            .any(|k| trimmed.starts_with(k))
        {
            indent = Some(depth);
            lines.push(line);
        }
    }
    lines
}

#[test]
fn the_component_uses_every_input_and_never_pastes_one_into_a_script() {
    let (inputs, body) = component();
    assert!(inputs.len() >= 15, "{inputs:?}");
    for (name, spec) in &inputs {
        let name = name.as_str().unwrap();
        assert!(
            body.contains(&format!("$[[ inputs.{name} ]]")),
            "input {name} is never used"
        );
        assert!(
            spec.get("description").is_some() && spec.get("default").is_some(),
            "input {name} needs a description and a default"
        );
    }
    let script = raw_script_lines(&body);
    assert!(script.len() > 20, "{script:?}");
    for line in &script {
        assert!(
            !line.contains("$[["),
            "an input pasted into a script: {line}"
        );
    }
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&interpolate(&body, &inputs, &[])).unwrap();
    let job = &job["pytest"];
    assert_eq!(job["stage"].as_str(), Some("test"));
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
    assert_eq!(
        job["artifacts"]["reports"]["junit"].as_str(),
        Some("smart-rerun-junit.xml")
    );
    // Every variable is a SMART_RERUN_* name, and every setting the script does not read is one the
    // binary reads (`smart-rerun config` lists them).
    let config = Command::new(bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&config.stdout);
    for (name, _) in job["variables"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        assert!(name.starts_with("SMART_RERUN_"), "{name}");
        let flag = format!(
            "--{}",
            name["SMART_RERUN_".len()..]
                .to_ascii_lowercase()
                .replace('_', "-")
        );
        let script_reads = script
            .iter()
            .any(|l| l.contains(&format!("${name}")) || l.contains(&format!("${{{name}")));
        assert!(
            script_reads || help.contains(&flag),
            "{name} is read by neither the script nor smart-rerun ({flag})"
        );
    }
}

#[test]
fn the_plain_gitlab_ci_example_uploads_the_junit_file_it_writes() {
    let text = std::fs::read_to_string(repo_root().join("examples/gitlab-ci.yml")).unwrap();
    let ci: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &ci["pytest"];
    let junit = job["variables"]["SMART_RERUN_JUNIT_XML"].as_str().unwrap();
    assert_eq!(job["artifacts"]["reports"]["junit"].as_str(), Some(junit));
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        script.iter().any(|l| l.contains("sha256sum -c")),
        "{script:?}"
    );
    assert!(script.last().unwrap().starts_with("smart-rerun run"));
    // docs/gitlab.md shows the same job.
    let docs = std::fs::read_to_string(repo_root().join("docs/gitlab.md")).unwrap();
    for line in &script {
        assert!(docs.contains(line), "docs/gitlab.md lacks {line}");
    }
}

/// The job's machine for the component: the release site (the dry run's archive, SHA256SUMS and a pip
/// index with its wheel) over real HTTPS, a CA the downloaders trust, and a directory of stubs put first
/// on PATH: `python3` (the test venv's), a `cargo` that must never run, and a `curl` that records whether
/// a GitLab token was in its environment before running the real one.
struct Job {
    dir: tempfile::TempDir,
    tls: Tls,
    server: Server,
}

const ARCHIVE: &str = "smart-rerun-v1.0.0-x86_64-unknown-linux-musl.tar.gz";

#[cfg(unix)]
fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
impl Job {
    fn new() -> Job {
        let dry = https::dry_run();
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let release = site.join("releases/v1.0.0");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(dry.join(ARCHIVE), release.join(ARCHIVE)).unwrap();
        std::fs::copy(dry.join("checksums.txt"), release.join("SHA256SUMS")).unwrap();
        let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
        https::python_index(
            &site,
            &[(&wheel, &std::fs::read(dry.join(&wheel)).unwrap())],
        );
        let tls = Tls::new();
        let server = Server::https(&site, &tls);
        let stubs = dir.path().join("stubs");
        std::fs::create_dir_all(&stubs).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        executable(
            &stubs.join("python3"),
            &format!("#!/bin/sh\nexec '{}' \"$@\"\n", python().display()),
        );
        executable(
            &stubs.join("cargo"),
            &format!(
                "#!/bin/sh\necho cargo >> '{}'\nexit 1\n",
                dir.path().join("cargo.log").display()
            ),
        );
        let curl = which::which("curl").expect("curl");
        executable(
            &stubs.join("curl"),
            &format!(
                "#!/bin/sh\necho \"token:${{SMART_RERUN_GITLAB_TOKEN:-none}}:${{CI_JOB_TOKEN:-none}}\" >> '{}'\nexec '{}' \"$@\"\n",
                dir.path().join("curl.log").display(),
                curl.display()
            ),
        );
        Job { dir, tls, server }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn release_url(&self) -> String {
        format!("{}/releases", self.server.https_url())
    }

    /// The environment a job in this machine has, PATH aside.
    fn env(&self) -> Vec<(String, String)> {
        let ca = self.tls.ca.display().to_string();
        vec![
            ("CURL_CA_BUNDLE".into(), ca.clone()),
            ("SSL_CERT_FILE".into(), ca.clone()),
            ("PIP_CERT".into(), ca),
            ("PIP_CONFIG_FILE".into(), "/dev/null".into()),
            ("PIP_NO_CACHE_DIR".into(), "1".into()),
            (
                "PIP_INDEX_URL".into(),
                format!("{}/simple/", self.server.https_url()),
            ),
            ("TMPDIR".into(), self.path("tmp").display().to_string()),
        ]
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.path("stubs").display(),
            std::env::var("PATH").unwrap()
        )
    }

    /// The job's script for `template` (the stamped one unless given), as a runner runs it.
    fn run(&self, p: &Project, template: Option<&str>, values: &[(&str, &str)]) -> (i32, String) {
        self.run_with(p, template, values, &[])
    }

    fn run_with(
        &self,
        p: &Project,
        template: Option<&str>,
        values: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (i32, String) {
        let text = template.map_or_else(released_component, str::to_owned);
        let mut values = values.to_vec();
        let release_url = self.release_url();
        if !values.iter().any(|(k, _)| *k == "release-url") {
            values.push(("release-url", &release_url));
        }
        let mut env = self.env();
        env.push(("PATH".into(), self.path_var()));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let out = run_component(&text, p, &values, &env);
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn cargo_ran(&self) -> bool {
        self.path("cargo.log").exists()
    }

    /// The smart-rerun install directories the job left in its TMPDIR.
    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("smart-rerun.")
            })
            .collect()
    }
}

/// Runs the component's job script with `sh`, as a runner would: the job's variables (inputs
/// interpolated, `${CI_PROJECT_DIR}` expanded), in the project directory, with `env` on top.
fn run_component(
    text: &str,
    p: &Project,
    values: &[(&str, &str)],
    env: &[(String, String)],
) -> std::process::Output {
    let (inputs, body) = parse_component(text);
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&interpolate(&body, &inputs, values)).unwrap();
    let job = job.as_mapping().unwrap().values().next().unwrap().clone();
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let dir = p.path().display().to_string();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script.join("\n")).current_dir(p.path());
    for key in [
        "GITLAB_TOKEN",
        "SMART_RERUN_GITLAB_TOKEN",
        "CI_JOB_TOKEN",
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "VIRTUAL_ENV",
    ] {
        cmd.env_remove(key);
    }
    // This machine's own pip and TLS settings (a find-links directory, a CA bundle that wins over
    // PIP_CERT) are not the job's: the tests give their own.
    for (key, _) in std::env::vars() {
        if key.starts_with("PIP_")
            || [
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("GITLAB_CI", "true")
        .env("CI_PROJECT_DIR", &dir)
        .env("CI_JOB_NAME", "pytest")
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1");
    for (name, value) in job["variables"].as_mapping().unwrap() {
        let (value, expand) = match value {
            serde_yaml_ng::Value::Mapping(m) => (
                m.get("value").and_then(|v| v.as_str()).unwrap().to_owned(),
                m.get("expand").and_then(|v| v.as_bool()).unwrap_or(true),
            ),
            v => (v.as_str().unwrap().to_owned(), true),
        };
        let value = if expand {
            value.replace("${CI_PROJECT_DIR}", &dir)
        } else {
            value
        };
        cmd.env(name.as_str().unwrap(), value);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[cfg(unix)]
#[test]
fn the_component_installs_the_release_it_vouches_for_outside_the_project_and_runs_the_suite() {
    let job = Job::new();
    let p = flaky_project();
    // Tools committed in the project, where the component used to put its PATH entry and at the top:
    // none of them may run (the job's token is in the environment while installing).
    let pwned = p.path().join("pwned");
    let fake = format!("#!/bin/sh\necho \"$0\" >> '{}'\nexit 0\n", pwned.display());
    std::fs::create_dir_all(p.path().join(".smart-rerun/bin")).unwrap();
    for f in [
        ".smart-rerun/bin/curl",
        ".smart-rerun/bin/tar",
        ".smart-rerun/bin/smart-rerun",
        "curl",
        "tar",
    ] {
        executable(&p.path().join(f), &fake);
    }
    let command = format!("{} -m pytest", python().display());
    let (code, log) = job.run_with(
        &p,
        None,
        &[("command", &command), ("max", "3"), ("mr-note", "false")],
        &[
            ("SMART_RERUN_GITLAB_TOKEN", TOKEN),
            ("CI_JOB_TOKEN", "job-token"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        !pwned.exists(),
        "ran: {:?}",
        std::fs::read_to_string(&pwned)
    );
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    assert!(log.contains("FLAKY"), "{log}");
    assert_eq!(
        job.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")],
        "the archive only: no SHA256SUMS"
    );
    assert_eq!(
        std::fs::read_to_string(job.path("curl.log")).unwrap(),
        "token:none:none\n",
        "curl ran once, without the GitLab tokens"
    );
    assert!(!job.cargo_ran());
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
    // The defaults: reports in the project directory, the GitLab JUnit layout.
    let report = common::read_report(&p.path().join("smart-rerun.json"));
    assert_eq!(report["run"]["policy"]["max_attempts"], 3);
    let junit = std::fs::read_to_string(p.path().join("smart-rerun-junit.xml")).unwrap();
    assert!(junit.contains("test_flaky [flaky]"), "{junit}");
    assert!(p.path().join("smart-rerun.md").exists());

    // With the note on and no token, the note is skipped in one line and the job goes on.
    std::fs::remove_file(p.path().join("smart-rerun.json")).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("merge request note skipped: no GitLab token"),
        "{log}"
    );

    // An input that looks like shell stays data: the command is split, never evaluated.
    let marker = p.path().join("evaluated");
    let hostile = format!(
        "{} -m pytest $(touch {}) ;touch {}",
        python().display(),
        marker.display(),
        marker.display()
    );
    let (_, log) = job.run(&p, None, &[("command", &hostile)]);
    assert!(!marker.exists(), "{log}");
}

#[cfg(unix)]
#[test]
fn the_component_refuses_a_replaced_archive_an_unvouched_version_and_plain_http() {
    let job = Job::new();
    let p = flaky_project();
    let command = format!("{} -m pytest", python().display());
    let stage = tempfile::tempdir().unwrap();
    executable(&stage.path().join("smart-rerun"), "#!/bin/sh\necho pwned\n");
    let evil = stage.path().join(ARCHIVE);
    assert!(
        Command::new("tar")
            .arg("-czf")
            .arg(&evil)
            .arg("-C")
            .arg(stage.path())
            .arg("smart-rerun")
            .status()
            .unwrap()
            .success()
    );

    // A replaced archive with a SHA256SUMS to match: never runs, and nothing else is tried.
    let site_archive = job.path(&format!("site/releases/v1.0.0/{ARCHIVE}"));
    let good = std::fs::read(&site_archive).unwrap();
    std::fs::copy(&evil, &site_archive).unwrap();
    std::fs::write(
        job.path("site/releases/v1.0.0/SHA256SUMS"),
        format!("{}  {ARCHIVE}\n", https::sha256(&evil)),
    )
    .unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains(&format!("checksum mismatch for {ARCHIVE}")),
        "{log}"
    );
    assert!(!log.contains("pwned"), "{log}");
    assert!(!p.path().join("smart-rerun.json").exists(), "nothing ran");
    assert!(!job.cargo_ran());
    std::fs::write(&site_archive, good).unwrap();

    // A version this component release carries no checksums for, unless its sha256 is given.
    std::fs::create_dir_all(job.path("site/releases/v0.9.0")).unwrap();
    std::fs::copy(
        &evil,
        job.path("site/releases/v0.9.0/smart-rerun-v0.9.0-x86_64-unknown-linux-musl.tar.gz"),
    )
    .unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command), ("version", "0.9.0")]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("this component lists no checksums for smart-rerun 0.9.0"),
        "{log}"
    );
    let (code, log) = job.run(
        &p,
        None,
        &[
            ("command", &command),
            ("version", "0.9.0"),
            ("sha256", &https::sha256(&evil)),
        ],
    );
    assert_eq!(code, 0, "the user's own pin is honoured: {log}");
    assert!(log.contains("pwned"), "{log}");

    // The unstamped template (a branch, not a release) vouches for nothing.
    let unstamped = std::fs::read_to_string(repo_root().join("templates/smart-rerun.yml")).unwrap();
    let (code, log) = job.run(&p, Some(&unstamped), &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("this component ref is not a release"), "{log}");

    // Plain http: GitLab refuses the input by its regex; the script refuses it too, before a request.
    let (inputs, _) = component();
    let regex = inputs["release-url"]["regex"].as_str().unwrap();
    assert_eq!(regex, r"^https://[^\s]+$");
    let plain = Server::http(&job.path("site"));
    let (code, log) = job.run(
        &p,
        None,
        &[
            ("command", &command),
            ("release-url", &format!("{}/releases", plain.http_url())),
        ],
    );
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("https only"), "{log}");
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    // An https release that redirects to http is refused by curl, and by Python's downloader.
    let redirecting = Server::https_redirecting_to(&job.path("site"), &job.tls, plain.port);
    let url = format!("{}/to-http/releases", redirecting.https_url());
    let plain_index = format!("{}/simple/", plain.http_url());
    for path in [job.path_var(), no_curl_path(&job)] {
        let (code, log) = job.run_with(
            &p,
            None,
            &[("command", &command), ("release-url", &url)],
            &[("PATH", &path), ("PIP_INDEX_URL", &plain_index)],
        );
        assert_eq!(code, 3, "{log}");
        assert!(log.contains("could not download"), "{log}");
    }
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert!(!job.cargo_ran());
}

/// A PATH with what the job script needs and no curl (as in python:3.12-slim), the stubs first.
#[cfg(unix)]
fn no_curl_path(job: &Job) -> String {
    let dir = job.path("no-curl");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for tool in [
            "sh",
            "env",
            "mktemp",
            "uname",
            "awk",
            "tar",
            "gzip",
            "mkdir",
            "mv",
            "chmod",
            "rm",
            "cat",
            "grep",
            "sha256sum",
            "cut",
            "dirname",
        ] {
            let found = which::which(tool).unwrap_or_else(|_| panic!("{tool}"));
            std::os::unix::fs::symlink(found, dir.join(tool)).unwrap();
        }
        for stub in ["python3", "cargo"] {
            std::os::unix::fs::symlink(job.path("stubs").join(stub), dir.join(stub)).unwrap();
        }
    }
    dir.display().to_string()
}

#[cfg(unix)]
#[test]
fn without_curl_or_the_archive_the_component_still_installs_verified_bits() {
    let job = Job::new();
    let p = flaky_project();
    let command = format!("{} -m pytest", python().display());

    // No curl in the image: Python's downloader, https only, the same checksum.
    let (code, log) = job.run_with(
        &p,
        None,
        &[("command", &command)],
        &[("PATH", &no_curl_path(&job))],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    assert_eq!(
        job.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")]
    );
    assert!(!job.path("curl.log").exists());

    // The mirror lacks the archive: the wheel, with pip --require-hashes; never cargo.
    std::fs::remove_file(job.path(&format!("site/releases/v1.0.0/{ARCHIVE}"))).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("with pip --require-hashes"), "{log}");
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
    assert!(
        job.server.requests().contains(&format!("/files/{wheel}")),
        "{:?}",
        job.server.requests()
    );
    assert!(!job.cargo_ran(), "{log}");

    // A wheel replaced on the index: refused.
    let mut bytes = std::fs::read(job.path(&format!("site/files/{wheel}"))).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(job.path(&format!("site/files/{wheel}")), bytes).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("does not match this component's sha256"),
        "{log}"
    );
    assert!(!job.cargo_ran(), "{log}");
}

#[test]
fn a_redirect_to_another_server_is_not_followed_with_the_token() {
    // GitLab's token is a header of its own (`PRIVATE-TOKEN`), which an HTTP client's usual redirect
    // rules do not know to drop: a 302 to another origin must not take it there.
    let elsewhere = FakeGitLab::start();
    let server = FakeGitLab::start();
    server.state().redirect_to = Some(format!("http://127.0.0.1:{}", elsewhere.port));
    let out = run_job(&flaky_project(), &server, &[], &[]);
    out.assert_code(0);
    assert!(
        !server.requests().is_empty(),
        "the first server was asked: {}",
        out.dump()
    );
    let leaked: Vec<Request> = elsewhere
        .requests()
        .into_iter()
        .filter(|r| r.token.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "the token went to the other server: {leaked:?}"
    );
    let lines = note_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.dump());
    assert!(
        lines[0].starts_with("smart-rerun: warning: merge request note not posted")
            && lines[0].contains(&format!(
                "a redirect to http://127.0.0.1:{}, which is not followed",
                elsewhere.port
            )),
        "{}",
        lines[0]
    );
}
