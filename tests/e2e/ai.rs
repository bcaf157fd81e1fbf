//! AI classification against real servers: the example MCP server in examples/mcp-classifier (the
//! official Python SDK, `mcp` pinned in tests/requirements/latest.txt) and its plain-HTTP twin, started on
//! 127.0.0.1 on a free port. The servers log every failure they receive to a file, so the tests see what
//! left the machine and count the calls.
//!
//! The servers always run on the newest venv's Python (the SDK needs Python 3.10+); the pytest under test
//! is the venv under test.

use crate::common::{self, Project, RunOutput};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "sr-e2e-bearer-7c1d93";

/// A classifier server, killed on drop.
pub(crate) struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    path: &'static str,
}

impl Server {
    /// `examples/mcp-classifier/server.py ARGS`, answering `answers` by node id substring.
    pub(crate) fn mcp(args: &[&str], answers: Value) -> Server {
        Server::start("server.py", "/mcp", args, answers)
    }

    /// `examples/mcp-classifier/http_server.py ARGS`.
    pub(crate) fn http(args: &[&str], answers: Value) -> Server {
        Server::start("http_server.py", "/", args, answers)
    }

    fn start(script: &str, path: &'static str, args: &[&str], answers: Value) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("sr-ai-server-")
            .tempdir()
            .unwrap();
        let answers_file = dir.path().join("answers.json");
        std::fs::write(&answers_file, answers.to_string()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let python = server_python();
        let child = Command::new(&python)
            .arg(
                common::repo_root()
                    .join("examples/mcp-classifier")
                    .join(script),
            )
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--log")
            .arg(dir.path().join("calls.jsonl"))
            .arg("--answers")
            .arg(&answers_file)
            .args(args)
            .env_remove("CLASSIFIER_TOKEN")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let mut server = Server {
            child,
            port,
            dir,
            path,
        };
        server.wait_ready();
        server
    }

    /// Waits (bounded) until the port accepts connections; the SDK's imports take seconds on a busy box.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the classifier server exited ({status}) before listening:\n{}",
                    self.log("stderr")
                );
            }
            if started.elapsed() > Duration::from_secs(90) {
                panic!(
                    "the classifier server did not listen within 90 s:\n{}",
                    self.log("stderr")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Every failure the server received, in order.
    pub(crate) fn calls(&self) -> Vec<Value> {
        self.log("calls.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn raw_calls(&self) -> String {
        self.log("calls.jsonl")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest venv's Python, which has the `mcp` SDK.
fn server_python() -> PathBuf {
    let venv = common::repo_root().join("target/venvs/latest");
    let python = if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    };
    let ok = Command::new(&python)
        .args(["-c", "import mcp.server.mcpserver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no `mcp` SDK: run scripts/bootstrap-python (tests/requirements/latest.txt pins it)",
        python.display()
    );
    python
}

/// `smart-rerun run --ai --ai-endpoint URL ARGS -- python -m pytest -p no:cacheprovider`, with `env`.
fn run_ai(p: &Project, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
    let mut cmd = p.command(&["--ai", "--ai-endpoint", endpoint]);
    cmd.args(args);
    for k in smart_rerun::config::KEYS {
        cmd.env_remove(k.env);
    }
    cmd.envs(env.iter().copied());
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"]);
    p.output(cmd)
}

/// The AI-related warnings of a run.
fn ai_warnings(out: &RunOutput) -> Vec<String> {
    out.report()["warnings"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .filter(|w| w.contains("AI "))
        .collect()
}

/// The classification of a test's `n`-th attempt (1-based).
fn attempt_class(out: &RunOutput, nodeid: &str, n: usize) -> Value {
    out.test(nodeid)["attempts"][n - 1]["classification"].clone()
}

fn epoch(v: &Value) -> f64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let t = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    t.timestamp_millis() as f64 / 1000.0
}

/// Seconds between the end of attempt `n` and the start of the round that ran attempt `n + 1`.
fn gap_after_attempt(out: &RunOutput, nodeid: &str, n: usize) -> f64 {
    let attempts = out.test(nodeid)["attempts"].as_array().unwrap();
    let next_round = attempts[n]["round"].as_u64().unwrap() as usize;
    let round = &out.report()["run"]["rounds"][next_round - 1];
    epoch(&round["started_at"]) - epoch(&attempts[n - 1]["finished_at"])
}

fn assert_no_secret(haystacks: &[(&str, &str)], secrets: &[&str]) {
    for (what, text) in haystacks {
        for s in secrets {
            assert!(!text.contains(s), "{s} in {what}:\n{text}");
        }
    }
}

const SUITE: &str = r#"
import sr_counter

def test_logic():
    assert 1 + 1 == 3, "logic bug"

def test_network(attempt):
    if attempt < 3:
        raise ConnectionResetError(104, "Connection reset by peer")
"#;

/// Fixed answers of the main MCP server, by node id substring.
fn answers() -> Value {
    json!({
        "test_logic": {"category": "deterministic", "confidence": 0.95,
                       "reason": "fixed answer: a logic bug", "action": "stop_retry"},
        "test_network": {"category": "flaky-network", "confidence": 0.9,
                         "reason": "fixed answer: a reset", "action": "retry_with_delay",
                         "delay_seconds": 1.5},
        "test_cosmic": {"category": "cosmic-rays", "confidence": 0.5, "reason": "?", "action": "retry"},
        "test_overconfident": {"category": "flaky-timing", "confidence": 1.7, "reason": "sure",
                               "action": "retry"},
    })
}

#[test]
fn mcp_answers_set_the_category_stop_retries_and_set_delays_and_need_the_token() {
    let server = Server::mcp(&["--token", TOKEN], answers());

    // Without the token: 401, one note, the heuristics decide, nothing reached the tool.
    let p = Project::new();
    p.file("test_ai.py", SUITE);
    let out = run_ai(&p, &server.url(), &["--max", "4"], &[]);
    out.assert_code(1);
    assert_eq!(
        ai_warnings(&out),
        [format!(
            "AI endpoint {} needs a token (HTTP 401; set smart_rerun_ai_token or SMART_RERUN_AI_TOKEN): the heuristics decided",
            server.url()
        )],
        "{}",
        out.dump()
    );
    assert_eq!(server.calls().len(), 0);
    assert_eq!(
        attempt_class(&out, "test_ai.py::test_logic", 1)["source"],
        "heuristic"
    );
    assert_eq!(out.outcome("test_ai.py::test_network"), "flaky");

    // A wrong token: refused, said so.
    let p = Project::new();
    p.file("test_ai.py", SUITE);
    let out = run_ai(
        &p,
        &server.url(),
        &["--max", "4"],
        &[("SMART_RERUN_AI_TOKEN", "not-the-token")],
    );
    assert!(
        ai_warnings(&out)
            .iter()
            .any(|w| w.contains("refused the token (HTTP 401)")),
        "{}",
        out.dump()
    );
    assert_eq!(server.calls().len(), 0);

    // The token, from the environment: the server's answers land in the report.
    let p = Project::new();
    p.file("test_ai.py", SUITE);
    let ai_report = p.path().join("ai-report.json");
    let out = run_ai(
        &p,
        &server.url(),
        &["--max", "4", "--ai-report", ai_report.to_str().unwrap()],
        &[("SMART_RERUN_AI_TOKEN", TOKEN)],
    );
    out.assert_code(1);
    assert!(ai_warnings(&out).is_empty(), "{}", out.dump());

    // stop_retry: one attempt of four.
    let logic = "test_ai.py::test_logic";
    assert_eq!(out.outcome(logic), "failed");
    assert_eq!(out.attempts(logic), 1, "{}", out.dump());
    let c = attempt_class(&out, logic, 1);
    assert_eq!(
        (
            &c["source"],
            &c["category"],
            &c["reason"],
            &c["action"]["kind"]
        ),
        (
            &json!("ai"),
            &json!("deterministic"),
            &json!("fixed answer: a logic bug"),
            &json!("stop_retry")
        ),
        "{c}"
    );
    assert_eq!(out.test(logic)["classification"]["source"], "ai");
    assert!(
        out.test(logic)["stopped_because"]
            .as_str()
            .unwrap()
            .contains("the AI classifier said deterministic"),
        "{}",
        out.test(logic)
    );

    // retry_with_delay(1.5): the next rounds wait for it (the policy's delay is 0).
    let network = "test_ai.py::test_network";
    assert_eq!(out.outcome(network), "flaky");
    assert_eq!(out.attempts(network), 3);
    for n in [1, 2] {
        assert_eq!(attempt_class(&out, network, n)["source"], "ai");
        let gap = gap_after_attempt(&out, network, n);
        assert!(
            (1.45..10.0).contains(&gap),
            "attempt {} started {gap:.2}s after attempt {n}",
            n + 1
        );
    }

    // One call per distinct fingerprint: the repeated reset was not asked again.
    let calls = server.calls();
    let mut asked: Vec<&str> = calls
        .iter()
        .map(|c| c["nodeid"].as_str().unwrap())
        .collect();
    asked.sort();
    assert_eq!(asked, [logic, network]);
    let sent = calls.iter().find(|c| c["nodeid"] == network).unwrap();
    assert_eq!(sent["exception_type"], "builtins.ConnectionResetError");
    assert!(
        sent["exception_bases"]
            .as_array()
            .unwrap()
            .contains(&json!("builtins.OSError"))
    );
    assert_eq!(sent["heuristic"]["category"], "flaky-network");
    assert_eq!(sent["policy"]["max_attempts"], 4);
    assert_eq!(sent["attempts"][0]["outcome"], "failed");
    assert!(
        sent["traceback"]
            .as_str()
            .unwrap()
            .contains("ConnectionResetError")
    );

    // The AI report: every classification and what was done with it; no token anywhere.
    let trail: Value = serde_json::from_str(&std::fs::read_to_string(&ai_report).unwrap()).unwrap();
    assert_eq!(trail["endpoint"], server.url());
    assert_eq!(trail["protocol"], "mcp");
    assert_eq!(trail["stats"]["calls"], 2);
    let applied: Vec<(String, String)> = trail["classifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["nodeid"].as_str().unwrap().to_owned(),
                r["applied"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        applied.contains(&(logic.into(), "stopped".into())),
        "{applied:?}"
    );
    assert!(
        applied.contains(&(network.into(), "delay set to 1.5s".into())),
        "{applied:?}"
    );
    let report_text = std::fs::read_to_string(p.report_path()).unwrap();
    let trail_text = std::fs::read_to_string(&ai_report).unwrap();
    assert_no_secret(
        &[
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("the report", &report_text),
            ("the AI report", &trail_text),
        ],
        &[TOKEN],
    );

    // Answers outside the contract: ignored with a warning each, the heuristics keep the failure.
    let p = Project::new();
    p.file(
        "test_bad.py",
        "def test_cosmic():\n    raise ValueError('x')\n\ndef test_overconfident():\n    raise TimeoutError('slow')\n",
    );
    let out = run_ai(&p, &server.url(), &[], &[("SMART_RERUN_AI_TOKEN", TOKEN)]);
    let warnings = ai_warnings(&out);
    assert!(
        warnings.contains(&"AI answer for test_bad.py::test_cosmic ignored: 'cosmic-rays' is not a category; known: flaky-network, flaky-timing, flaky-resource, environmental, deterministic, unknown".to_owned()),
        "{warnings:?}"
    );
    assert!(
        warnings.contains(
            &"AI answer for test_bad.py::test_overconfident ignored: confidence 1.7 is outside 0..1"
                .to_owned()
        ),
        "{warnings:?}"
    );
    for t in [
        "test_bad.py::test_cosmic",
        "test_bad.py::test_overconfident",
    ] {
        assert_eq!(attempt_class(&out, t, 1)["source"], "heuristic", "{t}");
        assert_eq!(out.attempts(t), 2, "{t}: the policy's attempts");
    }
}

#[test]
fn the_cache_answers_a_second_run_without_a_call_over_json_responses() {
    let server = Server::mcp(&["--json-response"], json!({}));
    let p = Project::new();
    p.file(
        "test_c.py",
        "def test_timeout():\n    raise TimeoutError('upstream timed out after 30s')\n\n\
         def test_import():\n    import no_such_module_sr\n",
    );
    let cache = p.path().join(".cache/ai.json");
    let args = ["--max", "2", "--ai-cache", cache.to_str().unwrap()];
    let out = run_ai(&p, &server.url(), &args, &[]);
    assert!(ai_warnings(&out).is_empty(), "{}", out.dump());
    assert_eq!(server.calls().len(), 2);
    let timeout = "test_c.py::test_timeout";
    let c = attempt_class(&out, timeout, 1);
    assert_eq!(
        (&c["source"], &c["category"]),
        (&json!("ai"), &json!("flaky-timing"))
    );
    assert_eq!(
        attempt_class(&out, "test_c.py::test_import", 1)["source"],
        "ai"
    );
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(stored["entries"].as_object().unwrap().len(), 2, "{stored}");

    // The same failures again: answered from the cache, no call.
    let out = run_ai(&p, &server.url(), &args, &[]);
    assert_eq!(server.calls().len(), 2, "the second run asked the server");
    for t in [timeout, "test_c.py::test_import"] {
        assert_eq!(attempt_class(&out, t, 1)["source"], "cache", "{t}");
    }
    assert_eq!(attempt_class(&out, timeout, 1)["category"], "flaky-timing");
}

#[test]
fn secrets_in_a_traceback_never_reach_the_server() {
    let server = Server::mcp(&["--json-response"], json!({}));
    let secret = "sr-e2e-5ecret-value-91d2";
    let password = "pa55-w0rd-e2e";
    let bearer = "eyJhbGciOiJIUzI1NiJ9.e2e.sig";
    let p = Project::new();
    p.file(
        "test_leak.py",
        &format!(
            r#"
import os

def test_leaks_redacted():
    token = os.environ["SECRET_TOKEN"]
    dsn = "postgresql://admin:{password}@db.internal:5432/app"
    headers = {{"Authorization": "Bearer {bearer}"}}
    raise ConnectionError("cannot reach " + dsn + " with " + token + " headers " + repr(headers))

def test_leaks_raw():
    token = os.environ["SECRET_TOKEN"]
    dsn = "postgresql://admin:{password}@db.internal:5432/app"
    raise ConnectionError("cannot reach " + dsn + " with " + token)
"#
        ),
    );
    // `-l` puts the locals, secret included, into the traceback too.
    let out = run_ai(
        &p,
        &server.url(),
        &["--max", "1"],
        &[
            ("SECRET_TOKEN", secret),
            ("PYTEST_ADDOPTS", "-l -k redacted"),
        ],
    );
    let sent = server.raw_calls();
    assert_eq!(server.calls().len(), 1, "{}", out.dump());
    // The failure really carried the secrets: the local report keeps the raw traceback.
    let tb = out.test("test_leak.py::test_leaks_redacted")["attempts"][0]["traceback"]
        .as_str()
        .unwrap()
        .to_owned();
    for s in [secret, password, bearer] {
        assert!(tb.contains(s), "the test did not leak {s}: {tb}");
    }
    assert_no_secret(
        &[("what the server received", &sent)],
        &[secret, password, bearer],
    );
    let call = &server.calls()[0];
    let message = call["message"].as_str().unwrap();
    assert!(
        message.contains("postgresql://***@db.internal:5432/app"),
        "{message}"
    );
    assert!(call["traceback"].as_str().unwrap().contains("***"));

    // The same with --ai-redact false: what the switch controls does reach the server.
    let out = run_ai(
        &p,
        &server.url(),
        &["--max", "1", "--ai-redact", "false"],
        &[("SECRET_TOKEN", secret), ("PYTEST_ADDOPTS", "-k raw")],
    );
    assert_eq!(server.calls().len(), 2, "{}", out.dump());
    let raw = &server.calls()[1];
    assert_eq!(raw["nodeid"], "test_leak.py::test_leaks_raw");
    assert!(raw["message"].as_str().unwrap().contains(password));
}

/// Provider tokens in a failure's message and locals, over the plain HTTP protocol: none reaches the
/// server, and the AI report counts what was scrubbed by kind. The fake secrets are put together at run
/// time, so no secret scanner takes this file for a leak.
#[test]
fn provider_tokens_and_private_keys_never_reach_the_server() {
    let server = Server::http(&[], json!({}));
    let b62 = "Zq8xK2mP7vL4nR9sT1wY6bC3dF5gH0jA";
    let secrets = [
        ("aws-access-key-id", format!("AKIA{}", "Q7RT2XKW9PLM4ZNB")),
        ("github-token", format!("ghp_{b62}a1B2")),
        (
            "github-token",
            format!("github_pat_11AB{}_{b62}", "CDEF1234gh"),
        ),
        ("gitlab-token", format!("glpat-{}", &b62[..20])),
        (
            "jwt",
            format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}",
                &b62[..22]
            ),
        ),
        ("slack-token", format!("xoxb-1234567890-{}", &b62[..24])),
        ("stripe-key", format!("sk_live_{}", &b62[..24])),
    ];
    let aws_secret = format!("{b62}{}", "aB3/+x9Y");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC{b62}\\n-----END PRIVATE KEY-----"
    );
    let listed: Vec<String> = secrets.iter().map(|(_, s)| format!("{s:?}")).collect();
    let p = Project::new();
    p.file(
        "test_tokens.py",
        &format!(
            r#"
SECRETS = [{}]
AWS = "aws_secret_access_key = {aws_secret}"
PEM = "{pem}"

def test_tokens():
    raise ConnectionError("rejected: " + " ".join(SECRETS) + " " + AWS + " " + PEM)
"#,
            listed.join(", ")
        ),
    );
    let ai_report = p.path().join("ai-report.json");
    let out = run_ai(
        &p,
        &server.url(),
        &[
            "--ai-protocol",
            "http",
            "--max",
            "1",
            "--ai-report",
            ai_report.to_str().unwrap(),
        ],
        &[("PYTEST_ADDOPTS", "-l")],
    );
    assert_eq!(server.calls().len(), 1, "{}", out.dump());
    let sent = server.raw_calls();
    let message = out.test("test_tokens.py::test_tokens")["attempts"][0]["exception"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut all: Vec<&str> = secrets.iter().map(|(_, s)| s.as_str()).collect();
    all.push(&aws_secret);
    all.push("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
    for s in &all {
        assert!(message.contains(s), "the test did not raise {s}: {message}");
    }
    assert_no_secret(&[("what the server received", &sent)], &all);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&ai_report).unwrap()).unwrap();
    let redacted = &report["redacted"];
    for kind in [
        "aws-access-key-id",
        "aws-secret-access-key",
        "gitlab-token",
        "jwt",
        "private-key",
        "slack-token",
        "stripe-key",
    ] {
        assert!(
            redacted[kind].as_u64().unwrap_or(0) >= 1,
            "{kind}: {redacted}"
        );
    }
    assert!(
        redacted["github-token"].as_u64().unwrap_or(0) >= 2,
        "{redacted}"
    );
    let report_text = std::fs::read_to_string(&ai_report).unwrap();
    assert_no_secret(&[("the AI report", &report_text)], &all);
}

#[test]
fn a_slow_server_is_given_up_on_and_the_run_is_not_held() {
    let server = Server::mcp(&["--sleep", "120"], json!({}));
    let p = Project::new();
    p.file("test_s.py", SUITE);
    let started = Instant::now();
    let out = run_ai(&p, &server.url(), &["--max", "3", "--ai-timeout", "2"], &[]);
    let took = started.elapsed();
    assert_eq!(
        ai_warnings(&out),
        [format!(
            "AI endpoint {} did not answer within 2s: the heuristics decided",
            server.url()
        )],
        "{}",
        out.dump()
    );
    assert!(took < Duration::from_secs(60), "the run took {took:?}");
    assert_eq!(out.outcome("test_s.py::test_network"), "flaky");
    assert_eq!(
        attempt_class(&out, "test_s.py::test_network", 1)["source"],
        "heuristic"
    );
    // Both questions reached the sleeping server within the 2 s: they were asked concurrently.
    assert_eq!(
        server.calls().len(),
        2,
        "asked once per fingerprint, then given up on"
    );
}

#[test]
fn plain_http_answers_errors_and_garbage() {
    let fixed = json!({"test_logic": {"category": "deterministic", "confidence": 0.9,
                                      "reason": "fixed over http", "action": "stop_retry"}});
    let ok = Server::http(&["--token", TOKEN], fixed.clone());
    let failing = Server::http(&["--fail", "503"], fixed.clone());
    let garbage = Server::http(&["--garbage"], fixed);
    let unreachable = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/classify")
    };

    let p = Project::new();
    p.file("test_h.py", SUITE);
    let http = ["--ai-protocol", "http", "--max", "3"];
    let out = run_ai(&p, &ok.url(), &http, &[("SMART_RERUN_AI_TOKEN", TOKEN)]);
    assert!(ai_warnings(&out).is_empty(), "{}", out.dump());
    let c = attempt_class(&out, "test_h.py::test_logic", 1);
    assert_eq!(
        (&c["source"], &c["reason"]),
        (&json!("ai"), &json!("fixed over http"))
    );
    assert_eq!(out.attempts("test_h.py::test_logic"), 1);
    assert_eq!(ok.calls().len(), 2);

    for (endpoint, expected) in [
        (failing.url(), "failed (HTTP 503)".to_owned()),
        (
            garbage.url(),
            "sent an answer that is not a classification (the answer is not JSON: this is not JSON {)"
                .to_owned(),
        ),
        (unreachable.clone(), "unreachable (connection refused)".to_owned()),
        (ok.url(), "needs a token (HTTP 401".to_owned()),
    ] {
        let p = Project::new();
        p.file("test_h.py", SUITE);
        let out = run_ai(&p, &endpoint, &http, &[]);
        let warnings = ai_warnings(&out);
        assert_eq!(warnings.len(), 1, "{endpoint}: {}", out.dump());
        assert!(
            warnings[0].starts_with(&format!("AI endpoint {endpoint} {expected}"))
                && warnings[0].ends_with(": the heuristics decided"),
            "{endpoint}: {warnings:?}"
        );
        // The heuristics decided, and the run went on as without AI.
        assert_eq!(
            attempt_class(&out, "test_h.py::test_logic", 1)["source"],
            "heuristic"
        );
        assert_eq!(out.outcome("test_h.py::test_network"), "flaky");
        out.assert_code(1);
    }
}

/// The ini keys switch the AI on too, read after pytest has started.
#[test]
fn ini_keys_configure_the_ai() {
    let server = Server::http(&[], json!({}));
    let p = Project::new();
    p.file(
        "test_i.py",
        "def test_t():\n    raise TimeoutError('slow')\n",
    );
    p.file(
        "pytest.ini",
        &format!(
            "[pytest]\nsmart_rerun_ai = true\nsmart_rerun_ai_endpoint = {}\nsmart_rerun_ai_protocol = http\n\
             smart_rerun_ai_report = out/ai.json\n",
            server.url()
        ),
    );
    let mut cmd = p.command(&[]);
    for k in smart_rerun::config::KEYS {
        cmd.env_remove(k.env);
    }
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"]);
    let out = p.output(cmd);
    assert_eq!(
        attempt_class(&out, "test_i.py::test_t", 1)["source"],
        "ai",
        "{}",
        out.dump()
    );
    assert_eq!(server.calls().len(), 1);
    assert!(Path::new(&p.path().join("out/ai.json")).exists());
}

/// Ctrl-C while the classifier is thinking: the run stops at once, exit 2, with its partial report.
#[cfg(unix)]
#[test]
fn ctrl_c_during_an_ai_call_stops_the_run_at_once() {
    let server = Server::mcp(&["--sleep", "120"], json!({}));
    let p = Project::new();
    p.file("test_s.py", SUITE);
    let mut cmd = p.command(&["--ai", "--ai-endpoint", &server.url(), "--max", "3"]);
    for k in smart_rerun::config::KEYS {
        cmd.env_remove(k.env);
    }
    cmd.arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while server.calls().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the questions never reached the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: a plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("smart-rerun still running 8 s after SIGINT during an AI call");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "interrupted");
    let report = common::read_report(&p.report_path());
    assert_eq!(report["run"]["interrupted"], true);
}
