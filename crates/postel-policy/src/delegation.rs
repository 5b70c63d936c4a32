//! Postfix's policy delegation protocol (`check_policy_service`), the
//! client side: a request is `name=value` lines and an empty line; the
//! answer is `action=...` and an empty line. Postgrey (greylisting) and
//! `postfix-policyd-spf-python` speak it. The exchange itself is sans-IO
//! ([`request`], [`parse_answer`], [`verdict`]); [`ask`] is the small
//! tokio client, one connection per question, under a timeout.
//!
//! A policy server's `OK` never bypasses relay control: it is asked only
//! after the recipient was accepted by the routing policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postel_proto::{EnhancedCode, Reply};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The most octets of an answer: a line of `action=` and its text.
const MAX_ANSWER: usize = 8 * 1024;

/// Where a policy server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAddr {
    /// `IP:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl PolicyAddr {
    /// `IP:PORT` or `unix:/path`.
    pub fn parse(s: &str) -> Option<PolicyAddr> {
        match s.strip_prefix("unix:") {
            Some(p) if p.starts_with('/') => Some(PolicyAddr::Unix(PathBuf::from(p))),
            Some(_) => None,
            None => s.parse().ok().map(PolicyAddr::Tcp),
        }
    }
}

impl std::fmt::Display for PolicyAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyAddr::Tcp(a) => write!(f, "{a}"),
            PolicyAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// When a policy server is asked (Postfix's restriction stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// At MAIL FROM (`smtpd_sender_restrictions`).
    Mail,
    /// At each RCPT TO (`smtpd_recipient_restrictions`), after routing
    /// took the recipient.
    Rcpt,
    /// At the end of the content (`smtpd_end_of_data_restrictions`).
    EndOfData,
}

impl Stage {
    /// `mail`, `rcpt` or `end_of_data`.
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "mail" => Stage::Mail,
            "rcpt" => Stage::Rcpt,
            "end_of_data" => Stage::EndOfData,
            _ => return None,
        })
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::EndOfData => "end_of_data",
        }
    }

    /// Postfix's `protocol_state` for the stage.
    pub fn protocol_state(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::EndOfData => "END-OF-MESSAGE",
        }
    }
}

/// One policy server: where, when, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Where it listens.
    pub address: PolicyAddr,
    /// When it is asked.
    pub stage: Stage,
    /// How long it may take; then `451 4.3.5`.
    pub timeout: Duration,
}

/// What Postfix sends at RCPT, as far as Postel knows it.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// `RCPT` (or `DATA`, `END-OF-MESSAGE`...).
    pub protocol_state: &'a str,
    /// `SMTP` or `ESMTP`.
    pub protocol_name: &'a str,
    /// The client's address.
    pub client_address: String,
    /// Its forward-confirmed name, or `unknown`.
    pub client_name: &'a str,
    /// Its PTR name, or `unknown`.
    pub reverse_client_name: &'a str,
    /// Its EHLO/HELO name.
    pub helo_name: &'a str,
    /// The reverse-path (empty for `<>`).
    pub sender: &'a str,
    /// The recipient.
    pub recipient: &'a str,
    /// Recipients accepted so far.
    pub recipient_count: usize,
    /// The authenticated user, if any.
    pub sasl_username: &'a str,
    /// The MAIL `SIZE=`, if given.
    pub size: u64,
    /// A session id, the same for every question of one session.
    pub instance: String,
    /// The message id, at the end of data only.
    pub queue_id: &'a str,
}

