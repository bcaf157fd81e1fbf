use super::*;

#[test]
fn names_follow_pytests_junitxml() {
    let rows = [
        ("tests/test_a.py::test_x", ("tests.test_a", "test_x")),
        (
            "tests/test_a.py::TestC::TestD::test_x",
            ("tests.test_a.TestC.TestD", "test_x"),
        ),
        (
            "test_a.py::test_p[a::b/c.py]",
            ("test_a", "test_p[a::b/c.py]"),
        ),
        ("pkg/mod.py::pkg.mod.func", ("pkg.mod", "pkg.mod.func")),
        ("docs/guide.txt::guide.txt", ("docs.guide.txt", "guide.txt")),
    ];
    for (nodeid, (classname, name)) in rows {
        assert_eq!(
            pytest_names(nodeid),
            (classname.to_owned(), name.to_owned()),
            "{nodeid}"
        );
    }
}

/// The first implementation of [`pytest_names`], kept as its oracle.
fn pytest_names_by_vectors(nodeid: &str) -> (String, String) {
    let (path, params) = match nodeid.find('[') {
        Some(at) => (&nodeid[..at], &nodeid[at..]),
        None => (nodeid, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    let first = names[0].replace('/', ".");
    names[0] = first
        .strip_suffix(".py")
        .map(str::to_owned)
        .unwrap_or(first);
    if let Some(last) = names.last_mut() {
        last.push_str(params);
    }
    let name = names.pop().unwrap_or_default();
    (names.join("."), name)
}

#[test]
fn names_match_the_first_implementation_on_odd_ids() {
    for nodeid in [
        "",
        "a.py",
        "dir/a.py",
        "a.py::",
        "a.py::::x",
        "a.py::C:::x",
        "a.py::C::D::x[p::q]",
        "x/y.py::t[[a]]",
        "pkg/mod.py::pkg.mod.func",
        "a.pyx::t",
        "dir/a.py[weird]",
        "ü/ñ.py::Ç::t[é]",
    ] {
        assert_eq!(
            pytest_names(nodeid),
            pytest_names_by_vectors(nodeid),
            "{nodeid:?}"
        );
    }
}

use crate::model::{Outcome, Phase};
use crate::sample;
use quick_junit::{FlakyOrRerun, NonSuccessKind, TestCaseStatus};

fn xml(report: &RunReport, compat: JunitCompat) -> String {
    let options = JunitOptions {
        compat,
        ..JunitOptions::default()
    };
    to_xml(report, &options).unwrap()
}

/// Each testcase's `name` and the names of its child elements, in document order.
fn testcase_children(xml: &str) -> Vec<(String, Vec<String>)> {
    let mut cases = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    let mut depth = 0usize;
    let mut case_depth = 0usize;
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>').expect("tags are closed");
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            depth -= 1;
            if name == "testcase" {
                cases.extend(current.take());
            }
            continue;
        }
        let empty = tag.ends_with('/');
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap();
        if name == "testcase" {
            let attr = tag.split(" name=\"").nth(1).unwrap();
            current = Some((attr[..attr.find('"').unwrap()].to_owned(), Vec::new()));
            case_depth = depth + 1;
        } else if let Some((_, children)) = &mut current {
            if depth == case_depth {
                children.push(name.to_owned());
            }
        }
        if empty {
            if name == "testcase" {
                cases.extend(current.take());
            }
        } else {
            depth += 1;
        }
    }
    cases
}

/// Asserts the Surefire schema's testcase sequence: failure*, rerunFailure*, flakyFailure*, skipped?,
/// error?, rerunError*, flakyError*, system-out?, system-err?; a leading `properties` (pytest's
/// record_property convention, which the schema lacks) is the one addition.
fn assert_surefire_order(xml: &str) {
    const ORDER: [(&str, bool); 10] = [
        ("properties", false),
        ("failure", true),
        ("rerunFailure", true),
        ("flakyFailure", true),
        ("skipped", false),
        ("error", false),
        ("rerunError", true),
        ("flakyError", true),
        ("system-out", false),
        ("system-err", false),
    ];
    for (name, children) in testcase_children(xml) {
        let ranks: Vec<usize> = children
            .iter()
            .map(|c| {
                ORDER
                    .iter()
                    .position(|(n, _)| n == c)
                    .unwrap_or_else(|| panic!("{name}: unexpected <{c}>"))
            })
            .collect();
        assert!(
            ranks
                .windows(2)
                .all(|w| w[0] < w[1] || (w[0] == w[1] && ORDER[w[0]].1)),
            "{name}: {children:?} is out of the schema's order"
        );
    }
}

/// Every character is one XML 1.0 allows.
fn assert_xml_chars(xml: &str) {
    for c in xml.chars() {
        assert!(
            matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..),
            "{:?} is not allowed in XML",
            c
        );
    }
}

