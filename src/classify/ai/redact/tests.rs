use super::*;

fn redactor() -> Redactor {
    Redactor::new(
        [
            ("SECRET_TOKEN", "tok-5ecret-value-42"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
            ("DB_PASSWORD", "hunter22"),
            ("API_KEY", "short"),
            ("HOME", "/home/someone-long"),
            ("PATH", "/usr/bin:/bin"),
        ],
        &["configured-ai-token"],
    )
}

#[test]
fn secrets_are_scrubbed_by_value_and_by_shape() {
    let r = redactor();
    let rows = [
        (
            "ValueError: bad token tok-5ecret-value-42 for user",
            "ValueError: bad token *** for user",
        ),
        ("key wJalrXUtnFEMI/K7MDENG!", "key ***!"),
        ("login hunter22 failed", "login *** failed"),
        // Too short to scrub by value: "short" is a word.
        ("a short story", "a short story"),
        // Not a secret's name.
        ("in /home/someone-long", "in /home/someone-long"),
        ("sent configured-ai-token", "sent ***"),
        (
            "headers={'Authorization': 'Bearer abc.def-ghi'}",
            "headers={'Authorization': '***'}",
        ),
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ("got bearer eyJhbGciOi.x.y back", "got bearer *** back"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***"),
        ("Basic auth is off", "Basic auth is off"),
        (
            "GET https://alice:pa55w0rd@db.example.com:5432/x failed",
            "GET https://***@db.example.com:5432/x failed",
        ),
        (
            "clone https://ghp_abcdef@github.com/o/r",
            "clone https://***@github.com/o/r",
        ),
        ("mail me at a@b.c", "mail me at a@b.c"),
        ("https://example.com/a@b", "https://example.com/a@b"),
        (
            "url=http://h/?token=abc123&x=1",
            "url=http://h/?token=***&x=1",
        ),
        ("{\"password\": \"pw-1\"}", "{\"password\": \"***\"}"),
        ("api_key = 'sk-live-1'", "api_key = '***'"),
        ("assert token == 'abc'", "assert token == 'abc'"),
        ("def test_token():", "def test_token():"),
        ("naïve Bearer ünï", "naïve Bearer ünï"),
    ];
    for (raw, expected) in rows {
        assert_eq!(r.scrub(raw), expected, "{raw}");
    }
}

#[test]
fn long_tracebacks_keep_their_head_and_tail() {
    let tb: String = (1..=200).map(|i| format!("line {i}\n")).collect();
    let t = trim_traceback(&tb);
    assert!(t.starts_with("line 1\n"));
    assert!(t.contains("(140 lines trimmed by smart-rerun)"));
    assert!(t.trim_end().ends_with("line 200"));
    let wide = "x".repeat(50_000);
    let t = trim_traceback(&wide);
    assert!(t.chars().count() < MAX_TRACEBACK_CHARS + 100);
    assert_eq!(trim_traceback("short\ntb"), "short\ntb");
}

#[test]
fn a_query_is_scrubbed_everywhere_and_tokens_even_without_redaction() {
    use crate::model::{Action, Category, Classification, ClassificationSource};
    let r = redactor();
    let q = FailureQuery {
        nodeid: "t.py::test[tok-5ecret-value-42]".into(),
        fingerprint: "0123456789abcdef".into(),
        exception_type: "builtins.ValueError".into(),
        exception_bases: vec!["builtins.ValueError".into()],
        message: "https://u:p4ss@h failed with configured-ai-token".into(),
        traceback: "E   hunter22\n".repeat(100),
        attempts: vec![],
        heuristic: Classification {
            category: Category::Unknown,
            confidence: 0.3,
            action: Action::Retry,
            reason: "hunter22".into(),
            source: ClassificationSource::Heuristic,
        },
        policy: crate::model::PolicyInfo::from(&crate::policy::RetryPolicy::default()),
    };
    let sent = serde_json::to_string(&r.query(&q, true)).unwrap();
    for secret in [
        "tok-5ecret-value-42",
        "p4ss",
        "configured-ai-token",
        "hunter22",
    ] {
        assert!(!sent.contains(secret), "{secret} in {sent}");
    }
    assert!(sent.contains("lines trimmed"));
    let raw = r.query(&q, false);
    assert!(raw.message.contains("p4ss"), "no redaction: URL kept");
    assert!(
        raw.traceback.contains("hunter22"),
        "no redaction: env values kept"
    );
    assert!(
        !raw.message.contains("configured-ai-token"),
        "tokens always go"
    );
    assert_eq!(raw.traceback.lines().count(), 100);
}

/// Fake secrets in each provider's format, built at run time so that no secret scanner mistakes this
/// file for a leak: (kind, the secret, the text it appears in).
fn shaped() -> Vec<(&'static str, String, String)> {
    let b62 = "Zq8xK2mP7vL4nR9sT1wY6bC3dF5gH0jA";
    let pem_body = format!("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n{b62}\n{b62}");
    let rows: Vec<(&'static str, String, &str)> = vec![
        (
            "aws-access-key-id",
            format!("AKIA{}", "Q7RT2XKW9PLM4ZNB"),
            "key id {} in config",
        ),
        (
            "aws-secret-access-key",
            format!("{b62}{}", "aB3/+x9Y"),
            "aws_secret_access_key = {}",
        ),
        (
            "github-token",
            format!("ghp_{b62}a1B2"),
            "push with {} failed",
        ),
        (
            "github-token",
            format!("github_pat_11AB{}_{b62}", "CDEF1234gh"),
            "token {} rejected",
        ),
        (
            "gitlab-token",
            format!("glpat-{}", &b62[..20]),
            "PRIVATE {} used",
        ),
        (
            "jwt",
            format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}",
                &b62[..22]
            ),
            "session {} expired",
        ),
        (
            "private-key",
            format!("-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"),
            "key:\n{}\nloaded",
        ),
        (
            "slack-token",
            format!("xoxb-1234567890-{}", &b62[..24]),
            "slack {} revoked",
        ),
        (
            "stripe-key",
            format!("sk_live_{}", &b62[..24]),
            "charge with {} declined",
        ),
        ("google-api-key", format!("AIza{}abc", b62), "maps {} quota"),
        (
            "openai-key",
            format!("sk-proj-{b62}"),
            "model call with {} failed",
        ),
        ("npm-token", format!("npm_{}abcd", b62), "publish {} denied"),
        (
            "pypi-token",
            format!("pypi-AgEIcHlwaS5vcmc{b62}{b62}"),
            "upload {} refused",
        ),
        (
            "high-entropy",
            "Xy7Kq2Lm9Pz4Rt8Wv3Nb6Hs1".to_owned(),
            "client_ref = \"{}\"",
        ),
        (
            "high-entropy",
            "Xy7Kq2Lm9Pz4Rt8Wv3Nb6Hs1Jd5".to_owned(),
            "session: {}",
        ),
    ];
    rows.into_iter()
        .map(|(kind, secret, text)| {
            let text = text.replace("{}", &secret);
            (kind, secret, text)
        })
        .collect()
}

