//! The page: one HTML document with its style, script and data inline. The data is JSON in a
//! `<script type="application/json">` element with `<`, `>`, `&` and U+2028/U+2029 written as `\uXXXX`
//! escapes, so no test name can end the element or start markup; the title is HTML-escaped. Everything
//! else from tests is set by the script as text (`textContent`), never parsed as markup.

use super::data::Dashboard;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// JSON safe inside a `<script>` element (and inside any HTML): the characters that could end the
/// element, open a comment or break a JavaScript line are written as `\uXXXX` escapes, which JSON
/// reads back as the same characters.
pub(crate) fn script_json(value: &impl serde::Serialize) -> serde_json::Result<String> {
    let json = serde_json::to_string(value)?;
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Text escaped for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub(crate) fn page(d: &Dashboard) -> serde_json::Result<String> {
    let data = script_json(d)?;
    let title = escape(&d.title);
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en" data-errors="">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="smart-rerun dashboard">
<title>{title}</title>
<style>
{STYLE}</style>
<script>
// The page's own error trap: any script error or rejected promise is written into data-errors.
(function () {{
  function trap(text) {{
    var el = document.documentElement;
    var prev = el.getAttribute("data-errors") || "";
    el.setAttribute("data-errors", (prev ? prev + "\n" : "") + String(text));
  }}
  window.onerror = function (msg, src, line, col) {{ trap(msg + " at " + line + ":" + col); }};
  window.addEventListener("unhandledrejection", function (e) {{ trap("unhandled rejection: " + e.reason); }});
}})();
</script>
</head>
<body>
<header><h1 id="title">{title}</h1><p id="subtitle"></p></header>
<section id="filters" aria-label="Filters">
<label>Branch <select id="f-branch"><option value="">all</option></select></label>
<label>CI job <select id="f-job"><option value="">all</option></select></label>
<label>Test <input id="f-search" type="search" placeholder="name contains…" autocomplete="off"></label>
</section>
<section class="panel"><h2>Flake rate over time</h2><div id="rate-chart" class="chart"></div></section>
<section class="panel"><h2>Most flaky tests</h2><div id="tests"></div></section>
<section class="panel" id="detail" hidden><h2 id="detail-title"></h2><div id="detail-body"></div></section>
<section class="panel"><h2>The same failure in several tests</h2><div id="fingerprints"></div></section>
<footer id="footer"></footer>
<svg id="svg-ns" width="0" height="0" aria-hidden="true"></svg>
<script id="dashboard-data" type="application/json">{data}</script>
<script>
{SCRIPT}</script>
</body>
</html>
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::data::{Dashboard, Group, Test};

    const HOSTILE: &str =
        "test_x.py::test_a[</script><img src=x onerror=alert(1)><!--\u{2028}&amp;]";

    fn dashboard(nodeid: &str, title: &str) -> Dashboard {
        Dashboard {
            title: title.to_owned(),
            generated_at: 0,
            since: None,
            branch: None,
            runs: Vec::new(),
            tests: vec![Test {
                nodeid: nodeid.to_owned(),
                runs: 2,
                groups: vec![Group {
                    branch: Some("main".into()),
                    job: None,
                    flaky: 1,
                    failed: 0,
                    last_flaky: Some(1),
                    last_failed: None,
                }],
                timeline: Vec::new(),
            }],
            fingerprints: Vec::new(),
            quarantine: None,
        }
    }

    #[test]
    fn a_hostile_test_name_cannot_leave_the_data_element() {
        let page = page(&dashboard(HOSTILE, "<b>x</b>")).unwrap();
        let start = page.find(r#"<script id="dashboard-data""#).unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let blob = &page[start..end];
        assert!(!blob.contains("<img"), "{blob}");
        assert!(!blob.contains("<!--"), "{blob}");
        assert!(!blob.contains('\u{2028}'), "{blob}");
        assert!(blob.contains(r"\u003c/script\u003e\u003cimg src=x onerror=alert(1)\u003e"));
        // The whole page has one data element and no markup from the name anywhere.
        assert!(!page.contains("<img"));
        assert_eq!(page.matches("</script>").count(), 3);
        // The title is escaped where it appears.
        assert!(page.contains("<title>&lt;b&gt;x&lt;/b&gt;</title>"));
        assert!(!page.contains("<b>x</b>"));
        // And the blob reads back as the same name.
        let json_start = blob.find('>').unwrap() + 1;
        let back: serde_json::Value = serde_json::from_str(&blob[json_start..]).unwrap();
        assert_eq!(back["tests"][0]["nodeid"], HOSTILE);
        assert!(back["quarantine"].is_null());
    }

    #[test]
    fn the_page_loads_nothing_from_the_network() {
        let page = page(&dashboard("t.py::t", "T")).unwrap();
        for remote in ["http://", "https://", "//cdn", "src=\"//"] {
            assert!(!page.contains(remote), "{remote}");
        }
        assert!(page.contains("default-src 'none'"));
    }

    #[test]
    fn the_script_sets_text_never_markup() {
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML"));
        assert!(!SCRIPT.contains("document.write"));
        assert!(!SCRIPT.contains("eval("));
    }

    #[test]
    fn escape_covers_quotes_and_brackets() {
        assert_eq!(
            escape(r#"<a href="x">'&'"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
