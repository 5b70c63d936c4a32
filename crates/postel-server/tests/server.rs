//! The network layer in process: a recording backend, real sockets on
//! 127.0.0.1:0, and tokio's paused clock, so that a five-minute timeout is
//! tested without waiting five minutes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postel_proto::sasl::Mechanism;
use postel_proto::{ForwardPath, MailParams, RcptParams, Reply, ReversePath, reply};
use postel_server::{
    Backend, BackendSession, ConnMeta, Listener, ListenerKind, ListenerSettings, ServerConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Keeps what it is given; a sender containing "panic" makes it panic;
/// with `refuse`, it refuses every client at connect.
#[derive(Default)]
struct Recording {
    stored: Arc<Mutex<Vec<Vec<u8>>>>,
    refuse: bool,
}

struct Session {
    body: Vec<u8>,
    stored: Arc<Mutex<Vec<Vec<u8>>>>,
    refuse: bool,
}

impl Backend for Recording {
    type Session = Session;

    fn new_session(&self, _conn: &ConnMeta) -> Session {
        Session {
            body: Vec::new(),
            stored: self.stored.clone(),
            refuse: self.refuse,
        }
    }
}

impl BackendSession for Session {
    async fn connect(&mut self) -> Result<(), Reply> {
        if self.refuse {
            return Err(reply::service_unavailable("localhost"));
        }
        Ok(())
    }

    fn helo(&mut self, _name: &str, _extended: bool) {}

    async fn mail(&mut self, from: &ReversePath, _params: &MailParams) -> Result<(), Reply> {
        assert!(!from.to_string().contains("panic"), "a bug in the backend");
        Ok(())
    }

    async fn rcpt(&mut self, _to: &ForwardPath, _params: &RcptParams) -> Result<(), Reply> {
        Ok(())
    }

    fn body(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    async fn data(&mut self) -> Result<String, Reply> {
        let body = std::mem::take(&mut self.body);
        self.stored.lock().expect("lock").push(body);
        Ok("ID1".to_owned())
    }

    fn reset(&mut self) {
        self.body.clear();
    }

    fn tls(&mut self, _description: &str) {}

    async fn auth(&mut self, _m: Mechanism, _z: &str, _u: &str, _p: &str) -> Result<(), Reply> {
        Err(reply::auth_failed())
    }

    async fn scram_first(&mut self, _z: &str, _u: &str, _n: &str) -> Result<String, Reply> {
        Err(reply::auth_failed())
    }

    async fn scram_final(&mut self, _m: &str, _p: &[u8]) -> Result<String, Reply> {
        Err(reply::auth_failed())
    }

    async fn scram_done(&mut self) {}
}

/// Starts a server with `config`; returns its address and the store.
async fn start(config: ServerConfig) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    start_with(config, Recording::default()).await
}

async fn start_with(
    config: ServerConfig,
    backend: Recording,
) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let backend = Arc::new(backend);
    let stored = backend.stored.clone();
    let listener = Listener {
        tcp,
        settings: ListenerSettings::for_kind(ListenerKind::Smtp),
    };
    tokio::spawn(postel_server::serve(
        vec![listener],
        config,
        backend,
        None,
        std::future::pending(),
    ));
    (addr, stored)
}

struct Client(BufReader<TcpStream>);

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client(BufReader::new(
            TcpStream::connect(addr).await.expect("connect"),
        ))
    }

    /// One reply line, or "" at the end of the stream.
    async fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).await.expect("read");
        l
    }

    /// One whole reply (its last line starts "NNN ").
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.is_empty() || l.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    async fn send(&mut self, s: &str) {
        self.0
            .get_mut()
            .write_all(s.as_bytes())
            .await
            .expect("write");
    }
}

#[tokio::test]
async fn a_panicking_backend_answers_421_and_the_server_goes_on() {
    let (addr, stored) = start(ServerConfig::default()).await;
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    c.send("EHLO x.test\r\nMAIL FROM:<panic@x.test>\r\n").await;
    assert!(c.reply().await.starts_with("250-"));
    assert_eq!(
        c.reply().await,
        "421 4.3.0 localhost Local error, closing connection\r\n"
    );
    assert_eq!(c.line().await, "", "the connection is closed");
    // The next session is served as usual.
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    c.send("EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        .await;
    for want in ["250-", "250 2.1.0", "250 2.1.5", "354 "] {
        let r = c.reply().await;
        assert!(r.starts_with(want), "{r}");
    }
    c.send("Subject: hi\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued as ID1\r\n");
    assert_eq!(
        stored.lock().expect("lock").as_slice(),
        [b"Subject: hi\r\n\r\nbody\r\n".to_vec()]
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed_at_the_command_timeout_on_paused_time() {
    let (addr, _) = start(ServerConfig::default()).await;
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    let started = tokio::time::Instant::now();
    // Five minutes pass on the paused clock, not on the wall.
    assert_eq!(c.reply().await, "421 4.4.2 localhost Timeout exceeded\r\n");
    assert_eq!(started.elapsed(), Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn a_command_trickled_a_byte_at_a_time_is_cut_at_its_deadline() {
    let (addr, _) = start(ServerConfig::default()).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut greeting = String::new();
    read.read_line(&mut greeting).await.expect("greeting");
    let started = tokio::time::Instant::now();
    // A byte every 100 s: the idle timer alone (300 s) would never fire.
    tokio::spawn(async move {
        for b in "NOOP NOOP NOOP".bytes() {
            // Once the server has closed, writes fail: that is expected.
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(100)).await;
        }
    });
    let mut reply = String::new();
    read.read_line(&mut reply).await.expect("reply");
    assert_eq!(reply, "421 4.4.2 localhost Timeout exceeded\r\n");
    // Cut 300 s after the first octet, though octets kept coming.
    assert_eq!(started.elapsed(), Duration::from_secs(300));
}

#[tokio::test]
async fn a_client_refused_at_connect_gets_554_and_only_quit() {
    let backend = Recording {
        refuse: true,
        ..Recording::default()
    };
    let (addr, _) = start_with(ServerConfig::default(), backend).await;
    let mut c = Client::connect(addr).await;
    assert_eq!(
        c.reply().await,
        "554 5.7.1 localhost Service unavailable\r\n"
    );
    c.send("EHLO x.test\r\n").await;
    assert!(c.reply().await.starts_with("503 5.5.1"));
    c.send("QUIT\r\n").await;
    assert!(c.reply().await.starts_with("221 "));
}
