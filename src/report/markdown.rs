//! The Markdown report, used for job summaries and PR/MR comments. The main entry is [`render`].
//!
//! Layout: a headline with the counts; failed tests first, then flaky tests with the attempt they passed
//! on and their first failure; collapsible details with trimmed tracebacks; rerun time; links to the
//! file and line at the commit, and to the CI run, when the caller knows them ([`Links`]).
//!
//! It fits a size budget ([`COMMENT_BUDGET`], [`SUMMARY_BUDGET`]) by dropping the least important detail
//! first — long tracebacks, then tracebacks, then flaky details, then rows — and says what it left out,
//! pointing to the JSON report.
//!
//! Everything from the tested code (node ids, messages, tracebacks) is untrusted: [`inline`] and [`pre`]
//! escape it so it cannot inject Markdown or HTML, break a table, close a block, or @mention anyone.

use super::{counted, truncate};
use crate::model::{ExitCode, Outcome, RunReport, TestResult, headline};
use regex::Regex;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// GitHub's limit for an issue or PR comment body.
pub(crate) const COMMENT_BUDGET: usize = 65_536;
/// GitHub's limit for one step's job summary.
pub(crate) const SUMMARY_BUDGET: usize = 1024 * 1024;

/// Links the renderer can add; all optional.
#[derive(Debug, Clone, Default)]
pub(crate) struct Links {
    /// Prefix for a file at the commit, e.g. `https://github.com/o/r/blob/<sha>/`; a test's
    /// rootdir-relative path (with `path_prefix`) and `#L<line>` are appended.
    pub blob_base: Option<String>,
    /// The test rootdir relative to the repository root (`""` when they are the same).
    pub path_prefix: String,
    /// The CI run or job.
    pub run_url: Option<String>,
    /// Where the full JSON report can be found (artifact name or path), for "left out" notes.
    pub report_hint: Option<String>,
}

/// How much detail a rendering carries; lower levels are tried when the budget is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Detail {
    Minimal,
    NoFlakyRows,
    NoTracebacks,
    ShortTracebacks,
    Full,
}

