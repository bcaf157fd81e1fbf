use super::note::{PIPELINE_TAG, disarm, fit, prune};
use super::*;
use crate::ci::comment::StickyComment;

fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// A report with one flaky test (failed once, then passed) and one passed test.
pub(crate) fn sample_report() -> RunReport {
    serde_json::from_value(serde_json::json!({
        "schema_version": 1,
        "tool": {"name": "smart-rerun", "version": "0.1.0"},
        "run": {
            "command": ["pytest"], "cwd": "/builds/g/p", "rootdir": "/builds/g/p",
            "started_at": "2026-11-02T10:00:00Z", "finished_at": "2026-11-02T10:00:03Z",
            "duration_seconds": 3.0, "exit_code": 0, "exit_reason": "all tests passed",
            "interrupted": false,
            "policy": {"enabled": true, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                       "max_delay_seconds": null, "errors": []},
            "rounds": []
        },
        "summary": {"total": 2, "passed": 1, "failed": 0, "flaky": 1, "skipped": 0, "xfailed": 0,
                    "xpassed": 0, "errors": 0, "not_run": 0, "collection_errors": 0, "reruns": 1,
                    "rerun_seconds": 0.5},
        "tests": [
            {"nodeid": "tests/test_pay.py::test_gateway[eu]", "outcome": "flaky",
             "file": "tests/test_pay.py", "line": 12, "duration_seconds": 0.2,
             "attempts": [
                {"number": 1, "round": 1, "outcome": "failed", "phase": "call",
                 "duration_seconds": 0.3,
                 "exception": {"type": "builtins.ConnectionResetError",
                               "mro": ["ConnectionResetError", "ConnectionError", "OSError"],
                               "message": "[Errno 104] Connection reset by peer"},
                 "traceback": "def test_gateway():\n>       pay()\nE       ConnectionResetError: [Errno 104] Connection reset by peer"},
                {"number": 2, "round": 2, "outcome": "passed", "duration_seconds": 0.2}
             ]},
            {"nodeid": "tests/test_pay.py::test_refund", "outcome": "passed",
             "file": "tests/test_pay.py", "line": 30, "duration_seconds": 0.1}
        ]
    }))
    .expect("a valid report")
}

/// What GitLab's test report shows for a JUnit file, by the rules of its parser
/// (`lib/gitlab/ci/parsers/test/junit.rb`) and suite (`lib/gitlab/ci/reports/test_suite.rb`): a
/// testcase is failed, error or skipped by the presence of that element, else success (flaky and
/// rerun elements are not read); one testcase per status and `suite_classname_name`; a failed or
/// errored testcase turns the report red; a passed testcase shows no text.
#[derive(Debug, Default)]
struct GitlabView {
    /// (status, classname, name, the text GitLab shows)
    cases: Vec<(&'static str, String, String, String)>,
}

impl GitlabView {
    fn of(xml: &str) -> GitlabView {
        use quick_junit::{NonSuccessKind, TestCaseStatus};
        let report = quick_junit::Report::deserialize_from_str(xml).unwrap();
        let mut view = GitlabView::default();
        for suite in &report.test_suites {
            for case in &suite.test_cases {
                let out = case
                    .system_out
                    .as_ref()
                    .map(|s| format!("System Out:\n\n{}", s.as_str()));
                let (status, text) = match &case.status {
                    TestCaseStatus::Success { .. } => ("success", String::new()),
                    TestCaseStatus::NonSuccess {
                        kind, description, ..
                    } => (
                        if *kind == NonSuccessKind::Failure {
                            "failed"
                        } else {
                            "error"
                        },
                        [description.as_ref().map(|d| d.as_str().to_owned()), out]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join("\n\n"),
                    ),
                    TestCaseStatus::Skipped { description, .. } => (
                        "skipped",
                        description
                            .as_ref()
                            .map(|d| d.as_str().to_owned())
                            .unwrap_or_default(),
                    ),
                };
                let classname = case
                    .classname
                    .as_ref()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default();
                let name = case.name.as_str().to_owned();
                // A later testcase of the same status and name replaces the earlier one.
                view.cases
                    .retain(|(s, c, n, _)| !(*s == status && *c == classname && *n == name));
                view.cases.push((status, classname, name, text));
            }
        }
        view
    }

    fn red(&self) -> bool {
        self.cases.iter().any(|c| c.0 == "failed" || c.0 == "error")
    }

