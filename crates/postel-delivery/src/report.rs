//! From outcomes to what is written: the queue updates (next attempt on
//! the schedule, or the end of the lifetime), and the notices that the
//! outcomes call for (RFC 3464), stored for a local sender or queued for a
//! remote one.

use postel_store::{Envelope, NewMessage, QueueEntry, QueueState, QueueUpdate, Recipient, Store};
use tracing::{error, info, warn};

use crate::dsn::{self, Action, Notice, Reported};
use crate::metrics::DeliveryMetrics;
use crate::outcome::{Failure, Outcome};
use crate::schedule::delay_warning_due;
use crate::settings::Settings;

/// Turns one message's outcomes into queue updates, and sends the notice
/// they call for (before the updates are written: a crash between the two
/// repeats a notice, and never loses one).
pub(crate) async fn report<S: Store>(
    store: &S,
    settings: &Settings,
    metrics: &DeliveryMetrics,
    rows: &[QueueEntry],
    outcomes: Vec<Outcome>,
    now: i64,
) -> Vec<QueueUpdate> {
    let mut updates = Vec::with_capacity(rows.len());
    let mut reported: Vec<Reported<'_>> = Vec::new();
    for (e, o) in rows.iter().zip(outcomes) {
        let mut u = e.update();
        u.attempts = e.attempts.saturating_add(1);
        match o {
            Outcome::Delivered {
                remote,
                reply,
                passed_dsn,
                tls,
            } => {
                info!(id = e.id, to = e.recipient, %remote, reply, tls = tls.as_deref().unwrap_or("-"), "delivered");
                metrics
                    .attempts
                    .get_or_create(&[("result", "delivered")])
                    .inc();
                metrics
                    .latency
                    .observe(now.saturating_sub(e.received_at).max(0) as f64);
                u.state = QueueState::Delivered;
                // The queue view shows how it went: the reply, and the TLS.
                u.last_reply = Some(match &tls {
                    Some(t) => format!("{reply} ({t})"),
                    None => reply.clone(),
                });
                if !passed_dsn && dsn::wanted(e, Action::Relayed) {
                    reported.push(Reported {
                        entry: e,
                        action: Action::Relayed,
                        status: "2.0.0".into(),
                        remote: Some(remote),
                        diagnostic: Some(reply),
                        reason: None,
                        will_retry_until: None,
                    });
                }
            }
            Outcome::Failed(f) => {
                warn!(
                    id = e.id,
                    to = e.recipient,
                    status = f.status,
                    reply = f.text,
                    "delivery failed"
                );
                metrics
                    .attempts
                    .get_or_create(&[("result", "failed")])
                    .inc();
                u.state = QueueState::Failed;
                u.last_reply = Some(f.text.clone());
                if dsn::wanted(e, Action::Failed) {
                    reported.push(failed(e, f, Action::Failed));
                }
            }
            Outcome::Deferred(f) => {
                metrics
                    .attempts
                    .get_or_create(&[("result", "deferred")])
                    .inc();
                u.last_reply = Some(f.text.clone());
                let s = &settings.schedule;
                match s.next_attempt(e.received_at, u.attempts, now, fastrand::f64()) {
                    None => {
                        warn!(
                            id = e.id,
                            to = e.recipient,
                            reply = f.text,
                            "gave up: the queue lifetime is over"
                        );
                        u.state = QueueState::Failed;
                        if dsn::wanted(e, Action::Failed) {
                            reported.push(failed(e, f, Action::Failed));
                        }
                    }
                    Some(next) => {
                        info!(
                            id = e.id,
                            to = e.recipient,
                            reply = f.text,
                            next,
                            "deferred"
                        );
                        u.state = QueueState::Deferred;
                        u.next_attempt = next;
                        if let Some(w) =
                            delay_warning_due(&s.warnings, e.received_at, now, e.warned)
                        {
                            u.warned = w;
                            if dsn::wanted(e, Action::Delayed) {
                                let mut r = failed(e, f, Action::Delayed);
                                r.will_retry_until = Some(s.expires(e.received_at));
                                reported.push(r);
                            }
                        }
                    }
                }
            }
        }
        updates.push(u);
    }
    if !reported.is_empty() {
        notify(store, settings, metrics, reported, now).await;
    }
    updates
}

