//! The `250` promise: a message acknowledged is on stable storage. Load the
//! server, `kill -9` it mid-load, restart it on the same data folder, and
//! check that every acknowledged message is there and intact, and that no
//! stored message is partial.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postel_store::{SqliteStore, Store};

use crate::support::{Server, strip_trace, temp_dir};

/// The content of message `n` of client `t`: self-describing, so a stored
/// copy can be checked for completeness without knowing its id.
fn content(t: usize, n: usize) -> Vec<u8> {
    let mut v = format!("Subject: t{t} n{n}\r\n\r\n").into_bytes();
    for i in 0..50 {
        v.extend_from_slice(
            format!("line {i} of message t{t} n{n} {}\r\n", "x".repeat(60)).as_bytes(),
        );
    }
    v.extend_from_slice(b"END\r\n");
    v
}

/// Sends messages until the connection breaks; records (id, content) for
/// every 250 received.
fn load(addr: SocketAddr, t: usize, acked: Arc<Mutex<HashMap<String, Vec<u8>>>>) {
    let Ok(stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let read = |r: &mut BufReader<TcpStream>, line: &mut String| -> Option<String> {
        loop {
            line.clear();
            if r.read_line(line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line.clone());
            }
        }
    };
    read(&mut r, &mut line);
    if w.write_all(b"EHLO load.test\r\n").is_err() || read(&mut r, &mut line).is_none() {
        return;
    }
    for n in 0.. {
        let body = content(t, n);
        let mut burst =
            format!("MAIL FROM:<t{t}@load.test>\r\nRCPT TO:<sink@d.test>\r\nDATA\r\n").into_bytes();
        if w.write_all(&burst).is_err() {
            return;
        }
        for _ in 0..3 {
            if read(&mut r, &mut line).is_none() {
                return;
            }
        }
        burst.clear();
        burst.extend_from_slice(&body);
        burst.extend_from_slice(b".\r\n");
        if w.write_all(&burst).is_err() {
            return;
        }
        match read(&mut r, &mut line) {
            Some(reply) if reply.starts_with("250 2.0.0 Ok: queued as ") => {
                let id = reply.trim_end().rsplit(' ').next().expect("id").to_owned();
                acked.lock().expect("lock").insert(id, body);
            }
            _ => return,
        }
    }
}

#[test]
fn kill_9_mid_load_loses_no_acknowledged_message() {
    let dir = temp_dir("durability");
    for round in 0..3 {
        let s = Server::start_in(&dir, "", &[]);
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let clients: Vec<_> = (0..12)
            .map(|t| {
                let acked = acked.clone();
                let addr = s.addr;
                std::thread::spawn(move || load(addr, t + round * 100, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(600 + 150 * round as u64));
        s.signal("KILL");
        for c in clients {
            c.join().expect("client thread");
        }
        drop(s);
        let acked = acked.lock().expect("lock").clone();
        assert!(
            !acked.is_empty(),
            "round {round}: no message was acknowledged before the kill"
        );

        // Restart on the same folder (recovery runs), then read the store
        // directly: one process per message would make this test slow.
        let s = Server::start_in(&dir, "", &[]);
        assert!(!s.messages().is_empty());
        let store = SqliteStore::open(&dir).expect("open store");
        let stored = store.list().expect("list");
        let ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
        for (id, body) in &acked {
            assert!(
                ids.contains(id.as_str()),
                "round {round}: acknowledged message {id} lost"
            );
            let m = store.get(id).expect("get").expect("present");
            assert_eq!(
                strip_trace(&m.raw),
                body.as_slice(),
                "round {round}: message {id} damaged"
            );
        }
        // Nothing partial: every stored message is one of the complete forms.
        for m in &stored {
            let raw = store.get(&m.id).expect("get").expect("present").raw;
            let body = strip_trace(&raw);
            assert!(
                body.ends_with(b"END\r\n"),
                "round {round}: partial message stored"
            );
            let subject = m.subject.as_deref().expect("subject");
            let (t, n) = subject
                .trim_start_matches('t')
                .split_once(" n")
                .expect("subject shape");
            assert_eq!(
                body,
                content(t.parse().expect("t"), n.parse().expect("n")).as_slice()
            );
        }
    }
}
