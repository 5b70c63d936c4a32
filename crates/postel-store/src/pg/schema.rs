//! The schema and its migrations. Each migration has a version, and the
//! oldest version of this code that can still work on a database after it
//! (`compatible`): a migration that only adds (a table, a nullable column,
//! an index) keeps `compatible` where it was, so that during a rolling
//! upgrade the nodes not yet upgraded go on taking mail. A node refuses a
//! database whose `compatible` is newer than the version it knows.
//!
//! Migrations run at start, in one transaction, under an advisory lock:
//! nodes starting together take turns, and the second finds the work done.

use super::*;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i32 = 2;

/// The advisory lock key that migrations hold ("postel" in ASCII, plus 1).
const MIGRATE_LOCK: i64 = 0x706f_7374_656c_0001;

/// Version, the oldest version that can use the schema after it, and SQL.
const MIGRATIONS: &[(i32, i32, &str)] = &[
    (
        1,
        1,
        "
CREATE SEQUENCE postel_nodes;
CREATE SEQUENCE postel_leases;
CREATE TABLE messages (
    seq         bigserial PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    received_at bigint NOT NULL,
    client_addr text NOT NULL,
    helo        text NOT NULL,
    protocol    text NOT NULL,
    tls         text,
    auth_user   text,
    mail_from   text NOT NULL,
    mail_params text NOT NULL,
    subject     text,
    size        bigint NOT NULL,
    -- The whole message; or, with apart > 0, its first part.
    raw         bytea NOT NULL,
    -- Octets of content after raw, in blobs under the message's id.
    apart       bigint NOT NULL DEFAULT 0,
    -- Shown in the inbox; false: only passing through the queue.
    local       boolean NOT NULL DEFAULT true,
    -- SPF, DKIM, DMARC and ARC results; NULL: unchecked.
    checks      text,
    -- The node that took it.
    node        text NOT NULL DEFAULT ''
);
CREATE INDEX messages_inbox ON messages (seq) WHERE local;
CREATE INDEX messages_received ON messages (received_at) WHERE local;
CREATE TABLE blobs (
    id        text NOT NULL,
    chunk     integer NOT NULL,
    data      bytea NOT NULL,
    stored_at bigint NOT NULL,
    PRIMARY KEY (id, chunk)
);
CREATE TABLE recipients (
    message_seq bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    position    integer NOT NULL,
    address     text NOT NULL,
    params      text NOT NULL,
    PRIMARY KEY (message_seq, position)
);
CREATE TABLE queue (
    message_seq  bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    position     integer NOT NULL,
    state        text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt bigint NOT NULL,
    last_reply   text,
    warned       integer NOT NULL DEFAULT 0,
    -- The lease: until when, whose, and which claim.
    leased_until bigint,
    lease_owner  text,
    lease_token  bigint NOT NULL DEFAULT 0,
    bounce       boolean NOT NULL DEFAULT false,
    domain       text NOT NULL DEFAULT '',
    PRIMARY KEY (message_seq, position)
);
-- Partial: finished rows (until they are deleted) never slow a claim.
CREATE INDEX queue_due ON queue (next_attempt, message_seq, position)
    WHERE state IN ('queued', 'deferred');
CREATE INDEX queue_leases ON queue (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE webhooks (
    message_seq  bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    hook         text NOT NULL,
    state        text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt bigint NOT NULL,
    last_status  text,
    PRIMARY KEY (message_seq, hook)
);
CREATE INDEX webhooks_due ON webhooks (next_attempt) WHERE state = 'pending';
CREATE TABLE users (
    name       text PRIMARY KEY,
    hash       text NOT NULL,
    created_at bigint NOT NULL,
    scram      text
);
CREATE TABLE user_addresses (
    name    text NOT NULL,
    address text NOT NULL,
    PRIMARY KEY (name, address)
);
",
    ),
    // Failed logins and delivery sessions per node, so that every node's
    // lockout and limits count them all; two indexes. Only added: a node
    // of version 1 goes on without them.
    (
        2,
        1,
        "
CREATE TABLE auth_failures (
    -- The client's address (an IPv6 address's /64).
    key   text NOT NULL,
    node  text NOT NULL,
    -- Failures (and checks in flight).
    value integer NOT NULL,
    -- When the first of them was (Unix seconds).
    at    bigint NOT NULL,
    PRIMARY KEY (key, node)
);
-- Delivery sessions open per destination and node, so that the limit
-- per destination holds across the nodes.
CREATE TABLE delivery_sessions (
    -- The destination (a domain, or the smarthost).
    key   text NOT NULL,
    node  text NOT NULL,
    -- Sessions open.
    value integer NOT NULL,
    -- When the node last said so (Unix seconds): a dead node's go stale.
    at    bigint NOT NULL,
    PRIMARY KEY (key, node)
);
-- What each node's senders used of each rate counter (a counter's
-- limit less its level), so that the limits hold across the nodes.
CREATE TABLE rate_usage (
    key   text NOT NULL,
    node  text NOT NULL,
    -- What was used of the counter.
    value double precision NOT NULL,
    at    bigint NOT NULL,
    PRIMARY KEY (key, node)
);
-- Secrets every node uses alike (the SCRAM decoy secret), made by the
-- first node that needs one.
CREATE TABLE postel_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
-- DKIM signing keys every node signs with (postel dkim generate).
CREATE TABLE dkim_keys (
    domain     text NOT NULL,
    selector   text NOT NULL,
    -- The private key, PEM.
    pem        text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (domain, selector)
);
-- What every node has in flight, per domain, is counted at each claim.
CREATE INDEX queue_leased ON queue (domain, leased_until) WHERE leased_until IS NOT NULL;
-- Claims for one destination (a session asking for more).
CREATE INDEX queue_due_domain ON queue (domain, next_attempt)
    WHERE state IN ('queued', 'deferred');
",
    ),
];

