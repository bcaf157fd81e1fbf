//! The flake dashboard in a real headless Chromium: a history recorded by real pytest runs, the page
//! written by `smart-rerun dashboard`, then loaded from `file://` — the DOM after its script ran (the
//! flaky test listed, the charts drawn, the page's own error trap empty, a hostile test name shown as
//! text), a screenshot whose chart is not blank, the same page with every network request sent to a
//! dead proxy, and the quarantine column filled from the file the pytest configuration names. Chromium
//! comes from scripts/bootstrap-chromium (or SMART_RERUN_TEST_CHROMIUM).

use crate::common::{self, Project};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A passing test, a flaky one, a broken one, two flaky tests that fail the same way in a shared
/// helper, and a flaky test whose name is markup (the attempt counter runs on across runs: odd
/// attempts fail, so every run is flaky).
const SUITE: &str = r#"
import pytest

def backend_call():
    raise ConnectionError("backend unavailable")

def test_ok():
    pass

def test_flaky(attempt):
    assert attempt % 2 == 0, "odd attempt fails"

def test_broken():
    assert 1 + 1 == 3

def test_shared_a(attempt):
    if attempt % 2 == 1:
        backend_call()

def test_shared_b(attempt):
    if attempt % 2 == 1:
        backend_call()

@pytest.mark.parametrize("x", [1], ids=["</script><img src=x onerror=alert(1)>"])
def test_hostile(x, attempt):
    assert attempt % 2 == 0, "<b>markup</b> in a message"
"#;

const FLAKY: &str = "test_suite.py::test_flaky";
const HOSTILE: &str = "test_suite.py::test_hostile[</script><img src=x onerror=alert(1)>]";

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SMART_RERUN_TEST_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!(
        "no chromium on PATH: run scripts/bootstrap-chromium (Debian: apt-get install chromium) or set \
         SMART_RERUN_TEST_CHROMIUM"
    );
}

/// Chromium, headless, on `url`, with a profile of its own; returns stdout.
fn browse(profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dashboard(p: &Project, args: &[&str], env: &[(&str, &str)]) -> common::RunOutput {
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .arg("dashboard")
        .args(args)
        .env_remove("SMART_RERUN_HISTORY")
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("smart-rerun runs");
    common::RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: None,
    }
}

/// The text of the page's `data-errors` attribute (the error trap), which must be there.
fn errors(dom: &str) -> &str {
    let start = dom
        .find("data-errors=\"")
        .expect("the error trap's attribute")
        + 13;
    &dom[start..start + dom[start..].find('"').unwrap()]
}

/// How many pixels of the PNG are yellowish (the flake-rate chart's colours: its line and area).
fn chart_pixels(png_path: &Path) -> (usize, u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| {
            let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
            r - b > 30 && g - b > 15 && r >= g
        })
        .count();
    (pixels, info.width, info.height)
}

