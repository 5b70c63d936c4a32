//! The outbox worker: claims due deliveries, posts each message to its
//! webhook, and records the outcome. A 2xx is delivered; anything else (a
//! status, no connection, a timeout) is tried again after a backoff, until
//! the message is older than the lifetime; 410 Gone gives up at once. A
//! claim lasts longer than an attempt can take, so a crash mid-post only
//! delays the row until its claim ends: at least once, never lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postel_store::{Store, WebhookEntry, WebhookState, WebhookUpdate};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::http::{self, Post};
use crate::payload;
use crate::settings::{Settings, backoff};

/// Deliveries claimed per look, and so posted at once: each reads its
/// message whole, so this bounds the memory of a look.
const BATCH: usize = 8;

/// How often the outbox is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The webhook worker.
pub struct Worker<S> {
    store: S,
    settings: Arc<Settings>,
    roots: Arc<rustls::RootCertStore>,
    wake: Arc<Notify>,
}

impl<S: Store + Clone> Worker<S> {
    /// A worker over `store`, woken by `wake` when a message is stored.
    pub fn new(store: S, settings: Settings, wake: Arc<Notify>) -> Worker<S> {
        let roots = settings.roots();
        Worker {
            store,
            settings: Arc::new(settings),
            roots,
            wake,
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            self.round().await;
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claims what is due and posts it, a few at once.
    async fn round(&self) {
        let now = unix_now();
        let claim_for = self.settings.timeout.as_secs() as i64 * 2 + 60;
        let due = match self.store.webhook_claim(now, now + claim_for, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot read the webhook outbox");
                return;
            }
        };
        if due.is_empty() {
            return;
        }
        let mut set = tokio::task::JoinSet::new();
        for entry in due {
            let worker = (
                self.store.clone(),
                self.settings.clone(),
                self.roots.clone(),
            );
            set.spawn(async move {
                let (store, settings, roots) = worker;
                attempt(&store, &settings, roots, entry).await
            });
        }
        let mut updates = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(Some(u)) = done {
                updates.push(u);
            }
        }
        if let Err(e) = self.store.webhook_record(updates).await {
            warn!(error = %e, "cannot record webhook outcomes: they are tried again when their claims end");
        }
    }
}

/// One attempt: the update to record (None: nothing to change).
async fn attempt<S: Store>(
    store: &S,
    settings: &Settings,
    roots: Arc<rustls::RootCertStore>,
    entry: WebhookEntry,
) -> Option<WebhookUpdate> {
    let now = unix_now();
    let expired = now - entry.received_at >= settings.lifetime.as_secs() as i64;
    let pending_or_failed = if expired {
        WebhookState::Failed
    } else {
        WebhookState::Pending
    };
    let Some(hook) = settings.hook(&entry.hook) else {
        // Not in the config now (removed for a while, or mistyped): kept
        // for when it is back, within the lifetime.
        return Some(entry.update(
            pending_or_failed,
            now + 3600,
            "no such webhook in the config",
        ));
    };
    let message = match store.get(&entry.id).await {
        Ok(Some(m)) => m,
        Ok(None) => return Some(entry.update(WebhookState::Failed, now, "the message is gone")),
        Err(e) => {
            let next = now + backoff(hook.retry, entry.attempts).as_secs() as i64;
            let status = format!("cannot read the message: {e}");
            return Some(entry.update(pending_or_failed, next, status));
        }
    };
    let body = payload::body(&message, hook.inline_max);
    let post = Post {
        url: &hook.url,
        headers: vec![
            ("user-agent", format!("Postel/{}", settings.version)),
            ("idempotency-key", entry.id.clone()),
            ("x-postel-event", "message.received".to_owned()),
            (
                "x-postel-delivery-attempt",
                (entry.attempts + 1).to_string(),
            ),
            (
                "x-postel-signature",
                payload::signature(&hook.secret, now, &body),
            ),
        ],
        body,
    };
    let outcome = http::send(post, roots, settings.timeout).await;
    let retry_at = now + backoff(hook.retry, entry.attempts).as_secs() as i64;
    let (state, status) = match &outcome {
        Ok(code) if (200..300).contains(code) => (WebhookState::Delivered, code.to_string()),
        Ok(410) => (WebhookState::Failed, "410".to_owned()),
        Ok(code) if expired => (WebhookState::Failed, code.to_string()),
        Ok(code) => (WebhookState::Pending, code.to_string()),
        Err(e) if expired => (WebhookState::Failed, e.clone()),
        Err(e) => (WebhookState::Pending, e.clone()),
    };
    match state {
        WebhookState::Delivered => info!(
            id = entry.id,
            hook = entry.hook,
            status,
            "webhook delivered"
        ),
        _ => warn!(
            id = entry.id,
            hook = entry.hook,
            status,
            state = state.as_str(),
            "webhook not delivered"
        ),
    }
    Some(entry.update(state, retry_at, status))
}
