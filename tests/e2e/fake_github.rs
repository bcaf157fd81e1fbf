//! A fake GitHub REST API on 127.0.0.1 for the end-to-end tests: the issue-comment endpoints smart-rerun
//! uses, answering as GitHub does (pages with `Link` headers, the error bodies and rate-limit headers
//! GitHub sends), with scripted failures, and a log of every request.
//!
//! One thread accepts; each connection is served by its own short-lived thread and closed after one
//! response. Everything stops when the [`FakeGitHub`] is dropped.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "ghs_fakeTokenThatMustNeverBePrinted0123456789";

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub login: String,
    pub user_type: String,
    pub association: String,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub authorized: bool,
    pub body: String,
}

/// A canned answer for the next requests that match.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// `GET`, `POST`, `PATCH`, `DELETE`, or `*`.
    pub method: &'static str,
    /// How many matching requests get it.
    pub times: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct State {
    comments: Vec<Comment>,
    next_id: u64,
    /// Comments per page, whatever `per_page` asks (GitHub caps it at 100; small here to paginate).
    page_size: usize,
    script: VecDeque<Scripted>,
    log: Vec<Logged>,
    /// Pull requests' head commits.
    heads: Vec<(u64, String)>,
    /// Delay every answer (for races between jobs).
    delay: Duration,
}

