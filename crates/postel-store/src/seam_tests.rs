//! One contract, three stores: the same calls against SQLite, PostgreSQL
//! (a real server, see [`crate::testing`]) and memory must give the same
//! answers. What passes here is what the server and the web side may rely
//! on from any store.

use std::sync::Arc;

use crate::{
    Change, Envelope, MemoryStore, NewMessage, Query, QueueAction, QueueClaim, QueueState,
    Recipient, SqliteStore, Store, Users, WebhookState,
};

fn claim(now: i64, until: i64) -> QueueClaim {
    QueueClaim {
        now,
        until,
        limit: 10,
        per_domain: 10,
        skip: Vec::new(),
        only: None,
    }
}

fn message<S: Store>(store: &S, at: i64, from: &str, to: &str, subject: &str) -> NewMessage {
    let body = format!("Subject: {subject}\r\n\r\nhello\r\n");
    NewMessage {
        id: store.next_id(),
        received_at: at,
        envelope: Envelope {
            mail_from: from.to_owned(),
            recipients: vec![Recipient {
                address: to.to_owned(),
                params: vec![],
            }],
            ..Envelope::default()
        },
        subject: Some(subject.to_owned()),
        raw: body.into_bytes(),
        spooled: None,
        queue: Vec::new(),
        local: true,
        claimed_until: None,
        hold: false,
        webhooks: Vec::new(),
    }
}

/// Accounts: add, replace, list, remove.
fn accounts<U: Users>(users: &U) {
    assert!(users.set_user("bob", "$hash1", Some("keys1")).expect("add"));
    assert!(
        users
            .set_user("alice", "$hash2", Some("keys2"))
            .expect("add")
    );
    assert_eq!(
        users.user_scram("bob").expect("keys").as_deref(),
        Some("keys1")
    );
    // A new password without keys drops the old keys with it.
    assert!(!users.set_user("bob", "$hash3", None).expect("replace"));
    assert_eq!(
        users.user_hash("bob").expect("hash").as_deref(),
        Some("$hash3")
    );
    assert_eq!(users.user_scram("bob").expect("keys"), None);
    assert_eq!(
        users.user_scram("alice").expect("keys").as_deref(),
        Some("keys2")
    );
    assert_eq!(users.user_hash("carol").expect("hash"), None);
    assert_eq!(users.user_scram("carol").expect("keys"), None);
    let names: Vec<String> = users
        .users()
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    users
        .set_user_addresses("bob", &["Bob@B.test".into(), "*@sales.b.test".into()])
        .expect("addresses");
    assert_eq!(
        users.user_addresses("bob").expect("addresses"),
        ["*@sales.b.test", "bob@b.test"]
    );
    assert!(users.user_addresses("alice").expect("none").is_empty());
    assert!(users.remove_user("bob").expect("remove"));
    assert!(users.user_addresses("bob").expect("gone").is_empty());
    assert!(!users.remove_user("bob").expect("remove again"));
}

/// Every call of the trait, and what it must answer.
async fn contract<S: Store + Users>(store: S) {
    accounts(&store);
    let mut changes = store.subscribe();
    let mut ids = Vec::new();
    for (i, (from, to, subject)) in [
        ("ann@a.test", "bob@b.test", "Invoice 1"),
        ("cid@c.test", "dan@d.test", "Hello"),
        ("ann@a.test", "eve@e.test", "invoice 2"),
    ]
    .into_iter()
    .enumerate()
    {
        let m = message(&store, 1_000 + i as i64, from, to, subject);
        ids.push(m.id.clone());
        store.insert(m).await.expect("insert");
        assert!(matches!(changes.recv().await, Ok(Change::Stored(s)) if s.id == ids[i]));
    }
    // Ids sort in arrival order; the list is oldest first.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    let listed: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ids);
    // A duplicate id is refused, for good.
    let mut dup = message(&store, 1, "x@x.test", "y@y.test", "dup");
    dup.id.clone_from(&ids[0]);
    let err = store.insert(dup).await.expect_err("duplicate");
    assert!(!err.is_transient(), "{err}");
    // Reads.
    let m = store.get(&ids[1]).await.expect("get").expect("stored");
    assert_eq!(m.raw, b"Subject: Hello\r\n\r\nhello\r\n");
    assert_eq!(m.summary.size, m.raw.len() as u64);
    let raw = store.open_raw(&ids[1]).await.expect("raw").expect("stored");
    assert_eq!((raw.head, raw.rest.is_none()), (m.raw.clone(), true));
    assert!(store.get("NOPE").await.expect("get").is_none());
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.messages, 3);
    // Queries: newest first, case-insensitive, paged; a NUL matches nothing.
    let q = |text: &str| Query {
        text: Some(text.to_owned()),
        limit: 10,
        ..Query::default()
    };
    let page = store.query(&q("INVOICE")).await.expect("query");
    let got: Vec<&str> = page.messages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        (page.total, got),
        (2, vec![ids[2].as_str(), ids[0].as_str()])
    );
    assert_eq!(store.query(&q("dan@")).await.expect("query").total, 1);
    assert_eq!(store.query(&q("\0")).await.expect("query").total, 0);
    let since = Query {
        since: Some(1_001),
        limit: 1,
        offset: 1,
        ..Query::default()
    };
    let page = store.query(&since).await.expect("query");
    assert_eq!(page.total, 2);
    assert_eq!(page.messages[0].id, ids[1]);
    // Deletes, and what they announce.
    assert!(store.delete(&ids[1]).await.expect("delete"));
    assert!(!store.delete(&ids[1]).await.expect("delete again"));
    assert!(matches!(changes.recv().await, Ok(Change::Deleted(id)) if id == ids[1]));
    let pruned = store.prune(Some(1), None).await.expect("prune");
    assert_eq!(pruned, vec![ids[0].clone()]);
    assert_eq!(store.delete_all().await.expect("delete all"), 1);
    assert_eq!(store.stats().await.expect("stats").messages, 0);
}

