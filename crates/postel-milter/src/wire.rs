//! The milter wire format, as Sendmail's libmilter and Postfix's
//! `milter8.c` speak it: every packet is a 4-octet big-endian length (the
//! command octet included), a command octet, and its data. Strings are
//! NUL-terminated. This file frames packets, builds the MTA's commands and
//! reads the filter's responses; it does no IO.

/// The protocol version Postel speaks (Sendmail 8.14, Postfix 2.6+).
pub const VERSION: u32 = 6;

/// The largest packet accepted from a filter: a body replacement chunk is
/// at most 64 KiB in libmilter; 1 MiB leaves room for any sane filter.
pub const MAX_PACKET: usize = 1 << 20;

/// The largest body chunk sent (libmilter's `MILTER_CHUNK_SIZE`).
pub const CHUNK: usize = 65_535;

/// MTA commands (`SMFIC_*`).
pub mod cmd {
    /// Abort the current message.
    pub const ABORT: u8 = b'A';
    /// A body chunk.
    pub const BODY: u8 = b'B';
    /// Connection information.
    pub const CONNECT: u8 = b'C';
    /// Macros for the next command.
    pub const MACRO: u8 = b'D';
    /// End of the body.
    pub const BODYEOB: u8 = b'E';
    /// HELO/EHLO.
    pub const HELO: u8 = b'H';
    /// A header field.
    pub const HEADER: u8 = b'L';
    /// MAIL FROM.
    pub const MAIL: u8 = b'M';
    /// End of the header.
    pub const EOH: u8 = b'N';
    /// Option negotiation.
    pub const OPTNEG: u8 = b'O';
    /// Close the connection.
    pub const QUIT: u8 = b'Q';
    /// RCPT TO.
    pub const RCPT: u8 = b'R';
    /// DATA.
    pub const DATA: u8 = b'T';
}

/// Filter responses (`SMFIR_*`).
pub mod resp {
    /// Add a recipient.
    pub const ADDRCPT: u8 = b'+';
    /// Delete a recipient.
    pub const DELRCPT: u8 = b'-';
    /// Add a recipient with ESMTP arguments.
    pub const ADDRCPT_PAR: u8 = b'2';
    /// 421: close the connection.
    pub const SHUTDOWN: u8 = b'4';
    /// Accept: no more events for this message (or connection).
    pub const ACCEPT: u8 = b'a';
    /// Replace the body (a chunk of it).
    pub const REPLBODY: u8 = b'b';
    /// Continue.
    pub const CONTINUE: u8 = b'c';
    /// Accept and throw away.
    pub const DISCARD: u8 = b'd';
    /// Change the sender.
    pub const CHGFROM: u8 = b'e';
    /// Fail the connection.
    pub const CONN_FAIL: u8 = b'f';
    /// Add a header field at the end.
    pub const ADDHEADER: u8 = b'h';
    /// Insert a header field at an index.
    pub const INSHEADER: u8 = b'i';
    /// The macros the filter wants (only in the negotiation).
    pub const SETSYMLIST: u8 = b'l';
    /// Change or delete a header field.
    pub const CHGHEADER: u8 = b'm';
    /// Still working: restart the timeout.
    pub const PROGRESS: u8 = b'p';
    /// Quarantine the message.
    pub const QUARANTINE: u8 = b'q';
    /// Reject (550 5.7.1).
    pub const REJECT: u8 = b'r';
    /// Skip the rest of this kind of event (body chunks).
    pub const SKIP: u8 = b's';
    /// Temporary failure (451 4.7.1).
    pub const TEMPFAIL: u8 = b't';
    /// A whole SMTP reply.
    pub const REPLYCODE: u8 = b'y';
}