/// Renders the report within `budget` characters (bytes of UTF-8 output).
pub(crate) fn render(report: &RunReport, links: &Links, budget: usize) -> String {
    let mut max_rows = 200usize;
    for detail in [
        Detail::Full,
        Detail::ShortTracebacks,
        Detail::NoTracebacks,
        Detail::NoFlakyRows,
    ] {
        loop {
            let text = render_at(report, links, detail, max_rows);
            if text.len() <= budget {
                return text;
            }
            if detail != Detail::NoFlakyRows || max_rows <= 5 {
                break;
            }
            max_rows /= 2;
        }
    }
    let text = render_at(report, links, Detail::Minimal, 0);
    if text.len() <= budget {
        return text;
    }
    // A budget too small for even the headline: cut on a character boundary.
    let mut end = budget.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn render_at(report: &RunReport, links: &Links, detail: Detail, max_rows: usize) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let mut left_out: Vec<String> = Vec::new();

    let icon = if report.run.exit_code == ExitCode::Ok {
        "✅"
    } else {
        "❌"
    };
    let mut counts = Vec::new();
    let mut count = |n: usize, label: &str| {
        if n > 0 {
            counts.push(format!("{n} {label}"));
        }
    };
    match s.quarantined_failures {
        0 => count(s.failed, "failed"),
        q => count(s.failed, &format!("failed ({q} quarantined)")),
    }
    count(s.errors, if s.errors == 1 { "error" } else { "errors" });
    count(
        s.collection_errors,
        if s.collection_errors == 1 {
            "collection error"
        } else {
            "collection errors"
        },
    );
    count(s.flaky, "flaky");
    count(s.passed, "passed");
    count(s.skipped, "skipped");
    count(s.xfailed, "xfailed");
    count(s.xpassed, "xpassed");
    count(s.not_run, "not run");
    if counts.is_empty() {
        counts.push("no tests".into());
    }
    let _ = writeln!(out, "## {icon} smart-rerun: {}\n", counts.join(", "));
    let mut facts = vec![
        counted(s.total, "test"),
        counted(report.run.rounds.len(), "round"),
    ];
    if s.reruns > 0 {
        facts.push(format!(
            "{} took {:.1} s",
            counted(s.reruns, "rerun"),
            s.rerun_seconds
        ));
    }
    facts.push(format!("total {:.1} s", report.run.duration_seconds));
    if let Some(v) = &report.run.pytest_version {
        facts.push(format!("pytest {}", inline(v)));
    }
    if let Some(url) = links.run_url.as_deref().and_then(safe_url) {
        facts.push(format!("[CI run]({url})"));
    }
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    if !matches!(report.run.exit_code, ExitCode::Ok | ExitCode::TestsFailed) {
        let _ = writeln!(
            out,
            "> **Exit {}**: {}\n",
            report.run.exit_code,
            inline(&report.run.exit_reason)
        );
    }

    let mut failed: Vec<&TestResult> = report
        .tests
        .iter()
        .filter(|t| t.outcome.is_failure() && !t.is_quarantined())
        .collect();
    // Deterministic failures first (the ones to fix), then the rest; stable within each group.
    failed.sort_by_key(|t| failure_rank(t));
    let flaky: Vec<&TestResult> = report
        .tests
        .iter()
        .filter(|t| t.outcome == Outcome::Flaky && !t.is_quarantined())
        .collect();
    let quarantined: Vec<&TestResult> =
        report.tests.iter().filter(|t| t.is_quarantined()).collect();

    if detail == Detail::Minimal {
        if !failed.is_empty() || !flaky.is_empty() {
            let lists: Vec<String> = [(failed.len(), "failed test"), (flaky.len(), "flaky test")]
                .into_iter()
                .filter(|&(n, _)| n > 0)
                .map(|(n, noun)| counted(n, noun))
                .collect();
            left_out.push(format!("the list of {}", lists.join(" and ")));
        }
    } else {
        if !failed.is_empty() {
            let _ = writeln!(out, "### Failed ({})\n", failed.len());
            let _ = writeln!(
                out,
                "| Test | Attempts | Failure | Classification |\n| --- | --- | --- | --- |"
            );
            for t in failed.iter().take(max_rows) {
                let failure = t
                    .last_failure()
                    .and_then(|a| a.exception.as_ref())
                    .map(|e| exception_line(e.short_type(), &e.message))
                    .unwrap_or_else(|| inline(t.stopped_because.as_deref().unwrap_or("failed")));
                let label = if t.outcome == Outcome::Error {
                    " (error)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "| {}{label} | {} | {failure} | {} |",
                    test_cell(t, links),
                    t.attempts.len().max(1),
                    classification_cell(t)
                );
            }
            if failed.len() > max_rows {
                left_out.push(counted(failed.len() - max_rows, "more failed test"));
            }
            out.push('\n');
        }
        for e in report.collection_errors.iter().take(max_rows.max(1)) {
            let _ = writeln!(out, "- ❌ collection error in {}", inline(&e.nodeid));
        }
        if !report.collection_errors.is_empty() {
            out.push('\n');
        }
        if !flaky.is_empty() {
            if detail >= Detail::NoTracebacks {
                let _ = writeln!(out, "### Flaky ({})\n", flaky.len());
                let _ = writeln!(
                    out,
                    "| Test | Passed on | First failure | Why it looks flaky |\n| --- | --- | --- | --- |"
                );
                for t in flaky.iter().take(max_rows) {
                    let first = t
                        .first_failure()
                        .and_then(|a| a.exception.as_ref())
                        .map(|e| exception_line(e.short_type(), &e.message))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "| {} | attempt {} (of up to {}) | {first} | {} |",
                        test_cell(t, links),
                        t.passed_on_attempt().unwrap_or(0),
                        report.run.policy.max_attempts,
                        classification_cell(t)
                    );
                }
                if flaky.len() > max_rows {
                    left_out.push(counted(flaky.len() - max_rows, "more flaky test"));
                }
                out.push('\n');
            } else {
                let _ = writeln!(out, "### Flaky ({})\n", flaky.len());
                left_out.push(format!(
                    "the list of {}",
                    counted(flaky.len(), "flaky test")
                ));
            }
        }
        if !quarantined.is_empty() {
            let _ = writeln!(
                out,
                "### Quarantined ({})\n\nTheir failures do not fail the run.\n",
                quarantined.len()
            );
            let _ = writeln!(
                out,
                "| Test | Outcome | Failure | Quarantine |\n| --- | --- | --- | --- |"
            );
            for t in quarantined.iter().take(max_rows) {
                let Some(q) = t.quarantine.as_deref() else {
                    continue;
                };
                let failure = t
                    .last_failure()
                    .and_then(|a| a.exception.as_ref())
                    .map(|e| exception_line(e.short_type(), &e.message))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {} | {} | {failure} | {} ({}:{}) |",
                    test_cell(t, links),
                    t.outcome.as_str(),
                    inline(&q.describe()),
                    inline(&q.file),
                    q.line
                );
            }
            if quarantined.len() > max_rows {
                left_out.push(counted(
                    quarantined.len() - max_rows,
                    "more quarantined test",
                ));
            }
            out.push('\n');
        }
        let with_traces: Vec<&TestResult> = failed
            .iter()
            .chain(flaky.iter())
            .copied()
            .take(max_rows)
            .collect();
        match detail {
            Detail::Full | Detail::ShortTracebacks => {
                let lines = if detail == Detail::Full { 60 } else { 12 };
                for t in &with_traces {
                    let Some(a) = (if t.outcome == Outcome::Flaky {
                        t.first_failure()
                    } else {
                        t.last_failure()
                    }) else {
                        continue;
                    };
                    let Some(tb) = a.traceback.as_deref().filter(|tb| !tb.trim().is_empty()) else {
                        continue;
                    };
                    // The summary sits inside an HTML block, where Markdown escapes would show literally.
                    let head = a
                        .exception
                        .as_ref()
                        .map(|e| html_inline(&truncate(&e.headline(), 200)))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "<details><summary>{} (attempt {}): {head}</summary>\n\n<pre>{}</pre>\n</details>\n",
                        html_inline(&t.nodeid),
                        a.number,
                        pre(&trim_traceback(tb, lines))
                    );
                }
                if detail == Detail::ShortTracebacks {
                    left_out.push("the long parts of tracebacks".into());
                }
            }
            _ => {
                if !with_traces.is_empty() {
                    left_out.push("tracebacks".into());
                }
            }
        }
    }
    for w in &report.warnings {
        let _ = writeln!(out, "> ⚠️ {}\n", inline(w));
    }
    if !left_out.is_empty() {
        let whereto = links
            .report_hint
            .as_deref()
            .map(|h| format!(" — see the JSON report ({})", inline(h)))
            .unwrap_or_else(|| " — see the JSON report".into());
        let _ = writeln!(
            out,
            "_Left out to fit the size limit: {}{whereto}._",
            left_out.join(", ")
        );
    }
    out
}

