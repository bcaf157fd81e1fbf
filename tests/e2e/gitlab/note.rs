//! The sticky merge request note, from `run` and from `comment`, against the fake GitLab; and the JUnit
//! layout GitLab's test report reads.

use super::*;

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
