//! What an attempt did for one recipient, with the status code (RFC 3463)
//! that a notice reports.

use postel_proto::client::ServerReply;

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop took it.
    Delivered {
        /// The host that took it.
        remote: String,
        /// Its reply, as one line.
        reply: String,
        /// The next hop offered DSN, and got the DSN parameters: it
        /// reports from now on, so no `relayed` notice is sent.
        passed_dsn: bool,
        /// How the SMTP session was protected (TLS version, cipher,
        /// certificate verified or not), for the queue view; None for local
        /// delivery.
        tls: Option<String>,
    },
    /// Try again later.
    Deferred(Failure),
    /// Give up: a notice goes to the sender.
    Failed(Failure),
}

/// Why a recipient was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The enhanced status code: `5.1.1`, `4.4.1`...
    pub status: String,
    /// The remote host whose reply this is, if a remote replied.
    pub remote: Option<String>,
    /// The remote reply as one line (`550 5.1.1 ...`), or Postel's own
    /// reason.
    pub text: String,
}

impl Failure {
    /// A failure found here (DNS, connection, policy), not a remote reply.
    pub fn local(status: &str, text: impl Into<String>) -> Failure {
        Failure {
            status: status.to_owned(),
            remote: None,
            text: text.into(),
        }
    }

    /// A remote reply, as a failure.
    pub fn remote(host: &str, reply: &ServerReply) -> Failure {
        Failure {
            status: status_of(reply),
            remote: Some(host.to_owned()),
            text: one_line(reply),
        }
    }

    /// Whether it is permanent (a 5 class).
    pub fn is_permanent(&self) -> bool {
        self.status.starts_with('5')
    }
}

impl Outcome {
    /// The outcome of a remote reply to a recipient's RCPT or to the
    /// content: 2xx delivered, 4xx deferred, 5xx failed.
    pub fn of_reply(host: &str, reply: &ServerReply, passed_dsn: bool) -> Outcome {
        match reply.code {
            200..=299 => Outcome::Delivered {
                remote: host.to_owned(),
                reply: one_line(reply),
                passed_dsn,
                tls: None,
            },
            500..=599 => Outcome::Failed(Failure::remote(host, reply)),
            _ => Outcome::Deferred(Failure::remote(host, reply)),
        }
    }
}

/// The reply as one line, control characters dropped: it is stored, shown
/// in the CLI and the web, and quoted in notices.
pub fn one_line(reply: &ServerReply) -> String {
    let mut s = reply.code.to_string();
    for line in &reply.lines {
        s.push(' ');
        s.extend(line.chars().filter(|c| !c.is_control()));
        if s.len() > 900 {
            s.truncate(s.floor_char_boundary(900));
            break;
        }
    }
    s
}

/// The enhanced status code of a reply, or one from its class when it
/// has none (RFC 3463: `x.0.0`).
fn status_of(reply: &ServerReply) -> String {
    let class = reply.code / 100;
    match reply.enhanced() {
        Some(e) if e.starts_with(&class.to_string()) => e.to_owned(),
        _ => format!("{}.0.0", class.clamp(2, 5)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> ServerReply {
        ServerReply {
            code,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    #[test]
    fn replies_become_outcomes() {
        let r = reply(550, &["5.1.1 no such user"]);
        assert_eq!(
            Outcome::of_reply("mx.test", &r, false),
            Outcome::Failed(Failure {
                status: "5.1.1".into(),
                remote: Some("mx.test".into()),
                text: "550 5.1.1 no such user".into(),
            })
        );
        let r = reply(451, &["greylisted", "come back\u{1b}[2J later"]);
        let Outcome::Deferred(f) = Outcome::of_reply("mx.test", &r, false) else {
            panic!("deferred");
        };
        assert_eq!(f.status, "4.0.0");
        assert_eq!(f.text, "451 greylisted come back[2J later");
        // An enhanced code of the wrong class is not believed.
        let r = reply(554, &["2.0.0 odd"]);
        let Outcome::Failed(f) = Outcome::of_reply("mx.test", &r, false) else {
            panic!("failed");
        };
        assert_eq!(f.status, "5.0.0");
    }
}
