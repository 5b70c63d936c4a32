//! The schema, and the migration from version 1 (content apart).

use super::*;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    received_at INTEGER NOT NULL,
    client_addr TEXT NOT NULL,
    helo        TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    tls         TEXT,
    auth_user   TEXT,
    mail_from   TEXT NOT NULL,
    mail_params TEXT NOT NULL,
    subject     TEXT,
    size        INTEGER NOT NULL,
    raw         BLOB NOT NULL,
    -- Octets of content after raw, kept in blobs/<id>.
    apart       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
    message_seq INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    params      TEXT NOT NULL,
    PRIMARY KEY (message_seq, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// The schema version this code writes; see `migrate`.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Brings an older database up to [`SCHEMA_VERSION`], in one transaction
/// that checks what is there: safe to run twice at once (a server and a
/// tool), after a crash half-way, or after an older postel opened it again.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = |c: &Connection| -> Result<i64, rusqlite::Error> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
    };
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), StoreError> {
        let v = version(conn)?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the store is of a newer version ({v}) than this postel knows ({SCHEMA_VERSION})"
            ))));
        }
        // Version 1 kept every message whole in the database.
        let has_apart = conn
            .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'apart'")?
            .exists([])?;
        if !has_apart {
            conn.execute_batch("ALTER TABLE messages ADD COLUMN apart INTEGER NOT NULL DEFAULT 0")?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
