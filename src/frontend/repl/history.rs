//! Where the interactive history lives, and making sure only its owner can
//! read it: typed messages often carry tokens.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$XDG_STATE_HOME/tether/history`, or `~/.local/state/tether/history`.
/// The XDG spec says a relative `XDG_STATE_HOME` is to be ignored.
pub fn path(xdg_state_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let state = match xdg_state_home {
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        _ => Path::new(home.filter(|h| !h.is_empty())?).join(".local/state"),
    };
    Some(state.join("tether").join("history"))
}

/// The history path for this process's environment.
pub fn default_path() -> Option<PathBuf> {
    let xdg = std::env::var("XDG_STATE_HOME").ok();
    let home = std::env::var("HOME").ok();
    path(xdg.as_deref(), home.as_deref())
}

/// Creates the file (and its directory, mode 0700) if needed, with mode
/// 0600, and narrows the mode of a file or directory that exists with a
/// wider one. A directory that belongs to another user, or that cannot be
/// narrowed, is an error: the caller then keeps no history.
pub fn prepare(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        make_private(dir)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The history's directory (`tether` under the state directory, which only
/// tether uses) must be the user's own and closed to everyone else: others
/// who can write there could replace the file, and others who can list it
/// learn what is kept. A wider mode is narrowed to 0700; a directory of
/// someone else's is left alone and refused.
fn make_private(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::other(format!(
            "the directory {} belongs to another user (uid {}), not to uid {me}",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "the directory {} has mode {mode:04o} and cannot be made private: {err}",
                    dir.display()
                ),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_state_home_wins_and_home_is_the_fallback() {
        assert_eq!(
            path(Some("/s"), Some("/h")),
            Some(PathBuf::from("/s/tether/history"))
        );
        assert_eq!(
            path(None, Some("/h")),
            Some(PathBuf::from("/h/.local/state/tether/history"))
        );
        // Relative and empty values are ignored, as the XDG spec says.
        assert_eq!(
            path(Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.local/state/tether/history"))
        );
        assert_eq!(
            path(Some(""), Some("/h")),
            Some(PathBuf::from("/h/.local/state/tether/history"))
        );
        assert_eq!(path(None, None), None);
        assert_eq!(path(None, Some("")), None);
    }

    #[test]
    fn the_file_is_created_private_and_a_wide_mode_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/tether/history");
        prepare(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_world_writable_directory_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let tether = dir.path().join("tether");
        std::fs::create_dir(&tether).unwrap();
        std::fs::set_permissions(&tether, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare(&tether.join("history")).unwrap();
        let mode = std::fs::metadata(&tether).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }
}
