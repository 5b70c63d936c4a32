//! Several Postel nodes on one PostgreSQL (a real server, made once for
//! this test binary by `postel_store::testing`): they take mail at once,
//! share one queue, take over a dead node's deliveries, and ride out a
//! database that goes away.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postel_store::{PgOptions, PgStore, Store, testing};

use crate::durability::{content, load};
use crate::rig::{Mx, config, message, wait_for};
use crate::support::{Server, postel, strip_trace, temp_dir};
use crate::tools::free_port;

/// A new database on the test binary's PostgreSQL; its URL.
fn database(name: &str) -> String {
    testing::shared().database(name)
}

/// The `[store]` section of node `node` on `url`.
fn store_section(url: &str, node: &str) -> String {
    format!("\n[store]\nurl = \"{url}\"\nnode = \"{node}\"\nlease = 10\n")
}

/// Two nodes, `a` and `b`, on a new database `db`, each with `extra` in
/// its config.
fn two_nodes(db: &str, extra: &str) -> (Server, Server) {
    let url = database(db);
    let start = |node: &str| Server::start(&format!("{extra}{}", store_section(&url, node)), &[]);
    (start("a"), start("b"))
}

/// Every acknowledged message is in the database, byte for byte; and
/// every stored message is whole. Returns how many are stored.
fn verify(url: &str, acked: &HashMap<String, Vec<u8>>) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = Arc::new(
            PgStore::connect(PgOptions {
                url: url.to_owned(),
                node: "check".into(),
                pool_size: 2,
                spool_dir: temp_dir("pg-check"),
                lease: 60,
                migrate: false,
            })
            .await
            .expect("connect"),
        );
        for (id, body) in acked {
            let m = store
                .get(id)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged message {id} lost"));
            assert_eq!(strip_trace(&m.raw), body.as_slice(), "{id} damaged");
        }
        let all = store.list().await.expect("list");
        for s in &all {
            let raw = store.get(&s.id).await.expect("get").expect("there").raw;
            assert!(strip_trace(&raw).ends_with(b"END\r\n"), "{} partial", s.id);
        }
        store.close().await;
        all.len()
    })
}

#[test]
fn three_nodes_take_mail_at_once_and_a_kill_9_loses_nothing_acknowledged() {
    let url = database("intake");
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| Server::start(&store_section(&url, n), &[]))
        .collect();
    let acked: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..4 {
            let (addr, acked) = (node.addr, acked.clone());
            clients.push(std::thread::spawn(move || load(addr, i * 100 + j, acked)));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    nodes[0].signal("KILL");
    std::thread::sleep(Duration::from_millis(1500));
    nodes[1].signal("KILL");
    nodes[2].signal("KILL");
    for c in clients {
        c.join().expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    // Each node took its share (the subjects say which client sent it).
    for node in 0..3 {
        let from_node = acked
            .values()
            .filter(|b| b.starts_with(format!("Subject: t{node}").as_bytes()))
            .count();
        assert!(from_node > 0, "node {node} acknowledged nothing");
    }
    let stored = verify(&url, &acked);
    println!("{} acknowledged, {stored} stored", acked.len());
    assert!(
        stored >= acked.len(),
        "{stored} stored, {} acked",
        acked.len()
    );
    // Ids are unique across the nodes: as many distinct ids as acks.
    assert_eq!(
        acked.len(),
        acked.keys().collect::<std::collections::HashSet<_>>().len()
    );
}

#[test]
fn a_dead_nodes_deliveries_are_taken_over_when_its_leases_run_out() {
    let port = free_port();
    // Stores each message, then waits before acknowledging it: a node
    // killed in that wait has delivered without knowing.
    let mx = Mx::start("127.0.2.1", port, &["--delay", "0.4"]);
    let url = database("takeover");
    let a = Server::start(&(config(port, "", "") + &store_section(&url, "a")), &[]);
    let mut c = a.connect();
    c.greet();
    let total = 30;
    for i in 0..total {
        c.mail("me@here.test", &["bob@ok.test"], &message(&format!("m{i}")));
    }
    wait_for(30, "the first deliveries", || mx.received().len() >= 3);
    a.signal("KILL");
    drop(c);
    // Another node, started after: it finds the dead node's rows claimed,
    // and takes them when their leases run out.
    let b = Server::start(&(config(port, "", "") + &store_section(&url, "b")), &[]);
    let subjects = || -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for m in mx.received() {
            let content = m["content"].as_str().unwrap_or("").to_owned();
            if let Some(s) = content.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                *n.entry(s.trim().to_owned()).or_default() += 1;
            }
        }
        n
    };
    wait_for(90, "every message delivered", || subjects().len() == total);
    let cfg = b.data_dir.join("test-config.toml");
    wait_for(30, "the queue to empty", || {
        let out = postel(&[
            "queue",
            "list",
            "--json",
            "--config",
            cfg.to_str().expect("path"),
        ]);
        out.status.success() && out.stdout.starts_with(b"[]")
    });
    let seen = subjects();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!("{total} messages, {duplicates} duplicates");
    // Only what the dead node had in flight can come twice: at most one
    // message per session it had open (10 per destination).
    assert!(duplicates <= 10, "{duplicates} duplicates: {seen:?}");
}

