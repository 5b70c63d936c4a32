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
        "mail_params": e.mail_params,
        "rcpt_params": e.recipients.iter().map(|r| &r.params).collect::<Vec<_>>(),
    })
}