/// Protocol flags (`SMFIP_*`): what the filter does not want sent, and to
/// what it will not reply.
pub mod proto {
    /// No CONNECT.
    pub const NOCONNECT: u32 = 1 << 0;
    /// No HELO.
    pub const NOHELO: u32 = 1 << 1;
    /// No MAIL.
    pub const NOMAIL: u32 = 1 << 2;
    /// No RCPT.
    pub const NORCPT: u32 = 1 << 3;
    /// No body.
    pub const NOBODY: u32 = 1 << 4;
    /// No headers.
    pub const NOHDRS: u32 = 1 << 5;
    /// No end of header.
    pub const NOEOH: u32 = 1 << 6;
    /// No reply to a header.
    pub const NR_HDR: u32 = 1 << 7;
    /// No unknown commands.
    pub const NOUNKNOWN: u32 = 1 << 8;
    /// No DATA.
    pub const NODATA: u32 = 1 << 9;
    /// The MTA understands SMFIR_SKIP.
    pub const SKIP: u32 = 1 << 10;
    /// The filter wants rejected recipients too.
    pub const RCPT_REJ: u32 = 1 << 11;
    /// No reply to CONNECT.
    pub const NR_CONN: u32 = 1 << 12;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 1 << 13;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 1 << 14;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 1 << 15;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 1 << 16;
    /// No reply to unknown commands.
    pub const NR_UNKN: u32 = 1 << 17;
    /// No reply to end of header.
    pub const NR_EOH: u32 = 1 << 18;
    /// No reply to a body chunk.
    pub const NR_BODY: u32 = 1 << 19;
    /// Header values keep their leading space.
    pub const HDR_LEADSPC: u32 = 1 << 20;
    /// Every flag Postel honours: all of version 6 but RCPT_REJ (refused
    /// recipients are not sent) and the unknown-command ones (never sent).
    pub const OFFERED: u32 = NOCONNECT
        | NOHELO
        | NOMAIL
        | NORCPT
        | NOBODY
        | NOHDRS
        | NOEOH
        | NR_HDR
        | NOUNKNOWN
        | NODATA
        | SKIP
        | NR_CONN
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKN
        | NR_EOH
        | NR_BODY
        | HDR_LEADSPC;
}

/// Actions (`SMFIF_*`) a filter may take at the end of a message.
pub mod action {
    /// Add header fields.
    pub const ADDHDRS: u32 = 1 << 0;
    /// Replace the body.
    pub const CHGBODY: u32 = 1 << 1;
    /// Add recipients.
    pub const ADDRCPT: u32 = 1 << 2;
    /// Delete recipients.
    pub const DELRCPT: u32 = 1 << 3;
    /// Change or delete header fields.
    pub const CHGHDRS: u32 = 1 << 4;
    /// Quarantine.
    pub const QUARANTINE: u32 = 1 << 5;
    /// Change the sender.
    pub const CHGFROM: u32 = 1 << 6;
    /// Add recipients with ESMTP arguments.
    pub const ADDRCPT_PAR: u32 = 1 << 7;
    /// Ask for macros.
    pub const SETSYMLIST: u32 = 1 << 8;
    /// Everything Postel carries out.
    pub const OFFERED: u32 = ADDHDRS
        | CHGBODY
        | ADDRCPT
        | DELRCPT
        | CHGHDRS
        | QUARANTINE
        | CHGFROM
        | ADDRCPT_PAR
        | SETSYMLIST;
}

/// The stages macros are sent at (`SMFIM_*`), as indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// With CONNECT.
    Connect = 0,
    /// With HELO.
    Helo = 1,
    /// With MAIL.
    Mail = 2,
    /// With RCPT.
    Rcpt = 3,
    /// With DATA.
    Data = 4,
    /// With the end of the body.
    Eom = 5,
    /// With the end of the header.
    Eoh = 6,
}

impl Stage {
    /// The command whose macros these are (the SMFIC_MACRO code).
    pub fn command(self) -> u8 {
        match self {
            Stage::Connect => cmd::CONNECT,
            Stage::Helo => cmd::HELO,
            Stage::Mail => cmd::MAIL,
            Stage::Rcpt => cmd::RCPT,
            Stage::Data => cmd::DATA,
            Stage::Eom => cmd::BODYEOB,
            Stage::Eoh => cmd::EOH,
        }
    }
}

/// Appends one packet: `command` and `data`.
pub fn packet(command: u8, data: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    out.extend_from_slice(data);
}

/// Appends `s` and its NUL, with any NUL inside it dropped (a NUL would
/// end the string early, and shift every field after it).
pub fn cstr(s: &[u8], out: &mut Vec<u8>) {
    out.extend(s.iter().copied().filter(|b| *b != 0));
    out.push(0);
}

/// The negotiation the MTA opens with.
pub fn optneg() -> Vec<u8> {
    let mut data = Vec::with_capacity(12);
    data.extend_from_slice(&VERSION.to_be_bytes());
    data.extend_from_slice(&action::OFFERED.to_be_bytes());
    data.extend_from_slice(&proto::OFFERED.to_be_bytes());
    let mut out = Vec::new();
    packet(cmd::OPTNEG, &data, &mut out);
    out
}

/// What the filter answered to the negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Its version.
    pub version: u32,
    /// The actions it may take (within those offered).
    pub actions: u32,
    /// Its protocol flags (within those offered).
    pub protocol: u32,
    /// The macros it asked for, per stage (`Stage as usize`); None: the
    /// defaults.
    pub macros: [Option<Vec<String>>; 7],
}