/// Deterministic failures rank first, then failures with other categories, then unclassified ones.
fn failure_rank(t: &TestResult) -> u8 {
    use crate::model::Category;
    match t.classification.as_ref().map(|c| c.category) {
        Some(Category::Deterministic) => 0,
        Some(Category::Unknown) | None => 2,
        Some(_) => 1,
    }
}

/// `category (source): reason`, escaped; empty when the test has no classification.
/// The classification, then what history says (with `--history`) on its own line of the cell.
fn classification_cell(t: &TestResult) -> String {
    let mut cell = classification_only(t);
    if let Some(h) = &t.history {
        if !cell.is_empty() {
            cell.push_str("<br>");
        }
        cell.push_str(&format!("**history**: {}", inline(&h.describe())));
    }
    cell
}

fn classification_only(t: &TestResult) -> String {
    match &t.classification {
        Some(c) => {
            let source = match c.source {
                crate::model::ClassificationSource::Heuristic => "heuristic",
                crate::model::ClassificationSource::Observed => "observed",
                crate::model::ClassificationSource::Ai => "AI",
                crate::model::ClassificationSource::Cache => "AI, cached",
            };
            format!(
                "{} ({source}): {}",
                c.category.as_str(),
                inline(&truncate(&c.reason, 160))
            )
        }
        None => String::new(),
    }
}

