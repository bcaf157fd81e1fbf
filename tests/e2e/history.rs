//! History across runs, through the real binary and real pytest: runs recorded with `--history`,
//! `history flaky|show|import|prune` read back field by field, and the databases a run must shrug off
//! (corrupt, from a newer smart-rerun, a bad URL) with one warning and its exit code unchanged.

use crate::common::{self, Project, RunOutput};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

/// A passing test, a test that fails on every odd attempt (flaky in every run), a broken test.
pub const SUITE: &str = r#"
def test_ok():
    pass

def test_flaky(attempt):
    assert attempt % 2 == 0, "odd attempt fails"

def test_broken():
    assert 1 + 1 == 3
"#;

pub const FLAKY: &str = "test_suite.py::test_flaky";
pub const BROKEN: &str = "test_suite.py::test_broken";

pub fn project() -> Project {
    let p = Project::new();
    p.file("test_suite.py", SUITE);
    p
}

/// `smart-rerun history ARGS` in the project.
pub fn history(p: &Project, args: &[&str]) -> RunOutput {
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("history")
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

/// Seconds since the epoch of an RFC 3339 time.
fn epoch(ts: &str) -> f64 {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import datetime,sys; print(datetime.datetime.fromisoformat(sys.argv[1].replace('Z','+00:00')).timestamp())",
            ts,
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Asserts what `history flaky --format json` says of the suite after `runs` runs that began at
/// `starts` (oldest first).
pub fn assert_flaky_json(out: &RunOutput, runs: u64, starts: &[String]) {
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "only the flaky test: {list:?}");
    let t = &list[0];
    assert_eq!(t["nodeid"], FLAKY);
    assert_eq!(t["runs"], runs);
    assert_eq!(t["flaky_runs"], runs);
    assert_eq!(t["failed_runs"], 0);
    // Whole seconds in history, microseconds in the report.
    let near = |field: &str, want: &str| {
        let got = t[field].as_str().unwrap_or_else(|| panic!("{field}: {t}"));
        assert!(
            (epoch(got) - epoch(want)).abs() <= 1.0,
            "{field} {got}, the run started {want}"
        );
    };
    near("first_seen", &starts[0]);
    near("last_flaky", starts.last().unwrap());
}

fn started(out: &RunOutput) -> String {
    out.report()["run"]["started_at"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn two_runs_are_remembered_and_the_flaky_test_is_listed() {
    let p = project();
    let db = p.path().join("history.db");
    let db = db.to_str().unwrap();
    let mut starts = Vec::new();
    let mut saved = Vec::new();
    for i in 0..2 {
        let run = p.run(&["--history", db], &[]);
        assert_eq!(run.code, 1, "{}", run.dump());
        assert_eq!(run.outcome(FLAKY), "flaky");
        assert_eq!(run.outcome(BROKEN), "failed");
        assert!(!run.stderr.contains("history"), "{}", run.stderr);
        starts.push(started(&run));
        let copy = p.path().join(format!("run-{i}.json"));
        std::fs::copy(p.report_path(), &copy).unwrap();
        saved.push(copy);
    }
    let flaky = history(&p, &["flaky", "--history", db, "--format", "json"]);
    assert_flaky_json(&flaky, 2, &starts);

    // The table and Markdown forms name the same test.
    let table = history(&p, &["flaky", "--history", db]);
    assert!(table.stdout.contains(FLAKY), "{}", table.stdout);
    let md = history(&p, &["flaky", "--history", db, "--format", "markdown"]);
    assert!(
        md.stdout
            .contains("| `test\\_suite.py\\:\\:test\\_flaky` | 2 | 0 | 2 |"),
        "{}",
        md.stdout
    );

    // One test's runs, newest first, with the failed attempt's exception and fingerprint.
    let show = history(&p, &["show", FLAKY, "--history", db, "--format", "json"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let doc: Value = serde_json::from_str(&show.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    // Newest first; two runs may start within the same second (times are to the second).
    assert!(runs[0]["started_at"].as_str() >= runs[1]["started_at"].as_str());
    for r in runs {
        assert_eq!(r["outcome"], "flaky");
        assert_eq!(r["attempts"], 2);
        let f = &r["failures"][0];
        assert_eq!(f["attempt"], 1);
        assert_eq!(f["exception_type"], "builtins.AssertionError");
        assert!(
            f["message"].as_str().unwrap().contains("odd attempt fails"),
            "{f}"
        );
        assert_eq!(f["fingerprint"].as_str().unwrap().len(), 16, "{f}");
    }

    // The saved reports imported into another database say the same; importing again adds nothing.
    let other = p.path().join("imported.db");
    let other = other.to_str().unwrap();
    let saved: Vec<&str> = saved.iter().map(|s| s.to_str().unwrap()).collect();
    let mut args = vec!["import", "--history", other];
    args.extend(&saved);
    let imported = history(&p, &args);
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    assert_eq!(
        imported.stdout.matches("smart-rerun: recorded").count(),
        2,
        "{}",
        imported.stdout
    );
    let again = history(&p, &args);
    assert_eq!(
        again.stdout.matches("was recorded before").count(),
        2,
        "{}",
        again.stdout
    );
    assert_flaky_json(
        &history(&p, &["flaky", "--history", other, "--format", "json"]),
        2,
        &starts,
    );

    // Pruning keeps what is younger than the age given.
    let kept = history(&p, &["prune", "--keep", "30d", "--history", other]);
    assert!(kept.stdout.contains("pruned 0 runs"), "{}", kept.stdout);
    let pruned = history(&p, &["prune", "--keep", "0d", "--history", other]);
    assert!(pruned.stdout.contains("pruned 2 runs"), "{}", pruned.stdout);
    let empty = history(&p, &["flaky", "--history", other, "--format", "json"]);
    assert_eq!(empty.stdout.trim(), "[]");
}

#[test]
fn a_corrupt_database_is_one_warning_and_the_same_exit_code() {
    let p = project();
    let without = p.run(&[], &[]);
    let db = p.path().join("corrupt.db");
    std::fs::write(&db, "not a database ".repeat(400)).unwrap();
    let started = std::time::Instant::now();
    let with = p.run(&["--history", db.to_str().unwrap()], &[]);
    assert_eq!(with.code, without.code, "{}", with.dump());
    assert_eq!(with.outcome(FLAKY), "flaky");
    let warnings: Vec<&str> = with
        .stderr
        .lines()
        .filter(|l| l.contains("history"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", with.stderr);
    assert!(
        warnings[0]
            .starts_with("smart-rerun: warning: history not used: cannot open the history at")
            || warnings[0].starts_with("smart-rerun: warning: history not used: the history at"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("corrupt.db"), "{}", warnings[0]);
    assert!(started.elapsed().as_secs() < 60);
    // The file is left as it was.
    assert_eq!(
        std::fs::read(&db).unwrap(),
        "not a database ".repeat(400).as_bytes()
    );
}

#[test]
fn a_database_from_a_newer_smart_rerun_is_refused() {
    let p = project();
    let db = p.path().join("history.db");
    let db_arg = db.to_str().unwrap();
    let first = p.run(&["--history", db_arg], &[]);
    assert_eq!(first.code, 1, "{}", first.dump());
    bump_schema(&db, 99);

    let run = p.run(&["--history", db_arg], &[]);
    assert_eq!(run.code, 1, "{}", run.dump());
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("history"))
        .unwrap_or_default();
    assert!(
        warning.contains("history schema version 99, newer than this smart-rerun knows (1)"),
        "{}",
        run.stderr
    );

    let flaky = history(&p, &["flaky", "--history", db_arg]);
    assert_eq!(flaky.code, 4, "{}", flaky.stderr);
    assert!(
        flaky.stderr.contains("newer than this smart-rerun knows"),
        "{}",
        flaky.stderr
    );
    assert!(
        flaky.stderr.contains("upgrade smart-rerun"),
        "{}",
        flaky.stderr
    );
}

/// Marks a SQLite history as written by a newer schema, with Python's own sqlite3.
fn bump_schema(db: &Path, version: u32) {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO schema_version (version) VALUES (?)', (int(sys.argv[2]),)); c.commit()",
            db.to_str().unwrap(),
            &version.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_history_url_is_a_usage_error_for_history_and_a_warning_for_run() {
    let p = project();
    for url in ["mysql://db/flakes", "postgres://ci:hunter2@db:notaport/x"] {
        let out = history(&p, &["flaky", "--history", url]);
        assert_eq!(out.code, 4, "{url}: {}", out.stderr);
        assert!(out.stderr.contains("--history"), "{}", out.stderr);
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
    let out = history(&p, &["flaky", "--history", "mysql://db/flakes"]);
    assert!(
        out.stderr
            .contains("'mysql://db/flakes' has an unknown scheme 'mysql'"),
        "{}",
        out.stderr
    );
    let none = history(&p, &["flaky"]);
    assert_eq!(none.code, 4);
    assert!(
        none.stderr
            .contains("pass --history URL or set SMART_RERUN_HISTORY"),
        "{}",
        none.stderr
    );
    let missing = history(&p, &["show", FLAKY, "--history", "nowhere.db"]);
    assert_eq!(missing.code, 4);
    assert!(
        missing.stderr.contains("no history database at nowhere.db"),
        "{}",
        missing.stderr
    );

    let without = p.run(&[], &[]);
    let started = std::time::Instant::now();
    let run = p.run(
        &["--history", "postgres://ci:hunter2@127.0.0.1:1/flakes"],
        &[],
    );
    assert_eq!(run.code, without.code, "{}", run.dump());
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("history"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("postgres://ci:***@127.0.0.1:1/flakes"),
        "{}",
        warnings[0]
    );
    assert!(!run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"));
    assert!(started.elapsed().as_secs() < 60);
}

/// `n` saved reports made from a real one: each its own run (start, directory), with `extra` more
/// passing tests besides the suite's.
pub fn synthetic_reports(
    p: &Project,
    base: &Value,
    n: usize,
    extra: usize,
) -> Vec<std::path::PathBuf> {
    let ok = base["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["outcome"] == "passed")
        .unwrap()
        .clone();
    (0..n)
        .map(|k| {
            let mut r = base.clone();
            r["run"]["cwd"] = Value::from(format!("/generated/{k}"));
            let tests = r["tests"].as_array_mut().unwrap();
            for i in 0..extra {
                let mut t = ok.clone();
                t["nodeid"] = Value::from(format!("test_generated.py::test_{i}"));
                tests.push(t);
            }
            let path = p.path().join(format!("generated-{k}.json"));
            std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
            path
        })
        .collect()
}

/// Starts `history import` of each group of reports at once; asserts every one succeeded.
pub fn import_concurrently(p: &Project, url: &str, groups: &[Vec<std::path::PathBuf>]) {
    let children: Vec<_> = groups
        .iter()
        .map(|reports| {
            Command::new(common::bin())
                .current_dir(p.path())
                .args(["history", "import", "--history", url])
                .args(reports)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "an import failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let recorded = String::from_utf8_lossy(&out.stdout)
            .matches("smart-rerun: recorded")
            .count();
        assert_eq!(
            recorded,
            groups[0].len(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn two_concurrent_imports_into_one_sqlite_file_lose_nothing() {
    let p = project();
    let run = p.run(&[], &[]);
    assert_eq!(run.code, 1, "{}", run.dump());
    let reports = synthetic_reports(&p, run.report(), 8, 3_000);
    let db = p.path().join("shared.db");
    let url = format!("sqlite:{}", db.display());
    import_concurrently(&p, &url, &[reports[..4].to_vec(), reports[4..].to_vec()]);
    let out = Command::new(common::python())
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(*[c.execute('SELECT COUNT(*) FROM ' + t).fetchone()[0] for t in ('runs', 'results', 'attempts')])",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attempts = run.attempts(FLAKY) + run.attempts(BROKEN);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("8 {} {}", 8 * 3_003, 8 * attempts)
    );
    let flaky = history(&p, &["flaky", "--history", &url, "--format", "json"]);
    let list: Value = serde_json::from_str(&flaky.stdout).unwrap();
    assert_eq!(list[0]["flaky_runs"], 8, "{list}");
}

/// A git repository with one commit of the project; returns the commit.
fn git_commit(p: &Project) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(p.path())
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "trunk"]);
    git(&["add", "test_suite.py"]);
    git(&["commit", "-q", "-m", "suite"]);
    git(&["rev-parse", "HEAD"])
}

#[test]
fn a_later_run_reports_what_history_knows() {
    let p = project();
    let commit = git_commit(&p);
    let db = p.path().join("history.db");
    let md = p.path().join("summary.md");
    let run = |p: &Project| {
        let mut cmd = p.command(&[
            "--history",
            db.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ]);
        // Outside CI: the commit and branch come from git.
        for var in [
            "CI",
            "GITHUB_SHA",
            "GITHUB_REF_NAME",
            "GITHUB_HEAD_REF",
            "CI_COMMIT_SHA",
            "CI_COMMIT_BRANCH",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--").arg(common::python()).args(["-m", "pytest"]);
        p.output(cmd)
    };
    let first = run(&p);
    assert_eq!(first.code, 1, "{}", first.dump());
    // Nothing known yet: the first run in history says so.
    assert_eq!(
        first.test(FLAKY)["history"]["verdict"],
        "first-run",
        "{}",
        first.dump()
    );
    assert!(
        first.stdout.contains("history: first run in history"),
        "{}",
        first.stdout
    );

    let second = run(&p);
    assert_eq!(second.code, 1, "{}", second.dump());
    let flaky = &second.test(FLAKY)["history"];
    assert_eq!(flaky["verdict"], "known-flaky");
    assert_eq!(flaky["runs"], 1);
    assert_eq!(flaky["flaky_runs"], 1);
    assert_eq!(flaky["failed_runs"], 0);
    assert_eq!(flaky["branch"], "trunk");
    let day = &started(&first)[..10];
    assert_eq!(&flaky["first_flaky"].as_str().unwrap()[..10], day);
    let broken = &second.test(BROKEN)["history"];
    assert_eq!(broken["verdict"], "failing-since");
    assert_eq!(broken["failing_since"]["commit"], commit.as_str());
    assert!(
        second
            .test("test_suite.py::test_ok")
            .get("history")
            .is_none()
    );

    // The terminal summary, the Markdown report: the same words.
    let known = format!("known flaky: flaked 1 of the last run of trunk, first on {day}");
    assert!(
        second.stdout.contains(&format!("history: {known}")),
        "{}",
        second.stdout
    );
    let since = format!("failing since {}", &commit[..7]);
    assert!(
        second.stdout.contains(&format!("history: {since}")),
        "{}",
        second.stdout
    );
    // Explained after it was recorded, the saved report gets the same words (its own run left out).
    let explained = history(
        &p,
        &[
            "explain",
            p.report_path().to_str().unwrap(),
            "--history",
            db.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    let list: Value = serde_json::from_str(&explained.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for item in list {
        let nodeid = item["nodeid"].as_str().unwrap();
        assert_eq!(item["history"], second.test(nodeid)["history"], "{nodeid}");
    }
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(
        markdown.contains(&format!("**history**: {}", since.replace(':', "\\:"))),
        "{markdown}"
    );
    assert!(
        markdown.contains(&format!("**history**: {}", known.replace(':', "\\:"))),
        "{markdown}"
    );
}

/// An interrupted run is partial: it is neither looked up nor recorded, and costs no history time.
#[cfg(unix)]
#[test]
fn an_interrupted_run_is_not_recorded() {
    let p = Project::new();
    p.file(
        "test_slow.py",
        "import pathlib, time\n\ndef test_fails():\n    assert False\n\ndef test_slow():\n    pathlib.Path('started').write_text('yes')\n    time.sleep(60)\n",
    );
    let db = p.path().join("history.db");
    let mut cmd = p.command(&["--history", db.to_str().unwrap()]);
    cmd.arg("--").arg(common::python()).args(["-m", "pytest"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while !p.path().join("started").exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the slow test never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signals the child this test spawned.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("history"));
    assert!(!db.exists(), "an interrupted run opened the history");
}
