use super::http::authorized;
use super::parse_addr;

#[test]
fn only_the_right_bearer_token_is_let_in() {
    assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
    assert!(!authorized(Some(b"Bearer s3cre"), "s3cret"));
    assert!(!authorized(Some(b"Bearer s3cretX"), "s3cret"));
    assert!(!authorized(Some(b"Basic s3cret"), "s3cret"));
    assert!(!authorized(Some(b"s3cret"), "s3cret"));
    assert!(!authorized(None, "s3cret"));
}

#[test]
fn http_addresses_bind_loopback_unless_given() {
    assert_eq!(parse_addr("8765").unwrap().to_string(), "127.0.0.1:8765");
    assert_eq!(parse_addr(":8765").unwrap().to_string(), "127.0.0.1:8765");
    assert_eq!(
        parse_addr("localhost:9").unwrap().to_string(),
        "127.0.0.1:9"
    );
    assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
    assert_eq!(parse_addr("[::1]:80").unwrap().to_string(), "[::1]:80");
    let e = parse_addr("example.com:80").unwrap_err();
    assert!(e.contains("'example.com:80' is not an address"), "{e}");
}
