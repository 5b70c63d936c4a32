//! What a node on PostgreSQL does with the other nodes beyond sharing the
//! store: its delivery worker wakes when any node queued mail, and, every
//! second, its lockout hears of the failed logins the others counted and
//! its rate limits of what the others' senders used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postel_store::PgStore;

/// How often failed logins are shared.
const SHARE_EVERY: Duration = Duration::from_secs(1);

/// Starts the node's part: queue wake-ups and the shared lockout.
pub(crate) fn start(
    pg: &Arc<PgStore>,
    wake: Arc<tokio::sync::Notify>,
    auth: Arc<postel_policy::Authenticator>,
    rate: Arc<postel_policy::rate::RateLimiter>,
) {
    let from = pg.queue_wake();
    tokio::spawn(async move {
        loop {
            from.notified().await;
            wake.notify_one();
        }
    });
    if !rate.is_empty() {
        let pg = pg.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SHARE_EVERY).await;
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mine = rate.snapshot(unix);
                match pg.share_usage(&mine).await {
                    Ok(theirs) => rate.set_remote(theirs, Instant::now()),
                    Err(e) => tracing::debug!(error = %e, "cannot share rate counters"),
                }
            }
        });
    }
    let pg = pg.clone();
    tokio::spawn(async move {
        let window = i64::try_from(auth.lockout().window().as_secs()).unwrap_or(i64::MAX);
        loop {
            tokio::time::sleep(SHARE_EVERY).await;
            let mine: Vec<(String, u32, i64)> = auth
                .lockout()
                .snapshot(Instant::now())
                .into_iter()
                .map(|(ip, n, age)| (ip.to_string(), n, i64::try_from(age.as_secs()).unwrap_or(0)))
                .collect();
            match pg.share_failures(&mine, window).await {
                Ok(theirs) => auth.lockout().set_remote(
                    theirs
                        .into_iter()
                        .filter_map(|(k, n)| Some((k.parse().ok()?, n)))
                        .collect(),
                ),
                Err(e) => {
                    // What the others said goes stale: each node counts
                    // alone until the database answers again.
                    auth.lockout().set_remote(std::collections::HashMap::new());
                    tracing::debug!(error = %e, "cannot share failed logins");
                }
            }
        }
    });
}
