//! One connection to one filter, for one SMTP session: the negotiation,
//! then each event with its macros, and the filter's answer. Events the
//! filter said it does not want are not sent (`SMFIP_NO*`), answers it
//! said it will not give are not awaited (`SMFIP_NR_*`), `SMFIR_SKIP`
//! ends the body early, and `SMFIR_PROGRESS` restarts the timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postel_proto::{EnhancedCode, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::{self, Decoder, Negotiated, Stage, cmd, proto, resp};

/// Where a filter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `HOST:PORT`.
    Tcp(String, u16),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl Address {
    /// `HOST:PORT`, `inet:HOST:PORT` or `unix:/path`.
    pub fn parse(s: &str) -> Option<Address> {
        if let Some(p) = s.strip_prefix("unix:") {
            return p.starts_with('/').then(|| Address::Unix(PathBuf::from(p)));
        }
        let s = s.strip_prefix("inet:").unwrap_or(s);
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse().ok().filter(|p| *p > 0)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| Address::Tcp(host.to_owned(), port))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(h, p) if h.contains(':') => write!(f, "[{h}]:{p}"),
            Address::Tcp(h, p) => write!(f, "{h}:{p}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why a filter could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No connection, or it broke.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Bytes that are not the protocol, or an answer out of place.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// What a filter said of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Accepted: no more events for this message (for the connection, at
    /// CONNECT and HELO).
    Accept,
    /// Refused with this reply (`SMFIR_REJECT`, `SMFIR_TEMPFAIL`,
    /// `SMFIR_REPLYCODE`, `SMFIR_SHUTDOWN`).
    Reject(Reply),
    /// Accepted and thrown away.
    Discard,
}

/// A change a filter asks for at the end of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Append a header field.
    AddHeader(String, String),
    /// Insert a header field at a position (0: the top).
    InsertHeader(u32, String, String),
    /// Change the `n`th (from 1) field of that name; an empty value
    /// deletes it.
    ChangeHeader(u32, String, String),
    /// The new body (CRLF line ends).
    ReplaceBody(Vec<u8>),
    /// The new sender, and its ESMTP arguments.
    ChangeFrom(String, Vec<String>),
    /// A new recipient, and its ESMTP arguments.
    AddRecipient(String, Vec<String>),
    /// A recipient to drop.
    DeleteRecipient(String),
    /// Hold the message, with a reason.
    Quarantine(String),
}

/// The longest header value sent: libmilter refuses packets over 64 KiB.
const MAX_HEADER_VALUE: usize = 60_000;

/// `SMFIR_PROGRESS` answers to one event, each restarting the timeout:
/// a filter cannot hold a session for ever.
const MAX_PROGRESS: u32 = 100;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, negotiated connection to a filter.
pub struct Milter {
    stream: Box<dyn Stream>,
    decoder: Decoder,
    /// What was agreed.
    pub negotiated: Negotiated,
    timeout: Duration,
    /// The rest of this message's body is not wanted (`SMFIR_SKIP`).
    skip_body: bool,
}

