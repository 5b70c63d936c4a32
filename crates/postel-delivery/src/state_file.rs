//! Delivery's state kept in the data folder (MTA-STS policies, TLS-report
//! counts): a file written whole to a temporary file beside it (mode
//! 0600), synced, then renamed over the old one, so that a crash leaves
//! the old file or the new, never half of one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Replaces `path` with `bytes`.
///
/// # Errors
/// When the folder cannot be written.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
