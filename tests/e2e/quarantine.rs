//! The checked-in quarantine file through the real binary: a broken file stops `run` before any test
//! runs (exit 4, naming file, line and field); `quarantine check` fails on expired entries;
//! `quarantine suggest` proposes entries from history that `check` then accepts; a quarantined test
//! still runs and is reported, in its own section, as a notice on GitHub, but its failure does not fail
//! the run, until its entry's grace days after expiry are over.

use crate::common::{self, Project, RunOutput};
use crate::history::{BROKEN, FLAKY, history, project};
use std::process::{Command, Stdio};

fn quarantine(p: &Project, args: &[&str]) -> RunOutput {
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("quarantine")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SMART_RERUN_HISTORY")
        .stdin(Stdio::null())
        .output()
        .expect("smart-rerun runs");
    RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: None,
    }
}

const FILE: &str = ".smart-rerun/quarantine.toml";

#[test]
fn a_broken_quarantine_file_stops_the_run_before_any_test() {
    let p = project();
    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nreason = \"TICKET-7\"\nexpires = 2027-13-01\n",
    );
    let out = p.run(&[], &[]);
    assert_eq!(out.code, 4, "{}", out.dump());
    assert!(
        out.stderr
            .contains(".smart-rerun/quarantine.toml:4: expires:"),
        "{}",
        out.stderr
    );
    assert_eq!(p.count(FLAKY), 0, "a test ran");

    let check = quarantine(&p, &["check"]);
    assert_eq!(check.code, 4);
    assert!(
        check
            .stderr
            .contains(".smart-rerun/quarantine.toml:4: expires:"),
        "{}",
        check.stderr
    );

    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nexpires = 2027-01-01\n",
    );
    let missing = quarantine(&p, &["check"]);
    assert_eq!(missing.code, 4);
    assert!(
        missing
            .stderr
            .contains("quarantine.toml:1: reason: is missing"),
        "{}",
        missing.stderr
    );
}

