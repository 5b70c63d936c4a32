//! Postel under pressure: a full disk, a flood of connections, clients
//! that crawl or never read, and hostile bytes. The load versions with
//! 10,000 connections are in bench/robustness.py; these are their small,
//! fast cousins, and each asserts the limit it is about.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postel_store::SqliteStore;

use crate::support::{Client, Server, strip_trace, temp_dir};

/// A size-limited tmpfs, unmounted when dropped. Mounting needs root (the
/// tests run as root in CI, as the Postfix peer does).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_451_keeps_what_was_stored_and_recovers_without_restart() {
    let fs = Tmpfs::mount("6m");
    let data = fs.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // Most of the space goes to a filler file, freed later.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; 3 * 1024 * 1024]).expect("filler");
    // The free-disk threshold off: this is about a disk that really fills.
    let s = Server::start_in(&data, "[limits]\nmin_free_disk_mb = 0\n", &[]);
    let mut c = s.connect();
    c.greet();
    let body = |i: usize| {
        let mut b = format!("Subject: m{i}\r\n\r\n").into_bytes();
        b.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 60_000));
        b.extend_from_slice(b"\r\nEND\r\n");
        b
    };
    let mut acked = Vec::new();
    let mut full = false;
    for i in 0..200 {
        let r = send_data(&mut c, &body(i));
        if r.starts_with("250 ") {
            acked.push((crate::support::queued_id(&r), i));
        } else {
            assert_eq!(r, "451 4.3.0 Local error in processing\r\n");
            full = true;
            break;
        }
    }
    assert!(full, "the disk never filled");
    assert!(!acked.is_empty(), "nothing fitted before the disk filled");
    // The session goes on after the 451.
    c.cmd("NOOP", "250 2.0.0 Ok");
    // Everything acknowledged is intact; nothing else (no partial message).
    {
        let store = SqliteStore::open_existing(&data).expect("store");
        let list = store.list().expect("list");
        assert_eq!(list.len(), acked.len(), "a refused message was stored");
        for (id, i) in &acked {
            let m = store.get(id).expect("get").expect("stored");
            assert_eq!(strip_trace(&m.raw), body(*i).as_slice());
        }
    }
    // Space comes back: mail is accepted again, same server, same session.
    std::fs::remove_file(&filler).expect("free space");
    let id = c.mail("a@b.test", &["c@d.test"], &body(999));
    assert!(s.messages().iter().any(|m| m["id"] == id.as_str()));
}

/// A message of about `mib` MiB: a subject, then numbered lines with every
/// printable octet, none starting with a dot.
fn large_message(mib: usize) -> Vec<u8> {
    let mut m = b"Subject: large\r\n\r\n".to_vec();
    let tail: String = (b' '..=b'~').map(char::from).collect();
    let mut i = 0;
    while m.len() < mib * 1024 * 1024 {
        m.extend_from_slice(format!("{i:08} {tail}\r\n").as_bytes());
        i += 1;
    }
    m
}

/// Sends one message in DATA and returns the reply to the final dot.
fn send_data(c: &mut Client, content: &[u8]) -> String {
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
    for chunk in content.chunks(1 << 20) {
        c.stream().write_all(chunk).expect("send content");
    }
    c.send(".\r\n");
    c.reply()
}

/// Starts a new measure of a process's peak resident memory (the start-up
/// peak is Argon2's: the dummy hash for unknown AUTH users).
fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// A field of a process's `/proc/PID/status` in KiB: `VmHWM` (the peak
/// resident memory), `VmRSS` (now).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect(field)
}

