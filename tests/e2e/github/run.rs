//! `smart-rerun run` in a GitHub Actions step: annotations, summary, outputs and the comment, and what
//! the tested code cannot do to them.

use super::*;

#[test]
fn a_run_in_actions_annotates_summarises_sets_outputs_and_comments_and_the_tests_cannot_issue_commands()
 {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "2"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.text.contains("::set-output name=exit-code::0"),
        "pytest's output is shown: {}",
        out.dump()
    );

    // Only smart-rerun's own commands take effect: the rerun round's group and the annotations.
    let cmds = effective(&out.text);
    let names: Vec<&str> = cmds.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| matches!(*n, "group" | "endgroup" | "error" | "warning")),
        "{names:?}\n{}",
        out.dump()
    );
    let annotations: Vec<&Cmd> = cmds
        .iter()
        .filter(|c| c.name == "error" || c.name == "warning")
        .collect();
    let titles: Vec<&str> = annotations
        .iter()
        .map(|c| prop(c, "title").unwrap_or(""))
        .collect();
    assert_eq!(
        titles,
        [
            "Failed: test_gh.py::test_broken",
            "Failed: test_gh.py::test_hostile",
            "Flaky: test_gh.py::test_flaky",
            "Flaky: test_gh.py::test_param[::error::param]",
            "Flaky: test_gh.py::test_param[##[warning]p]",
        ],
        "{}",
        out.dump()
    );
    let broken = annotations[0];
    assert_eq!(prop(broken, "file"), Some("test_gh.py"));
    assert_eq!(prop(broken, "line"), Some("10"), "the assert's line");
    assert!(
        broken.data.starts_with("AssertionError: broken on purpose"),
        "{}",
        broken.data
    );
    let hostile = annotations[1];
    assert!(
        hostile
            .data
            .contains("boom\n::error::injected%0A::warning::x\n##[set-output name=passed;]99"),
        "the message arrives whole, as text: {:?}",
        hostile.data
    );
    assert_eq!(
        cmds.iter().filter(|c| c.name == "group").count(),
        1,
        "round 2 is grouped"
    );

    // Step outputs, with random delimiters.
    assert_eq!(step.output("passed"), "1");
    assert_eq!(step.output("failed"), "2");
    assert_eq!(step.output("flaky"), "3");
    assert_eq!(step.output("exit-code"), "1");
    assert_eq!(
        PathBuf::from(step.output("report-path")),
        p.report_path(),
        "absolute report path"
    );
    assert_eq!(step.output("junit-path"), "");

    // The job summary.
    let summary = step.summary();
    assert!(
        summary.contains("smart-rerun: 2 failed, 3 flaky, 1 passed"),
        "{summary}"
    );
    assert!(summary.contains("PR comment: [updated](https://github.com/o/r/pull/7#issuecomment-"));
    assert!(!summary.contains("@octocat"), "no mention: {summary}");

    // The sticky comment, with this job's section.
    let comments = api.comments();
    assert_eq!(comments.len(), 1, "{:?}", api.log());
    let body = &comments[0].body;
    assert!(body.starts_with(MARKER), "{body}");
    assert!(
        body.contains("<!-- smart-rerun:section key=\"test (3.12, ubuntu-latest)\" -->"),
        "{body}"
    );
    assert!(body.contains("**test (3.12, ubuntu-latest)**"), "{body}");
    assert!(!body.contains("@octocat"), "no mention: {body}");
    assert!(api.log().iter().all(|l| l.authorized));

    // The report carries the pull request and commit.
    let report = common::read_report(&p.report_path());
    assert_eq!(
        report["ci"],
        json!({
            "platform": "github",
            "repository": "o/r",
            "pull_request": 7,
            "head_sha": "0123456789abcdef0123456789abcdef01234567",
            "commit_sha": "89abcdef0123456789abcdef0123456789abcdef",
            "run_url": "https://github.com/o/r/actions/runs/99",
            "comment_key": "test (3.12, ubuntu-latest)",
        })
    );

    // The token is never shown or written.
    for text in [&out.text, &summary, &report.to_string(), body] {
        assert!(!text.contains(TOKEN));
    }
}