/// Sends messages until `stop`, reconnecting as needed; records the
/// acknowledged ones, and counts the `451`s.
fn steady_load(
    addr: SocketAddr,
    t: usize,
    acked: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let Ok(stream) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let mut w = stream.try_clone().expect("clone");
        let mut r = BufReader::new(stream);
        let mut reply = || -> Option<String> {
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Some(line.clone());
                }
            }
        };
        if reply().is_none() || w.write_all(b"EHLO load.test\r\n").is_err() || reply().is_none() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let body = content(t, n);
            n += 1;
            let mut burst =
                format!("MAIL FROM:<t{t}@load.test>\r\nRCPT TO:<sink@d.test>\r\nDATA\r\n")
                    .into_bytes();
            burst.extend_from_slice(&body);
            burst.extend_from_slice(b".\r\n");
            if w.write_all(&burst).is_err() {
                break;
            }
            let replies: Option<Vec<String>> = (0..4).map(|_| reply()).collect();
            let Some(replies) = replies else { break };
            let last = &replies[3];
            if let Some(id) = last.trim_end().strip_prefix("250 2.0.0 Ok: queued as ") {
                acked.lock().expect("lock").insert(id.to_owned(), body);
            } else if last.starts_with("451") {
                refused.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            } else {
                break;
            }
        }
    }
}