#[test]
fn a_large_message_is_streamed_to_storage_not_held_in_memory() {
    // 30 MiB, under the default limit (36 MiB): no setting needed.
    let s = Server::start("", &[]);
    let content = large_message(30);
    let mut c = s.connect();
    c.greet();
    reset_peak_rss(s.child.id());
    // What the process holds before: mostly its own code, mapped (which
    // grows with the binary, not with the message).
    let before = status_kib(s.child.id(), "VmRSS");
    let r = send_data(&mut c, &content);
    assert!(r.starts_with("250 2.0.0 "), "{r}");
    // Held whole (once as it arrived, once with the trace header), 30 MiB
    // would raise the peak by 30 to 60 MiB; streamed, a session holds a
    // few hundred KiB of it at a time.
    let peak = status_kib(s.child.id(), "VmHWM");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "peak RSS {peak} KiB ({grown} KiB over the {before} KiB before) for a 30 MiB message"
    );
    let id = crate::support::queued_id(&r);
    let raw = s.raw(&id);
    assert!(
        strip_trace(&raw) == content.as_slice(),
        "stored content differs"
    );
    let list = s.messages();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["subject"], "large");
    assert_eq!(list[0]["size"], raw.len() as u64);
    // BDAT content takes the same road: three chunks, 3 MiB in all.
    let content = large_message(3);
    c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
    c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
    let third = content.len() / 3;
    for (i, chunk) in content.chunks(third + 1).enumerate() {
        let last = if i == 2 { " LAST" } else { "" };
        c.send(format!("BDAT {}{last}\r\n", chunk.len()));
        c.stream().write_all(chunk).expect("send chunk");
        let r = c.reply();
        if i < 2 {
            assert_eq!(r, format!("250 2.0.0 {} octets received\r\n", chunk.len()));
        } else {
            assert!(r.starts_with("250 2.0.0 "), "{r}");
            let raw = s.raw(&crate::support::queued_id(&r));
            assert!(
                strip_trace(&raw) == content.as_slice(),
                "BDAT content differs"
            );
        }
    }
    // The spool files went with their transactions; each message has its
    // content in blobs/.
    let spool = std::fs::read_dir(s.data_dir.join("spool")).expect("spool");
    assert_eq!(spool.count(), 0);
    let blobs = std::fs::read_dir(s.data_dir.join("blobs")).expect("blobs");
    assert_eq!(blobs.count(), 2);
}

#[test]
fn below_the_free_disk_threshold_mail_is_refused_at_mail_and_taken_again_after() {
    let fs = Tmpfs::mount("8m");
    let data = fs.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let s = Server::start_in(&data, "[limits]\nmin_free_disk_mb = 4\n", &[]);
    let mut c = s.connect();
    c.greet();
    c.mail("a@b.test", &["c@d.test"], b"Subject: fits\r\n\r\nx\r\n");
    // Leave less than 4 MiB free: MAIL is refused before any content.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; 5 * 1024 * 1024]).expect("filler");
    c.cmd(
        "MAIL FROM:<a@b.test>",
        "452 4.3.1 Insufficient system storage",
    );
    c.cmd("NOOP", "250 2.0.0 Ok");
    std::fs::remove_file(&filler).expect("free space");
    c.mail("a@b.test", &["c@d.test"], b"Subject: again\r\n\r\nx\r\n");
    assert_eq!(s.messages().len(), 2);
}

#[test]
fn disk_full_while_spooling_is_451_and_leaves_nothing_behind() {
    let fs = Tmpfs::mount("8m");
    let data = fs.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let s = Server::start_in(
        &data,
        "[limits]\nmax_message_size = 67108864\nmin_free_disk_mb = 0\n",
        &[],
    );
    let mut c = s.connect();
    c.greet();
    // Twice the disk: the spool file fills it long before the end.
    assert_eq!(
        send_data(&mut c, &large_message(16)),
        "451 4.3.0 Local error in processing\r\n"
    );
    // The session goes on, the space is back, and mail is accepted again.
    c.cmd("NOOP", "250 2.0.0 Ok");
    let small = large_message(1);
    let r = send_data(&mut c, &small);
    assert!(r.starts_with("250 2.0.0 "), "{r}");
    let list = s.messages();
    assert_eq!(list.len(), 1, "only the second message is stored");
    assert_eq!(
        strip_trace(&s.raw(&crate::support::queued_id(&r))),
        small.as_slice()
    );
    assert_eq!(
        std::fs::read_dir(data.join("spool"))
            .expect("spool")
            .count(),
        0
    );
}

