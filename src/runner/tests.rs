use super::*;

#[test]
fn the_running_tests_are_kept_in_start_order_and_finished_ones_pruned() {
    let mut round = RoundProgress::new(2, 1000, PathBuf::new());
    for i in (0..1000).rev() {
        round.started(i);
        if i != 700 && i != 40 {
            round.seen[i] = Seen::Ran;
        }
    }
    // Started again: once running, or after its result (an in-process rerun plugin).
    round.started(700);
    round.started(3);
    assert!(round.running.len() <= 8, "{:?}", round.running);
    let running: Vec<u32> = round
        .running
        .iter()
        .copied()
        .filter(|&i| round.seen[i as usize] == Seen::Running)
        .collect();
    assert_eq!(running, vec![700, 40]);
}

#[test]
fn the_plugin_joins_existing_pytest_plugins_once() {
    assert_eq!(append_plugin(None), OsString::from(COLLECTOR_MODULE));
    assert_eq!(
        append_plugin(Some("a,b".into())),
        OsString::from(format!("a,b,{COLLECTOR_MODULE}"))
    );
    let already = format!("x,{COLLECTOR_MODULE}");
    assert_eq!(
        append_plugin(Some(already.clone().into())),
        OsString::from(already)
    );
}

#[test]
fn paths_inside_rootdir_become_relative() {
    assert_eq!(
        relative_to("/r/tests/test_a.py", Path::new("/r")),
        "tests/test_a.py"
    );
    assert_eq!(
        relative_to("/elsewhere/x.py", Path::new("/r")),
        "/elsewhere/x.py"
    );
}
