use super::*;
use crate::config::AiProtocol;
use crate::model::{Action, Category};

#[test]
fn answers_are_read_refused_or_called_garbage() {
    let r = Redactor::new(Vec::<(String, String)>::new(), &["the-token-123"]);
    let cap = Duration::from_secs(30);
    let ok = AiAdvisor::parse(
        &serde_json::json!({"category": "flaky-network", "confidence": 0.9, "reason": "reset; the-token-123", "action": "retry_with_delay", "delay_seconds": 2}),
        cap,
        &r,
    )
    .ok()
    .unwrap();
    assert_eq!(ok.category, Category::FlakyNetwork);
    assert_eq!(ok.action, Action::RetryWithDelay { seconds: 2.0 });
    assert_eq!(ok.reason, "reset; ***");
    assert_eq!(ok.source, ClassificationSource::Ai);
    let refused = |v: Value| match AiAdvisor::parse(&v, cap, &r) {
        Err(AnswerError::Refused(why)) => why,
        _ => panic!("{v} not refused"),
    };
    assert!(refused(serde_json::json!({"category": "cosmic"})).contains("not a category"));
    assert!(
        refused(serde_json::json!({"category": "unknown", "confidence": 1.7}))
            .contains("outside 0..1")
    );
    assert!(
        refused(serde_json::json!({"category": "unknown", "confidence": "high"}))
            .contains("not a number")
    );
    for garbage in [
        serde_json::json!([1]),
        serde_json::json!({"verdict": "flaky"}),
    ] {
        assert!(matches!(
            AiAdvisor::parse(&garbage, cap, &r),
            Err(AnswerError::Garbage(_))
        ));
    }
}

#[test]
fn notes_name_the_endpoint_and_what_went_wrong() {
    let e = CallError::Unreachable("connection refused".into());
    assert_eq!(
        e.note("http://127.0.0.1:9/mcp", "classify_failure", false),
        "AI endpoint http://127.0.0.1:9/mcp unreachable (connection refused): the heuristics decided"
    );
    assert!(
        CallError::Auth(401)
            .note("u", "t", false)
            .contains("needs a token")
    );
    assert!(
        CallError::Auth(401)
            .note("u", "t", true)
            .contains("refused the token")
    );
    assert!(
        CallError::Status(503)
            .note("u", "t", true)
            .contains("failed (HTTP 503)")
    );
}

#[test]
fn a_disabled_advisor_asks_nothing_and_no_endpoint_is_one_note() {
    let mut a = AiAdvisor::new();
    let settings = AiSettings::default();
    let q = sample_query();
    assert_eq!(
        a.advise(&settings, std::slice::from_ref(&q), Duration::from_secs(1)),
        (vec![], vec![])
    );
    let on = AiSettings {
        enabled: true,
        ..AiSettings::default()
    };
    let (advice, notes) = a.advise(&on, std::slice::from_ref(&q), Duration::from_secs(1));
    assert!(advice.is_empty());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        a.advise(&on, &[q], Duration::from_secs(1)).1.is_empty(),
        "noted once"
    );
}

#[test]
fn cache_hits_cost_no_call_and_an_unreachable_endpoint_is_noted_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    let q = sample_query();
    let (mut cache, _) = Cache::open(&path);
    cache.put(
        &q.fingerprint,
        &crate::model::Classification {
            category: Category::FlakyTiming,
            confidence: 0.6,
            action: Action::RetryWithDelay { seconds: 1.0 },
            reason: "slow".into(),
            source: ClassificationSource::Ai,
        },
    );
    cache.save().unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = AiSettings {
        enabled: true,
        endpoint: Some(format!("http://127.0.0.1:{port}/mcp")),
        cache: Some(path),
        tool: "classify_failure".into(),
        ..AiSettings::default()
    };
    let mut a = AiAdvisor::new();
    let (advice, notes) = a.advise(&settings, std::slice::from_ref(&q), Duration::from_secs(5));
    assert_eq!(advice.len(), 1);
    assert_eq!(advice[0].classification.source, ClassificationSource::Cache);
    assert!(notes.is_empty());
    assert_eq!((a.stats.calls, a.stats.cache_hits), (0, 1));
    let mut other = sample_query();
    other.fingerprint = "fedcba9876543210".into();
    for protocol in [AiProtocol::Mcp, AiProtocol::Http] {
        let settings = AiSettings {
            protocol,
            ..settings.clone()
        };
        let mut a = AiAdvisor::new();
        let started = std::time::Instant::now();
        let (advice, notes) = a.advise(
            &settings,
            std::slice::from_ref(&other),
            Duration::from_secs(5),
        );
        assert!(advice.is_empty());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("unreachable (connection refused)"),
            "{protocol:?}: {notes:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(
            a.advise(&settings, &[other.clone()], Duration::from_secs(5))
                .1
                .is_empty(),
            "noted once"
        );
        assert_eq!(a.stats.calls, 1, "no second call to a broken endpoint");
    }
}

/// A plain HTTP endpoint on a thread that answers every request with `body`, and counts them.
fn fixed_http_endpoint(
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/classify", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut request = vec![0; length];
            let _ = reader.read_exact(&mut request);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, count)
}

#[test]
fn refused_answers_are_warned_about_a_few_times_then_only_reported() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (url, count) = fixed_http_endpoint(r#"{"category": "cosmic-rays", "confidence": 0.5}"#);
    let settings = AiSettings {
        enabled: true,
        endpoint: Some(url),
        protocol: AiProtocol::Http,
        ..AiSettings::default()
    };
    let queries: Vec<FailureQuery> = (0..5)
        .map(|i| {
            let mut q = sample_query();
            q.nodeid = format!("t.py::test_{i}");
            q.fingerprint = format!("{i:016x}");
            q
        })
        .collect();
    let mut a = AiAdvisor::new();
    let (advice, notes) = a.advise(&settings, &queries, Duration::from_secs(10));
    assert!(advice.is_empty());
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(notes.len(), MAX_REFUSAL_WARNINGS as usize + 1, "{notes:?}");
    assert!(notes[0].contains("ignored: 'cosmic-rays' is not a category"));
    assert!(
        notes
            .last()
            .unwrap()
            .starts_with("more AI answers were ignored")
    );
    assert_eq!(a.notes.len(), 5, "every refusal is in the AI report");
    assert_eq!(a.stats.refused, 5);
    // Refused fingerprints are not asked again; the endpoint is not written off.
    let (_, notes) = a.advise(&settings, &queries, Duration::from_secs(10));
    assert!(notes.is_empty());
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(a.broken.is_none());
}

fn sample_query() -> FailureQuery {
    FailureQuery {
        nodeid: "t.py::test_x".into(),
        fingerprint: "0123456789abcdef".into(),
        exception_type: "builtins.TimeoutError".into(),
        exception_bases: vec!["builtins.TimeoutError".into(), "builtins.OSError".into()],
        message: "timed out".into(),
        traceback: "E   TimeoutError: timed out".into(),
        attempts: vec![],
        heuristic: crate::model::Classification {
            category: Category::FlakyTiming,
            confidence: 0.7,
            action: Action::Retry,
            reason: "TimeoutError".into(),
            source: ClassificationSource::Heuristic,
        },
        policy: crate::model::PolicyInfo::from(&crate::policy::RetryPolicy::default()),
    }
}