/// The delivery queue: rows in the insert's commit, due rows, outcomes,
/// operator actions, and bodies that outlive an inbox delete while queued.
async fn queue_contract<S: Store>(store: S) {
    // Passing through: two remote recipients, not in the inbox.
    let mut m = message(&store, 100, "ann@a.test", "x@r.test", "Through");
    m.envelope.recipients.push(Recipient {
        address: "y@r.test".into(),
        params: vec!["NOTIFY=NEVER".into()],
    });
    m.queue = vec![0, 1];
    m.local = false;
    let through = m.id.clone();
    store.insert(m).await.expect("insert");
    // Kept locally and queued for one remote recipient.
    let mut m = message(&store, 200, "bob@b.test", "z@r.test", "Both");
    m.queue = vec![0];
    let both = m.id.clone();
    store.insert(m).await.expect("insert");
    assert_eq!(
        store.list().await.expect("list").len(),
        1,
        "only the local one"
    );
    assert!(
        store
            .queue_claim(&claim(99, 500))
            .await
            .expect("due")
            .is_empty()
    );
    let due = store.queue_claim(&claim(150, 500)).await.expect("due");
    assert_eq!(due.len(), 2);
    // Claimed: not handed out again until the claim ends.
    assert!(
        store
            .queue_claim(&claim(160, 500))
            .await
            .expect("claimed")
            .is_empty()
    );
    assert_eq!(due[0].leased_until, Some(500));
    assert_eq!(
        (due[1].recipient.as_str(), due[1].rcpt_params.clone()),
        ("y@r.test", vec!["NOTIFY=NEVER".to_owned()])
    );
    assert_eq!((due[0].state, due[0].attempts), (QueueState::Queued, 0));
    // One delivered, one deferred: the message stays, with its body.
    let mut done = due[0].update();
    done.state = QueueState::Delivered;
    done.attempts = 1;
    let mut later = due[1].update();
    later.state = QueueState::Deferred;
    later.attempts = 1;
    later.next_attempt = 1000;
    later.last_reply = Some("451 4.7.1 try again".into());
    store.queue_record(vec![done, later]).await.expect("record");
    let all = store.queue_list().await.expect("list");
    assert_eq!(all.len(), 3);
    assert!(store.get(&through).await.expect("get").is_some());
    assert_eq!(store.queue_counts().await.expect("counts").len(), 3);
    assert_eq!(
        store
            .queue_claim(&claim(999, 1500))
            .await
            .expect("due")
            .len(),
        1
    );
    store.queue_release_claims().await.expect("release");
    // Per domain, and skipped domains.
    let mut c = claim(999, 1000);
    c.per_domain = 0;
    assert!(
        store
            .queue_claim(&c)
            .await
            .expect("none per domain")
            .is_empty()
    );
    c.per_domain = 10;
    c.skip = vec!["r.test".into()];
    assert!(store.queue_claim(&c).await.expect("skipped").is_empty());
    c.skip.clear();
    c.only = Some("elsewhere.test".into());
    assert!(store.queue_claim(&c).await.expect("only").is_empty());
    // Held rows are never due; released, they are due at once.
    assert_eq!(
        store
            .queue_act(Some(&through), QueueAction::Hold, 0)
            .await
            .expect("hold"),
        1
    );
    // A deferral recorded while held does not undo the hold.
    let held = store.queue_list().await.expect("list");
    let mut late = held
        .iter()
        .find(|e| e.id == through && e.position == 1)
        .expect("row")
        .update();
    late.state = QueueState::Deferred;
    store.queue_record(vec![late]).await.expect("record");
    assert!(
        store
            .queue_list()
            .await
            .expect("list")
            .iter()
            .any(|e| e.state == QueueState::Held)
    );
    assert_eq!(
        store
            .queue_claim(&claim(5000, 6000))
            .await
            .expect("due")
            .len(),
        1
    );
    store.queue_release_claims().await.expect("release");
    store
        .queue_act(Some(&through), QueueAction::Release, 300)
        .await
        .expect("release");
    let due = store.queue_claim(&claim(300, 400)).await.expect("due");
    assert_eq!(due.len(), 2);
    // Deleting the local copy keeps the body for the queue.
    assert!(store.delete(&both).await.expect("delete"));
    assert!(store.list().await.expect("list").is_empty());
    assert!(store.get(&both).await.expect("get").is_some(), "body kept");
    // All done: the messages leave, bodies and all.
    let finished = due
        .iter()
        .map(|e| {
            let mut u = e.update();
            u.state = QueueState::Failed;
            u
        })
        .collect();
    store.queue_record(finished).await.expect("record");
    assert!(store.queue_list().await.expect("list").is_empty());
    assert!(store.get(&through).await.expect("get").is_none());
    assert!(store.get(&both).await.expect("get").is_none());
}