/// Strips what would end a line or the request.
fn clean(v: &str) -> String {
    v.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

/// The request as sent: `name=value` lines, then an empty line.
pub fn request(r: &Request<'_>) -> Vec<u8> {
    let fields: [(&str, String); 14] = [
        ("request", "smtpd_access_policy".into()),
        ("protocol_state", clean(r.protocol_state)),
        ("protocol_name", clean(r.protocol_name)),
        ("client_address", clean(&r.client_address)),
        ("client_name", clean(r.client_name)),
        ("reverse_client_name", clean(r.reverse_client_name)),
        ("helo_name", clean(r.helo_name)),
        ("sender", clean(r.sender)),
        ("recipient", clean(r.recipient)),
        ("recipient_count", r.recipient_count.to_string()),
        ("queue_id", clean(r.queue_id)),
        ("instance", clean(&r.instance)),
        ("size", r.size.to_string()),
        ("sasl_username", clean(r.sasl_username)),
    ];
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(format!("{k}={v}\n").as_bytes());
    }
    out.extend_from_slice(b"\n");
    out
}

/// The `action=` of an answer, or None if there is none.
pub fn parse_answer(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("action="))
        .map(|a| a.trim().to_owned())
}

/// What an action means for the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (`OK`, `DUNNO`, or an action Postel does not act on).
    Accept,
    /// Accepted, and this header goes at the top of the message.
    Prepend(String),
    /// Accepted, and the message is held (not delivered) until released.
    Hold,
    /// Refused with this reply.
    Refuse(Reply),
}

/// The reply for `code` and `text`: the text's enhanced code if it has
/// one of the right class, else `default_enhanced`.
fn refusal(code: u16, text: &str, default_enhanced: (u8, u16, u16)) -> Reply {
    let text = text.trim();
    let (enhanced, rest) = match text.split_once(' ') {
        Some((first, rest)) if is_enhanced(first, code) => (parse_enhanced(first), rest),
        _ if is_enhanced(text, code) => (parse_enhanced(text), ""),
        _ => (Some(default_enhanced), text),
    };
    let rest: String = rest.chars().filter(|c| !c.is_control()).take(400).collect();
    let words = if rest.is_empty() {
        "Policy rejection"
    } else {
        &rest
    };
    Reply::new(
        code,
        enhanced.map(|(a, b, c)| EnhancedCode(a, b, c)),
        words.to_owned(),
    )
}

fn is_enhanced(s: &str, code: u16) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == (code / 100).to_string()
}

fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut p = s.split('.');
    Some((
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    ))
}

/// What an `action=` means (Postfix's access(5) actions).
pub fn verdict(action: &str) -> Verdict {
    let (word, text) = action.split_once(' ').unwrap_or((action, ""));
    let upper = word.to_ascii_uppercase();
    if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) {
        let code: u16 = word.parse().unwrap_or(450);
        return match code {
            400..=499 => Verdict::Refuse(refusal(code, text, (4, 7, 1))),
            500..=599 => Verdict::Refuse(refusal(code, text, (5, 7, 1))),
            _ => Verdict::Accept,
        };
    }
    match upper.as_str() {
        "REJECT" => Verdict::Refuse(refusal(554, text, (5, 7, 1))),
        "DEFER" | "DEFER_IF_PERMIT" => Verdict::Refuse(refusal(450, text, (4, 7, 1))),
        "PREPEND" => {
            let h: String = text.chars().filter(|c| !c.is_control()).collect();
            match h.split_once(':') {
                Some((name, _))
                    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    Verdict::Prepend(h)
                }
                _ => Verdict::Accept,
            }
        }
        "HOLD" => Verdict::Hold,
        // OK, DUNNO, DEFER_IF_REJECT (nothing here rejects), and what
        // Postel does not act on (FILTER, REDIRECT...): the recipient goes
        // on as the routing policy decided.
        _ => Verdict::Accept,
    }
}