#[test]
fn the_tests_never_see_the_token() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_env.py",
        "import os\n\ndef test_env():\n    assert 'SMART_RERUN_GITHUB_TOKEN' not in os.environ\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
}

#[test]
fn with_stop_commands_off_pytest_output_issues_commands_but_the_summary_does_not() {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let step = Step::new(p.path(), &api.url);
    let out = run_step(
        run_cmd(
            &p,
            &["--github-stop-commands=false", "--github-comment=false"],
        ),
        &step,
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    assert!(
        cmds.iter().any(|c| c.name == "set-output"),
        "pytest's own commands act when the user turns the guard off: {}",
        out.dump()
    );
    assert!(api.log().is_empty(), "no comment asked, no API call");
}

#[test]
fn annotations_summary_and_comment_can_be_turned_off() {
    let api = FakeGitHub::start();
    let p = hostile_project();
    let cmd = run_cmd(&p, &["--github-annotations", "false"]);
    let mut step = Step::new(p.path(), &api.url);
    step.set("SMART_RERUN_GITHUB_SUMMARY", "false")
        .set("SMART_RERUN_GITHUB_COMMENT", "0");
    let out = run_step(cmd, &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    assert!(
        cmds.iter()
            .all(|c| c.name == "group" || c.name == "endgroup"),
        "{cmds:?}"
    );
    assert_eq!(step.summary(), "");
    assert!(api.log().is_empty());
    assert_eq!(step.output("exit-code"), "1", "outputs are always set");
}

#[test]
fn a_read_only_token_on_a_fork_pr_is_one_warning_and_the_exit_code_stays() {
    let api = FakeGitHub::start();
    api.script(Scripted {
        method: "*",
        times: 100,
        status: 403,
        headers: vec![("x-ratelimit-remaining".into(), "4999".into())],
        body: r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest/issues/comments#create-an-issue-comment","status":"403"}"#.into(),
    });
    for (suite, code) in [
        ("def test_ok():\n    pass\n", 0),
        ("def test_no():\n    assert False\n", 1),
    ] {
        let p = Project::new();
        p.file("test_fork.py", suite);
        let mut step = Step::new(p.path(), &api.url);
        step.event("pull_request", &pr_payload(true));
        let out = run_step(run_cmd(&p, &[]), &step);
        assert_eq!(out.code, code, "{}", out.dump());
        let warnings: Vec<Cmd> = effective(&out.text)
            .into_iter()
            .filter(|c| prop(c, "title") == Some("smart-rerun PR comment"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", out.dump());
        let w = &warnings[0];
        assert_eq!(w.name, "warning");
        assert!(
            w.data.contains("Resource not accessible by integration"),
            "{}",
            w.data
        );
        assert!(w.data.contains("forks get a read-only token"), "{}", w.data);
        assert!(w.data.contains("workflow_run"), "{}", w.data);
        assert!(
            w.data.contains(
                "https://github.com/aki-07/smart-rerun/blob/main/docs/github.md#fork-pull-requests"
            ),
            "{}",
            w.data
        );
        assert_eq!(step.output("exit-code"), code.to_string());
        assert!(step.summary().contains("PR comment: not posted"));
        assert!(!out.text.contains(TOKEN));
    }
    assert_eq!(
        api.requests("GET").len(),
        2,
        "403 is not retried: {:?}",
        api.log()
    );
}

#[test]
fn no_pull_request_no_token_no_api_call() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file("test_ok.py", "def test_ok():\n    pass\n");
    let mut step = Step::new(p.path(), &api.url);
    step.event("push", &json!({"ref": "refs/heads/main"}));
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text
            .contains("no PR comment: the push event is not about a pull request")
    );
    let mut step = Step::new(p.path(), &api.url);
    step.unset("SMART_RERUN_GITHUB_TOKEN");
    let out = run_step(run_cmd(&p, &[]), &step);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.text.contains("no PR comment: no token"),
        "{}",
        out.dump()
    );
    assert!(api.log().is_empty());
    assert!(effective(&out.text).is_empty());
}

#[cfg(unix)]
#[test]
fn a_cancelled_run_still_annotates_and_sets_outputs_but_skips_the_comment() {
    let api = FakeGitHub::start();
    let p = Project::new();
    let started = p.path().join("started");
    p.file(
        "test_slow.py",
        &format!(
            "import pathlib, time\n\ndef test_fail():\n    assert False\n\ndef test_slow():\n    pathlib.Path({:?}).write_text('x')\n    time.sleep(60)\n",
            started.display()
        ),
    );
    let step = Step::new(p.path(), &api.url);
    let mut cmd = run_cmd(&p, &[]);
    step.apply(&mut cmd);
    let log = step.dir.path().join("log.txt");
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow test never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // What the runner does on cancellation: SIGINT to the step's process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    let titles: Vec<String> = effective(&text)
        .iter()
        .filter_map(|c| prop(c, "title").map(str::to_owned))
        .collect();
    assert!(
        titles.contains(&"Failed: test_slow.py::test_fail".to_owned()),
        "{titles:?}\n{text}"
    );
    assert!(
        text.contains("no PR comment: the run was interrupted"),
        "{text}"
    );
    assert!(api.log().is_empty());
    assert_eq!(step.output("exit-code"), "2");
}

/// ANSI colours, an OSC 8 hyperlink and a bell in a failure message: the annotation carries the text and
/// none of the escapes.
#[test]
fn escape_sequences_in_test_output_never_reach_an_annotation() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_ansi.py",
        "def test_ansi():\n    raise AssertionError(\
         '\\x1b[31mred\\x1b[0m \\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\x07bell\\tend')\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "1"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let cmds = effective(&out.text);
    let error = cmds
        .iter()
        .find(|c| c.name == "error")
        .unwrap_or_else(|| panic!("no error annotation: {}", out.dump()));
    assert!(
        error
            .data
            .starts_with("AssertionError: red click bell end\n"),
        "{:?}",
        error.data
    );
    assert!(
        !error.line.chars().any(char::is_control),
        "{:?}",
        error.line
    );
}

