//! LISTEN: what every node commits reaches every node, on one channel,
//! `postel_events`, in parts separated by `;`: `Q` wakes the delivery
//! worker (which polls besides, so a lost notification costs a second);
//! the others are the inbox's changes for live views: `S seq...` (stored),
//! `D id...` (deleted), `A` (all deleted).
//!
//! The connection is its own, outside the pool; when it breaks, it is made
//! again after a pause, and what was said meanwhile is missed (a live view
//! shows it at its next load).

use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use super::read::{SUMMARY, summary};
use super::*;

/// Notifications waiting to be read before newer ones are dropped.
const BACKLOG: usize = 1024;

/// The pause before listening again after the connection broke.
const AGAIN: Duration = Duration::from_secs(1);

pub(super) async fn listen(
    cfg: tokio_postgres::Config,
    pool: Pool,
    changes: broadcast::Sender<Change>,
    queue: Arc<Notify>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        if let Err(e) = listen_once(&cfg, &pool, &changes, &queue, &mut ready).await {
            tracing::warn!(error = %e, "lost the database's notifications: listening again");
        }
        // Whatever was missed may have queued mail.
        queue.notify_one();
        tokio::time::sleep(AGAIN).await;
    }
}

async fn listen_once(
    cfg: &tokio_postgres::Config,
    pool: &Pool,
    changes: &broadcast::Sender<Change>,
    queue: &Notify,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let (client, mut conn) = cfg.connect(tokio_postgres::NoTls).await?;
    // Bounded: a node that falls behind drops changes (its live views
    // miss them, as when a subscriber lags), never grows without bound.
    let (tx, mut rx) = mpsc::channel::<String>(BACKLOG);
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    let driver = tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => match tx.try_send(n.payload().to_owned()) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                },
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute("LISTEN postel_events").await?;
    if let Some(r) = ready.take() {
        let _ = r.send(());
    }
    while let Some(payload) = rx.recv().await {
        for part in payload.split(';') {
            if part == "Q" {
                queue.notify_one();
            } else if changes.receiver_count() > 0 {
                for change in read_change(pool, part).await {
                    let _ = changes.send(change);
                }
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(())) => Err(StoreError::Unreachable(
            "the listening connection closed".into(),
        )),
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

/// The changes one part of a payload announces.
async fn read_change(pool: &Pool, payload: &str) -> Vec<Change> {
    let mut words = payload.split(' ');
    match words.next() {
        Some("A") => vec![Change::DeletedAll],
        Some("D") => words.map(|id| Change::Deleted(id.to_owned())).collect(),
        Some("S") => {
            let seqs: Vec<i64> = words.filter_map(|w| w.parse().ok()).collect();
            let Ok(client) = get(pool).await else {
                return Vec::new();
            };
            match client
                .query(
                    &format!(
                        "SELECT {SUMMARY} FROM messages m WHERE m.seq = ANY($1) AND m.local ORDER BY m.seq"
                    ),
                    &[&seqs],
                )
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| Change::Stored(Box::new(summary(r))))
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read announced messages");
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    }
}
