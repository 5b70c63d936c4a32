//! The schema, and the migrations: from version 1 (content apart), from
//! version 2 (the queue, and messages only passing through), from
//! version 3 (the webhook outbox: a table of its own), from version 4
//! (authentication results), and from version 5 (SCRAM keys).

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
    apart       INTEGER NOT NULL DEFAULT 0,
    -- 1: shown in the inbox; 0: only passing through the queue.
    local       INTEGER NOT NULL DEFAULT 1,
    -- SPF, DKIM, DMARC and ARC results (Checks::to_text); NULL: unchecked.
    checks      TEXT
);
CREATE TABLE IF NOT EXISTS recipients (
    message_seq INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    params      TEXT NOT NULL,
    PRIMARY KEY (message_seq, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    message_seq  INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_reply   TEXT,
    warned       INTEGER NOT NULL DEFAULT 0,
    -- Claimed by a delivery until then (Unix seconds); NULL: not claimed.
    leased_until INTEGER,
    -- 1: the operator asked for it to be returned to its sender.
    bounce       INTEGER NOT NULL DEFAULT 0,
    -- The recipient's domain, lowercase: where it goes.
    domain       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_seq, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_due ON queue (next_attempt)
    WHERE state IN ('queued', 'deferred');
CREATE TABLE IF NOT EXISTS user_addresses (
    name    TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (name, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- SCRAM-SHA-256 keys (RFC 5803); NULL: set before version 6.
    scram      TEXT
);
";

/// The webhook outbox, made by `migrate` (a new store, like an old one,
/// comes to it through there).
const WEBHOOKS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
    message_seq  INTEGER NOT NULL,
    -- The webhook, by its URL.
    hook         TEXT NOT NULL,
    -- pending, delivered or failed.
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- Due then; while claimed, when the claim ends.
    next_attempt INTEGER NOT NULL,
    last_status  TEXT,
    PRIMARY KEY (message_seq, hook)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (next_attempt)
    WHERE state = 'pending';
";

/// The schema version this code writes; see `migrate`.
pub(super) const SCHEMA_VERSION: i64 = 6;

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
        // Version 2 had no queue: every message was local. (The queue's
        // tables are made by SCHEMA, which runs before this.)
        let has_local = conn
            .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'local'")?
            .exists([])?;
        if !has_local {
            conn.execute_batch("ALTER TABLE messages ADD COLUMN local INTEGER NOT NULL DEFAULT 1")?;
        }
        // Version 3 had no webhook outbox.
        conn.execute_batch(WEBHOOKS_TABLE)?;
        // Version 4 kept no authentication results.
        let has_checks = conn
            .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'checks'")?
            .exists([])?;
        if !has_checks {
            conn.execute_batch("ALTER TABLE messages ADD COLUMN checks TEXT")?;
        }
        // Version 5 kept no SCRAM keys.
        let has_scram = conn
            .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'scram'")?
            .exists([])?;
        if !has_scram {
            conn.execute_batch("ALTER TABLE users ADD COLUMN scram TEXT")?;
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
