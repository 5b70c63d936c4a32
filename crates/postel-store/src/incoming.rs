//! A message's content as it arrives. The store that made it
//! ([`crate::Store::receive`]) decides where it is kept: the SQLite store
//! keeps a small message in memory and moves a large one to a spool file
//! as it comes, a write per [`SqliteStore`](crate::SqliteStore)'s threshold,
//! off the async threads; the memory store keeps everything in memory. The
//! session above sees a buffer to append to, and nothing of how.
//!
//! The invariant: a session holds at most about one threshold of content
//! in memory (plus the first part, kept for the headers), however large the
//! message.

use std::path::PathBuf;

use crate::{SpoolFile, StoreError};

/// Content being received.
#[derive(Debug)]
pub struct Incoming {
    /// What was appended and not yet spooled (all of it, for a small
    /// message).
    buffer: Vec<u8>,
    /// Where to spool, and past how much; None: never.
    spool_at: Option<(PathBuf, usize)>,
    spool: Option<SpoolFile>,
    /// The first part of a spooled message: its headers are in it.
    first: Vec<u8>,
    /// Why spooling failed: the message is refused at its end.
    error: Option<String>,
}

impl Incoming {
    /// Content kept in memory, whatever its size.
    pub fn in_memory() -> Incoming {
        Incoming {
            buffer: Vec::new(),
            spool_at: None,
            spool: None,
            first: Vec::new(),
            error: None,
        }
    }

    /// Content spooled to a file in `dir` once it passes `threshold`.
    pub(crate) fn spooling(dir: PathBuf, threshold: usize) -> Incoming {
        Incoming {
            spool_at: Some((dir, threshold)),
            ..Incoming::in_memory()
        }
    }

    /// The buffer that decoded content is appended to; call
    /// [`Incoming::appended`] after.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Content was appended to the buffer: past the threshold, it goes to
    /// the spool file now. A failure is kept, and reported by
    /// [`Incoming::finish`].
    pub async fn appended(&mut self) {
        let over = self
            .spool_at
            .as_ref()
            .is_some_and(|(_, at)| self.buffer.len() >= *at);
        if over || self.error.is_some() {
            self.spill().await;
        }
    }

    /// The beginning of the content, where its header section is.
    pub fn first_part(&self) -> &[u8] {
        if self.spool.is_some() {
            &self.first
        } else {
            &self.buffer
        }
    }

    /// Whether the content went to a spool file (then [`Incoming::finish`]
    /// returns the file; else everything is in memory).
    pub fn is_spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// Octets received so far.
    pub fn len(&self) -> u64 {
        self.spool.as_ref().map_or(0, SpoolFile::len) + self.buffer.len() as u64
    }

    /// Returns true if and only if nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All of it has arrived: the content in memory, and the spool file
    /// holding it instead for a large message.
    ///
    /// # Errors
    /// When spooling failed on the way (disk full): the message must be
    /// refused, transiently.
    pub async fn finish(mut self) -> Result<(Vec<u8>, Option<SpoolFile>), StoreError> {
        if self.spool.is_some() {
            self.spill().await;
        }
        if let Some(e) = self.error {
            return Err(StoreError::Io(std::io::Error::other(e)));
        }
        Ok((self.buffer, self.spool))
    }

    /// Moves the buffer to the spool file, creating it the first time (the
    /// first part is kept for its headers). The write runs off the async
    /// threads; the buffer comes back to be filled again.
    async fn spill(&mut self) {
        let Some((dir, _)) = self.spool_at.clone() else {
            return;
        };
        if self.buffer.is_empty() || self.error.is_some() {
            self.buffer.clear();
            return;
        }
        let first_time = self.spool.is_none();
        let spool = self.spool.take();
        let buffer = std::mem::take(&mut self.buffer);
        let written = tokio::task::spawn_blocking(move || {
            let mut spool = match spool {
                Some(s) => s,
                None => SpoolFile::new_in(&dir)?,
            };
            spool.append(&buffer)?;
            Ok::<_, std::io::Error>((spool, buffer))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match written {
            Ok((spool, buffer)) => {
                self.spool = Some(spool);
                if first_time {
                    self.first = buffer;
                } else {
                    let mut buffer = buffer;
                    buffer.clear();
                    self.buffer = buffer;
                }
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_content_stays_in_memory_and_large_goes_to_the_spool() {
        let dir = std::env::temp_dir().join(format!("postel-incoming-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut small = Incoming::spooling(dir.clone(), 100);
        small
            .buffer()
            .extend_from_slice(b"Subject: s\r\n\r\nhi\r\n");
        small.appended().await;
        let (mem, spool) = small.finish().await.expect("finish");
        assert_eq!(
            (mem.as_slice(), spool.is_none()),
            (&b"Subject: s\r\n\r\nhi\r\n"[..], true)
        );

        let mut large = Incoming::spooling(dir.clone(), 100);
        let mut sent = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![b'a' + i % 26; 30];
            large.buffer().extend_from_slice(&chunk);
            sent.extend_from_slice(&chunk);
            large.appended().await;
            assert!(large.buffer().len() < 130, "bounded in memory");
        }
        assert_eq!(&large.first_part()[..30], &sent[..30]);
        assert_eq!(large.len(), sent.len() as u64);
        let (mem, spool) = large.finish().await.expect("finish");
        let spool = spool.expect("spooled");
        assert!(mem.is_empty());
        assert_eq!(std::fs::read(spool.file.path()).expect("read"), sent);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn in_memory_never_spools() {
        let mut m = Incoming::in_memory();
        m.buffer().extend_from_slice(&vec![b'x'; 1 << 20]);
        m.appended().await;
        let (mem, spool) = m.finish().await.expect("finish");
        assert_eq!((mem.len(), spool.is_none()), (1 << 20, true));
    }
}