fn test_cell(t: &TestResult, links: &Links) -> String {
    let name = inline(&t.nodeid);
    match (&links.blob_base, &t.file) {
        (Some(base), Some(file)) if !file.starts_with('/') && !file.contains("..") => {
            // The failing line when it is in the linked file (a fixture's may be in a conftest).
            let line = t
                .first_failure()
                .and_then(|a| a.test_location.as_ref())
                .filter(|l| &l.file == file)
                .map(|l| l.line)
                .or(t.line)
                .map(|l| format!("#L{l}"))
                .unwrap_or_default();
            let path = format!("{}{}", links.path_prefix, file);
            match safe_url(&format!("{base}{}{line}", url_path(&path))) {
                Some(url) => format!("[{name}]({url})"),
                None => name,
            }
        }
        _ => name,
    }
}

/// `Type: first line of the message`, escaped, at most 200 characters.
fn exception_line(kind: &str, message: &str) -> String {
    inline(&truncate(&headline(kind, message), 200))
}

/// Escapes untrusted text for one line inside an HTML element (`<summary>`): HTML-escaped, one line,
/// no @mentions.
pub(crate) fn html_inline(text: &str) -> String {
    unlink(&pre(&text.replace(['\n', '\r', '\t'], " ")))
}

/// Keeps GitHub from turning escaped text into links: its renderer autolinks `www.x` and `http://x` in
/// text, and links `#123` and `GH-45` to issues (cross-referencing them) everywhere but in code and
/// `<pre>`. A zero-width space inside each pattern leaves the text readable and inert. The `#` of an HTML
/// entity (`&#124;`) is left alone.
fn unlink(text: &str) -> String {
    static RULES: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
        let re = |p: &str| Regex::new(p).expect("a valid pattern");
        [
            (re(r"(?i)\b(www)(\.)"), "${1}\u{200b}${2}"),
            (re(r"(?i)\b(gh-)(\d)"), "${1}\u{200b}${2}"),
            // `:` is escaped as `\:` in inline text.
            (re(r"(\\?:)//"), "\u{200b}${1}//"),
            (re(r"(^|[^&])#(\d)"), "${1}#\u{200b}${2}"),
        ]
    });
    let mut out = text.to_owned();
    for (re, with) in RULES.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *with).into_owned();
        }
    }
    out
}

/// The first `head` lines and the last `tail` lines of a traceback: the test and the error, not the
/// framework frames in between.
fn trim_traceback(tb: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = tb.lines().collect();
    let tb = if lines.len() <= max_lines {
        tb.to_owned()
    } else {
        let head = max_lines / 3;
        let tail = max_lines - head;
        format!(
            "{}\n… {} lines left out …\n{}",
            lines[..head].join("\n"),
            lines.len() - head - tail,
            lines[lines.len() - tail..].join("\n")
        )
    };
    truncate(&tb, 8_000)
}

/// Escapes untrusted text for one line of Markdown (a table cell, a list item, a summary): no line
/// breaks, no HTML, no Markdown syntax, no table pipes, no @mentions.
pub(crate) fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '|' => out.push_str("&#124;"),
            // A zero-width space after @ keeps "@org/team" from becoming a mention.
            '@' => out.push_str("@\u{200b}"),
            // Cells never start a line, so only what acts mid-line needs escaping; `(` after `]` and
            // `!` before `[` are disarmed by escaping the brackets, and `:` stops `:emoji:` codes.
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | ':' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    unlink(&out)
}