/// Brings the database up to [`SCHEMA_VERSION`], or refuses it.
pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // A migration may build an index on a large table, and a node may wait
    // here for another's: no statement limit in this transaction.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    let (version, compatible) = read_version(&tx).await?;
    check(version, compatible)?;
    if version == 0 {
        // Only when missing: a role without CREATE can run a current schema.
        tx.batch_execute(
            "CREATE TABLE postel_schema (
                 one        boolean PRIMARY KEY DEFAULT true CHECK (one),
                 version    integer NOT NULL,
                 compatible integer NOT NULL
             )",
        )
        .await?;
    }
    for (v, c, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > version) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO postel_schema (version, compatible) VALUES ($1, $2)
             ON CONFLICT (one) DO UPDATE SET version = $1, compatible = $2",
            &[v, c],
        )
        .await?;
        tracing::info!(version = v, "database schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

/// The schema's version and compatibility; (0, 0) when there is none.
async fn read_version(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<(i32, i32), StoreError> {
    let made: bool = client
        .query_one("SELECT to_regclass('postel_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !made {
        return Ok((0, 0));
    }
    let row = client
        .query_opt("SELECT version, compatible FROM postel_schema", &[])
        .await?;
    Ok(row.map_or((0, 0), |r| (r.get(0), r.get(1))))
}

/// For a tool: the schema is there and this code can use it (nothing is
/// changed: a newer tool must not upgrade the servers' database).
pub(super) async fn usable(client: &deadpool_postgres::Object) -> Result<(), StoreError> {
    let (version, compatible) = read_version(client).await?;
    if version == 0 {
        return Err(StoreError::Schema(
            "the database has no Postel schema yet: start `postel serve` on it first".into(),
        ));
    }
    check(version, compatible)?;
    if version < SCHEMA_VERSION {
        tracing::info!(
            version,
            known = SCHEMA_VERSION,
            "the database's schema is older than this postel: `postel serve` brings it up to date"
        );
    }
    Ok(())
}

/// The database keeps text as UTF-8 (else some subjects could not be
/// stored, and their messages would be refused).
pub(super) async fn check_encoding(client: &deadpool_postgres::Object) -> Result<(), StoreError> {
    let encoding: String = client.query_one("SHOW server_encoding", &[]).await?.get(0);
    if encoding.eq_ignore_ascii_case("UTF8") {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "the database's encoding is {encoding}: Postel needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
        )))
    }
}

/// What a database is, read without changing it (`postel config check`):
/// the server's version, and the schema's version and compatibility, if
/// Postel made one there.
///
/// # Errors
/// When the database cannot be reached or read.
pub async fn inspect(url: &str) -> Result<(String, Option<(i32, i32)>), StoreError> {
    let cfg = pg_config(url, "check")?;
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let made: bool = client
        .query_one("SELECT to_regclass('postel_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    let schema = if made {
        client
            .query_opt("SELECT version, compatible FROM postel_schema", &[])
            .await?
            .map(|r| (r.get(0), r.get(1)))
    } else {
        None
    };
    drop(client);
    let _ = driver.await;
    Ok((version, schema))
}

/// Whether this code may use a database at `version`, usable from
/// `compatible` on.
fn check(version: i32, compatible: i32) -> Result<(), StoreError> {
    if compatible > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database's schema is version {version}, which needs a postel that knows version {compatible} or later; this one knows {SCHEMA_VERSION}: upgrade postel"
        )));
    }
    if version > SCHEMA_VERSION {
        tracing::info!(
            version,
            known = SCHEMA_VERSION,
            "the database's schema is newer than this postel, and still compatible with it"
        );
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_newer_schema_is_used_only_while_it_stays_compatible() {
        assert!(check(SCHEMA_VERSION + 1, SCHEMA_VERSION).is_ok());
        assert!(check(SCHEMA_VERSION, SCHEMA_VERSION).is_ok());
        assert!(check(0, 0).is_ok());
        let e = check(SCHEMA_VERSION + 1, SCHEMA_VERSION + 1).expect_err("newer");
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains("upgrade postel"), "{e}");
    }
}