/// A failure message with a bare domain, a URL and issue references: the job summary and the PR comment
/// show them as text, never as links or cross-references (GitHub would link `#1` to the first issue of
/// this repository and notify it). Inside `<pre>` (the tracebacks) GitHub links nothing, so the text stays as it
/// was there.
#[test]
fn links_and_issue_references_in_test_output_stay_text() {
    let api = FakeGitHub::start();
    let p = Project::new();
    p.file(
        "test_links.py",
        "def test_links():\n    raise AssertionError(\
         'visit www.evil-example.com or https://evil.example/x about #1 and GH-45')\n",
    );
    let step = Step::new(p.path(), &api.url);
    let out = run_step(run_cmd(&p, &["--max", "1"]), &step);
    assert_eq!(out.code, 1, "{}", out.dump());
    let comments = api.comments();
    assert_eq!(comments.len(), 1, "{}", out.dump());
    for (what, text) in [
        ("summary", step.summary()),
        ("comment", comments[0].body.clone()),
    ] {
        assert!(text.contains("evil-example.com"), "{what}: {text}");
        let text = outside_pre(&text);
        for linkable in ["www.evil", "https://evil", "https\\://evil", "#1 ", "GH-45"] {
            assert!(!text.contains(linkable), "{what} has {linkable:?}: {text}");
        }
    }
}

/// The text of a rendered Markdown body outside its `<pre>` blocks.
fn outside_pre(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("<pre") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("</pre>")
            .map_or("", |end| &rest[start + end + 6..]);
    }
    out.push_str(rest);
    out
}
