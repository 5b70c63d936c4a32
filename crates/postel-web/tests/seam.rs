//! The web side over the in-memory store: nothing above the store needs
//! SQLite. The API lists, shows, streams and deletes through the trait.

use std::sync::Arc;

use postel_store::{Envelope, MemoryStore, NewMessage, Store};
use postel_web::{SessionCounts, Web, WebLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn the_api_works_over_the_memory_store() {
    let store = MemoryStore::new();
    let id = store.next_id();
    store
        .insert(NewMessage {
            id: id.clone(),
            received_at: 1_800_000_000,
            envelope: Envelope {
                mail_from: "ann@a.test".into(),
                ..Envelope::default()
            },
            subject: Some("Seam".into()),
            raw: b"Subject: Seam\r\n\r\nthrough the trait\r\n".to_vec(),
            spooled: None,
            queue: Vec::new(),
            local: true,
            claimed_until: None,
            hold: false,
            webhooks: Vec::new(),
        })
        .await
        .expect("insert");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let web = Arc::new(Web::new(
        store.clone(),
        "test".into(),
        Arc::new(SessionCounts::default),
        Arc::new(prometheus_client::registry::Registry::default()),
        None,
        WebLimits::default(),
        stop,
    ));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    tokio::spawn(postel_web::serve(tcp, web, None, std::future::pending()));

    let (status, body) = http(addr, "GET", "/api/v1/messages").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"total\":1") && body.contains(&id), "{body}");
    let (status, body) = http(addr, "GET", &format!("/api/v1/messages/{id}/raw")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Subject: Seam\r\n\r\nthrough the trait\r\n")
    );
    let (status, body) = http(addr, "GET", &format!("/api/v1/messages/{id}")).await;
    assert!(status == 200 && body.contains("\"Seam\""), "{body}");
    let (status, _) = http(addr, "DELETE", &format!("/api/v1/messages/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(store.stats().await.expect("stats").messages, 0);
}