pub struct FakeGitHub {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGitHub {
    pub fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            page_size: 30,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, url) = (state.clone(), stop.clone(), url.clone());
            std::thread::spawn(move || {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) && served < 10_000 {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            served += 1;
                            let (state, url) = (state.clone(), url.clone());
                            std::thread::spawn(move || serve(stream, &state, &url));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeGitHub {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn page_size(&self, n: usize) -> &Self {
        self.state.lock().unwrap().page_size = n;
        self
    }

    pub fn delay(&self, d: Duration) -> &Self {
        self.state.lock().unwrap().delay = d;
        self
    }

    /// Adds a comment as `login` (a user with the given association, or a bot).
    pub fn add_comment(&self, body: &str, login: &str, bot: bool, association: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.comments.push(Comment {
            id,
            body: body.to_owned(),
            login: login.to_owned(),
            user_type: if bot { "Bot" } else { "User" }.to_owned(),
            association: association.to_owned(),
        });
        id
    }

    pub fn set_head(&self, pr: u64, sha: &str) {
        self.state.lock().unwrap().heads.push((pr, sha.to_owned()));
    }

    pub fn script(&self, s: Scripted) -> &Self {
        self.state.lock().unwrap().script.push_back(s);
        self
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.state.lock().unwrap().comments.clone()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Logged requests with this method.
    pub fn requests(&self, method: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == method)
            .collect()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A user as GitHub's REST API embeds one (`simple-user`).
fn user_json(login: &str, user_type: &str, base: &str) -> Value {
    let url = format!("{base}/users/{login}");
    json!({
        "login": login,
        "id": 41898282,
        "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": user_type,
        "user_view_type": "public",
        "site_admin": false,
    })
}

fn comment_json(c: &Comment, base: &str) -> Value {
    json!({
        "id": c.id,
        "node_id": format!("IC_{}", c.id),
        "url": format!("{base}/repos/o/r/issues/comments/{}", c.id),
        "html_url": format!("https://github.com/o/r/pull/7#issuecomment-{}", c.id),
        "issue_url": format!("{base}/repos/o/r/issues/7"),
        "body": c.body,
        "user": user_json(&c.login, &c.user_type, base),
        "author_association": c.association,
        "created_at": "2026-11-02T10:00:00Z",
        "updated_at": "2026-11-02T10:00:00Z",
        "reactions": {"url": format!("{base}/repos/o/r/issues/comments/{}/reactions", c.id),
                      "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                      "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
        "performed_via_github_app": null,
    })
}

/// A pull request as `GET /repos/{owner}/{repo}/pulls/{number}` answers (the fields smart-rerun and
/// a typed client need; GitHub sends many more).
fn pull_json(number: u64, sha: &str, base: &str) -> Value {
    json!({
        "url": format!("{base}/repos/o/r/pulls/{number}"),
        "id": 1_000_000 + number,
        "node_id": format!("PR_{number}"),
        "html_url": format!("https://github.com/o/r/pull/{number}"),
        "number": number,
        "state": "open",
        "locked": false,
        "title": "a change",
        "user": user_json("octocat", "User", base),
        "body": null,
        "created_at": "2026-11-02T09:00:00Z",
        "updated_at": "2026-11-02T10:00:00Z",
        "head": {"label": "fork:topic", "ref": "topic", "sha": sha,
                 "user": user_json("fork", "User", base), "repo": null},
        "base": {"label": "o:main", "ref": "main",
                 "sha": "0000000000000000000000000000000000000000",
                 "user": user_json("o", "Organization", base), "repo": null},
        "author_association": "CONTRIBUTOR",
        "draft": false,
        "merged": false,
    })
}

struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
    body: String,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            "transfer-encoding" => panic!("the fake API reads Content-Length bodies only"),
            _ => {}
        }
    }
    let mut body = vec![0; length.min(2 * 1024 * 1024)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(mut stream: TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let reason = crate::common::reason_phrase(status);
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nx-ratelimit-limit: 5000\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn serve(stream: TcpStream, state: &Mutex<State>, base: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(req) = read_request(&stream) else {
        return;
    };
    let authorized = req.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    let delay = {
        let mut s = state.lock().unwrap();
        s.log.push(Logged {
            method: req.method.clone(),
            path: req.target.clone(),
            authorized,
            body: req.body.clone(),
        });
        s.delay
    };
    std::thread::sleep(delay);
    let (status, headers, body) = answer(&req, authorized, state, base);
    respond(stream, status, &headers, &body);
}

fn answer(
    req: &Request,
    authorized: bool,
    state: &Mutex<State>,
    base: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = state.lock().unwrap();
    if let Some(i) = s
        .script
        .iter()
        .position(|x| x.method == "*" || x.method == req.method)
    {
        let x = s.script[i].clone();
        if x.times <= 1 {
            s.script.remove(i);
        } else {
            s.script[i].times -= 1;
        }
        return (x.status, x.headers, x.body);
    }
    if !authorized {
        return (
            401,
            vec![],
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#.into(),
        );
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        (
            404,
            vec![],
            r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}"#.to_owned(),
        )
    };
    match (req.method.as_str(), segments.as_slice()) {
        // The list, by repository name or (in `Link` headers, as GitHub does) by repository id.
        ("GET", ["repos", "o", "r", "issues", pr, "comments"])
        | ("GET", ["repositories", "1", "issues", pr, "comments"]) => {
            let page = param("page").unwrap_or(1).max(1);
            let size = s.page_size;
            let total = s.comments.len();
            let items: Vec<Value> = s
                .comments
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|c| comment_json(c, base))
                .collect();
            let last = total.div_ceil(size).max(1);
            let mut headers = Vec::new();
            if page < last {
                let link = |p: usize| {
                    format!("<{base}/repositories/1/issues/{pr}/comments?per_page={size}&page={p}>")
                };
                headers.push((
                    "Link".to_owned(),
                    format!(
                        "{}; rel=\"next\", {}; rel=\"last\"",
                        link(page + 1),
                        link(last)
                    ),
                ));
            }
            (200, headers, Value::Array(items).to_string())
        }
        ("POST", ["repos", "o", "r", "issues", _pr, "comments"]) => {
            let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
            let Some(text) = body.get("body").and_then(|b| b.as_str()) else {
                return (
                    422,
                    vec![],
                    r#"{"message":"Invalid request.\n\n\"body\" wasn't supplied.","documentation_url":"https://docs.github.com/rest","status":"422"}"#.into(),
                );
            };
            if text.chars().count() > 65_536 {
                return (
                    422,
                    vec![],
                    r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}],"status":"422"}"#.into(),
                );
            }
            s.next_id += 1;
            let c = Comment {
                id: s.next_id,
                body: text.to_owned(),
                login: "github-actions[bot]".into(),
                user_type: "Bot".into(),
                association: "NONE".into(),
            };
            s.comments.push(c.clone());
            (201, vec![], comment_json(&c, base).to_string())
        }
        ("PATCH", ["repos", "o", "r", "issues", "comments", id]) => {
            let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
            let text = body
                .get("body")
                .and_then(|b| b.as_str())
                .unwrap_or_default()
                .to_owned();
            if text.chars().count() > 65_536 {
                return (
                    422,
                    vec![],
                    r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}],"status":"422"}"#.into(),
                );
            }
            let id: u64 = id.parse().unwrap_or(0);
            match s.comments.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    c.body = text;
                    let c = c.clone();
                    (200, vec![], comment_json(&c, base).to_string())
                }
                None => not_found(),
            }
        }
        ("GET", ["repos", "o", "r", "issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match s.comments.iter().find(|c| c.id == id) {
                Some(c) => (200, vec![], comment_json(c, base).to_string()),
                None => not_found(),
            }
        }
        ("DELETE", ["repos", "o", "r", "issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let before = s.comments.len();
            s.comments.retain(|c| c.id != id);
            if s.comments.len() < before {
                (204, vec![], String::new())
            } else {
                not_found()
            }
        }
        ("GET", ["repos", "o", "r", "pulls", pr]) => {
            let pr: u64 = pr.parse().unwrap_or(0);
            match s.heads.iter().find(|(n, _)| *n == pr) {
                Some((n, sha)) => (200, vec![], pull_json(*n, sha, base).to_string()),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}
