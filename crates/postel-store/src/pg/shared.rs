//! Counts the nodes share, every second or so: failed logins (for the
//! lockout), delivery sessions per destination (for its limit) and what
//! senders used of the rate counters (for the rate limits). Each node
//! writes its own counts, replacing what it wrote last, and reads the
//! others'. The lockout and the limits stay in each node's memory; this is
//! how the nodes hear of each other. Each is a table of the same shape:
//! key, node, value, and a time (`at`) that says when a row goes stale.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::*;

/// The most keys read back: a flood of addresses cannot grow a node's
/// memory past this (the busiest are kept).
const MAX_KEYS: i64 = 100_000;

/// How long a node's word on its sessions and rate usage holds: a node
/// that stopped saying (it died) stops counting after this.
const FRESH: i64 = 10;

impl PgStore {
    /// Replaces this node's rows of `table` with `keys`, `values` (an
    /// array of `cast`) and their `ages` (seconds before now), drops every
    /// row older than `stale` seconds, and returns the other nodes' values
    /// no older than `fresh`, summed per key. Times are the database's
    /// clock, so that the nodes' clocks need not agree.
    #[allow(clippy::too_many_arguments)]
    async fn share(
        &self,
        table: &str,
        cast: &str,
        keys: &[String],
        values: &(dyn ToSql + Sync),
        ages: &[i64],
        stale: i64,
        fresh: i64,
    ) -> Result<HashMap<String, f64>, StoreError> {
        let mut client = get(&self.share_pool).await?;
        let tx = client.transaction().await?;
        let now = "extract(epoch from now())::int8";
        tx.execute(
            &format!("DELETE FROM {table} WHERE node = $1 OR at < {now} - $2"),
            &[&self.node, &stale],
        )
        .await?;
        if !keys.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (key, node, value, at)
                     SELECT k, $1, v, {now} - a
                     FROM unnest($2::text[], $3::{cast}[], $4::int8[]) AS t (k, v, a)"
                ),
                &[&self.node, &keys, values, &ages],
            )
            .await?;
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT key, sum(value)::float8 FROM {table} WHERE node <> $1 AND at >= {now} - $2
                     GROUP BY key ORDER BY 2 DESC LIMIT $3"
                ),
                &[&self.node, &fresh, &MAX_KEYS],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Failed logins: replaces this node's counts with `mine` (key,
    /// failures, and how many seconds ago the first was), and returns the
    /// other nodes' counts within `window` seconds, summed per key.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_failures(
        &self,
        mine: &[(String, u32, i64)],
        window: i64,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let keys: Vec<String> = mine.iter().map(|(k, _, _)| text(k).into_owned()).collect();
        let counts: Vec<i32> = mine.iter().map(|(_, n, _)| count(*n)).collect();
        let ages: Vec<i64> = mine.iter().map(|(_, _, age)| *age).collect();
        let theirs = self
            .share(
                "auth_failures",
                "int4",
                &keys,
                &counts,
                &ages,
                window,
                window,
            )
            .await?;
        Ok(whole(theirs))
    }

    /// As [`crate::Store::share_sessions`]: replaces this node's counts
    /// and returns the other nodes' fresh ones, summed per destination.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_sessions(
        &self,
        mine: &[(String, u32)],
    ) -> Result<HashMap<String, u32>, StoreError> {
        let keys: Vec<String> = mine.iter().map(|(d, _)| text(d).into_owned()).collect();
        let counts: Vec<i32> = mine.iter().map(|(_, n)| count(*n)).collect();
        let now = vec![0; keys.len()];
        let theirs = self
            .share(
                "delivery_sessions",
                "int4",
                &keys,
                &counts,
                &now,
                10 * FRESH,
                FRESH,
            )
            .await?;
        Ok(whole(theirs))
    }

    /// Rate counters: replaces this node's counts with `mine` (a counter's
    /// name, and how much this node's senders took of it since its counter
    /// was made), and returns the other nodes' fresh counts, summed per
    /// counter.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn share_usage(
        &self,
        mine: &[(String, f64)],
    ) -> Result<HashMap<String, f64>, StoreError> {
        let keys: Vec<String> = mine.iter().map(|(k, _)| text(k).into_owned()).collect();
        let used: Vec<f64> = mine.iter().map(|(_, u)| *u).collect();
        let now = vec![0; keys.len()];
        self.share(
            "rate_usage",
            "float8",
            &keys,
            &used,
            &now,
            10 * FRESH,
            FRESH,
        )
        .await
    }
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Sums back to whole counts.
fn whole(sums: HashMap<String, f64>) -> HashMap<String, u32> {
    sums.into_iter()
        .map(|(k, v)| (k, v.round().clamp(0.0, f64::from(u32::MAX)) as u32))
        .collect()
}