/// The webhook outbox: rows made with the message, claimed once until the
/// claim ends, recorded, listed, and gone with the message.
async fn webhook_contract<S: Store>(store: S) {
    let mut m = message(&store, 100, "a@b.test", "c@d.test", "hooked");
    m.webhooks = vec!["https://one.test/in".into(), "https://two.test/in".into()];
    let id = m.id.clone();
    store.insert(m).await.expect("insert");
    let plain = message(&store, 101, "a@b.test", "c@d.test", "not hooked");
    store.insert(plain).await.expect("insert");
    assert!(
        store
            .webhook_claim(99, 200, 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let claimed = store.webhook_claim(100, 200, 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|e| e.id == id && e.state == WebhookState::Pending)
    );
    assert!(
        store
            .webhook_claim(150, 300, 10)
            .await
            .expect("claim")
            .is_empty(),
        "claimed until 200"
    );
    let one = claimed
        .iter()
        .find(|e| e.hook.contains("one"))
        .expect("one");
    store
        .webhook_record(vec![one.update(WebhookState::Delivered, 150, "200")])
        .await
        .expect("record");
    // The unrecorded claim comes due again when it ends.
    let again = store.webhook_claim(200, 400, 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert!(again[0].hook.contains("two"));
    let listed = store.webhook_list(Some(&id), 10).await.expect("list");
    assert_eq!(listed.len(), 2);
    let delivered = listed.iter().find(|e| e.hook.contains("one")).expect("one");
    assert_eq!(
        (
            delivered.state,
            delivered.attempts,
            delivered.last_status.as_deref()
        ),
        (WebhookState::Delivered, 1, Some("200"))
    );
    assert!(store.delete(&id).await.expect("delete"));
    assert!(store.webhook_list(None, 10).await.expect("list").is_empty());
    // A message also queued for others leaves the inbox on delete, but
    // stays for its queue: its posts go with the inbox copy.
    let mut both = message(&store, 300, "a@b.test", "c@d.test", "both");
    both.envelope.recipients.push(crate::Recipient {
        address: "far@away.test".into(),
        params: vec![],
    });
    both.queue = vec![1];
    both.webhooks = vec!["https://one.test/in".into()];
    let both_id = both.id.clone();
    store.insert(both).await.expect("insert");
    assert_eq!(
        store
            .webhook_list(Some(&both_id), 10)
            .await
            .expect("list")
            .len(),
        1
    );
    store.delete(&both_id).await.expect("delete");
    assert!(
        store
            .webhook_list(Some(&both_id), 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .webhook_claim(1000, 2000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(MemoryStore::new()).await;
    queue_contract(MemoryStore::new()).await;
    webhook_contract(MemoryStore::new()).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_webhook_contract() {
    let dir = std::env::temp_dir().join(format!("postel-seam-w-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SqliteStore::open(&dir).expect("open"));
    webhook_contract(store.clone()).await;
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_queue_contract() {
    let dir = std::env::temp_dir().join(format!("postel-seam-q-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SqliteStore::open(&dir).expect("open"));
    queue_contract(store.clone()).await;
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    let dir = std::env::temp_dir().join(format!("postel-seam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SqliteStore::open(&dir).expect("open"));
    contract(store.clone()).await;
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spool folder of this test binary's own (the store makes it private).
pub(crate) fn spool_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("postel-pg-spool-{}", std::process::id()))
}

/// A PostgreSQL store on a new database of the test binary's server.
pub(crate) async fn pg_store(db: &str, node: &str) -> Arc<crate::PgStore> {
    let server = crate::testing::shared();
    let url = server.url(db);
    // The database may exist already (a second node on it).
    let _ = server.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    let spool_dir = spool_dir();
    Arc::new(
        crate::PgStore::connect(crate::PgOptions {
            url,
            node: node.to_owned(),
            pool_size: 4,
            spool_dir,
            lease: 60,
            migrate: true,
        })
        .await
        .expect("connect"),
    )
}

// Multi-threaded: the Users calls block their thread while the store's
// runtime answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract() {
    contract(pg_store("seam", "n1").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_queue_contract() {
    queue_contract(pg_store("seam_q", "n1").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_webhook_contract() {
    webhook_contract(pg_store("seam_w", "n1").await).await;
}
