//! The SQLite store, round trip to recovery.

use super::*;
use crate::Users as _;
use std::sync::Arc;

fn msg(store: &SqliteStore, body: &[u8]) -> NewMessage {
    NewMessage {
        id: store.next_id(),
        received_at: 1_700_000_000,
        envelope: Envelope {
            mail_from: "a@b.test".into(),
            mail_params: vec!["SIZE=10".into(), "BODY=8BITMIME".into()],
            recipients: vec![
                Recipient {
                    address: "c@d.test".into(),
                    params: vec![],
                },
                Recipient {
                    address: "postmaster".into(),
                    params: vec![],
                },
            ],
            client_addr: "127.0.0.1:1234".into(),
            helo: "client.test".into(),
            protocol: "ESMTP".into(),
            tls: None,
            auth_user: None,
            checks: None,
        },
        subject: Some("hi".into()),
        raw: body.to_vec(),
        spooled: None,
        queue: Vec::new(),
        local: true,
        claimed_until: None,
        hold: false,
        webhooks: Vec::new(),
    }
}

#[tokio::test]
async fn insert_list_get_delete_round_trip() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let m = msg(&store, b"Subject: hi\r\n\r\nbody\xff\r\n");
    let id = m.id.clone();
    let (envelope, raw) = (m.envelope.clone(), m.raw.clone());
    store.insert(m).await.expect("insert");
    let list = store.list().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].envelope, envelope);
    assert_eq!(list[0].size, raw.len() as u64);
    let got = store.get(&id).expect("get").expect("present");
    assert_eq!(got.raw, raw);
    assert_eq!(
        store.stats().expect("stats"),
        Stats {
            messages: 1,
            bytes: raw.len() as u64
        }
    );
    assert!(store.delete(&id).expect("delete"));
    assert!(!store.delete(&id).expect("delete again"));
    assert!(store.get(&id).expect("get").is_none());
}

/// Content of every octet value, larger than any buffer on the way.
fn big_content() -> Vec<u8> {
    (0..1_000_003).map(|i| (i * 7 % 251) as u8).collect()
}

fn spooled(store: &SqliteStore, content: &[u8]) -> SpoolFile {
    let mut file = store.spool_file().expect("spool file");
    for chunk in content.chunks(65_536) {
        file.append(chunk).expect("write spool");
    }
    assert_eq!(file.len(), content.len() as u64);
    file
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn spooled_content_is_kept_apart_read_back_whole_and_deleted_with_its_message() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let content = big_content();
    let head = b"Received: by test\r\n";
    let mut m = msg(&store, head);
    m.spooled = Some(spooled(&store, &content));
    let id = m.id.clone();
    let size = m.size();
    assert_eq!(size, (head.len() + content.len()) as u64);
    let mut changes = store.subscribe();
    store.insert(m).await.expect("insert");
    let Ok(Change::Stored(summary)) = changes.try_recv() else {
        panic!("no Stored change");
    };
    assert_eq!(summary.size, size);
    assert_eq!(files(&dir.join("blobs")), std::slice::from_ref(&id));
    assert!(files(&dir.join("spool")).is_empty());
    let got = store.get(&id).expect("get").expect("present");
    assert_eq!(got.summary.size, size);
    assert_eq!(&got.raw[..head.len()], head);
    assert!(got.raw[head.len()..] == content[..], "content differs");
    assert_eq!(store.stats().expect("stats").bytes, size);
    assert!(store.delete(&id).expect("delete"));
    assert!(files(&dir.join("blobs")).is_empty());
}

#[tokio::test]
async fn prune_and_delete_all_remove_the_files_of_what_they_delete() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut m = msg(&store, b"");
        m.spooled = Some(spooled(&store, b"content\r\n"));
        ids.push(m.id.clone());
        store.insert(m).await.expect("insert");
    }
    assert_eq!(store.prune(Some(1), None).expect("prune"), ids[..2]);
    assert_eq!(files(&dir.join("blobs")), ids[2..]);
    assert_eq!(store.delete_all().expect("delete all"), 1);
    assert!(files(&dir.join("blobs")).is_empty());
}

