//! The run's private directory (`$TMPDIR/smart-rerun-XXXXXX`): the collector plugin, each round's events
//! and selection files. Readable by its owner only (0700: another user on the machine could otherwise read
//! test output and node ids, or race a selection file), and marked with its owner's process, so a run that
//! was killed before it could remove its directory has it removed by the next run on the machine.

use std::path::Path;

/// The file naming the process that owns a run directory: `PID START`, where `START` is the process's
/// start time in clock ticks since boot (Linux), so a recycled pid is not taken for the owner.
const OWNER_FILE: &str = "owner";
pub(super) const PREFIX: &str = "smart-rerun-";

/// Creates the run directory in the system's temporary directory, after removing directories of runs
/// whose process is gone.
pub(super) fn create() -> std::io::Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    remove_stale(&base);
    let mut builder = tempfile::Builder::new();
    builder.prefix(PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = builder.tempdir_in(&base)?;
    std::fs::write(dir.path().join(OWNER_FILE), owner_line(std::process::id()))?;
    Ok(dir)
}

/// Keeps the directory (`--keep-temp`): it no longer belongs to a process, so no later run removes it.
pub(super) fn disown(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(OWNER_FILE));
}

fn owner_line(pid: u32) -> String {
    match start_time(pid) {
        Some(start) => format!("{pid} {start}\n"),
        None => format!("{pid}\n"),
    }
}

/// Removes the run directories in `base` that belong to this user and whose owner process has ended.
/// Directories without an owner file (kept ones, or another program's) are left alone, as is anything
/// that is not a plain directory.
pub(super) fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        // The entry itself, not a symlink's target.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || !owned_by_me(&meta) {
            continue;
        }
        let path = entry.path();
        let Ok(owner) = std::fs::read_to_string(path.join(OWNER_FILE)) else {
            continue;
        };
        if owner_gone(&owner) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(unix)]
fn owned_by_me(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions.
    meta.uid() == unsafe { libc::getuid() }
}

#[cfg(not(unix))]
fn owned_by_me(_meta: &std::fs::Metadata) -> bool {
    true
}

/// Whether the process an owner line names has ended (a malformed line counts as alive: not ours to
/// judge).
fn owner_gone(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    let recorded_start = fields.next().and_then(|s| s.parse::<u64>().ok());
    if !alive(pid) {
        return true;
    }
    // Alive, but perhaps a later process that was given the same pid.
    match (recorded_start, start_time(pid)) {
        (Some(recorded), Some(now)) => recorded != now,
        _ => false,
    }
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    // No cheap check: never remove another run's directory.
    true
}

/// A process's start time in clock ticks since boot, field 22 of `/proc/PID/stat` (Linux only).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_is_private_and_names_its_owner() {
        let dir = create().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
        let owner = std::fs::read_to_string(dir.path().join(OWNER_FILE)).unwrap();
        assert!(
            owner.starts_with(&format!("{} ", std::process::id()))
                || owner.trim() == std::process::id().to_string()
        );
        assert!(!owner_gone(&owner));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_directories_of_ended_runs_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let mkdir = |name: &str, owner: Option<&str>| {
            let path = base.path().join(name);
            std::fs::create_dir(&path).unwrap();
            if let Some(owner) = owner {
                std::fs::write(path.join(OWNER_FILE), owner).unwrap();
            }
            path
        };
        // A process that has ended: a child, waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ended = mkdir("smart-rerun-ended", Some(&format!("{dead}\n")));
        let live = mkdir("smart-rerun-live", Some(&owner_line(std::process::id())));
        // This process's pid, but another start time: the pid was recycled.
        let recycled = mkdir(
            "smart-rerun-recycled",
            Some(&format!("{} 1\n", std::process::id())),
        );
        let kept = mkdir("smart-rerun-kept", None);
        let garbled = mkdir("smart-rerun-garbled", Some("not a pid"));
        let other = mkdir("other-ended", Some(&format!("{dead}\n")));
        remove_stale(base.path());
        assert!(!ended.exists());
        assert!(!recycled.exists());
        for path in [live, kept, garbled, other] {
            assert!(path.exists(), "{} was removed", path.display());
        }
    }
}