#[test]
fn surefire_layout_snapshot() {
    let xml = xml(&sample::every_outcome(), JunitCompat::Surefire);
    assert_surefire_order(&xml);
    insta::assert_snapshot!("surefire", xml);
}

#[test]
fn per_attempt_layout_snapshot() {
    let xml = xml(&sample::every_outcome(), JunitCompat::PerAttempt);
    assert_surefire_order(&xml);
    insta::assert_snapshot!("per_attempt", xml);
}

#[test]
fn quick_junit_reads_back_flaky_runs_reruns_and_locations() {
    let report = sample::every_outcome();
    let parsed = Report::deserialize_from_str(&xml(&report, JunitCompat::Surefire)).unwrap();
    assert_eq!(parsed.test_suites.len(), 1);
    let suite = &parsed.test_suites[0];
    assert_eq!(suite.name.as_str(), "pytest");
    // Every test, and the collection error as one more testcase.
    assert_eq!(suite.test_cases.len(), report.tests.len() + 1);
    assert_eq!(
        (suite.tests, suite.failures, suite.errors, suite.skipped),
        (8, 1, 2, 3)
    );
    let case = |name: &str| {
        suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no testcase {name}"))
    };

    let flaky = case("test_fetch[v2]");
    assert_eq!(
        flaky.classname.as_ref().map(|c| c.as_str()),
        Some("tests.test_api.TestUsers")
    );
    assert_eq!(
        flaky.extra.get("file").map(|v| v.as_str()),
        Some("tests/test_api.py")
    );
    assert_eq!(flaky.extra.get("line").map(|v| v.as_str()), Some("28"));
    let TestCaseStatus::Success { flaky_runs } = &flaky.status else {
        panic!("a flaky test passed: {:?}", flaky.status);
    };
    let kinds: Vec<NonSuccessKind> = flaky_runs.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [NonSuccessKind::Failure, NonSuccessKind::Error]);
    assert_eq!(
        flaky_runs[0].ty.as_ref().map(|t| t.as_str()),
        Some("builtins.ConnectionError")
    );
    assert_eq!(
        flaky_runs[0].message.as_ref().map(|t| t.as_str()),
        Some("ConnectionError: [Errno 111] Connection refused")
    );
    assert!(
        flaky_runs[0]
            .stack_trace
            .as_ref()
            .unwrap()
            .as_str()
            .contains("client.get")
    );
    assert!(
        flaky_runs[0]
            .system_out
            .as_ref()
            .unwrap()
            .as_str()
            .contains("attempt 1 output")
    );
    assert!(
        flaky_runs
            .iter()
            .all(|r| r.timestamp.is_some() && r.time.is_some())
    );
    assert!(
        flaky
            .properties
            .iter()
            .any(|p| p.name.as_str() == "flaky" && p.value.as_str() == "true")
    );
    let note = flaky.system_out.as_ref().unwrap().as_str();
    assert!(
        note.contains("FLAKY") && note.contains("passed on attempt 3"),
        "{note}"
    );

    let failed = case("test_total");
    let TestCaseStatus::NonSuccess {
        kind, reruns, ty, ..
    } = &failed.status
    else {
        panic!("{:?}", failed.status);
    };
    assert_eq!(*kind, NonSuccessKind::Failure);
    assert_eq!(
        ty.as_ref().map(|t| t.as_str()),
        Some("builtins.AssertionError")
    );
    assert_eq!(reruns.kind, FlakyOrRerun::Rerun);
    assert_eq!(reruns.runs.len(), 2);
    assert!(
        reruns
            .runs
            .iter()
            .all(|r| r.kind == NonSuccessKind::Failure)
    );

    let error = case("test_migrate");
    let TestCaseStatus::NonSuccess { kind, reruns, .. } = &error.status else {
        panic!("{:?}", error.status);
    };
    assert_eq!(*kind, NonSuccessKind::Error);
    assert!(reruns.runs.len() == 2 && reruns.runs.iter().all(|r| r.kind == NonSuccessKind::Error));

    for name in ["test_registry", "test_known_bug", "test_late"] {
        assert!(
            matches!(case(name).status, TestCaseStatus::Skipped { .. }),
            "{name}"
        );
    }
    let collection = case("tests.test_broken");
    let TestCaseStatus::NonSuccess { kind, ty, .. } = &collection.status else {
        panic!("{:?}", collection.status);
    };
    assert_eq!(*kind, NonSuccessKind::Error);
    assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("CollectionError"));
}

