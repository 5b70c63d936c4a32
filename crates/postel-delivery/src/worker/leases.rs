//! What the worker does with other nodes, for a store that several nodes
//! share. Leases on claimed rows: a claim lasts the store's lease, and is
//! renewed while its rows are worked on, so that another node takes them
//! only once this one stopped (it died, or hangs). Sessions: each node
//! says how many it has open per destination, so that the limit per
//! destination holds across them. A store that one node owns has no
//! lease (its claims last [`CLAIM`], and end when the node starts again)
//! and no other nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postel_store::{QueueEntry, QueueUpdate, Store};
use tracing::{error, warn};

use super::{CLAIM, Worker, unix_now};

/// Rows claimed and not yet recorded, with when they were claimed.
#[derive(Debug, Default)]
pub(super) struct Held(Mutex<HashMap<(String, u32), (QueueUpdate, Instant)>>);

impl Held {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), (QueueUpdate, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No more renewals for these rows (recorded, or given up).
    pub(super) fn release(&self, keys: &[(String, u32)]) {
        let mut map = self.map();
        for k in keys {
            map.remove(k);
        }
    }
}

/// The keys of these rows.
pub(super) fn keys(rows: &[QueueEntry]) -> Vec<(String, u32)> {
    rows.iter().map(|e| (e.id.clone(), e.position)).collect()
}

impl<S: Store + Clone> Worker<S> {
    /// How long a claim lasts: the store's lease, renewed while the rows
    /// are worked on; else long enough for any session.
    pub(super) fn claim_for(&self) -> i64 {
        self.store.lease().unwrap_or(CLAIM)
    }

    /// Sessions open to `dest`: this node's and, with a shared store, the
    /// other nodes' (as they last said).
    pub(super) fn open_sessions(&self, dest: &str) -> usize {
        let here = Self::lock(&self.per_destination)
            .get(dest)
            .copied()
            .unwrap_or(0);
        let there = Self::lock(&self.elsewhere).get(dest).copied().unwrap_or(0);
        here + there
    }

    /// Every second, tells the other nodes how many sessions this one has
    /// open per destination, and hears theirs: the limit per destination
    /// then holds across the nodes (give or take what a second changes).
    pub(super) async fn share_sessions(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Domains and the smarthost: a Maildir or LMTP target is each
            // node's own.
            let mine: Vec<(String, u32)> = Self::lock(&self.per_destination)
                .iter()
                .filter(|(d, _)| !d.contains(':'))
                .map(|(d, n)| (d.clone(), u32::try_from(*n).unwrap_or(u32::MAX)))
                .collect();
            match self.store.share_sessions(&mine).await {
                Ok(theirs) => {
                    *Self::lock(&self.elsewhere) =
                        theirs.into_iter().map(|(d, n)| (d, n as usize)).collect();
                }
                Err(e) => {
                    // Stale: each node counts alone until the database
                    // answers again.
                    Self::lock(&self.elsewhere).clear();
                    tracing::debug!(error = %e, "cannot share delivery sessions");
                }
            }
        }
    }

    /// Rows now claimed: held (and renewed) until recorded.
    pub(super) fn hold(&self, rows: &[QueueEntry]) {
        if self.store.lease().is_none() {
            return;
        }
        let now = Instant::now();
        let mut held = self.held.map();
        for e in rows {
            held.insert((e.id.clone(), e.position), (e.update(), now));
        }
    }

    /// Rows whose work is over (recorded, or given up): no more renewals.
    pub(super) fn let_go(&self, rows: &[QueueEntry]) {
        if self.store.lease().is_none() {
            return;
        }
        self.held.release(&keys(rows));
    }

    /// Renews the leases of the rows being worked on, three times a lease,
    /// so that no other node takes them while this one delivers. A row
    /// held longer than any session can last is let go.
    pub(super) async fn renew(&self, lease: i64) {
        let every = Duration::from_secs(u64::try_from(lease / 3).unwrap_or(1).max(1));
        let longest = Duration::from_secs(u64::try_from(CLAIM).unwrap_or(u64::MAX));
        loop {
            tokio::time::sleep(every).await;
            let rows: Vec<QueueUpdate> = {
                let mut held = self.held.map();
                held.retain(|_, (_, since)| since.elapsed() < longest);
                held.values().map(|(u, _)| u.clone()).collect()
            };
            if rows.is_empty() {
                continue;
            }
            match self.store.queue_renew(&rows, unix_now() + lease).await {
                Ok(n) if (n as usize) < rows.len() => {
                    warn!(
                        held = rows.len(),
                        renewed = n,
                        "some delivery claims were lost (taken over after they ran out)"
                    );
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "cannot renew delivery claims"),
            }
        }
    }
}