#[tokio::test]
async fn open_removes_files_no_commit_records_and_keeps_the_rest() {
    let dir = tempdir();
    let content = big_content();
    let id = {
        let store = SqliteStore::open(&dir).expect("open");
        let mut m = msg(&store, b"");
        m.spooled = Some(spooled(&store, &content));
        let id = m.id.clone();
        store.insert(m).await.expect("insert");
        id
    };
    // What a crash can leave: a file renamed into place whose commit
    // never happened, and a spool file of a transaction cut short. But
    // while a store (a server) has the folder, such files are in use,
    // and a store opened beside it (`postel users add`) leaves them.
    let running = SqliteStore::open(&dir).expect("open");
    std::fs::write(dir.join("blobs").join("0000000000ORPHAN"), b"x").expect("orphan");
    std::fs::write(dir.join("spool").join(".tmpcut"), b"x").expect("spool leftover");
    let beside = SqliteStore::open_beside(&dir).expect("open beside");
    // A second writing store is refused, and sweeps nothing either.
    let second = SqliteStore::open_waiting(&dir, std::time::Duration::ZERO);
    assert!(
        matches!(second, Err(StoreError::InUse(_))),
        "{:?}",
        second.err()
    );
    assert_eq!(files(&dir.join("blobs")).len(), 2);
    assert_eq!(files(&dir.join("spool")).len(), 1);
    drop((beside, running));
    let store = SqliteStore::open(&dir).expect("reopen");
    assert_eq!(files(&dir.join("blobs")), std::slice::from_ref(&id));
    assert!(files(&dir.join("spool")).is_empty());
    let got = store.get(&id).expect("get").expect("present");
    assert!(got.raw == content, "content differs after reopen");
}

#[tokio::test]
async fn a_refused_spooled_message_leaves_no_file_and_never_replaces_another() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let mut first = msg(&store, b"");
    first.spooled = Some(spooled(&store, b"first\r\n"));
    let id = first.id.clone();
    store.insert(first).await.expect("insert");
    // The same id again, apart content and all: refused, and the first
    // message keeps its content.
    let mut again = msg(&store, b"");
    again.id = id.clone();
    again.spooled = Some(spooled(&store, b"second\r\n"));
    assert!(store.insert(again).await.is_err());
    assert_eq!(
        store.get(&id).expect("get").expect("present").raw,
        b"first\r\n"
    );
    // A refused commit (same id as a message without apart content)
    // takes its own file away again.
    let plain = msg(&store, b"plain\r\n");
    let plain_id = plain.id.clone();
    store.insert(plain).await.expect("insert");
    let mut dup = msg(&store, b"");
    dup.id = plain_id.clone();
    dup.spooled = Some(spooled(&store, b"dup\r\n"));
    assert!(store.insert(dup).await.is_err());
    assert_eq!(files(&dir.join("blobs")), [id]);
    assert!(files(&dir.join("spool")).is_empty());
}

#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_messages() {
    let dir = tempdir();
    std::fs::create_dir_all(&dir).expect("dir");
    {
        let conn = Connection::open(dir.join("messages.db")).expect("create");
        let v1 = SCHEMA.replace(
            "raw         BLOB NOT NULL,\n    -- Octets of content after raw, kept in blobs/<id>.\n    apart       INTEGER NOT NULL DEFAULT 0",
            "raw         BLOB NOT NULL",
        );
        let v1 = v1.replace(
            ",\n    -- SCRAM-SHA-256 keys (RFC 5803); NULL: set before version 6.\n    scram      TEXT",
            "",
        );
        assert!(!v1.contains("apart") && !v1.contains("scram"));
        conn.execute_batch(&v1).expect("v1 schema");
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO messages (id, received_at, client_addr, helo, protocol, mail_from, mail_params, size, raw)
             VALUES ('00000000000001', 1, '127.0.0.1:1', 'h', 'ESMTP', 'a@b', '', 3, X'6F6C64');
             INSERT INTO users (name, hash, created_at) VALUES ('old', '$h', 1);",
        )
        .expect("v1 row");
    }
    let store = SqliteStore::open(&dir).expect("open v1");
    let old = store.get("00000000000001").expect("get").expect("present");
    assert_eq!(old.raw, b"old");
    // A user from before SCRAM keys: its hash, and no keys until a new
    // password brings them.
    assert_eq!(store.user_hash("old").expect("hash").as_deref(), Some("$h"));
    assert_eq!(store.user_scram("old").expect("keys"), None);
    store.set_user("old", "$h2", Some("k")).expect("set");
    assert_eq!(store.user_scram("old").expect("keys").as_deref(), Some("k"));
    let mut m = msg(&store, b"");
    m.spooled = Some(spooled(&store, b"new\r\n"));
    let id = m.id.clone();
    store.insert(m).await.expect("insert after migration");
    assert_eq!(
        store.get(&id).expect("get").expect("present").raw,
        b"new\r\n"
    );
    let version: i64 = store
        .reader
        .lock()
        .expect("reader")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    drop(store);
    // An older postel opened it again (it sets version 1 at every
    // open), or a migration was cut short after its ALTER: the column
    // is there, the version says 1. Opening must still work.
    Connection::open(dir.join("messages.db"))
        .and_then(|c| c.pragma_update(None, "user_version", 1))
        .expect("back to 1");
    let store = SqliteStore::open(&dir).expect("open again");
    assert_eq!(
        store.get(&id).expect("get").expect("present").raw,
        b"new\r\n"
    );
    drop(store);
    let beside = SqliteStore::open_existing(&dir).expect("open existing");
    assert_eq!(beside.list().expect("list").len(), 2);
}

