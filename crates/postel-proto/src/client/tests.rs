//! The client against Postel's own server session, in memory: every byte
//! the one writes, the other reads.

use std::sync::Arc;

use super::*;
use crate::session::{ConnInfo, Event, Limits, Session, Verdict};

/// The server side: accepts everything, AUTH for alice/secret only, and
/// keeps each message.
struct Server {
    session: Session,
    body: Vec<u8>,
    stored: Vec<Vec<u8>>,
}

impl Server {
    fn new(conn: ConnInfo) -> Server {
        let limits = Limits {
            hostname: "mx.test".into(),
            ..Limits::default()
        };
        Server {
            session: Session::new(Arc::new(limits), conn),
            body: Vec::new(),
            stored: Vec::new(),
        }
    }

    fn feed(&mut self, mut input: &[u8]) {
        loop {
            let n = self.session.feed(input);
            input = &input[n..];
            let mut any = false;
            while let Some(ev) = self.session.poll_event() {
                any = true;
                match ev {
                    Event::Mail { .. } | Event::Rcpt { .. } => {
                        self.session.resolve(Verdict::Accept)
                    }
                    Event::Body => self.session.take_body(&mut self.body),
                    Event::DataEnd => {
                        self.session.take_body(&mut self.body);
                        self.stored.push(std::mem::take(&mut self.body));
                        self.session.resolve(Verdict::Queued("ID1".into()));
                    }
                    Event::Auth {
                        username, password, ..
                    } => self
                        .session
                        .resolve(if username == "alice" && password.0 == "secret" {
                            Verdict::Accept
                        } else {
                            Verdict::Reject(crate::reply::auth_failed())
                        }),
                    Event::Reset => self.body.clear(),
                    _ => {}
                }
            }
            if input.is_empty() && !any {
                return;
            }
            if n == 0 && !any {
                return;
            }
        }
    }
}

/// Moves bytes both ways until neither side has anything to say; returns
/// the client's events.
fn pump(c: &mut Client, s: &mut Server) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    loop {
        let mut to_server = Vec::new();
        c.take_output(&mut to_server);
        s.feed(&to_server);
        let mut to_client = Vec::new();
        s.session.take_output(&mut to_client);
        c.feed(&to_client);
        while let Some(e) = c.poll_event() {
            events.push(e);
        }
        if to_server.is_empty() && to_client.is_empty() {
            return events;
        }
    }
}

fn codes(events: &[ClientEvent]) -> Vec<(Command, u16)> {
    events
        .iter()
        .map(|e| match e {
            ClientEvent::Reply { to, reply } => (*to, reply.code),
            ClientEvent::ProtocolError(why) => panic!("protocol error: {why}"),
        })
        .collect()
}

#[test]
fn a_pipelined_transaction_against_the_server_session() {
    let mut s = Server::new(ConnInfo::default());
    let mut c = Client::new();
    c.ehlo("client.test");
    assert_eq!(
        codes(&pump(&mut c, &mut s)),
        [(Command::Greeting, 220), (Command::Ehlo, 250)]
    );
    let caps = c.capabilities().expect("capabilities").clone();
    assert!(caps.pipelining && caps.chunking && caps.smtputf8 && caps.enhanced_status_codes);
    assert_eq!(caps.size, Some(Limits::default().max_message_size));
    // MAIL, two RCPTs and DATA in one write (RFC 2920).
    c.mail("a@b.test", &["SIZE=100"]);
    c.rcpt("c@d.test", &[]);
    c.rcpt("e@f.test", &[]);
    c.data();
    assert_eq!(c.in_flight(), 4);
    assert_eq!(
        codes(&pump(&mut c, &mut s)),
        [
            (Command::Mail, 250),
            (Command::Rcpt, 250),
            (Command::Rcpt, 250),
            (Command::Data, 354)
        ]
    );
    // Leading dots, a lone dot, bare line ends and no final line end: the
    // server stores exactly the lines the client meant.
    c.content(b"Subject: dots\n\n.hidden\r\n.\rlast line");
    c.quit();
    assert_eq!(
        codes(&pump(&mut c, &mut s)),
        [(Command::Content, 250), (Command::Quit, 221)]
    );
    assert_eq!(
        s.stored,
        [b"Subject: dots\r\n\r\n.hidden\r\n.\r\nlast line\r\n".to_vec()]
    );
    assert!(c.is_closed());
}

#[test]
fn starttls_then_auth_then_bdat() {
    let conn = ConnInfo {
        starttls_available: true,
        auth_offered: true,
        auth_requires_tls: true,
        ..ConnInfo::default()
    };
    let mut s = Server::new(conn);
    let mut c = Client::new();
    c.ehlo("client.test");
    pump(&mut c, &mut s);
    let caps = c.capabilities().expect("capabilities");
    assert!(caps.starttls && caps.auth.is_empty(), "AUTH only after TLS");
    c.starttls();
    assert_eq!(codes(&pump(&mut c, &mut s)), [(Command::StartTls, 220)]);
    // The handshake happens here, in the driver.
    s.session.tls_established();
    c.tls_established();
    assert!(c.capabilities().is_none(), "what came before TLS is void");
    c.ehlo("client.test");
    pump(&mut c, &mut s);
    let caps = c.capabilities().expect("capabilities");
    assert_eq!(caps.auth, ["PLAIN", "LOGIN", "SCRAM-SHA-256"]);
    assert!(!caps.starttls);
    c.auth_plain("alice", "wrong");
    c.auth_plain("alice", "secret");
    assert_eq!(
        codes(&pump(&mut c, &mut s)),
        [(Command::Auth, 535), (Command::Auth, 235)]
    );
    c.mail("alice@b.test", &[]);
    c.rcpt("c@d.test", &[]);
    c.bdat(b"Subject: chunks\r\n\r\n.no stuffing in BDAT\r\n", false);
    c.bdat(b"end\r\n", true);
    assert_eq!(
        codes(&pump(&mut c, &mut s)),
        [
            (Command::Mail, 250),
            (Command::Rcpt, 250),
            (Command::Bdat, 250),
            (Command::Bdat, 250)
        ]
    );
    assert_eq!(
        s.stored,
        [b"Subject: chunks\r\n\r\n.no stuffing in BDAT\r\nend\r\n".to_vec()]
    );
}

