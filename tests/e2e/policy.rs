//! `smart-rerun policy "..."`: a retry policy in plain words, translated by the example MCP server (the
//! official Python SDK) or its plain-HTTP twin, checked, shown or written into the project's pytest
//! configuration, which pytest then reads (`smart-rerun config` shows where each value came from).

use crate::ai::Server;
use crate::common::{self, Project};
use serde_json::{Value, json};
use std::process::{Command, Output, Stdio};

const SENTENCE: &str =
    "retry network errors up to 4 times with exponential backoff, never retry assertion errors";
const NETWORK: &str = "ConnectionError,TimeoutError,requests.exceptions.ConnectionError,\
                       requests.exceptions.Timeout,httpx.TransportError,urllib3.exceptions.HTTPError";

/// `smart-rerun SUBCOMMAND ARGS -- python -m pytest` in the project, with no smart-rerun variable from
/// the environment but `env`.
fn smart_rerun(p: &Project, subcommand: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.current_dir(p.path()).arg(subcommand).args(args);
    for k in smart_rerun::config::KEYS {
        cmd.env_remove(k.env);
    }
    cmd.envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .arg("--")
        .arg(common::python())
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .stdin(Stdio::null());
    cmd.output().expect("smart-rerun runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn project(config_name: &str, config: &str) -> Project {
    let p = Project::new();
    p.file(config_name, config);
    p.file("tests/test_a.py", "def test_a():\n    pass\n");
    p
}

#[test]
fn a_policy_in_words_is_translated_over_mcp_and_shown_as_the_ini_block() {
    let server = Server::mcp(&["--token", "policy-token-51"], json!({}));
    let p = project("pytest.ini", "[pytest]\naddopts = -q\n");
    let url = server.url();
    let out = smart_rerun(
        &p,
        "policy",
        &[SENTENCE, "--ai-endpoint", &url],
        &[("SMART_RERUN_AI_TOKEN", "policy-token-51")],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        format!(
            "# smart-rerun policy: {SENTENCE}\n[pytest]\nsmart_rerun_max = 5\n\
             smart_rerun_backoff = exp\nsmart_rerun_errors = {NETWORK}\n"
        )
    );
    assert!(
        stderr.contains("note: assertion errors are not in smart_rerun_errors"),
        "{stderr}"
    );
    assert!(!stdout.contains("policy-token-51") && !stderr.contains("policy-token-51"));
    // What the server was asked: the sentence and the policy settings, nothing else of the project's.
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["sentence"], SENTENCE);
    assert_eq!(calls[0]["task"], "translate_policy");
    let keys: Vec<&str> = calls[0]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"smart_rerun_backoff"), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("token")), "{keys:?}");

    // Without the token, the server refuses and smart-rerun says so.
    let out = smart_rerun(&p, "policy", &[SENTENCE, "--ai-endpoint", &url], &[]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "AI endpoint {url} needs a token (HTTP 401; set smart_rerun_ai_token"
        )),
        "{stderr}"
    );
}

#[test]
fn write_puts_the_settings_into_pyproject_and_pytest_reads_them() {
    let server = Server::mcp(&[], json!({}));
    let original = "[project]\nname = \"demo\"  # keep this comment\n\n\
                    [tool.pytest.ini_options]\n# the suite's own options\naddopts = \"-q\"\n\
                    smart_rerun_max = \"2\"\n";
    let p = project("pyproject.toml", original);
    let url = server.url();
    let sentence = "retry up to 3 times with a 0.5 s delay, linear backoff, capped at 4 seconds";
    let out = smart_rerun(
        &p,
        "policy",
        &[sentence, "--write", "--ai-endpoint", &url],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let file = p.path().join("pyproject.toml");
    assert_eq!(
        stdout,
        format!("smart-rerun: wrote 4 settings to {}\n", file.display())
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        "[project]\nname = \"demo\"  # keep this comment\n\n\
         [tool.pytest.ini_options]\n# the suite's own options\naddopts = \"-q\"\n\
         smart_rerun_max = \"4\"\nsmart_rerun_delay = \"0.5\"\nsmart_rerun_backoff = \"linear\"\n\
         smart_rerun_max_delay = \"4\"\n"
    );
    let config = smart_rerun(&p, "config", &[], &[]);
    let shown = text(&config.stdout);
    assert_eq!(
        config.status.code(),
        Some(0),
        "{shown}{}",
        text(&config.stderr)
    );
    for (key, value) in [
        ("smart_rerun_max", "4"),
        ("smart_rerun_backoff", "linear"),
        ("smart_rerun_delay", "0.5"),
    ] {
        let line = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} missing: {shown}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], value, "{line}");
        assert!(fields[2].contains("pyproject.toml:"), "{line}");
    }
}

#[test]
fn plain_http_endpoints_translate_too() {
    let server = Server::http(&[], json!({}));
    let p = project(
        "tox.ini",
        "[tox]\nenvlist = py311\n\n[pytest]\naddopts = -q\n",
    );
    let url = server.url();
    let out = smart_rerun(
        &p,
        "policy",
        &[
            "retry TimeoutError twice, flaky tests should fail the build",
            "--ai-protocol",
            "http",
            "--ai-endpoint",
            &url,
            "--write",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(p.path().join("tox.ini")).unwrap(),
        "[tox]\nenvlist = py311\n\n[pytest]\naddopts = -q\nsmart_rerun_max = 3\n\
         smart_rerun_errors = TimeoutError\nsmart_rerun_fail_on_flaky = true\n"
    );
}

#[test]
fn an_answer_that_does_not_validate_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let answer = dir.path().join("answer.json");
    let bad: Value = json!({"settings": {
        "smart_rerun_max": "lots",
        "smart_rerun_github_token": "ghp_from_the_model",
        "smart_rerun_backoff": "fibonacci"
    }});
    std::fs::write(&answer, bad.to_string()).unwrap();
    let server = Server::mcp(&["--policy-answer", answer.to_str().unwrap()], json!({}));
    let original = "[pytest]\n# mine\nsmart_rerun_max = 2\n";
    let p = project("pytest.ini", original);
    let url = server.url();
    let out = smart_rerun(
        &p,
        "policy",
        &["retry a lot", "--write", "--ai-endpoint", &url],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for part in [
        "the AI endpoint's answer was rejected",
        "smart_rerun_max = 'lots' (the AI endpoint's answer)",
        "smart_rerun_github_token is not a retry-policy setting",
        "use none, linear or exp",
    ] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
    assert!(!stderr.contains("ghp_from_the_model"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("pytest.ini")).unwrap(),
        original
    );
}

#[test]
fn without_an_endpoint_or_with_a_dead_one_the_error_says_what_to_do() {
    let p = project("pytest.ini", "[pytest]\n");
    let out = smart_rerun(&p, "policy", &["retry twice"], &[]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`policy` needs an AI endpoint to translate with: set --ai-endpoint URL"),
        "{stderr}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}/mcp");
    let out = smart_rerun(
        &p,
        "policy",
        &["retry twice", "--ai-endpoint", &dead, "--ai-timeout", "5"],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("AI endpoint {dead} unreachable (")),
        "{stderr}"
    );
}