/// Stores three messages with distinct senders, recipients, subjects
/// and times; returns their ids, oldest first.
async fn three(store: &SqliteStore) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (from, to, subject)) in [
        ("alice@one.test", "bob@two.test", "Invoice 100%"),
        ("carol@three.test", "dave@four.test", "Lunch_plans"),
        ("erin@one.test", "BOB@two.test", "Re: invoice"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = msg(store, b"x\r\n");
        m.envelope.mail_from = from.into();
        m.envelope.recipients[0].address = to.into();
        m.subject = Some(subject.into());
        m.received_at = 1_000 + i as i64 * 100;
        ids.push(m.id.clone());
        store.insert(m).await.expect("insert");
    }
    ids
}

fn ids(p: &Page) -> Vec<&str> {
    p.messages.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn query_filters_pages_and_orders_newest_first() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let id = three(&store).await;
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query {
            limit: 10,
            ..Query::default()
        };
        f(&mut q);
        store.query(&q).expect("query")
    };
    let all = q(&|_| {});
    assert_eq!(all.total, 3);
    assert_eq!(ids(&all), [&id[2], &id[1], &id[0]]);
    // Text: sender, recipient or subject, ignoring ASCII case.
    assert_eq!(
        ids(&q(&|q| q.text = Some("INVOICE".into()))),
        [&id[2], &id[0]]
    );
    assert_eq!(ids(&q(&|q| q.text = Some("four.test".into()))), [&id[1]]);
    assert_eq!(ids(&q(&|q| q.to = Some("bob@".into()))), [&id[2], &id[0]]);
    assert_eq!(
        ids(&q(&|q| q.from = Some("one.test".into()))),
        [&id[2], &id[0]]
    );
    assert_eq!(ids(&q(&|q| q.subject = Some("lunch".into()))), [&id[1]]);
    // LIKE's wildcards are plain characters in a filter.
    assert_eq!(ids(&q(&|q| q.subject = Some("100%".into()))), [&id[0]]);
    assert_eq!(ids(&q(&|q| q.subject = Some("h_p".into()))), [&id[1]]);
    assert_eq!(
        ids(&q(&|q| q.subject = Some("ice_".into()))),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&q(&|q| q.subject = Some("%".into()))), [&id[0]]);
    // Time window: since inclusive, until exclusive.
    let w = q(&|q| {
        q.since = Some(1_100);
        q.until = Some(1_200);
    });
    assert_eq!(ids(&w), [&id[1]]);
    // Paging keeps the total.
    let p = q(&|q| {
        q.limit = 1;
        q.offset = 1;
    });
    assert_eq!((p.total, ids(&p)), (3, vec![id[1].as_str()]));
    // Filters combine.
    let both = q(&|q| {
        q.text = Some("invoice".into());
        q.from = Some("alice".into());
    });
    assert_eq!(ids(&both), [&id[0]]);
}

