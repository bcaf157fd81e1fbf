//! `smart-rerun comment`: the sticky comment through the REST API, from saved reports, without pytest.

use super::*;

/// A saved report for `smart-rerun comment`: one test, failed or passed, for job `key`.
fn saved_report(dir: &Path, name: &str, key: &str, pr: Option<u64>, failed: bool) -> PathBuf {
    let outcome = if failed { "failed" } else { "passed" };
    let attempts = if failed {
        json!([{"number": 1, "round": 1, "outcome": "failed", "phase": "call", "duration_seconds": 0.1,
                "exception": {"type": "builtins.AssertionError", "mro": ["builtins.AssertionError"],
                              "message": format!("{key} broke")}}])
    } else {
        json!([])
    };
    let mut ci = json!({"platform": "github", "repository": "evil/elsewhere", "comment_key": key,
                        "run_url": "https://github.com/o/r/actions/runs/5"});
    if let Some(pr) = pr {
        ci["pull_request"] = json!(pr);
    }
    let report = json!({
        "schema_version": 1,
        "tool": {"name": "smart-rerun", "version": "0.1.0"},
        "run": {
            "command": ["pytest"], "cwd": "/w", "python_version": "3.12.0", "pytest_version": "9.0.0",
            "python_executable": "/usr/bin/python3", "rootdir": "/w", "started_at": "2026-11-02T10:00:00Z",
            "finished_at": "2026-11-02T10:00:01Z", "duration_seconds": 1.0, "exit_code": if failed { 1 } else { 0 },
            "exit_reason": "", "interrupted": false,
            "policy": {"enabled": true, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                       "max_delay_seconds": null, "errors": []},
            "rounds": [{"number": 1, "kind": "first", "started_at": "2026-11-02T10:00:00Z",
                        "duration_seconds": 1.0, "selected": 1, "exit_status": if failed { 1 } else { 0 }}],
        },
        "summary": {"total": 1, "passed": if failed { 0 } else { 1 }, "failed": if failed { 1 } else { 0 },
                    "flaky": 0, "skipped": 0, "xfailed": 0, "xpassed": 0, "errors": 0, "not_run": 0,
                    "collection_errors": 0, "reruns": 0, "rerun_seconds": 0.0},
        "tests": [{"nodeid": format!("tests/test_{name}.py::test_x"), "outcome": outcome,
                   "file": format!("tests/test_{name}.py"), "line": 1, "duration_seconds": 0.1,
                   "attempts": attempts}],
        "ci": ci,
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, report.to_string()).unwrap();
    path
}

fn comment_cmd(reports: &[&Path], args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.arg("comment").arg("--report").args(reports).args(args);
    cmd
}

fn section_keys(body: &str) -> Vec<String> {
    body.match_indices("<!-- smart-rerun:section key=\"")
        .map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[test]
fn the_comment_is_created_then_updated_in_place() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("PR comment created: https://github.com/o/r/pull/7#issuecomment-")
    );
    let first = api.comments();
    assert_eq!(first.len(), 1);
    assert!(first[0].body.contains("unit broke"));

    let a = saved_report(ws.path(), "a", "unit", Some(7), false);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment updated"), "{}", out.dump());
    let now = api.comments();
    assert_eq!(now.len(), 1, "updated in place");
    assert_eq!(now[0].id, first[0].id);
    assert!(!now[0].body.contains("unit broke") && now[0].body.contains("1 passed"));
    assert_eq!(api.requests("POST").len(), 1);
    assert_eq!(api.requests("PATCH").len(), 1);
    assert!(
        api.log().iter().all(|l| !l.path.contains("evil")),
        "the repository is the job's, never the report's"
    );
}

#[test]
fn the_comment_is_found_on_page_three_and_a_planted_marker_is_ignored() {
    let api = FakeGitHub::start();
    api.page_size(2);
    api.add_comment("LGTM", "alice", false, "MEMBER");
    let planted = api.add_comment(
        &format!("{MARKER}\nplanted by a drive-by commenter"),
        "mallory",
        false,
        "NONE",
    );
    for i in 0..2 {
        api.add_comment(&format!("comment {i}"), "bob", false, "CONTRIBUTOR");
    }
    let ours = api.add_comment(
        &format!("{MARKER}\n<!-- smart-rerun:section key=\"old\" -->\nold\n<!-- smart-rerun:end-section -->\n"),
        "github-actions[bot]",
        true,
        "NONE",
    );
    api.add_comment("after", "alice", false, "MEMBER");

    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    let patched: Vec<String> = api.requests("PATCH").into_iter().map(|l| l.path).collect();
    assert_eq!(
        patched.first().map(String::as_str),
        Some(format!("/repos/o/r/issues/comments/{ours}").as_str()),
        "{:?}",
        api.log()
    );
    assert!(api.requests("POST").is_empty());
    let pages: Vec<String> = api
        .requests("GET")
        .into_iter()
        .map(|l| l.path)
        .filter(|p| p.contains("/issues/7/comments"))
        .collect();
    assert_eq!(pages.len(), 3, "every page is read: {pages:?}");
    assert!(
        pages[1].starts_with("/repositories/1/issues/7/comments?"),
        "Link followed: {pages:?}"
    );
    let comments = api.comments();
    let body = &comments.iter().find(|c| c.id == ours).unwrap().body;
    assert_eq!(section_keys(body), ["old", "unit"], "other sections kept");
    assert_eq!(
        comments.iter().find(|c| c.id == planted).unwrap().body,
        format!("{MARKER}\nplanted by a drive-by commenter")
    );
    assert!(api.log().iter().all(|l| l.authorized));
}