#[test]
fn a_database_outage_gets_451_loses_nothing_and_mail_flows_after() {
    let server = testing::PgServer::start();
    let url = server.database("outage");
    let node = Server::start(&store_section(&url, "a"), &[]);
    let acked: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|t| {
            let (addr, acked, refused, stop) =
                (node.addr, acked.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || steady_load(addr, t, acked, refused, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    server.halt();
    std::thread::sleep(Duration::from_secs(10));
    let during = refused.load(Ordering::SeqCst);
    server.resume();
    let before = acked.lock().expect("lock").len();
    wait_for(60, "mail to flow again", || {
        acked.lock().expect("lock").len() > before + 20
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    println!(
        "{during} refused with 451 while down; {} acknowledged in all",
        acked.lock().expect("lock").len()
    );
    assert!(during > 0, "no 451 while the database was down");
    let mut n = node;
    n.signal("TERM");
    assert_eq!(n.wait_exit(20), Some(true), "the node did not stop cleanly");
    let acked = acked.lock().expect("lock").clone();
    verify(&url, &acked);
    server.halt();
}

#[test]
fn store_migrate_moves_an_sqlite_folder_of_10000_messages_and_checks_it() {
    // An SQLite folder: 10,000 messages, two more that wait in the queue
    // (no MX answers), one large one, and a user.
    let started = std::time::Instant::now();
    let dir = temp_dir("migrate-src");
    crate::tls::add_user(&dir, "alice", "secret");
    let dead = free_port();
    let s = Server::start_in(&dir, &config(dead, "retry = [\"1h\"]", ""), &[]);
    // Many sessions at once: they share each commit's fsync.
    let threads: Vec<_> = (0..100)
        .map(|t| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = crate::support::Client::connect(addr);
                c.greet();
                for n in 0..100 {
                    let to = format!("u{t}@here.test");
                    c.mail("a@x.test", &[&to], &message(&format!("t{t} n{n}")));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let mut c = s.connect();
    c.greet();
    c.mail(
        "me@here.test",
        &["bob@ok.test", "kept@here.test"],
        &message("queued one"),
    );
    c.mail("me@here.test", &["carol@ok.test"], &message("queued two"));
    let mut large = message("large").to_vec();
    large.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 40_000).flatten(),
    );
    let large_id = c.mail("me@here.test", &["big@here.test"], &large);
    drop(c);
    let mut s = s;
    s.signal("TERM");
    assert_eq!(s.wait_exit(20), Some(true));
    println!("source made in {:?}", started.elapsed());
    // Into PostgreSQL.
    let url = database("migrated");
    let cfg = temp_dir("migrate-cfg").join("pg.toml");
    std::fs::write(&cfg, store_section(&url, "m")).expect("config");
    let cfg_arg = cfg.to_str().expect("path");
    let migrate = || {
        let from = crate::support::arg(&dir);
        postel(&["store", "migrate", "--from", from, "--config", cfg_arg])
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("10003 messages (10003 copied now, 0 there already), 2 queue rows"),
        "{said}"
    );
    println!("{said}");
    assert!(
        said.contains("1 users") && said.contains("checked: the same counts and digest"),
        "{said}"
    );
    // Again: nothing more to copy, and the check still holds.
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("(0 copied now, 10003 there already)"),
        "{said}"
    );
    // What the tools see on PostgreSQL: the inbox (not the message only
    // passing through), the queue, the user, a large message whole.
    let out = postel(&["messages", "list", "--json", "--config", cfg_arg]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.len(), 10_002);
    let out = postel(&["queue", "list", "--json", "--config", cfg_arg]);
    let queue: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert!(
        queue
            .iter()
            .all(|e| e["state"] == "deferred" || e["state"] == "queued")
    );
    let out = postel(&["users", "list", "--config", cfg_arg]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("alice\t"));
    let out = postel(&["messages", "show", "--raw", &large_id, "--config", cfg_arg]);
    assert_eq!(strip_trace(&out.stdout), large.as_slice());
}

#[test]
fn password_guesses_on_one_node_count_on_the_others() {
    let (a, b) = two_nodes("lockout", "[smtp]\nauth = true\nrequire_tls = false\n");
    // The user is in the database, for both nodes.
    let cfg = a.data_dir.join("test-config.toml");
    let mut add = std::process::Command::new(crate::support::BIN)
        .args([
            "users",
            "add",
            "alice",
            "--config",
            cfg.to_str().expect("path"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("users add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"right\n")
        .expect("password");
    assert!(add.wait().expect("wait").success());
    let try_login = |node: &Server, password: &str| -> String {
        use base64::Engine as _;
        let mut c = node.connect();
        c.greet();
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{password}"));
        c.send(format!("AUTH PLAIN {creds}\r\n"));
        c.reply()
    };
    assert!(
        try_login(&b, "right").starts_with("235"),
        "the user works on b"
    );
    // Six wrong guesses on a (of the ten allowed per address)...
    for _ in 0..6 {
        assert!(try_login(&a, "wrong").starts_with("535"));
    }
    // ...reach b within a couple of seconds: four more, then none.
    std::thread::sleep(Duration::from_millis(2500));
    for i in 0..4 {
        let r = try_login(&b, "wrong");
        assert!(r.starts_with("535"), "guess {i} on b: {r}");
    }
    let r = try_login(&b, "right");
    assert!(
        r.starts_with("421 4.7.0"),
        "locked out on b after 10 in all: {r}"
    );
}

#[test]
fn a_rate_limit_holds_across_the_nodes() {
    let (a, b) = two_nodes(
        "rates",
        "[limits.rate.client]\nmessages = 5\nwindow = \"1h\"\n",
    );
    let mut c = a.connect();
    c.greet();
    for i in 0..3 {
        c.mail("s@x.test", &["r@y.test"], &message(&format!("a{i}")));
    }
    // Within a couple of seconds b knows: two more, then 450.
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = b.connect();
    c.greet();
    for i in 0..2 {
        c.mail("s@x.test", &["r@y.test"], &message(&format!("b{i}")));
    }
    c.send("MAIL FROM:<s@x.test>\r\n");
    let r = c.reply();
    assert!(r.starts_with("450 4.7.1"), "the sixth message in all: {r}");
}

#[test]
fn dkim_keys_in_the_database_sign_on_every_node() {
    let url = database("dkim");
    let port = free_port();
    let config = |node: &str| config(port, "", "") + &store_section(&url, node);
    // The schema comes with the first node; the keys go in with the tool.
    let a = Server::start(&config("a"), &[]);
    let cfg = a.data_dir.join("test-config.toml");
    let cfg = cfg.to_str().expect("path");
    let out = postel(&[
        "dkim",
        "generate",
        "out.test",
        "--selector",
        "db",
        "--config",
        cfg,
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("dbr._domainkey.out.test. IN TXT") && said.contains("dbe._domainkey"),
        "{said}"
    );
    // Not twice under one name.
    let again = postel(&[
        "dkim",
        "generate",
        "out.test",
        "--selector",
        "db",
        "--config",
        cfg,
    ]);
    assert!(!again.status.success());
    drop(a);
    // Nodes started after sign with them, with no [[dkim]] table.
    for node in ["a", "b"] {
        let s = Server::start(&config(node), &[]);
        let mut c = s.connect();
        c.greet();
        let id = c.mail(
            "alice@out.test",
            &["you@here.test"],
            b"From: alice@out.test\r\nSubject: signed\r\n\r\nHello.\r\n",
        );
        let raw = postel(&["messages", "show", "--raw", &id, "--config", cfg]).stdout;
        let text = String::from_utf8_lossy(&raw).into_owned();
        assert!(text.starts_with("DKIM-Signature: "), "node {node}: {text}");
        assert!(
            text.contains("d=out.test") && text.contains("s=dbr") && text.contains("s=dbe"),
            "{text}"
        );
    }
}

#[test]
fn the_web_inbox_of_any_node_shows_every_nodes_mail_live() {
    let url = database("inbox");
    let start = |node: &str| Server::start(&store_section(&url, node), &["--web", "127.0.0.1:0"]);
    let (a, b) = (start("a"), start("b"));
    let (web_a, web_b) = (a.addrs["web"], b.addrs["web"]);
    let mut on_a = crate::web::Events::open(web_a);
    let mut on_b = crate::web::Events::open(web_b);
    // Mail taken by b shows on a, live and in the list.
    let mut c = b.connect();
    c.greet();
    let id = c.mail("x@y.test", &["z@w.test"], b"Subject: via b\r\n\r\nhi\r\n");
    let (event, data) = on_a.next();
    assert_eq!(event, "message");
    assert!(data.contains(&id) && data.contains("via b"), "{data}");
    let list = crate::support::http("GET", web_a, "/api/v1/messages", &[]).json();
    assert_eq!(list["messages"][0]["id"], id.as_str());
    // b heard of its own message the same way.
    assert_eq!(on_b.next().0, "message");
    // Deleted on a: gone from b, which hears of it.
    let gone = crate::support::http("DELETE", web_a, &format!("/api/v1/messages/{id}"), &[]);
    assert_eq!(gone.status, 204);
    assert_eq!(
        on_b.next(),
        ("deleted".into(), format!("{{\"id\":\"{id}\"}}"))
    );
    let list = crate::support::http("GET", web_b, "/api/v1/messages", &[]).json();
    assert_eq!(list["total"], 0);
}

#[test]
fn a_commit_cut_off_during_commit_gets_451_and_the_node_goes_on() {
    let url = database("cutoff");
    let node = Server::start(&store_section(&url, "a"), &[]);
    // COMMIT of a message whose subject is "slow" takes 3 seconds (a
    // deferred trigger): long enough to cut the connection in the middle.
    let server = testing::shared();
    server
        .psql(
            "cutoff",
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.subject = 'slow' THEN PERFORM pg_sleep(3); END IF; RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON messages
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .expect("trigger");
    let addr = node.addr;
    let sender = std::thread::spawn(move || {
        let mut c = crate::support::Client::connect(addr);
        c.greet();
        c.cmd("MAIL FROM:<a@x.test>", "250 2.1.0 Sender OK");
        c.cmd("RCPT TO:<b@y.test>", "250 2.1.5 Recipient OK");
        c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        c.send("Subject: slow\r\n\r\nhi\r\n.\r\n");
        c.reply()
    });
    // The writer's backend, in its COMMIT: cut off.
    wait_for(10, "the slow COMMIT", || {
        server
            .psql(
                "cutoff",
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'cutoff' AND query = 'COMMIT' AND state = 'active'",
            )
            .is_ok_and(|n| n == "1")
    });
    server
        .psql(
            "cutoff",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'cutoff' AND query = 'COMMIT' AND state = 'active'",
        )
        .expect("terminate");
    let reply = sender.join().expect("sender");
    assert!(
        reply.starts_with("451 4.3.0"),
        "an unknown outcome is never a 250: {reply}"
    );
    // The node goes on: the next message is stored.
    let mut c = node.connect();
    c.greet();
    c.mail("a@x.test", &["b@y.test"], b"Subject: fast\r\n\r\nhi\r\n");
}