/// A connection to a policy server, over TCP or a local socket.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Asks the policy server at `addr`: its `action=`.
///
/// # Errors
/// When it cannot be reached, does not answer within `timeout`, or does
/// not answer with an action.
pub async fn ask(
    addr: &PolicyAddr,
    req: &Request<'_>,
    timeout: Duration,
) -> Result<String, String> {
    let bytes = request(req);
    let exchange = async {
        let reach = |e: std::io::Error| format!("cannot reach the policy server {addr}: {e}");
        let stream: Box<dyn Stream> = match addr {
            PolicyAddr::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a).await.map_err(reach)?),
            PolicyAddr::Unix(p) => {
                Box::new(tokio::net::UnixStream::connect(p).await.map_err(reach)?)
            }
        };
        let mut stream = BufReader::new(stream);
        stream
            .get_mut()
            .write_all(&bytes)
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        loop {
            let mut line = String::new();
            let n = (&mut stream)
                .take((MAX_ANSWER - answer.len().min(MAX_ANSWER)) as u64 + 1)
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 || answer.len() + line.len() > MAX_ANSWER {
                break;
            }
            if line == "\n" || line == "\r\n" {
                break;
            }
            answer.push_str(&line);
        }
        parse_answer(&answer).ok_or_else(|| format!("the policy server {addr} gave no action"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("the policy server {addr} did not answer in {timeout:?}"))?
}

/// The reply when no policy server could decide (Postfix's default).
pub fn unavailable() -> Reply {
    Reply::new(
        451,
        Some(EnhancedCode(4, 3, 5)),
        "Server configuration problem",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_name_value_lines_and_an_empty_line() {
        let r = Request {
            protocol_state: "RCPT",
            protocol_name: "ESMTP",
            client_address: "192.0.2.1".into(),
            helo_name: "c.test",
            sender: "a@b.test\r\nrecipient=evil@x",
            recipient: "c@d.test",
            recipient_count: 0,
            ..Request::default()
        };
        let text = String::from_utf8(request(&r)).expect("utf-8");
        assert!(text.starts_with("request=smtpd_access_policy\nprotocol_state=RCPT\n"));
        assert!(
            text.contains("\nsender=a@b.testrecipient=evil@x\n"),
            "no line injection"
        );
        assert_eq!(text.matches("\nrecipient=").count(), 1);
        assert!(text.ends_with("\n\n"));
    }

    #[test]
    fn actions_map_as_postfix_maps_them() {
        assert_eq!(verdict("DUNNO"), Verdict::Accept);
        assert_eq!(verdict("OK"), Verdict::Accept);
        assert_eq!(verdict("dunno"), Verdict::Accept);
        let Verdict::Refuse(r) = verdict("DEFER_IF_PERMIT Greylisted, see http://x/") else {
            panic!("refused");
        };
        assert_eq!(r.to_wire(), "450 4.7.1 Greylisted, see http://x/\r\n");
        let Verdict::Refuse(r) = verdict("REJECT") else {
            panic!("refused")
        };
        assert_eq!(r.to_wire(), "554 5.7.1 Policy rejection\r\n");
        let Verdict::Refuse(r) = verdict("550 5.7.23 SPF fail") else {
            panic!("refused")
        };
        assert_eq!(r.to_wire(), "550 5.7.23 SPF fail\r\n");
        let Verdict::Refuse(r) = verdict("451 4.2.0 wait") else {
            panic!("refused")
        };
        assert_eq!(r.to_wire(), "451 4.2.0 wait\r\n");
        // An enhanced code of the wrong class is not believed.
        let Verdict::Refuse(r) = verdict("550 4.1.1 odd") else {
            panic!("refused")
        };
        assert_eq!(r.to_wire(), "550 5.7.1 4.1.1 odd\r\n");
        assert_eq!(
            verdict("PREPEND X-Greylist: delayed 61 seconds"),
            Verdict::Prepend("X-Greylist: delayed 61 seconds".into())
        );
        assert_eq!(verdict("PREPEND no colon here"), Verdict::Accept);
        assert_eq!(verdict("HOLD"), Verdict::Hold);
        assert_eq!(parse_answer("action=DUNNO\n"), Some("DUNNO".into()));
        assert_eq!(parse_answer("nothing\n"), None);
    }
}
