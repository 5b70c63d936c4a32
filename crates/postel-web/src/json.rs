//! The JSON shape of a stored message's summary, shared by the HTTP API and
//! `postel messages list --json`, so scripts see one format.

use postel_store::Summary;
use postel_store::time::rfc3339;
use serde_json::{Value, json};

/// A summary as JSON: id, time (RFC 3339, UTC), envelope, subject, size and
/// the connection's details.
pub fn summary(s: &Summary) -> Value {
    let e = &s.envelope;
    json!({
        "id": s.id,
        "received_at": rfc3339(s.received_at),
        "from": e.mail_from,
        "to": e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
        "subject": s.subject,
        "size": s.size,
        "client": e.client_addr,
        "helo": e.helo,
        "protocol": e.protocol,
        "tls": e.tls,
        "auth_user": e.auth_user,
        "checks": e.checks.as_ref().map(checks),
        "mail_params": e.mail_params,
        "rcpt_params": e.recipients.iter().map(|r| &r.params).collect::<Vec<_>>(),
    })
}

/// Mail authentication results as JSON: each check's RFC 8601 result word,
/// and the DMARC quarantine flag.
pub fn checks(c: &postel_store::Checks) -> Value {
    json!({
        "spf": c.spf,
        "dkim": c.dkim,
        "dmarc": c.dmarc,
        "arc": c.arc,
        "quarantine": c.quarantine,
    })
}

/// A webhook delivery as JSON: the message id, the webhook's URL, its
/// state (pending, delivered, failed), attempts, when it is next due, and
/// the last attempt's HTTP status or error.
pub fn webhook_entry(e: &postel_store::WebhookEntry) -> Value {
    json!({
        "id": e.id,
        "url": e.hook,
        "state": e.state.as_str(),
        "attempts": e.attempts,
        "next_attempt": rfc3339(e.next_attempt),
        "last_status": e.last_status,
        "received_at": rfc3339(e.received_at),
    })
}

/// A queued recipient as JSON, shared by `/api/v1/queue` and `postel queue
/// list --json`: the message id, the recipient, its state, attempts, next
/// attempt (RFC 3339) and the last remote reply.
pub fn queue_entry(e: &postel_store::QueueEntry) -> Value {
    json!({
        "id": e.id,
        "recipient": e.recipient,
        "state": e.state.as_str(),
        "attempts": e.attempts,
        "next_attempt": rfc3339(e.next_attempt),
        "last_reply": e.last_reply,
        "from": e.mail_from,
        "received_at": rfc3339(e.received_at),
        "size": e.size,
    })
}