#[test]
fn mixed_failures_and_errors_keep_the_schemas_order() {
    let mut report = sample::empty();
    let exc = |t: &str| crate::model::ExceptionInfo {
        type_name: t.into(),
        mro: vec![],
        message: "boom".into(),
    };
    let att = |n, phase| sample::failed_attempt(n, phase, exc("builtins.OSError"), "t.py", 3, "tb");
    report.tests = vec![
        // An error, then a failure: the later failure cannot be a rerunFailure after <error>.
        sample::test(
            "t.py::test_error_first",
            Outcome::Failed,
            1,
            vec![
                att(1, Phase::Setup),
                att(2, Phase::Call),
                att(3, Phase::Call),
            ],
        ),
        sample::test(
            "t.py::test_failure_first",
            Outcome::Error,
            1,
            vec![
                att(1, Phase::Call),
                att(2, Phase::Teardown),
                att(3, Phase::Call),
            ],
        ),
        sample::test(
            "t.py::test_flaky_mixed",
            Outcome::Flaky,
            1,
            vec![
                att(1, Phase::Setup),
                att(2, Phase::Call),
                sample::passed_attempt(3),
            ],
        ),
    ];
    report.summarize();
    let xml = xml(&report, JunitCompat::Surefire);
    assert_surefire_order(&xml);
    let children: Vec<(String, Vec<String>)> = testcase_children(&xml);
    let of = |name: &str| children.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(
        of("test_error_first"),
        [
            "properties",
            "error",
            "rerunError",
            "rerunError",
            "system-out"
        ]
    );
    assert_eq!(
        of("test_failure_first"),
        [
            "properties",
            "failure",
            "rerunFailure",
            "rerunError",
            "system-out"
        ]
    );
    assert_eq!(
        of("test_flaky_mixed"),
        ["properties", "flakyFailure", "flakyError", "system-out"]
    );
    // Every failure, error and rerun element has the `type` the schema requires.
    let parsed = Report::deserialize_from_str(&xml).unwrap();
    for case in &parsed.test_suites[0].test_cases {
        match &case.status {
            TestCaseStatus::NonSuccess { ty, reruns, .. } => {
                assert!(ty.is_some() && reruns.runs.iter().all(|r| r.ty.is_some()));
            }
            TestCaseStatus::Success { flaky_runs } => {
                assert!(flaky_runs.iter().all(|r| r.ty.is_some()));
            }
            TestCaseStatus::Skipped { .. } => {}
        }
    }
}

/// quick-junit's whole document, the way smart-rerun wrote it before streaming: the oracle for
/// [`write`].
fn whole_document(report: &RunReport, options: &JunitOptions) -> String {
    let mut out = Vec::new();
    let mut filter = NonCharacters::new(&mut out);
    to_junit(report, options).serialize(&mut filter).unwrap();
    filter.finish().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn streamed_batches_write_quick_junits_whole_document() {
    let reports = [
        sample::empty(),
        sample::every_outcome(),
        sample::hostile(),
        sample::large(7, 5, 300),
    ];
    for report in &reports {
        for compat in [
            JunitCompat::Surefire,
            JunitCompat::PerAttempt,
            JunitCompat::Gitlab,
        ] {
            let options = JunitOptions {
                suite_name: "suite <&> \"name\"".into(),
                compat,
            };
            let expected = whole_document(report, &options);
            for batch in [1, 2, 3, BATCH] {
                let mut out = Vec::new();
                write_in_batches(report, &options, &mut out, batch).unwrap();
                let got = String::from_utf8(out).unwrap();
                assert!(
                    got == expected,
                    "{compat:?}, batches of {batch}, {} tests: streamed {} bytes, whole {}",
                    report.tests.len(),
                    got.len(),
                    expected.len()
                );
            }
        }
    }
}

#[test]
fn noncharacters_are_dropped_also_when_a_write_splits_them() {
    let text = "a\u{fffe}b\u{ffff}c\u{fffd}d\u{e000}\u{fffe}";
    let bytes = text.as_bytes();
    for split in 0..bytes.len() {
        let mut out = Vec::new();
        let mut filter = NonCharacters::new(&mut out);
        filter.write_all(&bytes[..split]).unwrap();
        filter.write_all(&bytes[split..]).unwrap();
        filter.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "abc\u{fffd}d\u{e000}",
            "split at {split}"
        );
    }
}

#[test]
fn a_saved_report_is_what_to_xml_renders() {
    let report = sample::hostile();
    let options = JunitOptions::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    save(&report, &options, &path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        to_xml(&report, &options).unwrap()
    );
}