#[test]
fn two_matrix_jobs_keep_each_others_sections_even_when_they_finish_together() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "test (3.11)", Some(7), true);
    let b = saved_report(ws.path(), "b", "test (3.12)", Some(7), false);
    run_step(comment_cmd(&[&a], &[]), &step);
    run_step(comment_cmd(&[&b], &[]), &step);
    let comments = api.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(
        section_keys(&comments[0].body),
        ["test (3.11)", "test (3.12)"]
    );

    // Both at once, twice over, each rewriting its own section: one comment, both sections.
    api.delay(std::time::Duration::from_millis(30));
    let mut step = step;
    step.set("SMART_RERUN_TEST_GITHUB_PAUSE_MS", "300");
    for round in 0..2 {
        let a = saved_report(ws.path(), "a", "test (3.11)", Some(7), round == 0);
        let b = saved_report(ws.path(), "b", "test (3.12)", Some(7), round == 1);
        let c = saved_report(ws.path(), "c", "lint", Some(7), false);
        let spawn = |r: &Path| {
            let mut cmd = comment_cmd(&[r], &[]);
            step.apply(&mut cmd);
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let children = [spawn(&a), spawn(&b), spawn(&c)];
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let comments = api.comments();
        assert_eq!(comments.len(), 1, "duplicates are folded: {comments:?}");
        assert_eq!(
            section_keys(&comments[0].body),
            ["lint", "test (3.11)", "test (3.12)"],
            "round {round}: {}",
            comments[0].body
        );
    }
}

#[test]
fn one_comment_from_several_reports_and_the_merged_form() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "shard 1", Some(7), true);
    let b = saved_report(ws.path(), "b", "shard 2", Some(7), false);
    let out = run_step(comment_cmd(&[&a, &b], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(api.requests("POST").len(), 1, "one write for both");
    assert_eq!(
        section_keys(&api.comments()[0].body),
        ["shard 1", "shard 2"]
    );

    let out = run_step(
        comment_cmd(&[&a, &b], &["--comment-key", "all shards"]),
        &step,
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let body = &api.comments()[0].body;
    assert!(section_keys(body).contains(&"all shards".to_owned()));
    assert!(body.contains("1 failed, 1 passed"), "{body}");
}

#[test]
fn server_errors_and_short_rate_limits_are_retried() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "GET",
        times: 2,
        status: 502,
        headers: vec![],
        body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
    });
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 403,
        headers: vec![
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
        ],
        body: r#"{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}"#.into(),
    });
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 429,
        headers: vec![("retry-after".into(), "1".into())],
        body: r#"{"message":"You have exceeded a secondary rate limit."}"#.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());
    // Two 502s, the list, then the list again after creating (a parallel job may have created one).
    assert_eq!(api.requests("GET").len(), 4, "{:?}", api.log());
    assert_eq!(api.requests("POST").len(), 3, "{:?}", api.log());
    assert_eq!(api.comments().len(), 1);
}

/// Runs `comment` against an API that answers every request with `status` and `body`; returns the one
/// warning's text and how many requests were made.
fn failing_comment(status: u16, headers: Vec<(String, String)>, body: &str) -> (String, usize) {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status,
        headers,
        body: body.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "never a failed job: {}", out.dump());
    assert!(!out.text.contains(TOKEN));
    let warnings: Vec<Cmd> = effective(&out.text)
        .into_iter()
        .filter(|c| c.name == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.dump());
    assert!(warnings[0].data.contains("#fork-pull-requests"));
    (warnings[0].data.clone(), api.log().len())
}

#[test]
fn refusals_are_one_warning_each_and_not_retried() {
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    type Case<'a> = (u16, Vec<(String, String)>, &'a str, &'a str, usize);
    let cases: Vec<Case> = vec![
        (
            404,
            vec![],
            r#"{"message":"Not Found","status":"404"}"#,
            "o/r or pull request #7 is not visible to this token (404 Not Found)",
            1,
        ),
        (
            401,
            vec![],
            r#"{"message":"Bad credentials","status":"401"}"#,
            "GitHub rejected the token (401 Bad credentials)",
            1,
        ),
        (
            403,
            vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), far),
            ],
            r#"{"message":"API rate limit exceeded for installation ID 1."}"#,
            "the API rate limit is exhausted for another",
            1,
        ),
        (503, vec![], "", "GitHub answered 503 to 4 tries", 4),
    ];
    for (status, headers, body, expected, requests) in cases {
        let (warning, made) = failing_comment(status, headers, body);
        assert!(warning.contains(expected), "{status}: {warning}");
        assert_eq!(made, requests, "{status}: {warning}");
    }
}