/// Reads the filter's negotiation reply.
///
/// # Errors
/// When it is not one, or asks for a version or flags Postel cannot give.
pub fn read_optneg(data: &[u8]) -> Result<Negotiated, String> {
    let word = |i: usize| -> Option<u32> {
        data.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(version), Some(actions), Some(protocol)) = (word(0), word(4), word(8)) else {
        return Err("a negotiation reply shorter than 12 octets".into());
    };
    if !(2..=VERSION).contains(&version) {
        return Err(format!("protocol version {version} (Postel speaks 2 to 6)"));
    }
    if actions & !action::OFFERED != 0 {
        return Err(format!("actions {actions:#x} beyond those offered"));
    }
    // Protocol flags beyond those offered are ignored, as Postfix does
    // (actions beyond those offered are not: the filter would count on
    // them).
    let protocol = protocol & proto::OFFERED;
    let mut macros: [Option<Vec<String>>; 7] = Default::default();
    let mut rest = &data[12..];
    while rest.len() >= 4 {
        let stage = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let names = String::from_utf8_lossy(&rest[..end]);
        if let Some(slot) = macros.get_mut(stage) {
            *slot = Some(
                names
                    .split([' ', ','])
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    Ok(Negotiated {
        version,
        actions,
        protocol,
        macros,
    })
}

/// Packets, read from the filter's bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Feeds bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `(command, data)`, if one has come.
    ///
    /// # Errors
    /// An empty or oversized packet: the connection is unusable then.
    pub fn next_packet(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 {
            return Err("an empty packet".into());
        }
        if len > MAX_PACKET {
            return Err(format!("a packet of {len} octets (at most {MAX_PACKET})"));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let command = self.buf[4];
        let data = self.buf[5..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((command, data)))
    }
}

/// The NUL-terminated strings of `data`, lossily decoded.
pub fn strings(data: &[u8]) -> Vec<String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_frame_and_split_across_reads() {
        let mut out = Vec::new();
        packet(resp::CONTINUE, b"", &mut out);
        packet(resp::ADDHEADER, b"X-A\0v\0", &mut out);
        assert_eq!(&out[..5], &[0, 0, 0, 1, b'c']);
        let mut d = Decoder::default();
        d.feed(&out[..7]);
        assert_eq!(d.next_packet(), Ok(Some((b'c', Vec::new()))));
        assert_eq!(d.next_packet(), Ok(None), "half a packet");
        d.feed(&out[7..]);
        let (c, data) = d.next_packet().expect("ok").expect("packet");
        assert_eq!((c, strings(&data)), (b'h', vec!["X-A".into(), "v".into()]));
    }

    #[test]
    fn hostile_packets_are_errors_not_allocations() {
        let mut d = Decoder::default();
        d.feed(&[0xff, 0xff, 0xff, 0xff, b'b']);
        assert!(d.next_packet().is_err(), "4 GiB announced");
        let mut d = Decoder::default();
        d.feed(&[0, 0, 0, 0]);
        assert!(d.next_packet().is_err(), "no command octet");
    }

    #[test]
    fn negotiation_reads_flags_and_macro_lists() {
        let mut data = Vec::new();
        data.extend_from_slice(&6u32.to_be_bytes());
        data.extend_from_slice(&(action::ADDHDRS | action::QUARANTINE).to_be_bytes());
        data.extend_from_slice(&(proto::NOCONNECT | proto::NR_HDR).to_be_bytes());
        data.extend_from_slice(&(Stage::Mail as u32).to_be_bytes());
        data.extend_from_slice(b"{auth_authen} {mail_addr}\0");
        let n = read_optneg(&data).expect("valid");
        assert_eq!(n.protocol, proto::NOCONNECT | proto::NR_HDR);
        assert_eq!(
            n.macros[Stage::Mail as usize],
            Some(vec!["{auth_authen}".to_owned(), "{mail_addr}".to_owned()])
        );
        assert!(n.macros[Stage::Connect as usize].is_none());
        let mut bad = data.clone();
        bad[0..4].copy_from_slice(&7u32.to_be_bytes());
        assert!(read_optneg(&bad).is_err(), "a version from the future");
        assert!(read_optneg(&data[..8]).is_err());
    }

    #[test]
    fn strings_lose_inner_nuls_when_sent() {
        let mut out = Vec::new();
        cstr(b"a\0b", &mut out);
        assert_eq!(out, b"ab\0");
    }
}
