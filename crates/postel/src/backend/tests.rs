//! The backend over the memory store, behind the real driver.

use super::*;
use postel_store::MemoryStore;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct NoUsers;

impl UserHashes for NoUsers {
    fn user_hash(&self, _user: &str) -> Option<String> {
        None
    }
}

/// The real backend, over the memory store, behind the real driver.
async fn serve_over_memory(store: MemoryStore, policy: Policy) -> std::net::SocketAddr {
    let inner = Arc::new(Inner {
        store: store.clone(),
        policy,
        hostname: "mx.test".into(),
        version: "0".into(),
        auth: Arc::new(
            Authenticator::new(Arc::new(NoUsers), postel_policy::PasswordPool::new(1, 1))
                .expect("authenticator"),
        ),
        metrics: BackendMetrics::register(&mut Registry::default()),
        users: Arc::new(store.clone()),
        relay: None,
        disk: None,
        policy_services: Vec::new(),
        screening: Screening::none(),
        milters: Vec::new(),
        dns: None,
        webhooks: Vec::new(),
        webhook_wake: Arc::new(tokio::sync::Notify::new()),
        authentication: super::Authentication::none(),
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = postel_server::Listener {
        tcp,
        settings: postel_server::ListenerSettings::for_kind(postel_server::ListenerKind::Smtp),
    };
    tokio::spawn(postel_server::serve(
        vec![listener],
        postel_server::ServerConfig::default(),
        Arc::new(PostelBackend::new(inner)),
        None,
        std::future::pending(),
    ));
    addr
}

/// Sends `script` and reads until `replies` replies (last lines) came.
async fn converse(addr: std::net::SocketAddr, script: &[u8], replies: usize) -> String {
    let mut s = BufReader::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    // The greeting first: a client that talks before it is refused.
    let mut greeting = String::new();
    s.read_line(&mut greeting).await.expect("greeting");
    s.get_mut().write_all(script).await.expect("write");
    let (mut out, mut n) = (String::new(), 0);
    while n < replies {
        let mut line = String::new();
        if s.read_line(&mut line).await.expect("read") == 0 {
            break;
        }
        n += usize::from(line.as_bytes().get(3) == Some(&b' '));
        out.push_str(&line);
    }
    out
}

#[tokio::test]
async fn the_backend_needs_no_sqlite_and_the_store_decides_how_to_keep_content() {
    let store = MemoryStore::new();
    let mut policy = Policy::default();
    policy.domains.insert("d.test".into());
    let addr = serve_over_memory(store.clone(), policy).await;
    // A 1 MiB message: past SQLite's spool threshold, but the memory
    // store keeps it in memory; the backend neither knows nor cares.
    let big = "x".repeat(1 << 20);
    let script = format!(
        "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@other.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\nSubject: over the seam\r\n\r\n{big}\r\n.\r\nQUIT\r\n"
    );
    let out = converse(addr, script.as_bytes(), 7).await;
    assert!(out.contains("554 5.7.1 Relaying denied"), "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as "), "{out}");
    let list = store.list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject.as_deref(), Some("over the seam"));
    let m = store.get(&list[0].id).await.expect("get").expect("stored");
    assert!(m.raw.starts_with(b"Received: from c.test"));
    assert!(m.raw.ends_with(format!("{big}\r\n").as_bytes()));
}

#[test]
fn subject_is_decoded() {
    assert_eq!(
        subject_of(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx\r\n").as_deref(),
        Some("café")
    );
    assert_eq!(subject_of(b"From: a@b\r\n\r\n"), None);
}
