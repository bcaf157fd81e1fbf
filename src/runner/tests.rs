use super::*;

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