/// Escapes untrusted text for the inside of a `<pre>` block: HTML-escaped (so `</pre>`, `</details>`
/// and `<script>` are inert), and no @mentions.
pub(crate) fn pre(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@\u{200b}"),
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes what a Markdown link target cannot hold.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A URL safe to put in a Markdown link: http(s), no characters that end the link.
fn safe_url(url: &str) -> Option<String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '(' | ')' | '<' | '>' | '"' | '\'' | '`')
        });
    ok.then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_cannot_break_out() {
        let hostile =
            "a|b\n`x` <script>alert(1)</script> </details> @org/team **bold** [l](http://e)";
        let out = inline(hostile);
        assert!(
            !out.contains('\n')
                && !out.contains('|')
                && !out.contains('<')
                && !out.contains("@org")
        );
        assert!(
            !out.contains("**") && !out.contains("](") && !out.contains('`') || out.contains("\\`")
        );
    }

    #[test]
    fn links_and_references_from_tested_code_are_disarmed() {
        let z = '\u{200b}';
        let out = inline("see www.evil-example.com, http://x.example/a #123 GH-45 gh-7 a&b#1 x#y");
        assert_eq!(
            out,
            format!(
                "see www{z}.evil-example.com, http{z}\\://x.example/a #{z}123 GH-{z}45 gh-{z}7 \
                 a&amp;b#{z}1 x#y"
            )
        );
        // Entities the escaping wrote stay entities.
        assert_eq!(inline("a|b"), "a&#124;b");
        let summary = html_inline("failed at WWW.Example.org see #9");
        assert_eq!(summary, format!("failed at WWW{z}.Example.org see #{z}9"));
    }

    #[test]
    fn pre_text_cannot_close_its_block() {
        let out = pre("</pre></details><img src=x onerror=alert(1)> @someone\n```");
        assert!(!out.contains("</pre>") && !out.contains("</details>") && !out.contains("<img"));
        assert!(out.contains("@\u{200b}someone"));
    }

    #[test]
    fn only_plain_http_urls_are_linked() {
        assert!(safe_url("javascript:alert(1)").is_none());
        assert!(safe_url("https://x/y) [z](https://evil").is_none());
        assert_eq!(url_path("tests/a b/ü.py"), "tests/a%20b/%C3%BC.py");
    }

    use crate::sample;

    fn links() -> Links {
        Links {
            blob_base: Some("https://github.com/o/r/blob/abc123/".into()),
            path_prefix: "python/".into(),
            run_url: Some("https://github.com/o/r/actions/runs/42".into()),
            report_hint: Some("smart-rerun-report.json".into()),
        }
    }

    #[test]
    fn markdown_snapshot() {
        let text = render(&sample::every_outcome(), &links(), COMMENT_BUDGET);
        insta::assert_snapshot!("every_outcome", text);
    }

    #[test]
    fn markdown_without_links_snapshot() {
        let text = render(&sample::every_outcome(), &Links::default(), COMMENT_BUDGET);
        assert!(!text.contains("](http"), "{text}");
        insta::assert_snapshot!("every_outcome_no_links", text);
    }

    /// Table rows of the section that starts with `heading`, split into cells on unescaped pipes.
    fn table_rows<'a>(text: &'a str, heading: &str) -> Vec<Vec<&'a str>> {
        let Some(at) = text.find(heading) else {
            return Vec::new();
        };
        text[at..]
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            // The header and the delimiter row.
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.split('|').collect())
            .collect()
    }

    #[test]
    fn counts_of_one_are_singular() {
        let mut report = sample::every_outcome();
        report.run.rounds.truncate(1);
        report.summary.total = 1;
        report.summary.reruns = 1;
        let text = render(&report, &Links::default(), COMMENT_BUDGET);
        assert!(
            text.contains("\n1 test · 1 round · 1 rerun took "),
            "{text}"
        );
        report.run.rounds = sample::every_outcome().run.rounds;
        report.summary.total = 7;
        report.summary.reruns = 4;
        let text = render(&report, &Links::default(), COMMENT_BUDGET);
        assert!(
            text.contains("\n7 tests · 3 rounds · 4 reruns took "),
            "{text}"
        );
    }

    #[test]
    fn hostile_text_stays_text() {
        let text = render(&sample::hostile(), &links(), COMMENT_BUDGET);
        for bad in ["<script", "<img", "@org", "\u{1b}", "\r", "\u{0}"] {
            assert!(!text.contains(bad), "{bad:?} in {text}");
        }
        // Outside our HTML blocks (<details><summary> lines and <pre> blocks, whose text Markdown leaves
        // alone), no unescaped link syntax.
        let outside: String = text
            .split("<pre>")
            .map(|part| part.split_once("</pre>").map_or(part, |(_, after)| after))
            .collect::<String>()
            .lines()
            .filter(|l| !l.starts_with("<details><summary>"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !outside.replace("\\]", "").contains("](javascript"),
            "{outside}"
        );
        // Only our own HTML: every <details>, <summary> and <pre> is one we opened.
        assert_eq!(
            text.matches("<details>").count(),
            text.matches("</details>").count()
        );
        assert_eq!(
            text.matches("<pre>").count(),
            text.matches("</pre>").count()
        );
        assert!(
            !outside.contains("```"),
            "no fence a message could open or close"
        );
        // Every table row has exactly the header's four cells (five pipes, six pieces).
        for heading in ["### Failed", "### Flaky"] {
            let rows = table_rows(&text, heading);
            assert!(!rows.is_empty(), "{heading}");
            for row in rows {
                assert_eq!(row.len(), 6, "{row:?}");
            }
        }
        // The 100 KB message is cut in the table and the summary line.
        assert!(text.lines().all(|l| l.len() < 20_000));
        assert!(text.len() <= COMMENT_BUDGET);
    }

    #[test]
    fn three_thousand_failures_fit_a_comment_and_a_summary() {
        let report = sample::large(3_000, 40, 20_000);
        for (budget, name) in [(COMMENT_BUDGET, "comment"), (SUMMARY_BUDGET, "summary")] {
            let text = render(&report, &links(), budget);
            assert!(text.len() <= budget, "{name}: {} bytes", text.len());
            assert!(
                text.contains("_Left out to fit the size limit: ")
                    && text.contains("see the JSON report (smart-rerun-report.json)"),
                "{name}: {}",
                &text[text.len().saturating_sub(400)..]
            );
            assert!(
                text.starts_with("## ❌ smart-rerun: 3000 failed, 40 flaky"),
                "{name}: {}",
                &text[..300]
            );
            // Failed tests come first and in order; what is dropped is dropped from the end.
            let failed = table_rows(&text, "### Failed (3000)");
            assert!(failed.len() >= 5, "{name}: {} failed rows", failed.len());
            assert!(failed[0][1].contains(r"test\_failing\_00000"), "{name}");
            assert!(failed[1][1].contains(r"test\_failing\_00001"), "{name}");
            let flaky_at = text.find("### Flaky (40)").unwrap();
            assert!(text.find("### Failed").unwrap() < flaky_at, "{name}");
            let left = text.lines().last().unwrap();
            assert!(
                left.contains(&format!("{} more failed tests", 3000 - failed.len())),
                "{left}"
            );
        }
        // The comment drops tracebacks first and keeps both lists.
        let comment = render(&report, &links(), COMMENT_BUDGET);
        assert!(!comment.contains("<pre>"));
        assert!(comment.contains("2800 more failed tests, tracebacks — see the JSON report"));
        assert_eq!(table_rows(&comment, "### Flaky").len(), 40);
        // Tighter, the flaky rows go before any failed row does.
        let tight = render(&report, &links(), 20_000);
        assert!(tight.len() <= 20_000);
        assert!(table_rows(&tight, "### Flaky").is_empty(), "{tight}");
        assert!(table_rows(&tight, "### Failed").len() >= 50, "{tight}");
        assert!(tight.contains("the list of 40 flaky tests"), "{tight}");
        // The summary has room for short tracebacks.
        let summary = render(&report, &links(), SUMMARY_BUDGET);
        assert!(summary.contains("<pre>") && summary.contains("lines left out"));
        assert!(summary.contains("the long parts of tracebacks"));
    }

    #[test]
    fn a_tiny_budget_still_gives_the_headline_and_never_overflows() {
        let report = sample::large(50, 5, 2_000);
        for budget in [100, 500, 2_000, 10_000] {
            let text = render(&report, &Links::default(), budget);
            assert!(text.len() <= budget, "{budget}: {}", text.len());
            assert!(text.starts_with("## ❌ smart-rerun"), "{budget}: {text}");
        }
        let text = render(&report, &Links::default(), 2_000);
        assert!(text.contains("Left out"), "{text}");
    }
}
