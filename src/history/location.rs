//! Where history lives: [`Location`], parsed from `--history` / `smart_rerun_history`. A file path or
//! `sqlite:PATH` is an embedded SQLite database; `postgres://…` (or `postgresql://…`) is a server.

use std::fmt;
use std::path::PathBuf;

/// A parsed history location.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Sqlite(PathBuf),
    /// The URL as given (it may hold a password: print it with [`Location::redacted`] only).
    Postgres(String),
}

/// Why a history location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history location '{shown}' {problem}")]
pub(crate) struct LocationError {
    /// The input, password hidden.
    pub shown: String,
    pub problem: String,
}

/// What `--history` accepts, for error messages.
pub(super) const ALLOWED: &str = "a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB";

impl Location {
    pub(crate) fn parse(text: &str) -> Result<Location, LocationError> {
        let v = text.trim();
        let err = |problem: String| LocationError {
            shown: redact(v),
            problem,
        };
        if v.is_empty() {
            return Err(err(format!("is empty: use {ALLOWED}")));
        }
        let lower = v.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let config: postgres::Config = v.parse().map_err(|e| {
                err(format!(
                    "is not a valid PostgreSQL URL ({e}): use {ALLOWED}"
                ))
            })?;
            if config.get_ssl_mode() == postgres::config::SslMode::Require {
                return Err(err(
                    "asks for TLS (sslmode=require), which is not supported yet: connect over plain \
                     TCP on a private network or a unix socket (sslmode=disable)"
                        .into(),
                ));
            }
            if config.get_hosts().is_empty() {
                return Err(err(format!("names no host: use {ALLOWED}")));
            }
            return Ok(Location::Postgres(v.to_owned()));
        }
        if let Some(path) = v.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(err(format!("names no file: use {ALLOWED}")));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = v.split_once("://") {
            return Err(err(format!(
                "has an unknown scheme '{scheme}': use {ALLOWED}"
            )));
        }
        Ok(Location::Sqlite(PathBuf::from(v)))
    }

    /// The location for people: the PostgreSQL password replaced by `***`.
    pub(crate) fn redacted(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => redact(url),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({})", self.redacted())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hides the password of `scheme://user:password@host` and of a `password=` query parameter.
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let start = scheme_end + 3 + colon + 1;
                let end = scheme_end + 3 + at;
                out.replace_range(start..end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_locations_parse_by_form() {
        let rows: &[(&str, Result<Location, &str>)] = &[
            ("history.db", Ok(Location::Sqlite("history.db".into()))),
            ("sqlite:/tmp/h.db", Ok(Location::Sqlite("/tmp/h.db".into()))),
            (
                "sqlite:///tmp/h.db",
                Ok(Location::Sqlite("/tmp/h.db".into())),
            ),
            (
                "postgres://ci@127.0.0.1:5432/flakes",
                Ok(Location::Postgres(
                    "postgres://ci@127.0.0.1:5432/flakes".into(),
                )),
            ),
            ("", Err("is empty")),
            ("sqlite:", Err("names no file")),
            ("mysql://db/x", Err("unknown scheme 'mysql'")),
            ("postgres://h/db?sslmode=require", Err("not supported yet")),
            (
                "postgres://h:notaport/db",
                Err("not a valid PostgreSQL URL"),
            ),
        ];
        for (input, want) in rows {
            let got = Location::parse(input);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{input}"),
                (Err(w), Err(g)) => assert!(g.to_string().contains(w), "{input}: {g}"),
                _ => panic!("{input}: got {got:?}"),
            }
        }
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        let url = "postgres://ci:s3cret@db:5432/flakes?password=s3cret&sslmode=require";
        let err = Location::parse(url).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("postgres://ci:***@db:5432/flakes"), "{err}");
        let ok = Location::parse("postgres://ci:s3cret@db/flakes").unwrap();
        assert_eq!(ok.redacted(), "postgres://ci:***@db/flakes");
        assert!(!format!("{ok:?}").contains("s3cret"));
    }
}
