//! The pytest command of every round: the user's own (`pytest tests/ -x`, `uv run pytest`, ...) or, when
//! none is given, `python -m pytest` with the interpreter found as users expect.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why no command could be formed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("--python {0}: no such file")]
    PythonMissing(String),
    #[error(
        "no Python interpreter found: pass --python PATH, activate a virtualenv, create ./.venv, or put python3 on PATH"
    )]
    NoPython,
}

/// Where the interpreter came from, for the run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PythonSource {
    Flag,
    VirtualEnv,
    DotVenv,
    Path,
}

/// Finds the interpreter for `python -m pytest`: `--python`, then an active virtualenv (`VIRTUAL_ENV`),
/// then `./.venv` under `cwd`, then `python3` (or `python`) on PATH.
pub(crate) fn find_python(
    flag: Option<&Path>,
    virtual_env: Option<OsString>,
    cwd: &Path,
) -> Result<(PathBuf, PythonSource), CommandError> {
    if let Some(p) = flag {
        let resolved = if p.components().count() == 1 && !p.exists() {
            which::which(p).ok()
        } else {
            Some(cwd.join(p))
        };
        return match resolved {
            Some(path) if path.exists() => Ok((path, PythonSource::Flag)),
            _ => Err(CommandError::PythonMissing(p.display().to_string())),
        };
    }
    if let Some(venv) = virtual_env.filter(|v| !v.is_empty()) {
        if let Some(python) = venv_python(Path::new(&venv)) {
            return Ok((python, PythonSource::VirtualEnv));
        }
    }
    if let Some(python) = venv_python(&cwd.join(".venv")) {
        return Ok((python, PythonSource::DotVenv));
    }
    for name in ["python3", "python"] {
        if let Ok(path) = which::which(name) {
            return Ok((path, PythonSource::Path));
        }
    }
    Err(CommandError::NoPython)
}

fn venv_python(venv: &Path) -> Option<PathBuf> {
    let candidates: &[&str] = if cfg!(windows) {
        &["Scripts/python.exe"]
    } else {
        &["bin/python", "bin/python3"]
    };
    candidates.iter().map(|c| venv.join(c)).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_venv(root: &Path) -> PathBuf {
        let bin = if cfg!(windows) {
            root.join("Scripts")
        } else {
            root.join("bin")
        };
        std::fs::create_dir_all(&bin).unwrap();
        let python = bin.join(if cfg!(windows) {
            "python.exe"
        } else {
            "python"
        });
        std::fs::write(&python, "").unwrap();
        python
    }

    #[test]
    fn flag_beats_virtualenv_beats_dot_venv() {
        let dir = tempfile::tempdir().unwrap();
        let active = fake_venv(&dir.path().join("active"));
        let dot = fake_venv(&dir.path().join(".venv"));
        let explicit = dir.path().join("my-python");
        std::fs::write(&explicit, "").unwrap();

        let (p, s) = find_python(
            Some(&explicit),
            Some(dir.path().join("active").into()),
            dir.path(),
        )
        .unwrap();
        assert_eq!((p, s), (explicit.clone(), PythonSource::Flag));
        let (p, s) = find_python(None, Some(dir.path().join("active").into()), dir.path()).unwrap();
        assert_eq!((p, s), (active, PythonSource::VirtualEnv));
        let (p, s) = find_python(None, None, dir.path()).unwrap();
        assert_eq!((p, s), (dot, PythonSource::DotVenv));
    }

    #[test]
    fn a_missing_flag_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_python(Some(Path::new("nope/python")), None, dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "--python nope/python: no such file");
    }
}
