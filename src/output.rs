//! Writing output files: [`write_atomic`], so a reader never sees half a file.

use std::io;
use std::path::Path;

/// Writes a file through a temporary sibling renamed into place, creating parent directories, so a
/// reader (a CI upload step, a dashboard) never sees half a file.
///
/// The file gets the mode any other tool's output gets (pytest's `--junitxml`, a shell redirect): 0666
/// less the umask, so 0644 under the usual 022. A temporary file is 0600 by default, which would keep a
/// report from the rest of a team on a shared machine, or from a CI step running as another user.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    // open(2) applies the umask to the mode it is given.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