#[test]
fn a_hostile_server_ends_the_session() {
    // A reply nobody asked for.
    let mut c = Client::new();
    c.feed(b"220 hi\r\n250 surprise\r\n");
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Reply {
            to: Command::Greeting,
            ..
        })
    ));
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::ProtocolError(_))
    ));
    assert!(c.is_closed());
    // An endless line.
    let mut c = Client::new();
    c.feed(&[b'2'; 10_000]);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::ProtocolError(_))
    ));
    // 421 closes, whatever was in flight.
    let mut c = Client::new();
    c.ehlo("x.test");
    c.mail("a@b.test", &[]);
    c.feed(b"220 hi\r\n421 4.3.2 bye\r\n");
    assert_eq!(c.in_flight(), 0);
    assert!(c.is_closed());
    // An argument cannot smuggle a second command.
    let mut c = Client::new();
    c.mail("a@b.test>\r\nRCPT TO:<x@y.test", &[]);
    let mut out = Vec::new();
    c.take_output(&mut out);
    assert_eq!(out, b"MAIL FROM:<a@b.test>RCPT TO:<x@y.test>\r\n");
}

#[test]
fn capabilities_are_read_from_the_ehlo_lines() {
    let lines: Vec<String> = [
        "mx",
        "SIZE 35882577",
        "auth plain login xoauth2",
        "8BITMIME",
        "DSN",
        "STARTTLS",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let c = Capabilities::parse(&lines);
    assert_eq!(c.size, Some(35_882_577));
    assert_eq!(c.auth, ["PLAIN", "LOGIN", "XOAUTH2"]);
    assert!(c.eightbitmime && c.dsn && c.starttls && !c.pipelining);
}

#[test]
fn lmtp_end_of_data_takes_one_reply_per_accepted_recipient() {
    let mut c = Client::new();
    c.feed(b"220 lmtp ready\r\n");
    c.lhlo("postel.test");
    c.feed(b"250-lmtp\r\n250 PIPELINING\r\n");
    assert!(c.capabilities().is_some_and(|k| k.pipelining));
    c.mail("a@b.test", &[]);
    c.rcpt("x@y.test", &[]);
    c.rcpt("z@y.test", &[]);
    c.data();
    c.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    c.content_lmtp(b"Subject: t\r\n\r\nhi\r\n", 2);
    let mut out = Vec::new();
    c.take_output(&mut out);
    assert!(out.starts_with(b"LHLO postel.test\r\n"));
    c.feed(b"250 2.0.0 <x@y.test> saved\r\n");
    assert_eq!(
        c.in_flight(),
        1,
        "the second recipient's reply is still due"
    );
    c.feed(b"452 4.2.2 <z@y.test> quota\r\n");
    let contents: Vec<u16> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Reply {
                to: Command::Content,
                reply,
            } => Some(reply.code),
            _ => None,
        })
        .collect();
    assert_eq!(contents, [250, 452]);
    assert_eq!(c.in_flight(), 0);
}

/// The first, byte-at-a-time dot-stuffing: the reference the fast one
/// must match.
fn dot_stuff_reference(message: &[u8], out: &mut Vec<u8>) {
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                if b == b'\r' && message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

proptest::proptest! {
    #[test]
    fn dot_stuffing_matches_the_reference(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b"\r\n".to_vec()),
                proptest::strategy::Just(b"\r".to_vec()),
                proptest::strategy::Just(b"\n".to_vec()),
                proptest::strategy::Just(b".".to_vec()),
                proptest::strategy::Just(b"..\r\n".to_vec()),
                proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            ],
            0..40,
        )
    ) {
        let message: Vec<u8> = parts.concat();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        super::dot_stuff(&message, &mut fast);
        dot_stuff_reference(&message, &mut slow);
        proptest::prop_assert_eq!(fast, slow);
    }
}

#[test]
fn dot_stuffing_edges() {
    let stuff = |m: &[u8]| {
        let mut out = Vec::new();
        super::dot_stuff(m, &mut out);
        out
    };
    assert_eq!(stuff(b""), b".\r\n");
    assert_eq!(stuff(b"."), b"..\r\n.\r\n");
    assert_eq!(stuff(b"a\r\n.\r\n"), b"a\r\n..\r\n.\r\n");
    assert_eq!(stuff(b"a\n.b\rc"), b"a\r\n..b\r\nc\r\n.\r\n");
    assert_eq!(stuff(b"\r\r\n"), b"\r\n\r\n.\r\n");
}