#[test]
fn a_comment_github_refuses_as_invalid_is_a_warning() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "POST",
        times: 1,
        status: 422,
        headers: vec![],
        body: r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"unprocessable","field":"data","message":"Could not resolve to a node with the global id"}],"documentation_url":"https://docs.github.com/rest","status":"422"}"#.into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("GitHub refused the comment (422 Validation Failed: Could not resolve"),
        "{}",
        out.dump()
    );
    assert_eq!(api.requests("POST").len(), 1);
}

#[test]
fn in_a_workflow_run_job_the_pull_request_must_be_at_the_tested_commit() {
    let api = FakeGitHub::start();
    let tested = "1111111111111111111111111111111111111111";
    let ws = tempfile::tempdir().unwrap();
    let mut step = Step::new(ws.path(), &api.url);
    step.event(
        "workflow_run",
        &json!({"workflow_run": {"head_sha": tested, "pull_requests": [], "event": "pull_request"}}),
    );
    // The report (untrusted, from the fork's run) names pull request 8, which is at another commit.
    api.set_head(8, "2222222222222222222222222222222222222222");
    api.set_head(7, tested);
    let a = saved_report(ws.path(), "a", "unit", Some(8), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text.contains("refusing to comment on it"),
        "{}",
        out.dump()
    );
    assert!(api.comments().is_empty());

    let out = run_step(comment_cmd(&[&a], &["--pr", "7"]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());
    let body = &api.comments()[0].body;
    assert!(
        body.contains("https://github.com/o/r/actions/runs/5"),
        "the report's run link is kept when it is this repository's: {body}"
    );
}

#[test]
fn comment_usage_errors_exit_4() {
    let ws = tempfile::tempdir().unwrap();
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let b = saved_report(ws.path(), "b", "unit", Some(8), true);
    let mut step = Step::new(ws.path(), "http://127.0.0.1:9");
    let out = run_step(comment_cmd(&[&a, &b], &[]), &{
        let mut s = Step::new(ws.path(), "http://127.0.0.1:9");
        s.event("push", &json!({}));
        s
    });
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(
        out.text
            .contains("different pull requests (#7, #8): pass --pr")
    );
    step.unset("SMART_RERUN_GITHUB_TOKEN");
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(out.text.contains("no token"));
    let out = run_step(comment_cmd(&[&ws.path().join("missing.json")], &[]), &step);
    assert_eq!(out.code, 4, "{}", out.dump());
}

#[test]
fn a_token_pasted_with_a_newline_works_and_a_broken_one_is_a_warning_not_a_crash() {
    let api = FakeGitHub::start();
    let ws = tempfile::tempdir().unwrap();
    let mut step = Step::new(ws.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_TOKEN", &format!("{TOKEN}\n"));
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.text.contains("PR comment created"), "{}", out.dump());

    let p = Project::new();
    p.file("test_ok.py", "def test_ok():\n    pass\n");
    let mut step = Step::new(p.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_TOKEN", "ghs_one\ttwo");
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("the GitHub token is empty or holds characters an HTTP header cannot"),
        "{}",
        out.dump()
    );
    assert!(!out.text.contains("ghs_one"));
}

#[test]
fn a_redirect_to_another_server_does_not_take_the_token_there() {
    let elsewhere = FakeGitHub::start();
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status: 302,
        headers: vec![(
            "Location".into(),
            format!("{}/repos/o/r/issues/7/comments?per_page=100", elsewhere.url),
        )],
        body: String::new(),
    });
    let ws = tempfile::tempdir().unwrap();
    let step = Step::new(ws.path(), &api.url);
    let a = saved_report(ws.path(), "a", "unit", Some(7), true);
    let out = run_step(comment_cmd(&[&a], &[]), &step);
    assert_eq!(out.code, 0, "never a failed job: {}", out.dump());
    assert!(!api.log().is_empty() && api.log().iter().all(|l| l.authorized));
    let reached = elsewhere.log();
    assert!(
        reached.iter().all(|l| !l.authorized),
        "the token went to the other server: {reached:?}"
    );
    assert!(api.comments().is_empty() && elsewhere.comments().is_empty());
    let warnings: Vec<Cmd> = effective(&out.text)
        .into_iter()
        .filter(|c| c.name == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.dump());
    assert!(
        warnings[0].data.contains("could not write the PR comment"),
        "{}",
        warnings[0].data
    );
}