#[tokio::test]
async fn prune_keeps_the_newest_and_drops_the_old_and_notifies() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let mut changes = store.subscribe();
    let id = three(&store).await;
    for want in &id {
        match changes.recv().await.expect("change") {
            Change::Stored(s) => assert_eq!(&s.id, want),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        store.prune(Some(2), None).expect("prune"),
        vec![id[0].clone()]
    );
    assert_eq!(
        changes.recv().await.expect("change"),
        Change::Deleted(id[0].clone())
    );
    assert!(store.prune(Some(2), None).expect("prune").is_empty());
    assert_eq!(
        store.prune(None, Some(1_200)).expect("prune"),
        vec![id[1].clone()]
    );
    assert_eq!(
        ids(&store
            .query(&Query {
                limit: 9,
                ..Query::default()
            })
            .expect("q")),
        [&id[2]]
    );
    // Recipients go with their messages.
    let rcpts: i64 = lock(&store.reader)
        .query_row("SELECT count(*) FROM recipients", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rcpts, 2);
    assert_eq!(store.delete_all().expect("delete all"), 1);
    assert_eq!(store.stats().expect("stats").messages, 0);
}

#[tokio::test]
async fn prune_works_in_batches() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    for _ in 0..(PRUNE_BATCH * 2 + 10) {
        let m = msg(&store, b"x\r\n");
        store.insert(m).await.expect("insert");
    }
    let gone = store.prune(Some(5), None).expect("prune");
    assert_eq!(gone.len(), PRUNE_BATCH * 2 + 5);
    assert_eq!(store.stats().expect("stats").messages, 5);
}

#[tokio::test]
async fn concurrent_inserts_all_land_and_ids_are_unique() {
    let dir = tempdir();
    let store = Arc::new(SqliteStore::open(&dir).expect("open"));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let m = msg(&store, format!("message {i}\r\n").as_bytes());
            store.insert(m).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("insert");
    }
    let list = store.list().await.expect("list");
    assert_eq!(list.len(), 200);
    let mut ids: Vec<_> = list.iter().map(|s| s.id.clone()).collect();
    let sorted = ids.clone();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let mut check = sorted.clone();
    check.sort();
    assert_eq!(check, sorted, "ids sort in arrival order");
}

#[tokio::test]
async fn duplicate_id_fails_alone_and_permanently() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    let a = msg(&store, b"a\r\n");
    let mut b = msg(&store, b"b\r\n");
    b.id = a.id.clone();
    let c = msg(&store, b"c\r\n");
    let (ra, rb, rc) = tokio::join!(store.insert(a), store.insert(b), store.insert(c));
    assert!(ra.is_ok() && rc.is_ok());
    let err = rb.expect_err("duplicate id");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(store.list().expect("list").len(), 2);
}

#[tokio::test]
async fn reopen_keeps_messages_and_ids_keep_increasing() {
    let dir = tempdir();
    let first = {
        let store = SqliteStore::open(&dir).expect("open");
        let m = msg(&store, b"x\r\n");
        let id = m.id.clone();
        store.insert(m).await.expect("insert");
        id
    };
    let store = SqliteStore::open(&dir).expect("reopen");
    assert_eq!(store.list().expect("list").len(), 1);
    assert!(store.next_id() > first);
}

#[test]
fn users_add_replace_list_remove() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    assert!(store.set_user("alice", "h1", None).expect("add"));
    assert!(!store.set_user("alice", "h2", None).expect("replace"));
    assert_eq!(
        store.user_hash("alice").expect("get").as_deref(),
        Some("h2")
    );
    assert_eq!(store.user_hash("bob").expect("get"), None);
    assert_eq!(store.users().expect("list").len(), 1);
    assert!(store.remove_user("alice").expect("remove"));
    assert!(!store.remove_user("alice").expect("remove again"));
}

#[tokio::test]
async fn insert_after_close_is_closed_error() {
    let dir = tempdir();
    let store = SqliteStore::open(&dir).expect("open");
    store.close();
    let err = store.insert(msg(&store, b"x")).await.expect_err("closed");
    assert!(matches!(err, StoreError::Closed));
    assert!(err.is_transient());
}

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("postel-store-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
