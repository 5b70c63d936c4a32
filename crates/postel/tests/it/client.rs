//! postel-proto's sans-IO client over real TCP against real servers:
//! aiosmtpd and Postfix (started by bench/peers), and Postel itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use postel_proto::client::{Client, ClientEvent, Command};

use crate::support::Server;
use crate::tools::{free_port, start_peer, start_postfix};

/// A client on a socket: sends what is queued, reads until every reply
/// awaited has come, and returns them.
struct Conversation {
    client: Client,
    stream: TcpStream,
}

impl Conversation {
    fn open(port: u16) -> Conversation {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut c = Conversation {
            client: Client::new(),
            stream,
        };
        assert_eq!(c.round(), [(Command::Greeting, 220)]);
        c
    }

    fn round(&mut self) -> Vec<(Command, u16)> {
        let mut out = Vec::new();
        self.client.take_output(&mut out);
        self.stream.write_all(&out).expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while self.client.in_flight() > 0 && !self.client.is_closed() {
            let n = self.stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            self.client.feed(&buf[..n]);
            while let Some(e) = self.client.poll_event() {
                match e {
                    ClientEvent::Reply { to, reply } => got.push((to, reply.code)),
                    ClientEvent::ProtocolError(why) => panic!("protocol error: {why}"),
                }
            }
        }
        got
    }
}

/// One message with a dot-led line; pipelined where the server offers it.
fn transaction(c: &mut Conversation, rcpts: &[&str]) -> Vec<(Command, u16)> {
    c.client.ehlo("client.test");
    let ehlo = c.round();
    assert_eq!(ehlo, [(Command::Ehlo, 250)]);
    let pipelining = c.client.capabilities().expect("capabilities").pipelining;
    c.client.mail("a@b.test", &[]);
    let mut got = Vec::new();
    if !pipelining {
        got.extend(c.round());
    }
    for r in rcpts {
        c.client.rcpt(r, &[]);
        if !pipelining {
            got.extend(c.round());
        }
    }
    c.client.data();
    got.extend(c.round());
    if got.last() == Some(&(Command::Data, 354)) {
        c.client
            .content(b"Subject: sans-IO\n\n.a line that starts with a dot\n");
        got.extend(c.round());
    }
    c.client.quit();
    got.extend(c.round());
    got
}

#[test]
fn the_client_sends_to_aiosmtpd() {
    let p = free_port();
    let _peer = start_peer(
        "start-aiosmtpd.sh",
        &[&p.to_string()],
        "stop-aiosmtpd.sh",
        &p.to_string(),
    );
    let mut c = Conversation::open(p);
    assert_eq!(
        transaction(&mut c, &["c@d.test"]),
        [
            (Command::Mail, 250),
            (Command::Rcpt, 250),
            (Command::Data, 354),
            (Command::Content, 250),
            (Command::Quit, 221)
        ]
    );
}

#[test]
fn the_client_pipelines_to_postfix_and_reads_its_refusal() {
    let (p, _peer) = start_postfix("postfix-client");
    let mut c = Conversation::open(p);
    let got = transaction(&mut c, &["x@example.test", "x@other.test"]);
    assert_eq!(
        got,
        [
            (Command::Mail, 250),
            (Command::Rcpt, 250),
            (Command::Rcpt, 554),
            (Command::Data, 354),
            (Command::Content, 250),
            (Command::Quit, 221)
        ]
    );
}

#[test]
fn the_client_and_postel_store_the_dot_line_exactly() {
    let s = Server::start("", &[]);
    let mut c = Conversation::open(s.addr.port());
    let got = transaction(&mut c, &["c@d.test"]);
    assert_eq!(got[got.len() - 2], (Command::Content, 250));
    let list = s.messages();
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let raw = s.raw(&id);
    assert!(
        crate::support::strip_trace(&raw).ends_with(b"\r\n\r\n.a line that starts with a dot\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}