/// A failure (or a delay) as a notice reports it: a remote reply as the
/// diagnostic, Postel's own reason in the text for people.
fn failed(e: &QueueEntry, f: Failure, action: Action) -> Reported<'_> {
    let remote_reply = f.remote.is_some();
    Reported {
        entry: e,
        action,
        status: f.status,
        remote: f.remote,
        diagnostic: remote_reply.then(|| f.text.clone()),
        reason: (!remote_reply).then_some(f.text),
        will_retry_until: None,
    }
}

/// Builds and stores one notice about one message, to its sender:
/// locally when the sender's domain is local, else queued.
async fn notify<S: Store>(
    store: &S,
    s: &Settings,
    metrics: &DeliveryMetrics,
    reported: Vec<Reported<'_>>,
    now: i64,
) {
    let e = reported[0].entry;
    let original = match store.get(&e.id).await {
        Ok(Some(m)) => m.raw,
        _ => Vec::new(),
    };
    let trusted = e.auth_user.is_some()
        || e.client_addr
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| s.is_trusted(a.ip()));
    // REQUIRETLS mail (RFC 8689 section 5) comes back as headers only:
    // the notice does not travel under the sender's TLS demand.
    let ret_hdrs = e
        .mail_params
        .iter()
        .any(|p| p.eq_ignore_ascii_case("RET=HDRS") || p.eq_ignore_ascii_case("REQUIRETLS"));
    let failure = reported.iter().any(|r| r.action == Action::Failed);
    let id = store.next_id();
    let notice = Notice {
        hostname: &s.hostname,
        notice_id: &id,
        full_content: trusted && !ret_hdrs && failure && original.len() <= s.notice_content_limit,
        recipients: reported,
        original: &original,
        now,
    };
    let mut raw = notice.render();
    // Signed as a whole, last: the notice's own fields are its last word.
    let signatures = s.signer.sign(&raw);
    raw.splice(0..0, signatures);
    let subject = notice.subject();
    let msg = own_message(
        s,
        id.clone(),
        now,
        std::slice::from_ref(&e.mail_from),
        subject.into(),
        raw,
    );
    match store.insert(msg).await {
        Ok(()) => {
            metrics.notices.inc();
            info!(id, about = e.id, to = e.mail_from, "notice sent");
        }
        Err(err) => error!(about = e.id, error = %err, "cannot store a delivery notice"),
    }
}

/// The client address Postel's own mail (notices, TLS reports) is stored
/// with: how delivery tells it from mail that came in.
pub(crate) const OWN_CLIENT: &str = "127.0.0.1:0";

/// A message of Postel's own (`raw`, already signed) from `<>` to `to`:
/// kept for the local recipients, queued for the others, and never the
/// cause of a notice of its own (`NOTIFY=NEVER`).
pub(crate) fn own_message(
    s: &Settings,
    id: String,
    now: i64,
    to: &[String],
    subject: String,
    raw: Vec<u8>,
) -> NewMessage {
    let queue: Vec<u32> = to
        .iter()
        .enumerate()
        .filter(|(_, a)| !s.is_local(&postel_store::domain_of(a)))
        .map(|(i, _)| i as u32)
        .collect();
    let local = queue.len() < to.len();
    NewMessage {
        id,
        received_at: now,
        envelope: Envelope {
            mail_from: String::new(),
            mail_params: Vec::new(),
            recipients: to
                .iter()
                .map(|a| Recipient {
                    address: a.clone(),
                    params: vec!["NOTIFY=NEVER".into()],
                })
                .collect(),
            client_addr: OWN_CLIENT.into(),
            helo: s.hostname.clone(),
            protocol: "local".into(),
            tls: None,
            auth_user: None,
            checks: None,
        },
        subject: Some(subject),
        raw,
        spooled: None,
        queue,
        local,
        claimed_until: None,
        hold: false,
        webhooks: Vec::new(),
    }
}