#[test]
fn the_dashboard_renders_in_a_headless_browser_offline_and_escapes_test_names() {
    let p = Project::new();
    p.file("test_suite.py", SUITE);
    let db = p.path().join("history.db");
    let db = db.to_str().unwrap();
    for _ in 0..3 {
        let run = p.run(&["--history", db], &[]);
        assert_eq!(run.code, 1, "{}", run.dump());
        assert_eq!(run.outcome(FLAKY), "flaky");
        assert_eq!(run.outcome(HOSTILE), "flaky");
        assert_eq!(run.outcome("test_suite.py::test_shared_a"), "flaky");
    }

    // The location from SMART_RERUN_HISTORY, as the history commands take it.
    let site = p.path().join("site");
    let made = dashboard(
        &p,
        &[
            "--out",
            site.to_str().unwrap(),
            "--title",
            "Flakes <of> main",
        ],
        &[("SMART_RERUN_HISTORY", db)],
    );
    assert_eq!(made.code, 0, "{}{}", made.stdout, made.stderr);
    assert!(
        made.stdout.contains("3 runs") && made.stdout.contains("index.html"),
        "{}",
        made.stdout
    );
    let files: Vec<_> = std::fs::read_dir(&site)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files,
        vec![site.join("index.html")],
        "one self-contained file"
    );
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();

    // (c) Nothing remote: no URL at all in the file, no protocol-relative resource.
    for remote in ["http://", "https://", "src=\"//", "href=\"//"] {
        assert!(!page.contains(remote), "the page references {remote}");
    }
    // The hostile name is in the data only as escapes, the title escaped.
    assert!(
        !page.contains("<img"),
        "markup from a test name in the page"
    );
    assert!(page.contains("<title>Flakes &lt;of&gt; main</title>"));

    let url = format!("file://{}", site.join("index.html").display());
    let profile = tempfile::tempdir().unwrap();

    // (a) The DOM after the script ran.
    let dom = browse(profile.path(), &["--dump-dom"], &url);
    assert_eq!(errors(&dom), "", "the page's error trap caught errors");
    assert!(dom.contains("data-ready=\"true\""), "the script finished");
    assert!(dom.contains(&format!("data-nodeid=\"{FLAKY}\"")), "{dom}");
    assert!(dom.contains("class=\"rate\""), "the flake-rate chart's SVG");
    assert!(dom.contains("class=\"rate-line\""), "the chart's line");
    assert!(
        dom.matches("class=\"spark\"").count() >= 4,
        "a sparkline per flaky test"
    );
    // The hostile name is text: escaped in the serialised DOM, never an element.
    assert!(!dom.contains("<img"), "a test name became markup");
    assert!(dom.contains("test_hostile[&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;]"));
    // The same failure in two tests: one group, with both names.
    assert!(
        dom.contains("the same failure in 2 tests"),
        "{}",
        &dom[dom.find("fingerprints-table").unwrap_or(0)..]
    );
    assert!(dom.contains("backend unavailable"));

    // One test's panel (a link to it: #test=NODEID): its runs, attempts and fingerprints.
    let detail = browse(
        profile.path(),
        &["--dump-dom"],
        &format!("{url}#test=test_suite.py%3A%3Atest_flaky"),
    );
    assert_eq!(errors(&detail), "");
    let panel = &detail[detail.find("id=\"detail\"").unwrap()..];
    assert!(
        !panel.starts_with("id=\"detail\" hidden"),
        "the panel is open"
    );
    assert!(
        panel.contains("AssertionError: odd attempt fails"),
        "{panel}"
    );
    assert_eq!(panel.matches("class=\"o-flaky\"").count(), 3, "three runs");

    // (b) A screenshot of the top of the page: the chart has its colours.
    let shot = p.path().join("shot.png");
    browse(
        profile.path(),
        &[
            "--window-size=1280,480",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let (pixels, w, h) = chart_pixels(&shot);
    assert!(w >= 1000 && h >= 400, "{w}x{h}");
    assert!(
        pixels > 2_000,
        "the chart looks blank: {pixels} chart pixels"
    );

    // Offline: every request to a dead proxy; the page still renders all of it.
    let offline = browse(
        profile.path(),
        &["--dump-dom", "--proxy-server=127.0.0.1:9"],
        &url,
    );
    assert_eq!(errors(&offline), "");
    assert!(offline.contains("data-ready=\"true\""));
    assert!(offline.contains("class=\"rate-line\""));
    assert!(offline.contains(&format!("data-nodeid=\"{FLAKY}\"")));
    // No quarantine file: no quarantine column.
    assert!(!dom.contains(">Quarantine</th>"));

    // The quarantine column, from the file the pytest configuration names (as a run finds it):
    // active, expiring and expired entries, with reason and owner shown as text.
    let today = chrono::Utc::now().date_naive();
    p.file(
        "pytest.ini",
        "[pytest]\nsmart_rerun_quarantine = ci/quarantine.toml\n",
    );
    p.file(
        "ci/quarantine.toml",
        &format!(
            "[[test]]\nnodeid = \"{FLAKY}\"\nreason = \"<img src=x onerror=alert(2)> sandbox\"\nexpires = {}\nowner = \"<b>payments</b>\"\n\n\
             [[test]]\nnodeid = \"test_suite.py::test_shared_*\"\nreason = \"TICKET-4\"\nexpires = {}\n\n\
             [[test]]\nnodeid = \"test_suite.py::test_broken\"\nreason = \"old\"\nexpires = {}\nissue = \"TICKET-1\"\n",
            today + chrono::Days::new(60),
            today + chrono::Days::new(3),
            today - chrono::Days::new(2),
        ),
    );
    let python = common::python();
    let made = dashboard(
        &p,
        &[
            "--history",
            db,
            "--out",
            site.to_str().unwrap(),
            "--python",
            python.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(made.code, 0, "{}{}", made.stdout, made.stderr);
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        !page.contains("<img") && !page.contains("<b>"),
        "markup from the quarantine file"
    );
    let dom = browse(profile.path(), &["--dump-dom"], &url);
    assert_eq!(errors(&dom), "", "the page's error trap caught errors");
    assert!(dom.contains(">Quarantine</th>"), "the column");
    let row = |nodeid: &str| {
        let start = dom
            .find(&format!("data-nodeid=\"{nodeid}\""))
            .unwrap_or_else(|| panic!("no row for {nodeid}"));
        let end = start + dom[start..].find("</tr>").unwrap();
        &dom[start..end]
    };
    let flaky = row(FLAKY);
    assert!(flaky.contains("data-state=\"active\""), "{flaky}");
    assert!(
        flaky.contains(&format!(
            "quarantined until {}",
            today + chrono::Days::new(60)
        )),
        "{flaky}"
    );
    assert!(
        flaky.contains("&lt;img src=x onerror=alert(2)&gt; sandbox")
            && flaky.contains("owner: &lt;b&gt;payments&lt;/b&gt;"),
        "{flaky}"
    );
    let shared = row("test_suite.py::test_shared_a");
    assert!(
        shared.contains("data-state=\"expiring\"") && shared.contains("TICKET-4"),
        "{shared}"
    );
    let broken = row("test_suite.py::test_broken");
    assert!(
        broken.contains("data-state=\"expired\"")
            && broken.contains(&format!("expired on {}", today - chrono::Days::new(2)))
            && broken.contains("issue: TICKET-1"),
        "{broken}"
    );
    let hostile = &dom[dom
        .find("data-nodeid=\"test_suite.py::test_hostile[")
        .unwrap()..];
    assert!(
        !hostile[..hostile.find("</tr>").unwrap()].contains("data-state"),
        "not quarantined"
    );
    assert!(!dom.contains("<img"), "a reason became markup");

    // A broken quarantine file is a usage error naming it.
    p.file("ci/quarantine.toml", "[[test]]\nnodeid = \"x\"\n");
    let broken = dashboard(
        &p,
        &[
            "--history",
            db,
            "--out",
            site.to_str().unwrap(),
            "--quarantine",
            "ci/quarantine.toml",
        ],
        &[],
    );
    assert_eq!(broken.code, 4, "{}", broken.stderr);
    assert!(
        broken
            .stderr
            .contains("ci/quarantine.toml:1: reason: is missing"),
        "{}",
        broken.stderr
    );
}

#[test]
fn a_bad_history_location_is_a_usage_error_naming_it() {
    let p = Project::new();
    let out = p.path().join("site");
    let out = out.to_str().unwrap();
    let missing = dashboard(&p, &["--history", "nowhere.db", "--out", out], &[]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(missing.stderr.contains("nowhere.db"), "{}", missing.stderr);
    let bad = dashboard(&p, &["--history", "mysql://db/x", "--out", out], &[]);
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--history") && bad.stderr.contains("mysql://db/x"),
        "{}",
        bad.stderr
    );
    let none = dashboard(&p, &["--out", out], &[]);
    assert_eq!(none.code, 4);
    assert!(
        none.stderr.contains("SMART_RERUN_HISTORY"),
        "{}",
        none.stderr
    );
    let since = dashboard(
        &p,
        &["--history", "x.db", "--out", out, "--since", "3y"],
        &[],
    );
    assert_eq!(since.code, 4);
    assert!(since.stderr.contains("--since"), "{}", since.stderr);
    assert!(!Path::new(out).exists(), "nothing written");
}
