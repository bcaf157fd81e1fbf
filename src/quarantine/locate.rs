//! Which quarantine file a command other than `run` reads, found as a run finds it ([`locate`]): the
//! command's flag, then `SMART_RERUN_QUARANTINE`, then the `smart_rerun_quarantine` key of the
//! project's pytest configuration, then `.smart-rerun/quarantine.toml`.
//!
//! A run learns its ini values from pytest itself (the collector reports `getini`, so pytest's own
//! discovery, `-c`, `--rootdir` and `-o` apply). `quarantine check` and `dashboard` ask pytest the same
//! way (the probe of `smart-rerun config`), but only when the answer can differ from the default: when
//! a COMMAND is given after `--`, or when a pytest configuration file in the current directory or
//! above it, or `PYTEST_ADDOPTS`, mentions the key. Otherwise no Python is started, so a lint job
//! without pytest can still check the file.
//!
//! This is command glue, like `src/cli.rs`: it starts pytest through the runner's probe.

use crate::config::{RawLayer, Settings};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The ini key (and the `-o` override) that names the file.
const KEY: &str = "smart_rerun_quarantine";

/// The files pytest reads its configuration from, in the order it looks for them in each directory.
const CONFIG_FILES: &[&str] = &[
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
];

/// Where the quarantine file comes from: the flag, the python for `python -m pytest`, and the pytest
/// command whose configuration is read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Source<'a> {
    pub flag: Option<&'a Path>,
    pub python: Option<&'a Path>,
    pub command: &'a [OsString],
}

/// The file found: a path that was set (it must exist) or `None` for the default path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub path: Option<PathBuf>,
    /// Where the setting came from, for messages: `--file`, `SMART_RERUN_QUARANTINE`, `pytest.ini:3`.
    pub from: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocateError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot read smart_rerun_quarantine from the pytest configuration{mentioned}: {problem}; \
         pass the file with {flag} PATH or set SMART_RERUN_QUARANTINE"
    )]
    Probe {
        mentioned: String,
        problem: String,
        flag: &'static str,
    },
}

/// The quarantine file for `source`, from the current directory `cwd`. `flag_name` is how the
/// command spells its flag (`--file`, `--quarantine`), for messages.
pub(crate) fn locate(
    source: &Source<'_>,
    flag_name: &'static str,
    cwd: &Path,
) -> Result<Located, LocateError> {
    let env = |n: &str| std::env::var(n).ok();
    let mut layer = RawLayer::from_env(env);
    layer.values.retain(|k, _| *k == KEY);
    if let Some(path) = source.flag {
        return Ok(Located {
            path: Some(path.to_path_buf()),
            from: Some(flag_name.to_owned()),
        });
    }
    if layer.get(KEY).is_none() {
        let mentioned = mentioned_in(cwd, env("PYTEST_ADDOPTS").as_deref());
        if mentioned.is_none() && source.command.is_empty() {
            return Ok(Located {
                path: None,
                from: None,
            });
        }
        let probe_error = |problem: String| LocateError::Probe {
            mentioned: mentioned
                .as_ref()
                .map(|m| format!(" ({m} mentions it)"))
                .unwrap_or_default(),
            problem,
            flag: flag_name,
        };
        // The variable is not set: the ini value (or none) is the setting.
        layer = probe(source, cwd).map_err(probe_error)?;
    }
    let from = layer.get(KEY).map(|raw| raw.source.to_string());
    let settings = Settings::from_layer(&layer, &env, cwd)
        .map_err(|errors| LocateError::Invalid(errors.to_string()))?;
    Ok(Located {
        path: settings.quarantine,
        from,
    })
}

/// The file for a command that can do without the configuration's answer (`dashboard`, `mcp`): from
/// its `--quarantine` flag and `--python`, in the current directory `cwd`. Pytest that cannot be asked
/// costs one warning line, `lost` saying what goes without it, and gives `Ok(None)`; any other problem
/// is an error message for the command's usage error.
pub(crate) fn locate_optional(
    flag: Option<&Path>,
    python: Option<&Path>,
    cwd: &Path,
    lost: &str,
) -> Result<Option<Located>, String> {
    let source = Source {
        flag,
        python,
        command: &[],
    };
    match locate(&source, "--quarantine", cwd) {
        Ok(located) => Ok(Some(located)),
        Err(e @ LocateError::Probe { .. }) => {
            let _ = writeln!(anstream::stderr(), "smart-rerun: warning: {lost}: {e}");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The first pytest configuration file in `cwd` or above it, or `PYTEST_ADDOPTS`, whose text mentions
/// the key: only then can pytest's answer differ from the default.
fn mentioned_in(cwd: &Path, addopts: Option<&str>) -> Option<String> {
    if addopts.is_some_and(|a| a.contains(KEY)) {
        return Some("PYTEST_ADDOPTS".to_owned());
    }
    for dir in cwd.ancestors() {
        for name in CONFIG_FILES {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).is_ok_and(|text| text.contains(KEY)) {
                return Some(path.display().to_string());
            }
        }
    }
    None
}

/// The key as pytest reports it for `source`'s command, as a layer (with its file and line).
fn probe(source: &Source<'_>, cwd: &Path) -> Result<RawLayer, String> {
    let command = if source.command.is_empty() {
        let (python, _) = crate::runner::command::find_python(
            source.python,
            std::env::var_os("VIRTUAL_ENV"),
            cwd,
        )
        .map_err(|e| e.to_string())?;
        vec![python.into_os_string(), "-m".into(), "pytest".into()]
    } else {
        source.command.to_vec()
    };
    let config = crate::runner::RunConfig::new(
        command,
        cwd.to_path_buf(),
        Settings::default(),
        RawLayer::default(),
    );
    let (session, _) =
        crate::runner::probe_settings(&config).map_err(|e| crate::errors::chain(&e))?;
    let inifile = session.inifile.as_deref().map(Path::new);
    let mut layer = RawLayer::from_ini(&session.ini, inifile);
    layer.mark_overrides(&session.ini_overrides);
    layer.values.retain(|k, _| *k == KEY);
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configuration_that_mentions_the_key_is_worth_asking_pytest() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("pkg/tests");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(mentioned_in(&sub, None), None);
        assert_eq!(
            mentioned_in(&sub, Some("-o smart_rerun_quarantine=q.toml")).as_deref(),
            Some("PYTEST_ADDOPTS")
        );
        std::fs::write(dir.path().join("pytest.ini"), "[pytest]\naddopts = -q\n").unwrap();
        assert_eq!(mentioned_in(&sub, None), None);
        std::fs::write(
            dir.path().join("pkg/pyproject.toml"),
            "[tool.pytest.ini_options]\nsmart_rerun_quarantine = \"ci/q.toml\"\n",
        )
        .unwrap();
        let found = mentioned_in(&sub, None).unwrap();
        assert!(found.ends_with("pkg/pyproject.toml"), "{found}");
    }
}
