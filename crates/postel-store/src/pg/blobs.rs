//! Large contents, in chunks: the one place that knows where the part of a
//! message past its first [`crate::SPILL_AT`] octets lives. Today that is
//! the `blobs` table, keyed by message id; an object store (S3) would
//! replace these few functions and nothing else.
//!
//! A blob is written, in a transaction of its own, before the commit that
//! records its message, so the group commit never carries megabytes. A
//! blob that no message names (its commit failed, or the node died in
//! between) is swept after a while.

use std::io::{Read, Seek, Write};

use super::*;
use crate::SpoolFile;

/// Octets per chunk row.
const CHUNK: usize = 1024 * 1024;

/// How long an unnamed blob is left alone (its message may be on its way
/// to commit) before a sweep removes it.
const ORPHAN_AGE: i64 = 3600;

/// Stores the spool file's content as blob `id`. Returns its length.
pub(super) async fn put(pool: &Pool, id: &str, spool: SpoolFile) -> Result<u64, StoreError> {
    let len = spool.len();
    let mut client = get(pool).await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached("INSERT INTO blobs (id, chunk, data, stored_at) VALUES ($1, $2, $3, $4)")
        .await?;
    let mut file = spool.file.reopen()?;
    let now = unix_now();
    let mut chunk: i32 = 0;
    loop {
        let (buf, f) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(CHUNK);
            let r = (&mut file).take(CHUNK as u64).read_to_end(&mut buf);
            r.map(|_| (buf, file))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        file = f;
        if buf.is_empty() {
            break;
        }
        tx.execute(&stmt, &[&id, &chunk, &buf, &now]).await?;
        chunk += 1;
    }
    tx.commit().await?;
    drop(spool);
    Ok(len)
}

/// Stores `data` as blob `id`, in the caller's transaction (a migration:
/// the content is in memory already). Nothing for empty data.
pub(super) async fn put_bytes(
    tx: &impl deadpool_postgres::GenericClient,
    id: &str,
    data: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let n = i32::try_from(i).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO blobs (id, chunk, data, stored_at) VALUES ($1, $2, $3, $4)",
            &[&id, &n, &chunk, &now],
        )
        .await?;
    }
    Ok(())
}

/// Blob `id` whole, checked against the length its message recorded.
pub(super) async fn read_all(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    let rows = client
        .query(
            "SELECT data FROM blobs WHERE id = $1 ORDER BY chunk",
            &[&id],
        )
        .await?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    for r in rows {
        out.extend_from_slice(r.get::<_, &[u8]>(0));
    }
    check(id, out.len() as u64, len)?;
    Ok(out)
}

/// Blob `id` copied into an unnamed file in `dir`, a chunk at a time, so
/// that it can be streamed without being held in memory whole.
pub(super) async fn to_file(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    len: u64,
    dir: &std::path::Path,
) -> Result<std::fs::File, StoreError> {
    let mut file = tempfile::tempfile_in(dir)?;
    let mut written = 0u64;
    let mut chunk: i32 = 0;
    loop {
        let Some(row) = client
            .query_opt(
                "SELECT data FROM blobs WHERE id = $1 AND chunk = $2",
                &[&id, &chunk],
            )
            .await?
        else {
            break;
        };
        let data: Vec<u8> = row.get(0);
        written += data.len() as u64;
        file = tokio::task::spawn_blocking(move || file.write_all(&data).map(|()| file))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        chunk += 1;
    }
    check(id, written, len)?;
    file.rewind()?;
    Ok(file)
}

fn check(id: &str, found: u64, len: u64) -> Result<(), StoreError> {
    if found == len {
        Ok(())
    } else {
        Err(StoreError::ContentLost {
            id: id.to_owned(),
            why: format!("its blob has {found} octets, not {len}"),
        })
    }
}

/// Removes the blobs of these messages (in the caller's transaction).
pub(super) async fn delete(
    tx: &impl deadpool_postgres::GenericClient,
    ids: &[String],
) -> Result<(), StoreError> {
    if !ids.is_empty() {
        tx.execute("DELETE FROM blobs WHERE id = ANY($1)", &[&ids])
            .await?;
    }
    Ok(())
}

/// Removes blob `id` after its message failed to commit (best effort: a
/// sweep removes what this misses).
pub(super) async fn forget(pool: &Pool, id: &str) {
    if let Ok(client) = get(pool).await {
        let _ = client
            .execute(
                "DELETE FROM blobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM messages WHERE id = $1)",
                &[&id],
            )
            .await;
    }
}

/// The advisory lock the sweep holds (for its transaction): one node at a
/// time.
const SWEEP_LOCK: i64 = 0x706f_7374_656c_0003;

/// How often a node looks for blobs that no message names.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Sweeps now and then, on one node at a time, for as long as the store
/// is open.
pub(super) async fn sweeper(pool: Pool) {
    loop {
        let swept = async {
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
                .await?
                .get(0);
            let n = if mine { sweep(&tx).await? } else { 0 };
            tx.commit().await?;
            Ok::<_, StoreError>(n)
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(chunks = n, "removed content that no message names"),
            Err(e) => tracing::debug!(error = %e, "cannot sweep content"),
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// Removes blobs that no message names and that are older than
/// [`ORPHAN_AGE`]. Returns how many chunks went.
pub(super) async fn sweep(tx: &impl deadpool_postgres::GenericClient) -> Result<u64, StoreError> {
    Ok(tx
        .execute(
            "DELETE FROM blobs b WHERE b.stored_at < $1
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = b.id)",
            &[&(unix_now() - ORPHAN_AGE)],
        )
        .await?)
}
