//! Counts the nodes share, every second or so: failed logins (for the
//! lockout), delivery sessions per destination (for its limit) and rate
//! counters' usage (for the rate limits). Each
//! node writes its own counts (replacing what it wrote last), and reads
//! the others'. The lockout and the limit stay in each node's memory;
//! this is how the nodes hear of each other.

use super::*;

/// The most keys read back: a flood of addresses cannot grow a node's
/// memory past this (the busiest are kept).
const MAX_KEYS: i64 = 100_000;

impl PgStore {
    /// Replaces this node's failure counts with `mine` (key, failures, and
    /// how many seconds ago the first was), and returns the other nodes'
    /// counts within `window` seconds, summed per key.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_failures(
        &self,
        mine: &[(String, u32, i64)],
        window: i64,
    ) -> Result<std::collections::HashMap<String, u32>, StoreError> {
        let now = unix_now();
        let keys: Vec<&str> = mine.iter().map(|(k, _, _)| k.as_str()).collect();
        let counts: Vec<i32> = mine
            .iter()
            .map(|(_, n, _)| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect();
        let since: Vec<i64> = mine.iter().map(|(_, _, age)| now - age).collect();
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM auth_failures WHERE node = $1 OR since < $2",
            &[&self.node, &(now - window)],
        )
        .await?;
        if !keys.is_empty() {
            tx.execute(
                "INSERT INTO auth_failures (key, node, failures, since)
                 SELECT k, $1, n, s FROM unnest($2::text[], $3::int4[], $4::int8[]) AS t (k, n, s)",
                &[&self.node, &keys, &counts, &since],
            )
            .await?;
        }
        let rows = tx
            .query(
                "SELECT key, sum(failures)::int8 FROM auth_failures
                 WHERE node <> $1 AND since >= $2 GROUP BY key ORDER BY 2 DESC LIMIT $3",
                &[&self.node, &(now - window), &MAX_KEYS],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX),
                )
            })
            .collect())
    }
}

/// How long a node's word on its sessions holds: a node that stopped
/// saying (it died) stops counting after this.
const SESSIONS_FRESH: i64 = 10;

impl PgStore {
    /// As [`crate::Store::share_sessions`]: replaces this node's counts
    /// and returns the other nodes' fresh ones, summed per destination.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_sessions(
        &self,
        mine: &[(String, u32)],
    ) -> Result<std::collections::HashMap<String, u32>, StoreError> {
        let now = unix_now();
        let dests: Vec<&str> = mine.iter().map(|(d, _)| d.as_str()).collect();
        let counts: Vec<i32> = mine
            .iter()
            .map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect();
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM delivery_sessions WHERE node = $1 OR at < $2",
            &[&self.node, &(now - 10 * SESSIONS_FRESH)],
        )
        .await?;
        if !dests.is_empty() {
            tx.execute(
                "INSERT INTO delivery_sessions (destination, node, sessions, at)
                 SELECT d, $1, n, $2 FROM unnest($3::text[], $4::int4[]) AS t (d, n)",
                &[&self.node, &now, &dests, &counts],
            )
            .await?;
        }
        let rows = tx
            .query(
                "SELECT destination, sum(sessions)::int8 FROM delivery_sessions
                 WHERE node <> $1 AND at >= $2 GROUP BY destination LIMIT $3",
                &[&self.node, &(now - SESSIONS_FRESH), &MAX_KEYS],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX),
                )
            })
            .collect())
    }
}

impl PgStore {
    /// Replaces this node's rate-counter usage with `mine` (a counter's
    /// name, and what was used of it), and returns the other nodes' fresh
    /// usage, summed per counter.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_usage(
        &self,
        mine: &[(String, f64)],
    ) -> Result<std::collections::HashMap<String, f64>, StoreError> {
        let now = unix_now();
        let keys: Vec<String> = mine.iter().map(|(k, _)| text(k).into_owned()).collect();
        let used: Vec<f64> = mine.iter().map(|(_, u)| *u).collect();
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM rate_usage WHERE node = $1 OR at < $2",
            &[&self.node, &(now - 10 * SESSIONS_FRESH)],
        )
        .await?;
        if !keys.is_empty() {
            tx.execute(
                "INSERT INTO rate_usage (key, node, used, at)
                 SELECT k, $1, u, $2 FROM unnest($3::text[], $4::float8[]) AS t (k, u)",
                &[&self.node, &now, &keys, &used],
            )
            .await?;
        }
        let rows = tx
            .query(
                "SELECT key, sum(used) FROM rate_usage WHERE node <> $1 AND at >= $2
                 GROUP BY key ORDER BY 2 DESC LIMIT $3",
                &[&self.node, &(now - SESSIONS_FRESH), &MAX_KEYS],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
            .collect())
    }
}
