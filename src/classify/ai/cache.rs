//! The persistent AI cache (`--ai-cache PATH`): validated answers by failure fingerprint, so a rerun of the
//! same CI job does not ask twice. One JSON file, written whole and renamed into place; a file that cannot
//! be read is noted and replaced, never an error.

use crate::model::{Action, Classification};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const CACHE_VERSION: u32 = 1;
/// The oldest entries go beyond this many.
const MAX_ENTRIES: usize = 10_000;

/// One cached answer, in the shape an endpoint answers (re-validated when used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CachedAnswer {
    pub category: String,
    pub confidence: f64,
    pub reason: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    /// When it was stored (RFC 3339).
    pub saved_at: String,
}

impl CachedAnswer {
    pub(crate) fn from_classification(c: &Classification) -> CachedAnswer {
        let (action, delay_seconds) = match c.action {
            Action::Retry => ("retry", None),
            Action::RetryWithDelay { seconds } => ("retry_with_delay", Some(seconds)),
            Action::StopRetry => ("stop_retry", None),
        };
        CachedAnswer {
            category: c.category.as_str().to_owned(),
            confidence: c.confidence,
            reason: c.reason.clone(),
            action: action.to_owned(),
            delay_seconds,
            saved_at: crate::timestamp::now_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, CachedAnswer>,
}

#[derive(Debug)]
pub(crate) struct Cache {
    path: PathBuf,
    entries: BTreeMap<String, CachedAnswer>,
    dirty: bool,
}

impl Cache {
    /// Opens the cache at `path`; a missing file is an empty cache, an unreadable one an empty cache
    /// and a note.
    pub(crate) fn open(path: &Path) -> (Cache, Option<String>) {
        let mut cache = Cache {
            path: path.to_owned(),
            entries: BTreeMap::new(),
            dirty: false,
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (cache, None),
            Err(e) => {
                return (
                    cache,
                    Some(format!(
                        "AI cache {} cannot be read ({e}): starting an empty one",
                        path.display()
                    )),
                );
            }
        };
        match serde_json::from_slice::<CacheFile>(&text) {
            Ok(file) if file.version == CACHE_VERSION => {
                cache.entries = file.entries;
                (cache, None)
            }
            Ok(file) => (
                cache,
                Some(format!(
                    "AI cache {} has version {}, this smart-rerun writes {CACHE_VERSION}: starting an empty one",
                    path.display(),
                    file.version
                )),
            ),
            Err(e) => (
                cache,
                Some(format!(
                    "AI cache {} is not a smart-rerun AI cache ({e}): starting an empty one",
                    path.display()
                )),
            ),
        }
    }

    pub(crate) fn get(&self, fingerprint: &str) -> Option<&CachedAnswer> {
        self.entries.get(fingerprint)
    }

    pub(crate) fn put(&mut self, fingerprint: &str, c: &Classification) {
        self.entries
            .insert(fingerprint.to_owned(), CachedAnswer::from_classification(c));
        self.dirty = true;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache if anything changed (atomically: a temp file renamed over the old one).
    pub(crate) fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<(String, String)> = self
                .entries
                .iter()
                .map(|(k, v)| (v.saved_at.clone(), k.clone()))
                .collect();
            by_age.sort();
            let extra = self.entries.len() - MAX_ENTRIES;
            for (_, k) in by_age.into_iter().take(extra) {
                self.entries.remove(&k);
            }
        }
        let file = CacheFile {
            version: CACHE_VERSION,
            entries: std::mem::take(&mut self.entries),
        };
        let written = crate::output::write_atomic(&self.path, |f| {
            serde_json::to_writer_pretty(&mut *f, &file)?;
            f.write_all(b"\n")
        });
        self.entries = file.entries;
        if written.is_ok() {
            self.dirty = false;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Category, ClassificationSource};

    fn classification(action: Action) -> Classification {
        Classification {
            category: Category::FlakyNetwork,
            confidence: 0.8,
            action,
            reason: "reset by peer".into(),
            source: ClassificationSource::Ai,
        }
    }

    #[test]
    fn answers_survive_a_reopen_and_the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ai-cache.json");
        let (mut cache, note) = Cache::open(&path);
        assert!(note.is_none() && cache.is_empty());
        cache.put(
            "00000000000000aa",
            &classification(Action::RetryWithDelay { seconds: 2.5 }),
        );
        cache.put("00000000000000bb", &classification(Action::StopRetry));
        cache.save().unwrap();
        let (again, note) = Cache::open(&path);
        assert!(note.is_none());
        assert_eq!(again.len(), 2);
        let a = again.get("00000000000000aa").unwrap();
        assert_eq!(
            (a.action.as_str(), a.delay_seconds),
            ("retry_with_delay", Some(2.5))
        );
        assert_eq!(again.get("00000000000000bb").unwrap().action, "stop_retry");
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_broken_cache_is_noted_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai-cache.json");
        std::fs::write(&path, "{ not json").unwrap();
        let (mut cache, note) = Cache::open(&path);
        assert!(note.unwrap().contains("is not a smart-rerun AI cache"));
        assert!(cache.is_empty());
        cache.put("00000000000000cc", &classification(Action::Retry));
        cache.save().unwrap();
        assert_eq!(Cache::open(&path).0.len(), 1);
        std::fs::write(&path, r#"{"version": 99, "entries": {}}"#).unwrap();
        assert!(Cache::open(&path).1.unwrap().contains("version 99"));
    }

    #[test]
    fn an_unchanged_cache_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let (mut cache, _) = Cache::open(&path);
        cache.save().unwrap();
        assert!(!path.exists());
    }
}
