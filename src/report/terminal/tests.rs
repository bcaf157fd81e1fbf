use super::*;
use crate::model::{PlannedTest, Round};

fn planned(nodeid: &str, attempt: u32, max_attempts: u32) -> PlannedTest<'_> {
    PlannedTest {
        nodeid,
        attempt,
        max_attempts,
    }
}

#[test]
fn escape_sequences_in_test_names_are_neutralised() {
    let hostile = "tests/t.py::test[\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nFAKE]";
    let clean = sanitize_line(hostile);
    assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
    assert!(clean.contains("\\u{1b}]0;pwned"));
}

#[test]
fn a_tab_is_spaces_and_other_control_characters_are_escaped() {
    assert_eq!(
        one_line("AssertionError", "expected:\t1\u{1b}[31m"),
        "AssertionError: expected:    1\\u{1b}[31m"
    );
    assert_eq!(sanitize_line("a\tb\rc\u{7}"), "a    b\\u{d}c\\u{7}");
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let msg = "é".repeat(500);
    let line = one_line("ValueError", &msg);
    assert!(line.chars().count() <= 201);
    assert!(line.ends_with('…'));
}

use crate::sample;

/// Removes the styles this module writes, so what is left over is text from elsewhere.
fn without_our_styles(text: &str) -> String {
    let mut codes: Vec<String> = [BOLD, RED, YELLOW, GREEN, DIM, CYAN]
        .iter()
        .flat_map(|s| [s.render().to_string(), s.render_reset().to_string()])
        .collect();
    // Longest first: a bold colour starts with the code for bold.
    codes.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut out = text.to_owned();
    for code in codes {
        out = out.replace(&code, "");
    }
    out
}

fn plan() -> RoundPlan<'static> {
    RoundPlan {
        number: 2,
        kind: RoundKind::Rerun,
        tests: vec![
            planned("tests/test_a.py::test_one", 2, 3),
            planned(
                "tests/test_b.py::test_two[\u{1b}[2J\u{1b}]0;pwned\u{7}]",
                2,
                3,
            ),
            planned("tests/test_c.py::test_three", 3, 3),
            planned("tests/test_d.py::test_four", 2, 2),
        ],
        serial: true,
    }
}

fn fake(live: bool, github: bool) -> TerminalProgress<Vec<u8>> {
    TerminalProgress::new(Vec::new())
        .live(live)
        .github_groups(github)
        .width_from(|| 100)
}

fn countdown(obs: &mut dyn ProgressSink) {
    let plan = plan();
    obs.event(ProgressEvent::Waiting {
        wait: Duration::from_millis(2500),
        plan: &plan,
    });
    obs.event(ProgressEvent::WaitingTick {
        left: Duration::from_millis(2300),
    });
    obs.event(ProgressEvent::WaitingTick {
        left: Duration::from_millis(100),
    });
    obs.event(ProgressEvent::WaitingDone);
    obs.event(ProgressEvent::RoundStarting(&plan));
}

#[test]
fn on_a_terminal_the_wait_is_a_countdown_redrawn_in_place_then_cleared() {
    let mut obs = fake(true, false);
    assert_eq!(obs.tick_interval(), Some(TICK));
    countdown(&mut obs);
    let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
    assert!(!out.contains('\u{1b}'), "{out:?}");
    // Everything before the round's header is drawn on one line, frame over frame.
    let (live, header) = out.split_once("\rsmart-rerun round 2").unwrap();
    assert!(!live.contains('\n'), "{live:?}");
    assert!(
        header.starts_with(": rerunning 4 failed tests\n"),
        "{header:?}"
    );
    let frames: Vec<&str> = live.split('\r').filter(|f| !f.is_empty()).collect();
    insta::assert_debug_snapshot!("live_countdown_frames", frames);
    assert_eq!(frames.len(), 4, "three draws and the clearing blank");
    for f in &frames {
        assert!(display_width(f) <= 99, "wider than the terminal: {f:?}");
    }
    assert!(
        frames[0].starts_with(
            "smart-rerun 2.5s until round 2: tests/test_a.py::test_one (attempt 2 of 3)"
        )
    );
    assert!(
        frames[1].starts_with("smart-rerun 2.3s ") && frames[2].starts_with("smart-rerun 0.1s ")
    );
    let widest = frames[..3].iter().map(|f| display_width(f)).max().unwrap();
    assert!(
        frames[3].len() >= widest && frames[3].trim().is_empty(),
        "the status is blanked out"
    );
}

#[test]
fn a_round_says_how_many_tests_it_reruns_and_how_many_it_runs_for_the_first_time() {
    let header = |tests: Vec<PlannedTest<'static>>, serial| {
        let mut obs = fake(false, false);
        obs.round_starting(&RoundPlan {
            number: 2,
            kind: if tests.iter().all(|t| t.attempt == 1) {
                RoundKind::Continuation
            } else {
                RoundKind::Rerun
            },
            tests,
            serial,
        });
        let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
        out.lines().next().unwrap().to_owned()
    };
    assert_eq!(
        header(vec![planned("t.py::a", 2, 3)], true),
        "smart-rerun round 2: rerunning 1 failed test"
    );
    assert_eq!(
        header(
            vec![planned("t.py::a", 2, 3), planned("t.py::b", 3, 3)],
            false
        ),
        "smart-rerun round 2: rerunning 2 failed tests (in parallel)"
    );
    // After `-x` or a crash, a rerun round also runs the tests that never ran.
    assert_eq!(
        header(
            vec![
                planned("t.py::a", 2, 2),
                planned("t.py::b", 2, 2),
                planned("t.py::c", 1, 2),
                planned("t.py::d", 1, 2),
                planned("t.py::e", 1, 2)
            ],
            true
        ),
        "smart-rerun round 2: rerunning 2 failed tests and running 3 not yet run"
    );
    assert_eq!(
        header(vec![planned("t.py::c", 1, 2)], true),
        "smart-rerun round 2: running 1 test not yet run"
    );
}

