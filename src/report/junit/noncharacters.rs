//! Drops the two noncharacters XML forbids and quick-junit lets through.

use std::io::{self, Write};

/// quick-junit drops ANSI escapes and the control characters XML 1.0 forbids; U+FFFE and U+FFFF, which
/// XML forbids too, are dropped here, so any text a test prints leaves the file well-formed.
///
/// Passes UTF-8 through without U+FFFE and U+FFFF (`EF BF BE`, `EF BF BF`), also when a write splits one.
pub(super) struct NonCharacters<W: Write> {
    out: W,
    /// The start of a possible U+FFFE or U+FFFF at the end of the last write, held back.
    held: Vec<u8>,
}

impl<W: Write> NonCharacters<W> {
    pub(super) fn new(out: W) -> Self {
        NonCharacters {
            out,
            held: Vec::new(),
        }
    }

    /// Writes what was held back, and flushes.
    pub(super) fn finish(mut self) -> io::Result<()> {
        self.out.write_all(&self.held)?;
        self.out.flush()
    }
}

impl<W: Write> Write for NonCharacters<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let joined;
        let data = if self.held.is_empty() {
            buf
        } else {
            joined = [self.held.as_slice(), buf].concat();
            self.held.clear();
            &joined
        };
        let mut kept = 0;
        let mut at = 0;
        while let Some(found) = data[at..].iter().position(|&b| b == 0xef) {
            let found = at + found;
            match data[found..] {
                [0xef, 0xbf, 0xbe | 0xbf, ..] => {
                    self.out.write_all(&data[kept..found])?;
                    kept = found + 3;
                    at = kept;
                }
                [0xef] | [0xef, 0xbf] => {
                    self.out.write_all(&data[kept..found])?;
                    self.held.extend_from_slice(&data[found..]);
                    return Ok(buf.len());
                }
                _ => at = found + 1,
            }
        }
        self.out.write_all(&data[kept..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
