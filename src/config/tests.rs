use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn layer(rows: &[(&'static str, &str, Source)]) -> RawLayer {
    let mut l = RawLayer::default();
    for (k, v, s) in rows {
        l.set(k, *v, s.clone());
    }
    l
}

fn validate(l: &RawLayer) -> Result<Settings, ConfigErrors> {
    Settings::from_layer(l, &no_env, Path::new("/work"))
}

#[test]
fn every_key_rejects_bad_values_with_key_source_value_and_what_is_allowed() {
    let ini = || Source::Ini {
        file: "/p/pytest.ini".into(),
        line: Some(4),
    };
    let rows: &[(&'static str, &str, Source, &str)] = &[
        (
            "smart_rerun",
            "maybe",
            Source::Env("SMART_RERUN"),
            "smart_rerun = 'maybe' (environment variable SMART_RERUN): is not true or false",
        ),
        (
            "smart_rerun_max",
            "0",
            Source::Flag("--max"),
            "smart_rerun_max = '0' (command line --max): must be a whole number, 1 or more",
        ),
        (
            "smart_rerun_max",
            "three",
            ini(),
            "smart_rerun_max = 'three' (/p/pytest.ini:4): is not a whole number",
        ),
        (
            "smart_rerun_delay",
            "-1",
            ini(),
            "smart_rerun_delay = '-1' (/p/pytest.ini:4): must be a number of seconds, 0 or more",
        ),
        ("smart_rerun_delay", "soon", ini(), "is not a number"),
        (
            "smart_rerun_delay",
            "inf",
            ini(),
            "must be a number of seconds",
        ),
        (
            "smart_rerun_backoff",
            "fib",
            ini(),
            "use none, linear or exp",
        ),
        (
            "smart_rerun_max_delay",
            "-2",
            ini(),
            "smart_rerun_max_delay = '-2'",
        ),
        ("smart_rerun_jitter", "x", ini(), "smart_rerun_jitter = 'x'"),
        (
            "smart_rerun_errors",
            "Timeout Error",
            ini(),
            "is not an exception name",
        ),
        (
            "smart_rerun_max_failures",
            "-1",
            ini(),
            "must be a whole number, 0 or more",
        ),
        (
            "smart_rerun_max_reruns",
            "lots",
            ini(),
            "is not a whole number",
        ),
        (
            "smart_rerun_fail_on_flaky",
            "sometimes",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_early_stop",
            "perhaps",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_prestart",
            "soon",
            ini(),
            "is not true or false",
        ),
        ("smart_rerun_report", "  ", ini(), "is empty"),
        ("smart_rerun_junit_xml", "", ini(), "is empty"),
        (
            "smart_rerun_junit_compat",
            "xunit3",
            ini(),
            "use surefire, per-attempt or gitlab",
        ),
        (
            "smart_rerun_quarantine",
            "",
            Source::Flag("--quarantine"),
            "is empty",
        ),
        (
            "smart_rerun_quarantine_grace_days",
            "a week",
            ini(),
            "is not a whole number",
        ),
        (
            "smart_rerun_new_test_repeats",
            "-1",
            Source::Flag("--new-test-repeats"),
            "must be a whole number, 0 or more",
        ),
        (
            "smart_rerun_history_policy",
            "sometimes",
            ini(),
            "true or false",
        ),
        (
            "smart_rerun_history_max",
            "0",
            ini(),
            "must be a whole number, 1 or more",
        ),
        (
            "smart_rerun_history_flaky_percent",
            "5%",
            Source::Env("SMART_RERUN_HISTORY_FLAKY_PERCENT"),
            "is not a whole number",
        ),
        (
            "smart_rerun_markdown",
            "",
            Source::Flag("--markdown"),
            "is empty",
        ),
        (
            "smart_rerun_gitlab_note",
            "sometimes",
            Source::Env("SMART_RERUN_GITLAB_NOTE"),
            "smart_rerun_gitlab_note = 'sometimes' (environment variable SMART_RERUN_GITLAB_NOTE): is not true or false",
        ),
        ("smart_rerun_gitlab_note_key", " ", ini(), "is empty"),
        (
            "smart_rerun_gitlab_token",
            "{{ env:NOPE_GITLAB_TOKEN }}",
            ini(),
            "smart_rerun_gitlab_token (/p/pytest.ini:4): environment variable NOPE_GITLAB_TOKEN is not set",
        ),
        ("smart_rerun_ai", "2", ini(), "is not true or false"),
        (
            "smart_rerun_ai_endpoint",
            "mcp.example.com",
            ini(),
            "is not a URL",
        ),
        (
            "smart_rerun_ai_report",
            "",
            Source::Flag("--ai-report"),
            "is empty",
        ),
        (
            "smart_rerun_ai_cache",
            "",
            Source::Flag("--ai-cache"),
            "is empty",
        ),
        (
            "smart_rerun_ai_redact",
            "nah",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_ai_token",
            "{{ env:NOPE_TOKEN }}",
            ini(),
            "smart_rerun_ai_token (/p/pytest.ini:4): environment variable NOPE_TOKEN is not set",
        ),
        (
            "smart_rerun_ai_protocol",
            "grpc",
            Source::Flag("--ai-protocol"),
            "smart_rerun_ai_protocol = 'grpc' (command line --ai-protocol): use mcp or http",
        ),
        ("smart_rerun_ai_tool", " ", ini(), "is empty"),
        (
            "smart_rerun_github_annotations",
            "nah",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_github_summary",
            "nah",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_github_comment",
            "nah",
            ini(),
            "is not true or false",
        ),
        (
            "smart_rerun_github_stop_commands",
            "nah",
            ini(),
            "is not true or false",
        ),
        ("smart_rerun_github_comment_key", " ", ini(), "is empty"),
        (
            "smart_rerun_github_token",
            "{{ env:NOPE_GH_TOKEN }}",
            ini(),
            "environment variable NOPE_GH_TOKEN is not set",
        ),
        ("smart_rerun_ai_timeout", "-1", ini(), "0 or more"),
        ("smart_rerun_fork", "spoon", ini(), "is not true or false"),
        // A bad history location is a warning when history is opened; only its expansion fails here.
        (
            "smart_rerun_history",
            "{{ env:NOPE_HISTORY_URL }}",
            ini(),
            "environment variable NOPE_HISTORY_URL is not set",
        ),
    ];
    for (key, value, source, expected) in rows {
        let err = validate(&layer(&[(key, value, source.clone())])).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{key}={value:?}: got {err}"
        );
    }
    // Every key of the table has a row above.
    for k in KEYS {
        assert!(
            rows.iter().any(|r| r.0 == k.ini),
            "no validation row for {}",
            k.ini
        );
    }
}

#[test]
fn all_bad_values_are_reported_together() {
    let err = validate(&layer(&[
        ("smart_rerun_max", "0", Source::Flag("--max")),
        ("smart_rerun_delay", "x", Source::Env("SMART_RERUN_DELAY")),
        ("smart_rerun_backoff", "y", Source::Override),
    ]))
    .unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
    assert!(err.to_string().starts_with("3 invalid settings:"));
}

#[test]
fn secrets_are_never_echoed() {
    let err = validate(&layer(&[(
        "smart_rerun_ai_token",
        "{{ env:MISSING }}-s3cr3t",
        Source::Flag("--ai-token"),
    )]))
    .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    let env = |n: &str| (n == "TOK").then(|| "hunter2".to_owned());
    let s = Settings::from_layer(
        &layer(&[("smart_rerun_ai_token", "{{ env:TOK }}", Source::Override)]),
        &env,
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(s.ai.token.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(
        !s.display_value(keys::key("smart_rerun_ai_token").unwrap())
            .contains("hunter2")
    );
}

#[test]
fn higher_layers_win_and_sources_are_remembered() {
    let mut merged = layer(&[
        (
            "smart_rerun_max",
            "3",
            Source::Ini {
                file: "pytest.ini".into(),
                line: Some(2),
            },
        ),
        (
            "smart_rerun_delay",
            "1",
            Source::Ini {
                file: "pytest.ini".into(),
                line: Some(3),
            },
        ),
    ]);
    merged.update(&RawLayer::from_env(|n| {
        (n == "SMART_RERUN_MAX").then(|| "4".into())
    }));
    merged.update(&layer(&[("smart_rerun_max", "5", Source::Flag("--max"))]));
    let s = validate(&merged).unwrap();
    assert_eq!(s.policy.max_attempts, 5);
    assert_eq!(s.policy.delay, Duration::from_secs(1));
    assert_eq!(s.sources["smart_rerun_max"], Source::Flag("--max"));
    assert_eq!(s.sources["smart_rerun_delay"].to_string(), "pytest.ini:3");
}

#[test]
fn gitlab_ci_picks_the_gitlab_junit_layout_unless_one_was_chosen() {
    let gitlab = |n: &str| (n == "GITLAB_CI").then(|| "true".to_owned());
    let cwd = Path::new("/work");
    let s = Settings::from_layer(&RawLayer::default(), &gitlab, cwd).unwrap();
    assert_eq!(s.junit_compat, crate::report::junit::JunitCompat::Gitlab);
    assert_eq!(
        s.sources["smart_rerun_junit_compat"].to_string(),
        "environment variable GITLAB_CI"
    );
    let chosen = layer(&[(
        "smart_rerun_junit_compat",
        "surefire",
        Source::Flag("--junit-compat"),
    )]);
    let s = Settings::from_layer(&chosen, &gitlab, cwd).unwrap();
    assert_eq!(s.junit_compat, crate::report::junit::JunitCompat::Surefire);
    let s = validate(&RawLayer::default()).unwrap();
    assert_eq!(s.junit_compat, crate::report::junit::JunitCompat::Surefire);
    assert!(s.gitlab.note, "the merge request note is on by default");
}

#[test]
fn ini_paths_are_relative_to_the_ini_file() {
    let s = validate(&layer(&[
        (
            "smart_rerun_report",
            "reports/r.json",
            Source::Ini {
                file: "/proj/sub/pytest.ini".into(),
                line: None,
            },
        ),
        (
            "smart_rerun_ai_report",
            "ai.json",
            Source::Flag("--ai-report"),
        ),
    ]))
    .unwrap();
    assert_eq!(s.report.unwrap(), PathBuf::from("/proj/sub/reports/r.json"));
    assert_eq!(s.ai.report.unwrap(), PathBuf::from("/work/ai.json"));
}

#[test]
fn env_placeholders_expand_and_malformed_ones_are_named() {
    let env = |n: &str| (n == "A").then(|| "x".to_owned());
    assert_eq!(
        expand_env("pre-{{ env:A }}-{{env:A}}", &env).unwrap(),
        "pre-x-x"
    );
    assert!(
        expand_env("{{ env:B }}", &env)
            .unwrap_err()
            .contains("B is not set")
    );
    assert!(
        expand_env("{{ A }}", &env)
            .unwrap_err()
            .contains("not a placeholder")
    );
    assert!(
        expand_env("{{ env:A", &env)
            .unwrap_err()
            .contains("without a closing")
    );
}
