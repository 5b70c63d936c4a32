//! The data folder is private: it holds every message and the users'
//! password hashes. The folder and its subfolders are `0700`, every file
//! in them `0600`, whatever the process's umask, and a folder found looser
//! (made by an older Postel, or by hand) is tightened when the store opens.
//!
//! SQLite makes its `-wal` and `-shm` files with the mode of the database
//! file, so the database is created `0600` before SQLite first opens it.

use std::fs::Permissions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data folder and its subfolders.
const FOLDER: u32 = 0o700;
/// Mode of every file in them.
const FILE: u32 = 0o600;

/// Creates `dir` private (`0700`), or makes it so: one folder, nothing
/// in it (the data folder of a node whose store is elsewhere, a spool).
///
/// # Errors
/// When the folder cannot be created or its mode set.
pub fn private_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    tighten(dir, FOLDER)
}

/// Creates `dir` (and `spool/`, `blobs/`) private, or makes them so, with
/// `messages.db` created private before SQLite opens it.
///
/// # Errors
/// When a folder cannot be created or a mode cannot be set.
pub(crate) fn prepare(dir: &Path) -> std::io::Result<()> {
    for folder in [dir.to_path_buf(), dir.join("spool"), dir.join("blobs")] {
        std::fs::create_dir_all(&folder)?;
        tighten(&folder, FOLDER)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE)
        .open(dir.join("messages.db"))?;
    for name in ["messages.db", "messages.db-wal", "messages.db-shm", "lock"] {
        let path = dir.join(name);
        if path.exists() {
            tighten(&path, FILE)?;
        }
    }
    for folder in ["blobs", "spool"] {
        for entry in std::fs::read_dir(dir.join(folder))? {
            let entry = entry?;
            // Only regular files: a symlink is never followed, and a file
            // another process removes meanwhile is no error.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                tighten(&entry.path(), FILE)?;
            }
        }
    }
    Ok(())
}

/// Sets `path` to `mode` if it allows anyone but the owner anything more.
/// A path gone meanwhile is left alone.
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let now = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if now & !mode != 0 {
        tracing::warn!(path = %path.display(), from = format!("{now:o}"), to = format!("{mode:o}"), "data folder: permissions tightened");
        match std::fs::set_permissions(path, Permissions::from_mode(mode)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Options for a new private file (`0600`).
pub(crate) fn file_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.mode(FILE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn a_loose_folder_is_made_private() {
        let dir = std::env::temp_dir().join(format!("postel-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blobs")).expect("mkdir");
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(dir.join("messages.db-wal"), b"").expect("write");
        std::fs::set_permissions(dir.join("messages.db-wal"), Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::write(dir.join("blobs/1"), b"x").expect("write");
        std::fs::set_permissions(dir.join("blobs/1"), Permissions::from_mode(0o664))
            .expect("chmod");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("spool")), 0o700);
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(mode(&dir.join("messages.db")), 0o600);
        assert_eq!(mode(&dir.join("messages.db-wal")), 0o600);
        assert_eq!(mode(&dir.join("blobs/1")), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
