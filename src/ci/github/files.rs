//! The files a step writes for the runner: the job summary (`GITHUB_STEP_SUMMARY`, Markdown, at most
//! 1 MiB per step, appended) and the step outputs (`GITHUB_OUTPUT`, `name<<DELIMITER` blocks).

use super::commands::random_hex;
use std::io::{self, Write};
use std::path::Path;

/// Appends `text` to the job summary file.
pub(crate) fn append_summary(path: &Path, text: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    file.flush()
}

/// How many bytes the summary file already holds (other writers in the same step).
pub(crate) fn summary_used(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputError {
    #[error("output {name} was not written: its value contains the random delimiter")]
    Delimiter { name: String },
    #[error(
        "output {name} was not written: the operating system gave no random bytes for its delimiter"
    )]
    Random { name: String },
    #[error("output name {name:?} is not a valid name")]
    Name { name: String },
    #[error("failed to write the step outputs to {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Writes step outputs, each as a heredoc block with a fresh random delimiter (`ghadelimiter_<hex>`, as
/// the Actions toolkit does). A value that contains its delimiter is refused, not written: it could end
/// the block early and set other outputs. Returns the refused outputs; the rest are written.
pub(crate) fn write_outputs(
    path: &Path,
    outputs: &[(&str, String)],
) -> Result<Vec<OutputError>, OutputError> {
    write_outputs_with(path, outputs, &mut || {
        random_hex(16).map(|hex| format!("ghadelimiter_{hex}"))
    })
}

fn write_outputs_with(
    path: &Path,
    outputs: &[(&str, String)],
    delimiter: &mut dyn FnMut() -> Result<String, getrandom::Error>,
) -> Result<Vec<OutputError>, OutputError> {
    let mut text = String::new();
    let mut refused = Vec::new();
    for (name, value) in outputs {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            refused.push(OutputError::Name {
                name: (*name).to_owned(),
            });
            continue;
        }
        // No random delimiter, no block: a guessable one could be ended early by the value.
        let Ok(delimiter) = delimiter() else {
            refused.push(OutputError::Random {
                name: (*name).to_owned(),
            });
            continue;
        };
        if value.contains(&delimiter) {
            refused.push(OutputError::Delimiter {
                name: (*name).to_owned(),
            });
            continue;
        }
        text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.flush()));
    written.map_err(|source| OutputError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(refused)
}

/// Parses an outputs file the way the runner does (`name=value` lines and `name<<DELIM` blocks), for
/// tests.
pub fn parse_outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                out.push((line[..e].to_owned(), line[e + 1..].to_owned()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                let mut value = Vec::new();
                for l in lines.by_ref() {
                    let l = l.strip_suffix('\r').unwrap_or(l);
                    if l == delimiter {
                        break;
                    }
                    value.push(l);
                }
                out.push((name.to_owned(), value.join("\n")));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_heredocs_with_fresh_delimiters_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "earlier=1\n").unwrap();
        let refused = write_outputs(
            &path,
            &[
                ("passed", "3".into()),
                ("report-path", "/tmp/a b\nexit-code=0".into()),
                ("bad name", "x".into()),
            ],
        )
        .unwrap();
        assert_eq!(refused.len(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = parse_outputs(&text);
        assert_eq!(
            parsed,
            [
                ("earlier".to_owned(), "1".to_owned()),
                ("passed".into(), "3".into()),
                ("report-path".into(), "/tmp/a b\nexit-code=0".into()),
            ]
        );
        let delimiters: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once("<<").map(|(_, d)| d))
            .collect();
        assert_eq!(delimiters.len(), 2);
        assert_ne!(delimiters[0], delimiters[1]);
        assert!(delimiters[0].starts_with("ghadelimiter_"));
    }

    #[test]
    fn a_value_holding_the_delimiter_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let d = "ghadelimiter_0123";
        let refused = write_outputs_with(
            &path,
            &[("a", format!("x\n{d}\nexit-code=0")), ("b", "2".into())],
            &mut || Ok(d.to_owned()),
        )
        .unwrap();
        assert!(matches!(&refused[..], [OutputError::Delimiter { name }] if name == "a"));
        assert_eq!(
            parse_outputs(&std::fs::read_to_string(&path).unwrap()),
            [("b".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn without_random_bytes_no_output_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let refused =
            write_outputs_with(&path, &[("a", "1".into()), ("b", "2".into())], &mut || {
                Err(getrandom::Error::UNSUPPORTED)
            })
            .unwrap();
        assert!(
            matches!(&refused[..], [OutputError::Random { name: a }, OutputError::Random { name: b }] if a == "a" && b == "b"),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
