//! The data folder: one writing store holds its lock for life, and tidies
//! what a crash left (spool files, and content files no commit records).

use super::*;

/// How long [`SqliteStore::open`] waits for the folder's lock: a server
/// restarted at once may find the old process still exiting.
pub(super) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `lock` in the data folder (an exclusive flock, held as long as
/// the returned file is open), waiting up to `wait`.
pub(super) fn lock_folder(
    dir: &Path,
    wait: std::time::Duration,
) -> Result<std::fs::File, StoreError> {
    let file = private::file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// Empties `spool/` (files of transactions that a crash cut short) and
/// removes the files in `blobs/` that no message records (renamed into
/// place, then the commit did not happen).
pub(super) fn sweep(conn: &Connection, spool: &Path, blobs: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(spool)? {
        let _ = std::fs::remove_file(entry?.path());
    }
    let mut stmt = conn.prepare("SELECT 1 FROM messages WHERE id = ?1 AND apart > 0")?;
    for entry in std::fs::read_dir(blobs)? {
        let entry = entry?;
        let name = entry.file_name();
        let known = match name.to_str() {
            Some(id) => stmt.exists([id])?,
            None => false,
        };
        if !known {
            tracing::info!(file = %entry.path().display(), "removing content that no message records");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