#[test]
fn each_known_secret_shape_is_scrubbed_and_counted_by_kind() {
    let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
    for (kind, secret, text) in shaped() {
        let mut seen = Redactions::default();
        let out = r.scrub_counted(&text, &mut seen);
        assert!(!out.contains(&secret), "{kind}: {out}");
        // Nothing of the secret's distinctive middle survives either.
        assert!(
            !out.contains(&secret[4..secret.len().min(16)]),
            "{kind}: {out}"
        );
        assert!(out.contains(MASK), "{kind}: {out}");
        assert_eq!(seen.get(kind), 1, "{kind}: {seen:?} for {text:?}");
        let counted: usize = seen.0.values().sum();
        assert_eq!(counted, 1, "{kind} counted twice: {seen:?}");
    }
}

#[test]
fn evidence_that_is_not_secret_is_kept() {
    let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
    for text in [
        r#"File "/home/runner/work/project/src/service/client.py", line 42, in fetch"#,
        "assert response.status == 200: got 503 from http://localhost:8080/api/v2/items",
        "commit = 3f786850e387550fdab836ed7e6dc881de23001b",
        "request_id: 123e4567-e89b-12d3-a456-426614174000",
        "test_id = 'tests/test_api.py::TestClient::test_retries_3_times_with_backoff'",
        "name: TestLoginRetriesThreeTimesWithBackoff2",
        "AssertionError: assert 'expected_value_for_the_check' == 'actual_value_seen_here'",
        "ModuleNotFoundError: No module named 'application_settings_production'",
    ] {
        let mut seen = Redactions::default();
        let out = r.scrub_counted(text, &mut seen);
        assert_eq!(out, text, "{seen:?}");
        assert!(seen.is_empty());
    }
}

#[test]
fn a_truncated_private_key_is_scrubbed_to_the_end() {
    let r = Redactor::new(Vec::<(String, String)>::new(), &[]);
    let out =
        r.scrub("key = -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n...");
    assert_eq!(out, "key = ***");
}

#[test]
fn counts_add_up_over_a_query() {
    let r = redactor();
    let mut seen = Redactions::default();
    let text = format!(
        "tok-5ecret-value-42 and {} at postgresql://u:pw@db/app",
        shaped()[2].1
    );
    r.scrub_counted(&text, &mut seen);
    r.scrub_counted("hunter22", &mut seen);
    assert_eq!(seen.get("secret-variable"), 2, "{seen:?}");
    assert_eq!(seen.get("github-token"), 1);
    assert_eq!(seen.get("url-credentials"), 1);
    assert_eq!(
        serde_json::to_value(&seen).unwrap(),
        serde_json::json!({"github-token": 1, "secret-variable": 2, "url-credentials": 1})
    );
}
