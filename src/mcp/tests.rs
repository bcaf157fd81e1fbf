use super::http::authorized;
use super::parse_addr;

#[test]
fn only_the_right_bearer_token_is_let_in() {
    assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
    assert!(!authorized(Some(b"Bearer s3cre"), "s3cret"));
    assert!(!authorized(Some(b"Bearer s3cretX"), "s3cret"));
    assert!(!authorized(Some(b"Basic s3cret"), "s3cret"));
    assert!(!authorized(Some(b"s3cret"), "s3cret"));
    assert!(!authorized(None, "s3cret"));
}

#[test]
fn http_addresses_bind_loopback_unless_given() {
    assert_eq!(parse_addr("8765").unwrap().to_string(), "127.0.0.1:8765");
    assert_eq!(parse_addr(":8765").unwrap().to_string(), "127.0.0.1:8765");
    assert_eq!(
        parse_addr("localhost:9").unwrap().to_string(),
        "127.0.0.1:9"
    );
    assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
    assert_eq!(parse_addr("[::1]:80").unwrap().to_string(), "[::1]:80");
    let e = parse_addr("example.com:80").unwrap_err();
    assert!(e.contains("'example.com:80' is not an address"), "{e}");
}

mod store {
    use crate::history::record::{Recorded, RunRecord, format_time};
    use crate::history::{COMMAND_TIMEOUT, Location, Store};
    use crate::mcp::data;
    use crate::model::{ExceptionInfo, Outcome, Phase, RunReport};
    use crate::sample;

    /// 2026-11-01T00:00:00Z
    const T0: i64 = 1_793_491_200_000;
    const DAY: i64 = 86_400_000;

    /// A run on `day` of `branch` where every test of `flaky` failed once with the same error.
    fn record(store: &mut Store, day: i64, branch: &str, flaky: &[&str]) {
        let mut r: RunReport = sample::empty();
        r.run.started_at = format_time(T0 + day * DAY);
        r.run.finished_at = format_time(T0 + day * DAY + 60_000);
        for nodeid in flaky {
            let mut attempts = vec![
                sample::failed_attempt(
                    1,
                    Phase::Call,
                    ExceptionInfo {
                        type_name: "builtins.ConnectionError".into(),
                        mro: vec![],
                        message: "connection reset by peer".into(),
                    },
                    "tests/helpers.py",
                    3,
                    "",
                ),
                sample::passed_attempt(2),
            ];
            for a in &mut attempts {
                crate::classify::annotate(a);
            }
            r.tests
                .push(sample::test(nodeid, Outcome::Flaky, 1, attempts));
        }
        r.tests
            .push(sample::test("t.py::ok", Outcome::Passed, 1, vec![]));
        r.summarize();
        let mut run = RunRecord::from_report(&r);
        run.branch = Some(branch.into());
        assert!(matches!(store.record(&run, &r), Ok(Recorded::Run { .. })));
    }

    #[test]
    fn branches_filter_the_flaky_list_and_shared_failures_group_across_tests() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::Sqlite(dir.path().join("history.db"));
        let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
        record(&mut store, 0, "main", &["t.py::a", "t.py::b"]);
        record(&mut store, 1, "main", &["t.py::a"]);
        record(&mut store, 2, "feature", &["t.py::c"]);

        let all = data::flaky_tests(&mut store, i64::MIN, 50, None).unwrap();
        assert_eq!(all.total, 3);
        assert_eq!(all.tests[0].nodeid, "t.py::a");
        assert_eq!(all.tests[0].flaky_runs, 2);
        let main = data::flaky_tests(&mut store, i64::MIN, 1, Some("main")).unwrap();
        assert_eq!(main.total, 2, "{main:?}");
        assert_eq!(main.tests.len(), 1, "limit 1");
        assert_eq!(main.tests[0].nodeid, "t.py::a");
        assert_eq!(main.tests[0].runs, 2);
        assert_eq!(main.tests[0].first_seen, "2026-11-01T00:00:00Z");
        assert_eq!(main.tests[0].last_flaky, "2026-11-02T00:00:00Z");

        let groups = data::failure_groups(&mut store, i64::MIN).unwrap().groups;
        assert_eq!(groups.len(), 1, "one failure, shared: {groups:?}");
        let g = &groups[0];
        assert_eq!(g.tests, ["t.py::a", "t.py::b", "t.py::c"]);
        assert_eq!((g.test_count, g.occurrences, g.runs), (3, 4, 3));
        assert_eq!(g.example_messages, ["connection reset by peer"]);
        assert_eq!(g.first_seen, "2026-11-01T00:00:00Z");
        assert_eq!(g.last_seen, "2026-11-03T00:00:00Z");
        // Since the second day: the run of the first is left out.
        let later = data::failure_groups(&mut store, T0 + DAY).unwrap().groups;
        assert_eq!((later[0].test_count, later[0].runs), (2, 2));

        let last = data::last_run_of_history(&mut store).unwrap().unwrap();
        assert_eq!(last.source, "history");
        assert_eq!(last.branch.as_deref(), Some("feature"));
        assert_eq!(last.total_tests, 2);
        assert_eq!(last.tests.len(), 1);
        assert_eq!(last.tests[0].nodeid, "t.py::c");
        assert_eq!(last.tests[0].outcome, "flaky");
        let f = &last.tests[0].failures[0];
        assert_eq!(f.message.as_deref(), Some("connection reset by peer"));
        assert_eq!(f.traceback, None);
    }
}

#[test]
fn long_messages_keep_their_start_and_tracebacks_their_end() {
    use super::data::{keep_end, keep_start};
    assert_eq!(keep_start("héllo", 10), "héllo");
    assert_eq!(keep_start("héllo", 2), "hé…");
    assert_eq!(keep_end("héllo", 3), "…llo");
    assert_eq!(keep_end("ab", 3), "ab");
}