#[test]
fn check_fails_on_an_expired_entry_and_passes_otherwise() {
    let p = project();
    p.file(
        FILE,
        "[[test]]\nnodeid = \"test_suite.py::test_flaky\"\nreason = \"TICKET-7\"\nexpires = 2026-12-31\n\n[[test]]\nnodeid = \"test_suite.py::test_broken\"\nreason = \"TICKET-8\"\nexpires = 2027-03-01\n",
    );
    let ok = quarantine(&p, &["check", "--today", "2026-12-31"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("2 tests quarantined"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("the next expiry on 2026-12-31"),
        "{}",
        ok.stdout
    );
    let late = quarantine(&p, &["check", "--today", "2027-01-01"]);
    assert_eq!(late.code, 1, "{}", late.stdout);
    assert!(
        late.stdout.contains(
            ".smart-rerun/quarantine.toml:1: test_suite.py::test_flaky expired on 2026-12-31"
        ),
        "{}",
        late.stdout
    );
    // A valid file lets the run go on (whether the quarantine still protects the broken test depends
    // on today's date: the tests below pin that down).
    let run = p.run(&[], &[]);
    assert!(matches!(run.code, 0 | 1), "{}", run.dump());
    assert!(p.count(FLAKY) > 0, "{}", run.dump());
    let none = Project::new();
    assert_eq!(quarantine(&none, &["check"]).code, 0);
}

#[test]
fn suggestions_from_history_are_entries_that_check_accepts() {
    let p = project();
    let db = p.path().join("history.db");
    let db = db.to_str().unwrap();
    for _ in 0..2 {
        assert_eq!(p.run(&["--history", db], &[]).code, 1);
    }
    let flaky = history(&p, &["flaky", "--history", db, "--format", "json"]);
    assert!(flaky.stdout.contains(FLAKY), "{}", flaky.stdout);
    let suggested = quarantine(&p, &["suggest", "--history", db, "--min-flaky", "2"]);
    assert_eq!(suggested.code, 0, "{}", suggested.stderr);
    assert!(
        suggested.stdout.contains(&format!("nodeid = \"{FLAKY}\"")),
        "{}",
        suggested.stdout
    );
    assert!(
        suggested.stdout.contains("flaky in 2 of its 2 runs"),
        "{}",
        suggested.stdout
    );
    p.file(FILE, &suggested.stdout);
    let check = quarantine(&p, &["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("1 test quarantined"),
        "{}",
        check.stdout
    );
    // Listed now: nothing more to suggest.
    let again = quarantine(&p, &["suggest", "--history", db, "--min-flaky", "2"]);
    assert_eq!(again.stdout.trim(), "");
    assert!(
        again.stderr.contains("no test to suggest"),
        "{}",
        again.stderr
    );
}

fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

fn entry(nodeid: &str, expires: chrono::NaiveDate) -> String {
    format!(
        "# reviewed weekly\n[[test]]\nnodeid = \"{nodeid}\"\nreason = \"the sandbox drops connections\"\nexpires = {expires}\nowner = \"payments\"\nissue = \"TICKET-9\"\n"
    )
}

#[test]
fn a_failing_quarantined_test_runs_is_reported_apart_and_does_not_fail_the_run() {
    let p = project();
    let expires = today() + chrono::Days::new(30);
    p.file(FILE, &entry(BROKEN, expires));
    let summary = p.path().join("step-summary.md");
    std::fs::write(&summary, "").unwrap();
    let mut cmd = p.command(&["--markdown", "report.md"]);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", p.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("SMART_RERUN_GITHUB_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .arg("--")
        .arg(common::python())
        .args(["-m", "pytest"]);
    let out = p.output(cmd);
    assert_eq!(out.code, 0, "{}", out.dump());
    // It ran, every attempt, and kept its real outcome.
    assert_eq!(out.outcome(BROKEN), "failed");
    assert_eq!(out.attempts(BROKEN), 2, "{}", out.dump());
    assert_eq!(out.summary("failed"), 1);
    assert_eq!(out.summary("quarantined_failures"), 1);
    let block = &out.test(BROKEN)["quarantine"];
    assert_eq!(block["entry"], BROKEN);
    assert_eq!(block["reason"], "the sandbox drops connections");
    assert_eq!(block["owner"], "payments");
    assert_eq!(block["issue"], "TICKET-9");
    assert_eq!(block["expires"], expires.to_string());
    assert_eq!(block["file"], ".smart-rerun/quarantine.toml");
    assert_eq!(block["line"], 2);
    assert_eq!(block["expired"], false);
    assert!(out.test(FLAKY).get("quarantine").is_none());
    assert_eq!(out.report()["schema_version"], 3);
    common::assert_matches_schema(out.report(), &|| out.dump());
    assert!(
        out.report()["run"]["exit_reason"]
            .as_str()
            .unwrap()
            .contains("1 quarantined test failed"),
        "{}",
        out.dump()
    );

    // The terminal summary: its own section, not a FAILED line.
    assert!(
        out.stdout
            .contains(&format!("QUARANTINED {BROKEN} failed - AssertionError")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "quarantined (.smart-rerun/quarantine.toml:2): the sandbox drops connections; owner: payments; issue: TICKET-9; expires "
        ),
        "{}",
        out.stdout
    );
    let summary_text = out.stdout.split("smart-rerun summary").nth(1).unwrap_or("");
    assert!(
        !summary_text.contains(&format!("FAILED {BROKEN}")),
        "{}",
        out.stdout
    );

    // GitHub: a notice, never an error, for it; the flaky test stays a warning.
    let commands: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("::notice") || l.starts_with("::error") || l.starts_with("::warning")
        })
        .collect();
    assert!(
        commands.iter().any(|l| l.starts_with("::notice ")
            && l.contains("title=Quarantined (failed)%3A test_suite.py%3A%3Atest_broken::")
            && l.contains("Quarantined (.smart-rerun/quarantine.toml:2)")),
        "{commands:#?}\n{}",
        out.stdout
    );
    assert!(
        !commands.iter().any(|l| l.starts_with("::error")),
        "{commands:#?}"
    );
    assert!(
        commands
            .iter()
            .any(|l| l.starts_with("::warning ") && l.contains("test_suite.py%3A%3Atest_flaky")),
        "{commands:#?}"
    );

    // Markdown and the job summary: a Quarantined section with the entry, no Failed one.
    let markdown = std::fs::read_to_string(p.path().join("report.md")).unwrap();
    let job = std::fs::read_to_string(&summary).unwrap();
    for text in [&markdown, &job] {
        assert!(text.contains("### Quarantined (1)"), "{text}");
        assert!(text.contains("1 failed (1 quarantined)"), "{text}");
        assert!(!text.contains("### Failed"), "{text}");
        assert!(
            text.contains("the sandbox drops connections; owner\\: payments; issue\\: TICKET-9"),
            "{text}"
        );
    }
}

#[test]
fn an_expired_entry_protects_for_the_grace_days_then_says_it_no_longer_does() {
    let p = project();
    // Expired three days ago: within the default 7 days of grace.
    let expired = today() - chrono::Days::new(3);
    p.file(FILE, &entry(BROKEN, expired));
    let out = p.run(&[], &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.test(BROKEN)["quarantine"]["expired"], true);
    let warning = format!(
        "the quarantine of '{BROKEN}' (.smart-rerun/quarantine.toml:2) expired on {expired}: it still protects its tests until {}",
        expired + chrono::Days::new(7)
    );
    assert!(out.stdout.contains(&warning), "{}", out.stdout);
    common::assert_matches_schema(out.report(), &|| out.dump());

    // Two days of grace are over: the failure fails the run, and the entry says so, once.
    let out = p.run(&["--quarantine-grace-days", "2"], &[]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(out.test(BROKEN).get("quarantine").is_none());
    assert_eq!(out.summary("quarantined_failures"), 0);
    let line = format!(
        "the quarantine of '{BROKEN}' (.smart-rerun/quarantine.toml:2) expired on {expired} and its 2 days of grace ended on {}: it no longer protects its tests",
        expired + chrono::Days::new(2)
    );
    assert_eq!(out.stdout.matches(&line).count(), 1, "{}", out.stdout);
    assert!(
        out.stdout
            .split("smart-rerun summary")
            .nth(1)
            .is_some_and(|t| t.contains(&format!("FAILED {BROKEN}"))),
        "{}",
        out.stdout
    );

    // The same from an ini file, for a quarantine file elsewhere.
    p.file("ci/quarantine.toml", &entry(BROKEN, expired));
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_quarantine = ci/quarantine.toml\nsmart_rerun_quarantine_grace_days = 5\n",
    );
    std::fs::remove_file(p.path().join(FILE)).unwrap();
    let out = p.run(&[], &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    // A file named explicitly must exist: no test runs without it.
    let before = p.count(FLAKY);
    let missing = p.run(&["--quarantine", "nope.toml"], &[]);
    assert_eq!(missing.code, 4, "{}", missing.dump());
    assert!(
        missing
            .stderr
            .contains("nope.toml (smart_rerun_quarantine) does not exist"),
        "{}",
        missing.stderr
    );
    assert_eq!(p.count(FLAKY), before, "{}", missing.dump());
    assert!(
        out.stdout.contains("ci/quarantine.toml:2) expired on"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_glob_entry_protects_every_test_it_matches() {
    let p = project();
    p.file(
        "test_more.py",
        "def test_b1():\n    assert False, 'one'\n\ndef test_b2():\n    assert False, 'two'\n\ndef test_c():\n    assert False, 'not matched'\n",
    );
    let expires = today() + chrono::Days::new(30);
    p.file(
        FILE,
        &format!(
            "{}[[test]]\nnodeid = \"test_more.py::test_b?\"\nreason = \"flaky fixtures\"\nexpires = {expires}\n",
            entry(BROKEN, expires)
        ),
    );
    let out = p.run(&[], &[]);
    // test_c is not quarantined: the run fails for it alone.
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.summary("quarantined_failures"), 3);
    for id in ["test_more.py::test_b1", "test_more.py::test_b2"] {
        assert_eq!(
            out.test(id)["quarantine"]["entry"],
            "test_more.py::test_b?",
            "{id}"
        );
    }
    assert!(out.test("test_more.py::test_c").get("quarantine").is_none());
    assert!(
        out.report()["run"]["exit_reason"]
            .as_str()
            .unwrap()
            .starts_with("1 failed"),
        "{}",
        out.dump()
    );
    p.file(
        FILE,
        &format!(
            "[[test]]\nnodeid = \"test_*.py::*\"\nreason = \"everything\"\nexpires = {expires}\n"
        ),
    );
    let out = p.run(&[], &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.summary("quarantined_failures"), 4);
}

/// The text of the first `<tag ...>` element in `xml` whose opening tag contains `marker`, up to its end.
fn element<'a>(xml: &'a str, tag: &str, marker: &str) -> &'a str {
    let open = format!("<{tag} ");
    let start = xml
        .match_indices(&open)
        .map(|(i, _)| i)
        .find(|&i| xml[i..].split('>').next().unwrap().contains(marker))
        .unwrap_or_else(|| panic!("no <{tag}> with {marker} in {xml}"));
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .map_or(xml.len(), |e| start + e);
    &xml[start..end]
}

#[test]
fn junit_shows_a_quarantined_failure_as_skipped_in_our_file_and_in_the_takeover() {
    let p = project();
    let expires = today() + chrono::Days::new(30);
    p.file(
        FILE,
        &entry(BROKEN, expires).replace(
            "the sandbox drops connections",
            r#"sandbox <drops> & \"resets\""#,
        ),
    );
    let out = p.run(&["--junit-xml", "ours.xml"], &["--junitxml=user.xml"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.outcome(BROKEN), "failed");
    for file in ["ours.xml", "user.xml"] {
        let xml = std::fs::read_to_string(p.path().join(file)).unwrap();
        // CI test views count failures and errors from the testsuite and its testcases: none here.
        let suite = element(&xml, "testsuite", "name=\"pytest\"");
        let head = suite.split('>').next().unwrap();
        assert!(
            head.contains("failures=\"0\"") && head.contains("errors=\"0\""),
            "{file}: {head}"
        );
        let case = element(&xml, "testcase", "name=\"test_broken\"");
        assert!(!case.contains("<failure"), "{file}: {case}");
        assert!(
            case.contains(&format!(
                "<skipped message=\"quarantined: sandbox &lt;drops&gt; &amp; &quot;resets&quot; (payments, expires {expires})\" type=\"smart-rerun.quarantined\">"
            )),
            "{file}: {case}"
        );
        // The failure is kept: the text GitLab shows for a skipped test, and the entry as properties.
        assert!(
            case.contains("2 failed attempts") && case.contains("AssertionError"),
            "{file}: {case}"
        );
        assert!(
            case.contains("<property name=\"quarantined\" value=\"true\"/>")
                && case.contains("<property name=\"quarantine.issue\" value=\"TICKET-9\"/>")
                && case.contains(
                    "<property name=\"quarantine.entry\" value=\".smart-rerun/quarantine.toml:2\"/>"
                ),
            "{file}: {case}"
        );
        // The flaky test is untouched by the quarantine.
        let flaky = element(&xml, "testcase", "name=\"test_flaky\"");
        assert!(
            flaky.contains("<flakyFailure") && !flaky.contains("quarantine"),
            "{file}: {flaky}"
        );
    }
}

/// `quarantine ARGS` with pytest's interpreter (for the probe of the ini file) and `env`.
fn quarantine_env(p: &Project, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
    let python = common::python();
    let mut all: Vec<&str> = vec!["--python", python.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("quarantine")
        .args(&all)
        .env("NO_COLOR", "1")
        .env_remove("SMART_RERUN_HISTORY")
        .env_remove("SMART_RERUN_QUARANTINE")
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("VIRTUAL_ENV")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("smart-rerun runs");
    RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: None,
    }
}

#[test]
fn check_and_suggest_find_the_file_as_a_run_does() {
    let p = project();
    let expired = today() - chrono::Days::new(3);
    let later = today() + chrono::Days::new(30);
    // The ini key, relative to the ini file, in a subdirectory's pytest configuration.
    p.file("ci/quarantine.toml", &entry(FLAKY, later));
    p.file("env.toml", &entry(BROKEN, expired));
    p.file(
        "pyproject.toml",
        "[tool.pytest.ini_options]\nsmart_rerun_quarantine = \"ci/quarantine.toml\"\n",
    );
    let check = quarantine_env(&p, &["check"], &[]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("1 test quarantined in ")
            && check.stdout.contains("ci/quarantine.toml"),
        "{}",
        check.stdout
    );
    // SMART_RERUN_QUARANTINE outranks the ini key, as for a run; its expired entry fails the check.
    let env = quarantine_env(&p, &["check"], &[("SMART_RERUN_QUARANTINE", "env.toml")]);
    assert_eq!(env.code, 1, "{}{}", env.stdout, env.stderr);
    assert!(
        env.stdout
            .contains(&format!("env.toml:2: {BROKEN} expired on {expired}")),
        "{}",
        env.stdout
    );
    // The flag outranks both; a file named but missing is a usage error naming it and where it was set.
    let flag = quarantine_env(
        &p,
        &["check", "--file", "ci/quarantine.toml"],
        &[("SMART_RERUN_QUARANTINE", "env.toml")],
    );
    assert_eq!(flag.code, 0, "{}{}", flag.stdout, flag.stderr);
    let missing = quarantine_env(&p, &["check", "--file", "nope.toml"], &[]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("the quarantine file nope.toml (--file) does not exist"),
        "{}",
        missing.stderr
    );
    // A pytest command of its own: `-c` names another configuration.
    p.file("other.ini", "[pytest]\nsmart_rerun_quarantine = env.toml\n");
    let python = common::python();
    let other = quarantine_env(
        &p,
        &[
            "check",
            "--",
            python.to_str().unwrap(),
            "-m",
            "pytest",
            "-c",
            "other.ini",
        ],
        &[],
    );
    assert_eq!(other.code, 1, "{}{}", other.stdout, other.stderr);
    assert!(other.stdout.contains("env.toml:2:"), "{}", other.stdout);

    // The run reads the same file: the flaky test is quarantined there.
    let db = p.path().join("history.db");
    let db = db.to_str().unwrap();
    for _ in 0..2 {
        let run = p.run(&["--history", db], &[]);
        assert_eq!(run.code, 1, "{}", run.dump());
        assert_eq!(
            run.test(FLAKY)["quarantine"]["file"]
                .as_str()
                .map(|f| f.ends_with("ci/quarantine.toml")),
            Some(true),
            "{}",
            run.dump()
        );
    }
    // `suggest` leaves out what the ini's file lists, and suggests it when another file is in force.
    let listed = quarantine_env(&p, &["suggest", "--history", db, "--min-flaky", "2"], &[]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.trim(), "", "{}", listed.stdout);
    let elsewhere = quarantine_env(
        &p,
        &["suggest", "--history", db, "--min-flaky", "2"],
        &[("SMART_RERUN_QUARANTINE", "env.toml")],
    );
    assert!(
        elsewhere.stdout.contains(&format!("nodeid = \"{FLAKY}\"")),
        "{}{}",
        elsewhere.stdout,
        elsewhere.stderr
    );
}
