"""The settings the pytest plugin offers, one row per setting of the smart-rerun binary.

Generated from src/config/keys.rs: do not edit; `UPDATE_SETTINGS=1 cargo test --lib settings` rewrites it.
"""

# (ini key, the binary's flag, kind, help). kind: "bool" is a switch (with a hidden
# --smart-rerun-no-NAME to turn it off), "secret" takes a token, handed to the binary in the
# environment; anything else takes a value and is the option's metavar. The pytest option is the ini
# key spelt with dashes.
KEYS = (
    ("smart_rerun", "--rerun", "bool", "Rerun every failing test (true) or only tests marked @pytest.mark.smart_rerun (false) [default: true]"),
    ("smart_rerun_max", "--max", "N", "Total attempts per test, the first run included (at least 1) [default: 2]"),
    ("smart_rerun_delay", "--delay", "SECONDS", "Seconds between a test's failed attempt and its next attempt [default: 0]"),
    ("smart_rerun_backoff", "--backoff", "none|linear|exp", "How the delay grows: none (delay), linear (delay×k) or exp (delay×2^(k-1)) for the k-th retry [default: none]"),
    ("smart_rerun_max_delay", "--max-delay", "SECONDS", "Cap, in seconds, for a backed-off delay [default: none (no cap)]"),
    ("smart_rerun_jitter", "--jitter", "SECONDS", "Up to this many seconds added to each delay, a share fixed by the test and the attempt, so retries of different tests don't land together [default: 0]"),
    ("smart_rerun_errors", "--errors", "NAME[,NAME...]", "Only rerun failures whose exception class, or a base class, is one of these (comma-separated, short like TimeoutError or qualified like requests.exceptions.ConnectionError) [default: any exception]"),
    ("smart_rerun_max_failures", "--max-failures", "N", "When more tests than this fail in the first round, the build is broken, not flaky: rerun nothing [default: no limit]"),
    ("smart_rerun_max_reruns", "--max-reruns", "N", "Cap on the total number of reruns in the run [default: no limit]"),
    ("smart_rerun_fail_on_flaky", "--fail-on-flaky", "bool", "Flaky tests (failed, then passed) make the run exit 1 [default: false]"),
    ("smart_rerun_early_stop", "--early-stop", "bool", "Stop retrying a test that failed the same way twice (same exception, normalised message and crash site), a confirmed deterministic failure; false spends every attempt [default: true]"),
    ("smart_rerun_prestart", "--prestart", "bool", "Start a rerun round's pytest as soon as a test fails, held before it reads any conftest until its tests are chosen; false starts each round's pytest when the round starts [default: true]"),
    ("smart_rerun_fork", "--fork", "bool", "Start rerun rounds warm: forked from a snapshot of the first round's pytest taken right after collection, before any test or fixture ran, so a rerun round pays no imports, conftest or collection; false starts each rerun round's pytest afresh [default: true (Linux)]"),
    ("smart_rerun_report", "--report", "PATH", "Write the JSON report here"),
    ("smart_rerun_junit_xml", "--junit-xml", "PATH", "Write flaky-aware JUnit XML here (a --junitxml in the pytest command is taken over the same way)"),
    ("smart_rerun_junit_compat", "--junit-compat", "surefire|per-attempt|gitlab", "JUnit layout: surefire (flakyFailure/rerunFailure elements), per-attempt (one testcase per attempt) or gitlab (surefire plus a skipped `name [flaky]` testcase per flaky test) [default: surefire (gitlab under GitLab CI)]"),
    ("smart_rerun_markdown", "--markdown", "PATH", "Write the Markdown report (for job summaries and PR/MR comments) here"),
    ("smart_rerun_history", "--history", "URL", "Remember every run here and say in the reports what history knows of each failed or flaky test: a file path or sqlite:PATH (SQLite), or postgres://USER@HOST:PORT/DB"),
    ("smart_rerun_new_test_repeats", "--new-test-repeats", "N", "Run each test that history has never seen this many more times, in a rerun round: a new test that fails on any repeat is a new flaky test, and fails the run (needs --history) [default: 0]"),
    ("smart_rerun_history_policy", "--history-policy", "bool", "Let history adjust retries: a test that flaked in at least smart_rerun_history_flaky_percent % of its last 50 runs gets up to smart_rerun_history_max attempts, and a failure that history saw fail the same way for good in two earlier runs stops after its first attempt (needs --history) [default: false]"),
    ("smart_rerun_history_max", "--history-max", "N", "Attempts (the first run included) a known flaky test gets under --history-policy [default: 5]"),
    ("smart_rerun_history_flaky_percent", "--history-flaky-percent", "N", "Under --history-policy, the share of its last 50 runs (in percent) in which a test flaked that makes it known flaky [default: 5]"),
    ("smart_rerun_quarantine", "--quarantine", "PATH", "The quarantine file: tests listed there still run and are reported, in their own section, but their failure does not fail the run [default: .smart-rerun/quarantine.toml]"),
    ("smart_rerun_quarantine_grace_days", "--quarantine-grace-days", "N", "Days an expired quarantine entry still protects its tests, with a warning naming the entry; after them it protects nothing [default: 7]"),
    ("smart_rerun_ai", "--ai", "bool", "Classify failures with an AI endpoint (MCP or plain HTTP) on top of the offline heuristics [default: false]"),
    ("smart_rerun_ai_endpoint", "--ai-endpoint", "URL", "The MCP (or plain HTTP) endpoint for AI classification"),
    ("smart_rerun_ai_token", "--ai-token", "secret", "Bearer token for the AI endpoint, never printed; prefer SMART_RERUN_AI_TOKEN (or {{ env:NAME }} in an ini file): a command line is visible to other processes"),
    ("smart_rerun_ai_report", "--ai-report", "PATH", "Write the AI classification trail here"),
    ("smart_rerun_ai_cache", "--ai-cache", "PATH", "Persistent cache of AI classifications, by failure fingerprint"),
    ("smart_rerun_ai_redact", "--ai-redact", "bool", "Trim tracebacks and scrub secrets before anything is sent [default: true]"),
    ("smart_rerun_ai_protocol", "--ai-protocol", "mcp|http", "How to reach the AI endpoint: mcp (a tool call over Streamable HTTP) or http (POST the failure as JSON) [default: mcp]"),
    ("smart_rerun_ai_tool", "--ai-tool", "NAME", "The MCP tool that classifies a failure [default: classify_failure]"),
    ("smart_rerun_ai_timeout", "--ai-timeout", "SECONDS", "The AI budget for the whole run, in seconds; each call also stops after 10 s [default: 60]"),
    ("smart_rerun_github_annotations", "--github-annotations", "bool", "In GitHub Actions: annotate failed tests (errors) and flaky tests (warnings) at their file and line [default: true]"),
    ("smart_rerun_github_summary", "--github-summary", "bool", "In GitHub Actions: append the Markdown report to the job summary [default: true]"),
    ("smart_rerun_github_comment", "--github-comment", "bool", "In GitHub Actions: keep one sticky comment with the results on the pull request [default: true]"),
    ("smart_rerun_github_comment_key", "--github-comment-key", "KEY", "This job's section of the sticky PR comment [default: job and matrix (the job id and the matrix values)]"),
    ("smart_rerun_github_stop_commands", "--github-stop-commands", "bool", "In GitHub Actions: stop pytest's output from issuing workflow commands [default: true]"),
    ("smart_rerun_github_token", "--github-token", "secret", "Token for the PR comment, never printed; prefer the variable: a command line is visible to other processes [default: GITHUB_TOKEN]"),
    ("smart_rerun_gitlab_note", "--gitlab-note", "bool", "In GitLab CI: keep one sticky note with the results on the merge request [default: true]"),
    ("smart_rerun_gitlab_note_key", "--gitlab-note-key", "KEY", "This job's section of the sticky merge request note [default: CI_JOB_NAME]"),
    ("smart_rerun_gitlab_token", "--gitlab-token", "secret", "Token for the merge request note (a project access token with the api scope), never printed; prefer a masked CI/CD variable to the flag [default: GITLAB_TOKEN]"),
)