#[test]
fn a_shorter_frame_blanks_what_the_longer_one_left() {
    let mut obs = fake(true, false).width_from(|| 200);
    let long = RoundPlan {
        number: 3,
        kind: RoundKind::Rerun,
        tests: vec![planned("tests/test_a.py::test_one", 2, 3)],
        serial: true,
    };
    obs.event(ProgressEvent::Waiting {
        wait: Duration::from_secs(100),
        plan: &long,
    });
    obs.event(ProgressEvent::WaitingTick {
        left: Duration::from_millis(9_900),
    });
    let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
    let frames: Vec<&str> = out.split('\r').filter(|f| !f.is_empty()).collect();
    assert_eq!(frames[0].len(), frames[1].len(), "{frames:?}");
    assert!(frames[1].ends_with(")  "), "{frames:?}");
}

#[test]
fn with_colour_off_the_live_status_writes_no_escape_at_all() {
    // NO_COLOR makes anstream choose `Never`; the countdown needs no escape sequence.
    let stream = anstream::AutoStream::new(Vec::new(), anstream::ColorChoice::Never);
    let mut obs = TerminalProgress::new(stream).live(true).width_from(|| 40);
    countdown(&mut obs);
    let out = String::from_utf8(obs.into_inner().into_inner()).unwrap();
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("\rsmart-rerun 2.3s until round 2"), "{out:?}");
}

#[test]
fn not_on_a_terminal_the_wait_is_one_plain_line() {
    let mut obs = fake(false, false);
    assert_eq!(obs.tick_interval(), None);
    countdown(&mut obs);
    let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
    assert!(!out.contains('\r'), "{out:?}");
    assert!(
        out.starts_with("smart-rerun waiting 2.5s before round 2 (4 tests)\nsmart-rerun round 2:"),
        "{out:?}"
    );
}

#[test]
fn in_github_actions_each_later_round_is_a_group_titled_without_test_names() {
    let mut obs = fake(false, true);
    let first = RoundPlan {
        number: 1,
        kind: RoundKind::First,
        tests: Vec::new(),
        serial: false,
    };
    let round = |number, kind| Round {
        number,
        kind,
        started_at: String::new(),
        duration_seconds: 0.0,
        selected: 0,
        exit_status: Some(0),
        signal: None,
        note: None,
    };
    let second = plan();
    obs.event(ProgressEvent::RoundStarting(&first));
    obs.event(ProgressEvent::RoundFinished(&round(1, RoundKind::First)));
    obs.event(ProgressEvent::RoundStarting(&second));
    obs.event(ProgressEvent::RoundFinished(&round(2, RoundKind::Rerun)));
    let cont = RoundPlan {
        number: 3,
        kind: RoundKind::Continuation,
        tests: vec![planned("tests/test_z.py::test_z", 1, 2)],
        serial: true,
    };
    obs.event(ProgressEvent::RoundStarting(&cont));
    obs.event(ProgressEvent::RoundFinished(&round(
        3,
        RoundKind::Continuation,
    )));
    let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
    let lines: Vec<&str> = out.lines().collect();
    let groups: Vec<&&str> = lines.iter().filter(|l| l.starts_with("::")).collect();
    assert_eq!(
        groups,
        [
            &"::group::smart-rerun round 2: rerunning 4 failed tests",
            &"::endgroup::",
            &"::group::smart-rerun round 3: running 1 test not yet run",
            &"::endgroup::"
        ],
        "{out}"
    );
    // The test list comes first, outside the collapsed group.
    let group_at = lines
        .iter()
        .position(|l| l.starts_with("::group::"))
        .unwrap();
    assert!(
        lines[..group_at]
            .iter()
            .any(|l| l.contains("tests/test_a.py::test_one"))
    );
}

#[test]
fn the_summary_lists_every_kind_of_result() {
    let report = sample::every_outcome();
    let text = render_summary(&report);
    assert!(
        text.contains(&RED.render().to_string()),
        "coloured when asked"
    );
    insta::assert_snapshot!("summary", anstream::adapter::strip_str(&text).to_string());
}

#[test]
fn hostile_text_reaches_the_terminal_without_a_raw_escape() {
    let report = sample::hostile();
    let text = without_our_styles(&render_summary(&report));
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(!text.contains('\u{7}') && !text.contains('\r') && !text.contains('\0'));
    assert!(text.contains("\\u{1b}[31mred"), "made visible: {text}");
    // 100 KB messages are cut to one short line.
    assert!(
        text.lines().all(|l| l.chars().count() < 1200),
        "{}",
        text.len()
    );
}

#[test]
fn wide_and_combining_characters_are_measured_in_columns() {
    assert_eq!(display_width("e\u{301}"), 1);
    assert_eq!(display_width("日本"), 4);
    let cut = fit("tests/t.py::test[日本語のテスト名]", 20);
    assert!(display_width(&cut) <= 20, "{cut:?}");
    assert!(cut.ends_with('…'));
    assert_eq!(fit("short", 20), "short");
}
