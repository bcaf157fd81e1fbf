//! History in a real PostgreSQL server that the tests start ([`crate::postgres::PgServer`]): runs
//! recorded and read back as with SQLite, eight imports at once losing nothing, and a schema from a
//! newer smart-rerun refused.

use crate::history::{
    BROKEN, FLAKY, assert_flaky_json, history, import_concurrently, project, synthetic_reports,
};
use crate::postgres::PgServer;
use serde_json::Value;

#[test]
fn runs_recorded_in_postgres_read_back_as_in_sqlite() {
    let pg = PgServer::start();
    let url = pg.database("flakes");
    let p = project();
    let mut starts = Vec::new();
    for _ in 0..2 {
        let run = p.run(&["--history", &url], &[]);
        assert_eq!(run.code, 1, "{}", run.dump());
        assert!(!run.stderr.contains("history"), "{}", run.stderr);
        starts.push(
            run.report()["run"]["started_at"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_flaky_json(
        &history(
            &p,
            &[
                "flaky",
                "--history",
                &url,
                "--format",
                "json",
                "--since",
                "1d",
            ],
        ),
        2,
        &starts,
    );
    let show = history(&p, &["show", BROKEN, "--history", &url, "--format", "json"]);
    let doc: Value = serde_json::from_str(&show.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{doc}");
    assert!(runs.iter().all(|r| r["outcome"] == "failed"));
    assert_eq!(
        runs[0]["failures"][0]["fingerprint"],
        runs[1]["failures"][0]["fingerprint"]
    );
    assert_eq!(pg.sql("flakes", "SELECT COUNT(*) FROM runs"), "2");
    assert_eq!(
        pg.sql(
            "flakes",
            "SELECT string_agg(DISTINCT outcome, ',' ORDER BY outcome) FROM results"
        ),
        "failed,flaky,passed"
    );

    let pruned = history(&p, &["prune", "--keep", "0d", "--history", &url]);
    assert!(pruned.stdout.contains("pruned 2 runs"), "{}", pruned.stdout);
    assert_eq!(pg.sql("flakes", "SELECT COUNT(*) FROM results"), "0");

    pg.sql("flakes", "INSERT INTO schema_version (version) VALUES (7)");
    let refused = history(&p, &["flaky", "--history", &url]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("history schema version 7, newer than this smart-rerun knows"),
        "{}",
        refused.stderr
    );
    let run = p.run(&["--history", &url], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains("history")).count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn eight_concurrent_imports_into_postgres_lose_nothing() {
    let pg = PgServer::start();
    // A fresh database: the eight also race to create the schema.
    let url = pg.database("shared");
    let p = project();
    let run = p.run(&[], &[]);
    assert_eq!(run.code, 1, "{}", run.dump());
    let reports = synthetic_reports(&p, run.report(), 16, 2_000);
    let groups: Vec<Vec<_>> = reports.chunks(2).map(|c| c.to_vec()).collect();
    assert_eq!(groups.len(), 8);
    import_concurrently(&p, &url, &groups);
    assert_eq!(pg.sql("shared", "SELECT COUNT(*) FROM runs"), "16");
    assert_eq!(
        pg.sql("shared", "SELECT COUNT(*) FROM results"),
        (16 * 2_003).to_string()
    );
    let attempts = run.attempts(FLAKY) + run.attempts(BROKEN);
    assert_eq!(
        pg.sql("shared", "SELECT COUNT(*) FROM attempts"),
        (16 * attempts).to_string()
    );
    assert_eq!(pg.sql("shared", "SELECT COUNT(*) FROM schema_version"), "1");
    let flaky = history(&p, &["flaky", "--history", &url, "--format", "json"]);
    let list: Value = serde_json::from_str(&flaky.stdout).unwrap();
    assert_eq!(list[0]["nodeid"], FLAKY);
    assert_eq!(list[0]["flaky_runs"], 16, "{list}");
}