#[test]
fn connections_over_the_per_ip_limit_get_421_and_a_normal_client_is_served() {
    let s = Server::start(
        "[limits]\nmax_connections_per_ip = 20\nexempt_loopback = false\ncommand_timeout = 3\n",
        &[],
    );
    // 20 slow clients that send one byte now and then (slowloris), never a
    // whole command.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(s.addr).expect("connect"))
        .collect();
    for c in &mut slow {
        // Polite enough to wait for the greeting (else: 554, see below).
        let mut greeting = [0u8; 32];
        let _ = c.read(&mut greeting);
        let _ = c.write_all(b"E");
    }
    std::thread::sleep(Duration::from_millis(200));
    // The 21st is refused at once.
    let mut extra = Client::connect(s.addr);
    extra.expect("421 4.7.0 mx.test Too many connections, try again later");
    assert!(extra.is_closed());
    // The command timeout (3 s here) closes the crawlers, bytes or not.
    let started = Instant::now();
    for c in &mut slow {
        let _ = c.write_all(b"H");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.ends_with("421 4.4.2 mx.test Timeout exceeded\r\n") && !text.contains("220"),
            "{text:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(9));
    // Then a normal client gets its slot and is served.
    let mut c = s.connect();
    c.greet();
    c.cmd("NOOP", "250 2.0.0 Ok");
}

#[test]
fn hostile_bytes_cannot_forge_a_transaction_or_a_header() {
    let s = Server::start("", &[]);
    let mut c = s.connect();
    c.greet();
    // Every end-of-data form of the 2023 SMTP smuggling research, and NUL,
    // inside one message with a smuggled second transaction after each.
    // The default policy refuses bare CR/LF: one 550, nothing stored.
    for end in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r.\r",
        b"\r.\n",
        b"\r\n.\r",
        b"\r\n\x00.\r\n",
    ] {
        c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK");
        c.cmd("RCPT TO:<c@d.test>", "250 2.1.5 Recipient OK");
        c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>");
        let mut m = b"Subject: x\r\n\r\nhello".to_vec();
        m.extend_from_slice(end);
        m.extend_from_slice(
            b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nforged\r\n",
        );
        c.send(&m);
        c.send(".\r\n");
        let r = c.reply();
        assert!(
            r.starts_with("550 5.5.2") || r.starts_with("250 2.0.0 Ok: queued as "),
            "{end:?}: {r}"
        );
    }
    c.cmd("QUIT", "221 2.0.0 mx.test Bye");
    for m in s.messages() {
        assert_ne!(
            m["from"], "evil@x.test",
            "a smuggled transaction was stored"
        );
        let raw = s.raw(m["id"].as_str().expect("id"));
        // The smuggled text stayed content of the one message.
        assert!(String::from_utf8_lossy(strip_trace(&raw)).contains("MAIL FROM:<evil@x.test>"));
    }

    // A HELO with a header break, and an address with one, are refused:
    // nothing reaches the Received: line.
    let mut c = s.connect();
    c.expect_start("220 ");
    c.send("EHLO x.test\rX-Injected: yes\r\n");
    let r = c.reply();
    assert!(r.starts_with("501 "), "{r}");
    c.cmd("EHLO ok.test\0", "501 5.5.4 Syntax: EHLO hostname");
    c.send("EHLO ok.test\r\n");
    c.expect_start("250-");
    c.cmd(
        "MAIL FROM:<a\r@b.test>",
        "553 5.1.7 Sender address syntax invalid",
    );
    c.cmd(
        "MAIL FROM:<a@b.test>\x00",
        "501 5.5.4 Syntax: MAIL FROM:<address>",
    );
    // 8-bit junk as a command.
    c.cmd("\u{ff}\u{fe}NOOP", "500 5.5.2 Command not recognized");
    let id = c.mail("a@b.test", &["c@d.test"], b"Subject: clean\r\n\r\nx\r\n");
    let raw = s.raw(&id);
    let head = String::from_utf8_lossy(&raw[..raw.len().min(300)]).into_owned();
    assert!(
        head.starts_with("Received: from ok.test ([127.0.0.1])"),
        "{head}"
    );
    assert!(!head.contains("Injected"));
}

#[test]
fn a_client_that_talks_before_the_greeting_gets_554_and_is_dropped() {
    let s = Server::start("[limits]\ngreet_wait_ms = 400\n", &[]);
    // A bot that does not wait for the 220.
    let mut bot = TcpStream::connect(s.addr).expect("connect");
    bot.write_all(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
        .expect("write");
    bot.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut all = Vec::new();
    let _ = bot.read_to_end(&mut all);
    assert_eq!(
        String::from_utf8_lossy(&all),
        "554 5.5.0 mx.test Protocol error: talked before the greeting\r\n"
    );
    // A client that waits is greeted once the wait is over, and served.
    let started = Instant::now();
    let mut c = s.connect();
    c.greet();
    assert!(started.elapsed() >= Duration::from_millis(350));
    c.cmd("NOOP", "250 2.0.0 Ok");
}