/// Name and value pairs of macros.
pub type Macros<'a> = &'a [(&'a str, String)];

impl Milter {
    /// Connects and negotiates, within `timeout` for each step.
    ///
    /// # Errors
    /// When the filter cannot be reached or negotiates what Postel cannot
    /// do.
    pub async fn open(address: &Address, timeout: Duration) -> Result<Milter, Error> {
        let io = |e: std::io::Error| Error::Io(format!("cannot reach the milter {address}: {e}"));
        let connect = async {
            let stream: Box<dyn Stream> = match address {
                Address::Tcp(h, p) => Box::new(
                    tokio::net::TcpStream::connect((h.as_str(), *p))
                        .await
                        .map_err(io)?,
                ),
                Address::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.map_err(io)?),
            };
            Ok::<_, Error>(stream)
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        let mut m = Milter {
            stream,
            decoder: Decoder::default(),
            negotiated: Negotiated {
                version: wire::VERSION,
                actions: 0,
                protocol: 0,
                macros: Default::default(),
            },
            timeout,
            skip_body: false,
        };
        m.write(&wire::optneg()).await?;
        let (c, data) = m.read().await?;
        if c != cmd::OPTNEG {
            return Err(Error::Protocol(format!(
                "answered the negotiation with {:?}",
                c as char
            )));
        }
        m.negotiated = wire::read_optneg(&data).map_err(Error::Protocol)?;
        Ok(m)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        tokio::time::timeout(self.timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
            .map_err(|e| Error::Io(e.to_string()))
    }

    /// The next packet, within the timeout.
    async fn read(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(p) = self.decoder.next_packet().map_err(Error::Protocol)? {
                return Ok(p);
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut buf))
                .await
                .map_err(|_| Error::Timeout(self.timeout))?
                .map_err(|e| Error::Io(e.to_string()))?;
            if n == 0 {
                return Err(Error::Io("the milter closed the connection".into()));
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    fn wants(&self, nosend: u32) -> bool {
        self.negotiated.protocol & nosend == 0
    }

    /// The macros packet for `stage`: those the filter asked for, or all.
    fn macros(&self, stage: Stage, macros: Macros<'_>, out: &mut Vec<u8>) {
        let wanted = self.negotiated.macros[stage as usize].as_ref();
        let mut data = vec![stage.command()];
        for (name, value) in macros {
            let bare = name.trim_start_matches('{').trim_end_matches('}');
            let asked = wanted.is_none_or(|w| {
                w.iter()
                    .any(|n| n == name || n.trim_start_matches('{').trim_end_matches('}') == bare)
            });
            if asked {
                wire::cstr(name.as_bytes(), &mut data);
                wire::cstr(value.as_bytes(), &mut data);
            }
        }
        if data.len() > 1 {
            wire::packet(cmd::MACRO, &data, out);
        }
    }

    /// Sends one event (its macros first) and reads its verdict, unless
    /// the filter does not want it (`nosend`) or will not answer
    /// (`noreply`).
    async fn event(
        &mut self,
        stage: Option<(Stage, Macros<'_>)>,
        command: u8,
        data: &[u8],
        nosend: u32,
        noreply: u32,
    ) -> Result<Verdict, Error> {
        let mut out = Vec::new();
        if let Some((stage, macros)) = stage {
            self.macros(stage, macros, &mut out);
        }
        if self.wants(nosend) {
            wire::packet(command, data, &mut out);
        }
        if !out.is_empty() {
            self.write(&out).await?;
        }
        if !self.wants(nosend) || self.negotiated.protocol & noreply != 0 {
            return Ok(Verdict::Continue);
        }
        let mut progress = 0;
        loop {
            let (c, data) = self.read().await?;
            if c == resp::PROGRESS {
                progress += 1;
                if progress > MAX_PROGRESS {
                    return Err(Error::Protocol("still working after too long".into()));
                }
                continue;
            }
            if c == resp::SKIP && command == cmd::BODY {
                self.skip_body = true;
                return Ok(Verdict::Continue);
            }
            return verdict(c, &data).ok_or_else(|| {
                Error::Protocol(format!(
                    "answered {:?} with {:?}",
                    command as char, c as char
                ))
            });
        }
    }

    /// The connection: the client's name and address.
    ///
    /// # Errors
    /// The filter failed.
    pub async fn connect(
        &mut self,
        macros: Macros<'_>,
        client_name: &str,
        client: Option<SocketAddr>,
    ) -> Result<Verdict, Error> {
        let mut data = Vec::new();
        wire::cstr(client_name.as_bytes(), &mut data);
        match client {
            Some(a) => {
                data.push(if a.is_ipv4() { b'4' } else { b'6' });
                data.extend_from_slice(&a.port().to_be_bytes());
                wire::cstr(a.ip().to_string().as_bytes(), &mut data);
            }
            None => data.push(b'U'),
        }
        let stage = Some((Stage::Connect, macros));
        self.event(stage, cmd::CONNECT, &data, proto::NOCONNECT, proto::NR_CONN)
            .await
    }

    /// HELO or EHLO and its name.
    ///
    /// # Errors
    /// The filter failed.
    pub async fn helo(&mut self, macros: Macros<'_>, name: &str) -> Result<Verdict, Error> {
        let mut data = Vec::new();
        wire::cstr(name.as_bytes(), &mut data);
        let stage = Some((Stage::Helo, macros));
        self.event(stage, cmd::HELO, &data, proto::NOHELO, proto::NR_HELO)
            .await
    }

    /// MAIL: `<sender>` and its ESMTP arguments.
    ///
    /// # Errors
    /// The filter failed.
    pub async fn mail(&mut self, macros: Macros<'_>, args: &[String]) -> Result<Verdict, Error> {
        let mut data = Vec::new();
        for a in args {
            wire::cstr(a.as_bytes(), &mut data);
        }
        let stage = Some((Stage::Mail, macros));
        self.skip_body = false;
        self.event(stage, cmd::MAIL, &data, proto::NOMAIL, proto::NR_MAIL)
            .await
    }

    /// RCPT: `<recipient>` and its ESMTP arguments.
    ///
    /// # Errors
    /// The filter failed.
    pub async fn rcpt(&mut self, macros: Macros<'_>, args: &[String]) -> Result<Verdict, Error> {
        let mut data = Vec::new();
        for a in args {
            wire::cstr(a.as_bytes(), &mut data);
        }
        let stage = Some((Stage::Rcpt, macros));
        self.event(stage, cmd::RCPT, &data, proto::NORCPT, proto::NR_RCPT)
            .await
    }

    /// The message: DATA, each header field, the end of the header, the
    /// body in chunks, and the end of the body, whose answer comes with
    /// the filter's changes. A verdict other than Continue before the end
    /// ends the message there (with no changes).
    ///
    /// # Errors
    /// The filter failed.
    pub async fn message(
        &mut self,
        macros: &MessageMacros<'_>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(Verdict, Vec<Edit>), Error> {
        let stage = Some((Stage::Data, macros.data));
        let v = self
            .event(stage, cmd::DATA, &[], proto::NODATA, proto::NR_DATA)
            .await?;
        if v != Verdict::Continue {
            return Ok((v, Vec::new()));
        }
        let lead = self.negotiated.protocol & proto::HDR_LEADSPC != 0;
        if self.wants(proto::NOHDRS) {
            for (name, value) in headers {
                let mut data = Vec::new();
                wire::cstr(name.as_bytes(), &mut data);
                let value = if lead {
                    value.as_str()
                } else {
                    value.strip_prefix(' ').unwrap_or(value)
                };
                // Folded lines are sent joined by a newline, as Sendmail;
                // a value is cut short of libmilter's 64 KiB packet limit.
                let mut value = value.replace("\r\n", "\n");
                if value.len() > MAX_HEADER_VALUE {
                    let mut end = MAX_HEADER_VALUE;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                }
                wire::cstr(value.as_bytes(), &mut data);
                let v = self
                    .event(None, cmd::HEADER, &data, proto::NOHDRS, proto::NR_HDR)
                    .await?;
                if v != Verdict::Continue {
                    return Ok((v, Vec::new()));
                }
            }
        }
        let stage = Some((Stage::Eoh, macros.eoh));
        let v = self
            .event(stage, cmd::EOH, &[], proto::NOEOH, proto::NR_EOH)
            .await?;
        if v != Verdict::Continue {
            return Ok((v, Vec::new()));
        }
        if self.wants(proto::NOBODY) {
            for chunk in body.chunks(wire::CHUNK) {
                if self.skip_body {
                    break;
                }
                let v = self
                    .event(None, cmd::BODY, chunk, proto::NOBODY, proto::NR_BODY)
                    .await?;
                if v != Verdict::Continue {
                    return Ok((v, Vec::new()));
                }
            }
        }
        self.end_of_message(macros.eom).await
    }

    /// The end of the body: the changes, then the verdict.
    async fn end_of_message(&mut self, macros: Macros<'_>) -> Result<(Verdict, Vec<Edit>), Error> {
        let mut out = Vec::new();
        self.macros(Stage::Eom, macros, &mut out);
        wire::packet(cmd::BODYEOB, &[], &mut out);
        self.write(&out).await?;
        let mut edits = Vec::new();
        let mut body: Option<Vec<u8>> = None;
        // Everything a filter sends at the end of one message is bounded.
        let mut received = 0usize;
        let mut progress = 0;
        loop {
            let (c, data) = self.read().await?;
            received += data.len();
            if received > 2 * crate::MAX_BODY {
                return Err(Error::Protocol(
                    "too much data at the end of the message".into(),
                ));
            }
            if c == resp::PROGRESS {
                progress += 1;
                if progress > MAX_PROGRESS {
                    return Err(Error::Protocol("still working after too long".into()));
                }
                continue;
            }
            if c == resp::REPLBODY {
                let b = body.get_or_insert_with(Vec::new);
                if b.len() + data.len() > crate::MAX_BODY {
                    return Err(Error::Protocol(
                        "a replacement body over the size limit".into(),
                    ));
                }
                b.extend_from_slice(&data);
                continue;
            }
            if let Some(v) = verdict(c, &data) {
                if let Some(b) = body.take() {
                    edits.push(Edit::ReplaceBody(b));
                }
                return Ok((v, edits));
            }
            let lead = self.negotiated.protocol & proto::HDR_LEADSPC != 0;
            match edit(c, &data).map(|e| with_space(e, lead)) {
                Some(e) if edits.len() < crate::MAX_EDITS => edits.push(e),
                Some(_) => return Err(Error::Protocol("too many changes".into())),
                None => {
                    return Err(Error::Protocol(format!(
                        "{:?} at the end of the message",
                        c as char
                    )));
                }
            }
        }
    }

    /// The message is abandoned (RSET, or refused elsewhere): the filter
    /// forgets it and waits for the next MAIL.
    ///
    /// # Errors
    /// The filter failed.
    pub async fn abort(&mut self) -> Result<(), Error> {
        let mut out = Vec::new();
        wire::packet(cmd::ABORT, &[], &mut out);
        self.write(&out).await
    }

    /// Closes the connection politely.
    pub async fn quit(mut self) {
        let mut out = Vec::new();
        wire::packet(cmd::QUIT, &[], &mut out);
        let _ = self.write(&out).await;
    }
}

/// The macros of the stages of a message.
#[derive(Debug, Clone, Copy)]
pub struct MessageMacros<'a> {
    /// With DATA.
    pub data: Macros<'a>,
    /// With the end of the header.
    pub eoh: Macros<'a>,
    /// With the end of the body.
    pub eom: Macros<'a>,
}

/// A header change's value as it goes after the colon: with the one space
/// that Sendmail's filters leave out, unless the filter keeps its own
/// (`SMFIP_HDR_LEADSPC`).
fn with_space(e: Edit, lead: bool) -> Edit {
    let space = |v: String| if lead { v } else { format!(" {v}") };
    match e {
        Edit::AddHeader(n, v) => Edit::AddHeader(n, space(v)),
        Edit::InsertHeader(i, n, v) => Edit::InsertHeader(i, n, space(v)),
        Edit::ChangeHeader(i, n, v) if !v.is_empty() => Edit::ChangeHeader(i, n, space(v)),
        e => e,
    }
}

/// A verdict response, or None for any other.
fn verdict(c: u8, data: &[u8]) -> Option<Verdict> {
    Some(match c {
        resp::CONTINUE => Verdict::Continue,
        resp::ACCEPT => Verdict::Accept,
        resp::DISCARD => Verdict::Discard,
        resp::REJECT => Verdict::Reject(Reply::new(
            550,
            Some(EnhancedCode(5, 7, 1)),
            "Command rejected",
        )),
        resp::TEMPFAIL => Verdict::Reject(Reply::new(
            451,
            Some(EnhancedCode(4, 7, 1)),
            "Service unavailable - try again later",
        )),
        resp::SHUTDOWN | resp::CONN_FAIL => Verdict::Reject(Reply::new(
            421,
            Some(EnhancedCode(4, 7, 0)),
            "Service unavailable - closing connection",
        )),
        resp::REPLYCODE => Verdict::Reject(reply_code(data)),
        _ => return None,
    })
}

/// An `SMFIR_REPLYCODE` text as a reply: a 4xx or 5xx code, an enhanced
/// code of the same class if given, one or more lines. Anything else is a
/// temporary failure, not the filter's words.
fn reply_code(data: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(data.strip_suffix(&[0]).unwrap_or(data)).replace("%%", "%");
    let mut code = None;
    let mut enhanced = None;
    let mut lines = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()).take(20) {
        let (c, rest) = line.split_at(line.len().min(3));
        let Ok(c) = c.parse::<u16>() else { break };
        if !(400..600).contains(&c) || code.is_some_and(|k| k != c) {
            break;
        }
        code = Some(c);
        let rest = rest.get(1..).unwrap_or("");
        let (e, words) = match rest.split_once(' ') {
            Some((e, w)) if parse_enhanced(e, c).is_some() => (parse_enhanced(e, c), w),
            _ if parse_enhanced(rest, c).is_some() => (parse_enhanced(rest, c), ""),
            _ => (None, rest),
        };
        enhanced = enhanced.or(e);
        lines.push(
            words
                .chars()
                .filter(|ch| !ch.is_control())
                .take(500)
                .collect::<String>(),
        );
    }
    match code {
        Some(c) if !lines.is_empty() => Reply::multi(c, enhanced, lines),
        _ => Reply::new(
            451,
            Some(EnhancedCode(4, 7, 1)),
            "Service unavailable - try again later",
        ),
    }
}

fn parse_enhanced(s: &str, code: u16) -> Option<EnhancedCode> {
    let mut p = s.split('.');
    let class: u8 = p.next()?.parse().ok()?;
    let subject: u16 = p.next()?.parse().ok()?;
    let detail: u16 = p.next()?.parse().ok()?;
    (p.next().is_none() && u16::from(class) == code / 100 && subject < 1000 && detail < 1000)
        .then_some(EnhancedCode(class, subject, detail))
}

/// A change response, or None for any other.
fn edit(c: u8, data: &[u8]) -> Option<Edit> {
    let index = || {
        data.get(0..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let after_index = || wire::strings(data.get(4..).unwrap_or(&[]));
    let two = |v: Vec<String>| -> Option<(String, String)> {
        let mut i = v.into_iter();
        Some((i.next()?, i.next().unwrap_or_default()))
    };
    Some(match c {
        resp::ADDHEADER => {
            let (n, v) = two(wire::strings(data))?;
            Edit::AddHeader(n, v)
        }
        resp::INSHEADER => {
            let (n, v) = two(after_index())?;
            Edit::InsertHeader(index()?, n, v)
        }
        resp::CHGHEADER => {
            let (n, v) = two(after_index())?;
            Edit::ChangeHeader(index()?, n, v)
        }
        resp::CHGFROM => {
            let mut v = wire::strings(data).into_iter();
            Edit::ChangeFrom(v.next()?, v.collect())
        }
        resp::ADDRCPT => Edit::AddRecipient(wire::strings(data).into_iter().next()?, Vec::new()),
        resp::ADDRCPT_PAR => {
            let mut v = wire::strings(data).into_iter();
            Edit::AddRecipient(v.next()?, v.collect())
        }
        resp::DELRCPT => Edit::DeleteRecipient(wire::strings(data).into_iter().next()?),
        resp::QUARANTINE => {
            Edit::Quarantine(wire::strings(data).into_iter().next().unwrap_or_default())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_postfix_writes_them() {
        assert_eq!(
            Address::parse("127.0.0.1:11332"),
            Some(Address::Tcp("127.0.0.1".into(), 11332))
        );
        assert_eq!(
            Address::parse("inet:localhost:8891"),
            Some(Address::Tcp("localhost".into(), 8891))
        );
        assert_eq!(
            Address::parse("unix:/run/milter.sock"),
            Some(Address::Unix("/run/milter.sock".into()))
        );
        assert_eq!(
            Address::parse("[::1]:25").map(|a| a.to_string()),
            Some("[::1]:25".into())
        );
        for bad in ["host", "host:0", "unix:relative", ":25"] {
            assert_eq!(Address::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reply_codes_are_taken_only_when_well_formed() {
        let r = reply_code(b"554 5.7.1 Gtube pattern\0");
        assert_eq!(r.to_wire(), "554 5.7.1 Gtube pattern\r\n");
        let r = reply_code(b"550-5.7.1 one\r\n550 5.7.1 two\0");
        assert_eq!(r.to_wire(), "550-5.7.1 one\r\n550 5.7.1 two\r\n");
        let r = reply_code(b"450 4.2.0 100%% sure");
        assert_eq!(r.to_wire(), "450 4.2.0 100% sure\r\n");
        // A 2xx is not a refusal, and junk is not the filter's words.
        for bad in [&b"250 ok"[..], b"hello", b""] {
            assert_eq!(reply_code(bad).code, 451, "{bad:?}");
        }
        // An enhanced code of the wrong class is kept as text.
        let odd = reply_code(b"550 4.1.1 odd");
        assert_eq!(
            (odd.to_wire().as_str(), odd.enhanced),
            ("550 4.1.1 odd\r\n", None)
        );
    }

    #[test]
    fn changes_are_read_with_their_fields() {
        assert_eq!(
            edit(resp::ADDHEADER, b"X-Spam\0Yes\0"),
            Some(Edit::AddHeader("X-Spam".into(), "Yes".into()))
        );
        let mut ins = 0u32.to_be_bytes().to_vec();
        ins.extend_from_slice(b"DKIM-Signature\0v=1\0");
        assert_eq!(
            edit(resp::INSHEADER, &ins),
            Some(Edit::InsertHeader(0, "DKIM-Signature".into(), "v=1".into()))
        );
        let mut chg = 2u32.to_be_bytes().to_vec();
        chg.extend_from_slice(b"Subject\0\0");
        assert_eq!(
            edit(resp::CHGHEADER, &chg),
            Some(Edit::ChangeHeader(2, "Subject".into(), String::new()))
        );
        assert_eq!(
            edit(resp::ADDRCPT_PAR, b"<x@y.test>\0NOTIFY=NEVER\0"),
            Some(Edit::AddRecipient(
                "<x@y.test>".into(),
                vec!["NOTIFY=NEVER".into()]
            ))
        );
        assert_eq!(edit(resp::INSHEADER, b"ab"), None, "too short");
    }
}