    fn find(&self, name: &str) -> Vec<&(&'static str, String, String, String)> {
        self.cases.iter().filter(|c| c.2 == name).collect()
    }
}

#[test]
fn gitlab_shows_a_flaky_test_as_passed_plus_a_skipped_companion_with_the_failure() {
    use crate::report::junit::{JunitCompat, JunitOptions, to_junit};
    let report = sample_report();
    let xml = |compat| {
        to_junit(
            &report,
            &JunitOptions {
                compat,
                ..Default::default()
            },
        )
        .to_string()
        .unwrap()
    };

    let view = GitlabView::of(&xml(JunitCompat::Gitlab));
    assert!(
        !view.red(),
        "a test that passed never turns the report red: {view:?}"
    );
    let flaky = view.find("test_gateway[eu]");
    assert_eq!(flaky.len(), 1);
    assert_eq!(flaky[0].0, "success", "same name, same history: {view:?}");
    assert_eq!(flaky[0].1, "tests.test_pay");
    let companion = view.find("test_gateway[eu] [flaky]");
    assert_eq!(companion.len(), 1, "{view:?}");
    let (status, _, _, text) = companion[0];
    assert_eq!(*status, "skipped");
    assert!(
        text.contains("FLAKY")
            && text.contains("passed on attempt 2")
            && text.contains(
                "attempt 1 failed: ConnectionResetError: [Errno 104] Connection reset by peer"
            )
            && text.contains(">       pay()"),
        "GitLab shows the failure and its traceback: {text}"
    );
    assert_eq!(view.find("test_refund")[0].0, "success");
    assert_eq!(view.cases.len(), 3);

    // Why not the others: Surefire's layout hides the flake (a plain pass, no text) ...
    let surefire = GitlabView::of(&xml(JunitCompat::Surefire));
    assert!(!surefire.red());
    assert_eq!(surefire.find("test_gateway[eu]")[0].3, "", "nothing shown");
    assert!(surefire.find("test_gateway[eu] [flaky]").is_empty());
    // ... and one testcase per attempt turns the report red for a test that passed.
    let per_attempt = GitlabView::of(&xml(JunitCompat::PerAttempt));
    assert!(per_attempt.red(), "{per_attempt:?}");
}

#[test]
fn the_section_key_is_the_job_name_with_its_node() {
    let rows: &[(&[(&str, &str)], &str)] = &[
        (&[("CI_JOB_NAME", "pytest")], "pytest"),
        // GitLab names `parallel: 3` jobs "pytest 2/3" itself.
        (
            &[
                ("CI_JOB_NAME", "pytest 2/3"),
                ("CI_NODE_INDEX", "2"),
                ("CI_NODE_TOTAL", "3"),
            ],
            "pytest 2/3",
        ),
        (
            &[
                ("CI_JOB_NAME", "pytest"),
                ("CI_NODE_INDEX", "2"),
                ("CI_NODE_TOTAL", "3"),
            ],
            "pytest 2/3",
        ),
        (
            &[("CI_JOB_NAME", "test: [3.12, \"ubuntu\"]")],
            "test: [3.12,  ubuntu ]",
        ),
        (&[], "smart-rerun"),
    ];
    for (vars, key) in rows {
        let env = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(job_key(&env), *key, "{vars:?}");
    }
}

#[test]
fn tokens_come_from_our_variables_never_from_the_job_token() {
    let job = Job::from_env(&env_of(&[
        ("CI_JOB_TOKEN", "job-token"),
        ("GITLAB_TOKEN", "glpat-second"),
        ("SMART_RERUN_GITLAB_TOKEN", "glpat-first"),
    ]));
    assert_eq!(job.token.as_deref(), Some("glpat-first"));
    assert!(!format!("{job:?}").contains("glpat"));
    let job = Job::from_env(&env_of(&[("CI_JOB_TOKEN", "job-token")]));
    assert!(job.token.is_none());
    let report = sample_report();
    let section = Section {
        key: job.key.clone(),
        render: Box::new(|b| markdown::render(&report, &Links::default(), b)),
    };
    let out = publish_note(&job, &[section], api::retry_policy());
    let NoteOutcome::Skipped(line) = out else {
        panic!("{out:?}")
    };
    assert!(
        line.contains("CI_JOB_TOKEN cannot write notes")
            && line.contains("api scope")
            && line.contains("SMART_RERUN_GITLAB_TOKEN")
            && !line.contains('\n'),
        "{line}"
    );
}

#[test]
fn the_merge_request_lives_in_the_target_project() {
    let job = Job::from_env(&env_of(&[
        ("CI_PROJECT_ID", "11"),
        ("CI_MERGE_REQUEST_PROJECT_ID", "7"),
        ("CI_MERGE_REQUEST_IID", "3"),
    ]));
    assert_eq!(job.project.as_deref(), Some("7"));
    assert_eq!(job.mr_iid, Some(3));
}

#[test]
fn quick_actions_and_references_from_tested_code_are_disarmed() {
    let text =
        "<pre>Traceback\n/merge\n  /approve now\nsee #12, !3 and &4 $5 &#124; #L10 issue#x\n</pre>";
    let out = disarm(text);
    for line in out.lines() {
        assert!(!line.trim_start().starts_with('/'), "{line:?}");
    }
    assert!(out.contains("&#47;merge") && out.contains("  &#47;approve now"));
    for reference in ["see #12", "!3 ", "&4 ", "$5 "] {
        assert!(!out.contains(reference), "{reference} in {out}");
    }
    assert!(out.contains("&#124;") && out.contains("#L10") && out.contains("issue#x"));
}

#[test]
fn older_pipelines_give_way_and_newer_ones_are_left_alone() {
    let mut c = StickyComment::default();
    c.set("a", format!("{PIPELINE_TAG}10 -->\nold"));
    c.set("b", format!("{PIPELINE_TAG}12 -->\nsame"));
    c.set("c", "no tag".into());
    let mut newer = c.clone();
    assert_eq!(prune(&mut newer, Some(11)), Err(12));
    assert_eq!(prune(&mut c, Some(12)), Ok(()));
    assert_eq!(c.sections.keys().collect::<Vec<_>>(), ["b", "c"]);
}

#[test]
fn a_section_fits_the_room_the_others_leave() {
    let mut c = StickyComment::default();
    c.set("other", "x".repeat(NOTE_LIMIT - 5_000));
    let job = Job::from_env(&env_of(&[("CI_JOB_NAME", "me"), ("CI_PIPELINE_ID", "5")]));
    // A renderer that fills its budget with text GitLab would act on.
    let render = |budget: usize| "/x #1\n".repeat(budget / 6);
    let section = fit(c.room_for("me", NOTE_LIMIT), &job, "me", &render);
    assert!(section.starts_with(&format!("{PIPELINE_TAG}5 -->\n")));
    c.set("me", section);
    assert!(c.render().len() <= NOTE_LIMIT);
}