#[test]
fn hostile_text_leaves_the_xml_well_formed() {
    let report = sample::hostile();
    for compat in [JunitCompat::Surefire, JunitCompat::PerAttempt] {
        let xml = xml(&report, compat);
        assert_xml_chars(&xml);
        assert!(!xml.contains("<script") && !xml.contains("<img"));
        assert!(!xml.contains('\u{1b}'));
        assert_surefire_order(&xml);
        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let names: Vec<&str> = parsed.test_suites[0]
            .test_cases
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("</details> </pre> <script>")),
            "{names:?}"
        );
    }
    // The message attribute is one line of bounded length; the whole traceback is in the body.
    let xml = xml(&report, JunitCompat::Surefire);
    let parsed = Report::deserialize_from_str(&xml).unwrap();
    let case = &parsed.test_suites[0].test_cases[0];
    let TestCaseStatus::NonSuccess {
        message,
        description,
        ..
    } = &case.status
    else {
        panic!()
    };
    assert!(message.as_ref().unwrap().as_str().chars().count() <= 1001);
    assert!(description.as_ref().unwrap().as_str().len() > 100_000);
}

/// A report with a quarantined test that failed twice, one that passed, and one failed test the
/// quarantine does not protect.
fn quarantined_report() -> RunReport {
    let mut report = sample::empty();
    let exc = crate::model::ExceptionInfo {
        type_name: "builtins.ConnectionError".into(),
        mro: vec![],
        message: "sandbox <down> & out".into(),
    };
    let att = |n| {
        sample::failed_attempt(
            n,
            Phase::Call,
            exc.clone(),
            "t.py",
            3,
            "Traceback: client.get()",
        )
    };
    let info = |expired| {
        Box::new(crate::model::QuarantineInfo {
            entry: "t.py::test_*".into(),
            reason: "TICKET-7 \"sandbox\" <drops>".into(),
            expires: "2027-01-31".into(),
            owner: Some("payments".into()),
            issue: Some("BUG-1".into()),
            file: ".smart-rerun/quarantine.toml".into(),
            line: 4,
            expired,
        })
    };
    let mut failing = sample::test(
        "t.py::test_sandbox",
        Outcome::Failed,
        3,
        vec![att(1), att(2)],
    );
    failing.quarantine = Some(info(false));
    let mut passing = sample::test("t.py::test_ok", Outcome::Passed, 9, vec![]);
    passing.quarantine = Some(info(true));
    let free = sample::test("u.py::test_free", Outcome::Failed, 1, vec![att(1)]);
    report.tests = vec![failing, passing, free];
    report.summarize();
    report
}

#[test]
fn a_quarantined_failure_is_skipped_with_its_entry_and_failure_kept() {
    let report = quarantined_report();
    for compat in [
        JunitCompat::Surefire,
        JunitCompat::PerAttempt,
        JunitCompat::Gitlab,
    ] {
        let xml = xml(&report, compat);
        assert_surefire_order(&xml);
        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let suite = &parsed.test_suites[0];
        // Only the unprotected test counts as failing.
        assert_eq!(
            (suite.tests, suite.failures, suite.errors, suite.skipped),
            (3, 1, 0, 1),
            "{compat:?}"
        );
        assert!(
            suite
                .properties
                .iter()
                .any(|p| p.name.as_str() == "smart-rerun.quarantined-failures"
                    && p.value.as_str() == "1")
        );
        let case = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "test_sandbox")
            .unwrap();
        let TestCaseStatus::Skipped {
            message,
            ty,
            description,
        } = &case.status
        else {
            panic!("{compat:?}: {:?}", case.status);
        };
        assert_eq!(
            message.as_ref().unwrap().as_str(),
            "quarantined: TICKET-7 \"sandbox\" <drops> (payments, expires 2027-01-31)"
        );
        assert_eq!(ty.as_ref().unwrap().as_str(), "smart-rerun.quarantined");
        let text = description.as_ref().unwrap().as_str();
        assert!(
            text.contains("QUARANTINED - failed, 2 failed attempts")
                && text.contains("attempt 2 failed: ConnectionError: sandbox <down> & out")
                && text.contains("Traceback: client.get()"),
            "{text}"
        );
        let prop = |c: &quick_junit::TestCase, name: &str| {
            c.properties
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.value.as_str().to_owned())
        };
        assert_eq!(prop(case, "quarantined").as_deref(), Some("true"));
        assert_eq!(prop(case, "quarantine.owner").as_deref(), Some("payments"));
        assert_eq!(prop(case, "quarantine.issue").as_deref(), Some("BUG-1"));
        assert_eq!(
            prop(case, "quarantine.entry").as_deref(),
            Some(".smart-rerun/quarantine.toml:4")
        );
        assert!(
            case.system_out
                .as_ref()
                .unwrap()
                .as_str()
                .contains("attempt 2 output")
        );
        // A quarantined test that passed keeps its status, with the entry's properties.
        let ok = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "test_ok")
            .unwrap();
        assert!(matches!(ok.status, TestCaseStatus::Success { .. }));
        assert_eq!(prop(ok, "quarantine.expired").as_deref(), Some("true"));
    }
    // Untrusted text in the reason is escaped, never markup.
    let xml = xml(&report, JunitCompat::Surefire);
    assert!(xml.contains("&lt;drops&gt;") && !xml.contains("<drops>"));
}
