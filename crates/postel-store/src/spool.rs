//! A spool file: where a large message's content goes while it arrives,
//! and how it becomes durable.

use std::path::Path;

/// A file in the data folder's `spool/` that content is appended to while
/// it arrives ([`SqliteStore::spool_file`]). Dropped, it is deleted; given
/// to [`Store::insert`], it becomes the stored content.
#[derive(Debug)]
pub struct SpoolFile {
    pub(crate) file: tempfile::NamedTempFile,
    pub(crate) len: u64,
}

impl SpoolFile {
    /// A new, empty spool file in `dir` (private: `0600`).
    pub(crate) fn new_in(dir: &Path) -> std::io::Result<SpoolFile> {
        Ok(SpoolFile {
            file: tempfile::NamedTempFile::new_in(dir)?,
            len: 0,
        })
    }

    /// Appends `buf`.
    ///
    /// # Errors
    /// When the write fails (disk full, I/O error).
    pub fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Octets appended so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Everything appended, read back (for filters that need the whole
    /// message). Blocking.
    ///
    /// # Errors
    /// When the read fails.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.file.path())
    }

    /// Returns true if and only if nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the content durable under `path`: the data is fsynced, the
    /// file renamed into place, and the folder fsynced so that the new name
    /// survives a crash too. Blocking.
    pub(crate) fn persist(self, path: &Path) -> std::io::Result<()> {
        self.file.as_file().sync_all()?;
        // Never over another message's content (ids are unique; this makes
        // sure a mistake cannot cost a stored message).
        self.file.persist_noclobber(path).map_err(|e| e.error)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let synced = std::fs::File::open(dir).and_then(|d| d.sync_all());
        if synced.is_err() {
            let _ = std::fs::remove_file(path);
        }
        synced
    }
}
