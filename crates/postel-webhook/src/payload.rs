//! What is posted: the envelope, a summary of the message as parsed, and
//! the raw message inline (base64) when it is small, always with its path
//! in the API; and the signature, Stripe's scheme:
//! `X-Postel-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`,
//! so a receiver can check both who sent it and that it is fresh.

use base64::Engine as _;
use postel_store::{Message, time::rfc3339};
use serde_json::{Value, json};

/// The JSON body for `message`, inlining it up to `inline_max` octets.
pub fn body(message: &Message, inline_max: u64) -> Vec<u8> {
    let s = &message.summary;
    let e = &s.envelope;
    let parsed = mail_parser::MessageParser::new().parse_headers(&message.raw);
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Value {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(|x| Value::from(x.to_owned()))
                .collect::<Vec<_>>()
        })
        .map_or(Value::Array(Vec::new()), Value::Array)
    };
    let headers = match &parsed {
        Some(m) => json!({
            "subject": m.subject(),
            "from": addresses(m.from()),
            "to": addresses(m.to()),
            "cc": addresses(m.cc()),
            "date": m.date().map(|d| d.to_rfc3339()),
            "message_id": m.message_id(),
        }),
        None => json!({ "subject": s.subject }),
    };
    let mut v = json!({
        "event": "message.received",
        "id": s.id,
        "received_at": rfc3339(s.received_at),
        "envelope": {
            "from": e.mail_from,
            "to": e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
            "client": e.client_addr,
            "helo": e.helo,
            "tls": e.tls,
            "auth_user": e.auth_user,
            "checks": e.checks.as_ref().map(|c| json!({
                "spf": c.spf,
                "dkim": c.dkim,
                "dmarc": c.dmarc,
                "arc": c.arc,
                "quarantine": c.quarantine,
            })),
        },
        "message": headers,
        "size": s.size,
        "raw_path": format!("/api/v1/messages/{}/raw", s.id),
    });
    if s.size <= inline_max && message.raw.len() as u64 == s.size {
        v["raw_base64"] =
            Value::from(base64::engine::general_purpose::STANDARD.encode(&message.raw));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The signature header's value for `body` at `unix` time.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(unix.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use postel_store::{Envelope, Recipient, Summary};

    fn message(raw: &[u8]) -> Message {
        Message {
            summary: Summary {
                id: "ABC".into(),
                received_at: 0,
                envelope: Envelope {
                    mail_from: "a@b.test".into(),
                    recipients: vec![Recipient {
                        address: "c@d.test".into(),
                        params: vec![],
                    }],
                    ..Envelope::default()
                },
                subject: Some("hi".into()),
                size: raw.len() as u64,
            },
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn the_body_has_the_envelope_the_headers_and_the_message_when_small() {
        let raw = b"From: A <a@b.test>\r\nTo: c@d.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let v: Value = serde_json::from_slice(&body(&message(raw), 1024)).expect("json");
        assert_eq!(v["id"], "ABC");
        assert_eq!(v["envelope"]["to"], json!(["c@d.test"]));
        assert_eq!(v["message"]["from"], json!(["a@b.test"]));
        assert_eq!(v["message"]["subject"], "hi");
        assert_eq!(v["raw_path"], "/api/v1/messages/ABC/raw");
        let inline = base64::engine::general_purpose::STANDARD
            .decode(v["raw_base64"].as_str().expect("inline"))
            .expect("base64");
        assert_eq!(inline, raw);
        let big: Value = serde_json::from_slice(&body(&message(raw), 10)).expect("json");
        assert!(
            big.get("raw_base64").is_none(),
            "only the path past the limit"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        let sig = signature(b"Jefe", 0, b"what do ya want for nothing?");
        // HMAC-SHA256("Jefe", "0.what do ya want for nothing?"), computed
        // independently with Python's hmac module.
        assert_eq!(
            sig,
            "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
    }
}
