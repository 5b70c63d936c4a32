//! What PostgreSQL adds to the contract (`seam_tests` holds the rest):
//! several nodes on one database, leases, blobs, live changes across nodes,
//! schema versions, and a database that goes away and comes back.

use std::sync::Arc;

use crate::seam_tests::pg_store;
use crate::{
    Change, Envelope, NewMessage, QueueClaim, QueueState, Recipient, SpoolFile, Store, StoreError,
};

fn claim(now: i64, until: i64) -> QueueClaim {
    QueueClaim {
        now,
        until,
        limit: 100,
        per_domain: 100,
        skip: Vec::new(),
        only: None,
    }
}

fn queued(store: &impl Store, at: i64, rcpts: &[&str]) -> NewMessage {
    NewMessage {
        id: store.next_id(),
        received_at: at,
        envelope: Envelope {
            mail_from: "a@here.test".into(),
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    address: (*r).to_owned(),
                    params: vec![],
                })
                .collect(),
            ..Envelope::default()
        },
        subject: Some("s".into()),
        raw: b"Subject: s\r\n\r\nbody\r\n".to_vec(),
        spooled: None,
        queue: (0..rcpts.len() as u32).collect(),
        local: false,
        claimed_until: None,
        hold: false,
        webhooks: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_mint_different_ids_and_never_claim_the_same_row() {
    let a = pg_store("two_nodes", "a").await;
    let b = pg_store("two_nodes", "b").await;
    assert_ne!(a.next_id()[14..], b.next_id()[14..], "node numbers differ");
    for i in 0..40 {
        let s: &Arc<crate::PgStore> = if i % 2 == 0 { &a } else { &b };
        s.insert(queued(s, 10, &[&format!("r{i}@far.test")]))
            .await
            .expect("insert");
    }
    // Both claim at once: every row goes to exactly one of them.
    let c = claim(20, 100);
    let (ca, cb) = tokio::join!(a.queue_claim(&c), b.queue_claim(&c));
    let (ca, cb) = (ca.expect("a"), cb.expect("b"));
    assert_eq!(ca.len() + cb.len(), 40);
    let mut keys: Vec<_> = ca
        .iter()
        .chain(&cb)
        .map(|e| (e.id.clone(), e.position))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 40, "no row claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_is_written_only_under_its_lease() {
    let a = pg_store("leases", "a").await;
    let b = pg_store("leases", "b").await;
    a.insert(queued(&a, 10, &["x@far.test"]))
        .await
        .expect("insert");
    let mine = a.queue_claim(&claim(20, 30)).await.expect("claim");
    assert_eq!(mine.len(), 1);
    // Renewed while a works on it: b finds nothing due at 35.
    assert_eq!(
        a.queue_renew(&[mine[0].update()], 40).await.expect("renew"),
        1
    );
    assert!(
        b.queue_claim(&claim(35, 100))
            .await
            .expect("claim")
            .is_empty()
    );
    // a stops renewing (it died, or hangs); after the lease, b takes it.
    let theirs = b.queue_claim(&claim(41, 100)).await.expect("claim");
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0].lease_token, mine[0].lease_token);
    // a's late outcome and renewal change nothing.
    let mut late = mine[0].update();
    late.state = QueueState::Failed;
    late.last_reply = Some("550 late".into());
    a.queue_record(vec![late]).await.expect("record");
    assert_eq!(
        a.queue_renew(&[mine[0].update()], 500)
            .await
            .expect("renew"),
        0
    );
    let row = &b.queue_list().await.expect("list")[0];
    assert_eq!(
        (row.state, row.leased_until),
        (QueueState::Queued, Some(100))
    );
    // a starting again releases only its own claims: b's stays.
    a.queue_release_claims().await.expect("release");
    assert_eq!(
        b.queue_list().await.expect("list")[0].leased_until,
        Some(100)
    );
    // b's outcome is written.
    let mut done = theirs[0].update();
    done.state = QueueState::Delivered;
    b.queue_record(vec![done]).await.expect("record");
    assert!(
        b.queue_list().await.expect("list").is_empty(),
        "finished rows go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_domain_share_counts_every_nodes_claims() {
    let a = pg_store("per_domain", "a").await;
    let b = pg_store("per_domain", "b").await;
    for i in 0..6 {
        a.insert(queued(&a, 10, &[&format!("r{i}@busy.test")]))
            .await
            .expect("insert");
    }
    let mut c = claim(20, 100);
    c.per_domain = 4;
    assert_eq!(a.queue_claim(&c).await.expect("a").len(), 4);
    assert_eq!(
        b.queue_claim(&c).await.expect("b").len(),
        0,
        "4 in flight already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_goes_to_blobs_and_leaves_with_its_message() {
    let store = pg_store("blobs", "a").await;
    let dir = std::env::temp_dir().join(format!("postel-pg-blob-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut spool = SpoolFile::new_in(&dir).expect("spool");
    let rest: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    spool.append(&rest).expect("append");
    let mut m = queued(&store, 10, &["x@here.test"]);
    m.local = true;
    m.queue.clear();
    m.spooled = Some(spool);
    let id = m.id.clone();
    let head = m.raw.clone();
    store.insert(m).await.expect("insert");
    let chunks = crate::testing::shared()
        .psql(
            "blobs",
            &format!("SELECT count(*) FROM blobs WHERE id = '{id}'"),
        )
        .expect("psql");
    assert_eq!(chunks, "3", "1 MiB chunks");
    let got = store.get(&id).await.expect("get").expect("there");
    assert_eq!(got.raw.len(), head.len() + rest.len());
    assert_eq!(&got.raw[head.len()..], &rest[..]);
    let raw = store.open_raw(&id).await.expect("raw").expect("there");
    let (mut file, len) = raw.rest.expect("rest in a file");
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut back).expect("read");
    assert_eq!((len, back == rest), (rest.len() as u64, true));
    assert!(store.delete(&id).await.expect("delete"));
    let left = crate::testing::shared()
        .psql("blobs", "SELECT count(*) FROM blobs")
        .expect("psql");
    assert_eq!(left, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_reach_every_node() {
    let a = pg_store("live", "a").await;
    let b = pg_store("live", "b").await;
    let mut seen = b.subscribe();
    let mut m = queued(&a, 10, &["x@here.test"]);
    m.local = true;
    m.queue.clear();
    m.subject = Some("nul \0 inside".into());
    let id = m.id.clone();
    a.insert(m).await.expect("insert");
    let change = tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .expect("in time")
        .expect("change");
    match change {
        Change::Stored(s) => {
            assert_eq!(s.id, id);
            assert_eq!(s.subject.as_deref(), Some("nul \u{FFFD} inside"));
        }
        other => panic!("{other:?}"),
    }
    a.delete(&id).await.expect("delete");
    let change = tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .expect("in time")
        .expect("change");
    assert_eq!(change, Change::Deleted(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let server = crate::testing::shared();
    server.database("racing");
    let (x, y, z) = tokio::join!(
        pg_store("racing", "x"),
        pg_store("racing", "y"),
        pg_store("racing", "z")
    );
    assert_eq!(
        x.describe().await.expect("describe").1,
        crate::PG_SCHEMA_VERSION
    );
    drop((x, y, z));
    server
        .psql(
            "racing",
            "UPDATE postel_schema SET version = 99, compatible = 99",
        )
        .expect("psql");
    let refused = crate::PgStore::connect(crate::PgOptions {
        url: server.url("racing"),
        node: "w".into(),
        pool_size: 2,
        spool_dir: crate::seam_tests::spool_dir(),
        lease: 60,
        migrate: true,
    })
    .await
    .expect_err("refused");
    assert!(matches!(refused, StoreError::Schema(_)), "{refused}");
    assert!(!refused.is_transient());
    // Still compatible: taken, as in a rolling upgrade.
    server
        .psql(
            "racing",
            &format!(
                "UPDATE postel_schema SET compatible = {}",
                crate::PG_SCHEMA_VERSION
            ),
        )
        .expect("psql");
    pg_store("racing", "w").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_transient_errors_and_comes_back() {
    let server = crate::testing::PgServer::start();
    let url = server.database("away");
    let store = Arc::new(
        crate::PgStore::connect(crate::PgOptions {
            url,
            node: "a".into(),
            pool_size: 2,
            spool_dir: crate::seam_tests::spool_dir(),
            lease: 60,
            migrate: true,
        })
        .await
        .expect("connect"),
    );
    store
        .insert(queued(&store, 1, &["x@far.test"]))
        .await
        .expect("insert");
    server.halt();
    let err = store
        .insert(queued(&store, 2, &["y@far.test"]))
        .await
        .expect_err("down");
    assert!(err.is_transient(), "{err}");
    assert!(store.queue_list().await.is_err());
    server.resume();
    // Back: the pool makes new connections.
    let mut ok = false;
    for _ in 0..50 {
        if store
            .insert(queued(&store, 3, &["z@far.test"]))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ok, "inserts work again");
    assert_eq!(
        store.queue_list().await.expect("list").len(),
        2,
        "the first and the last"
    );
    server.halt();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_shared_and_each_node_replaces_its_own() {
    let a = pg_store("failures", "a").await;
    let b = pg_store("failures", "b").await;
    a.share_failures(
        &[("192.0.2.1".into(), 3, 5), ("192.0.2.2".into(), 1, 5000)],
        900,
    )
    .await
    .expect("a");
    let seen = b
        .share_failures(&[("192.0.2.1".into(), 2, 1)], 900)
        .await
        .expect("b");
    // The old one is outside the window; b does not see its own.
    assert_eq!(seen.get("192.0.2.1"), Some(&3));
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = a.share_failures(&[], 900).await.expect("a again");
    assert_eq!(
        seen.get("192.0.2.1"),
        Some(&2),
        "b's count, not a's old one"
    );
    let seen = b.share_failures(&[], 900).await.expect("b again");
    assert!(seen.is_empty(), "a replaced its counts with none: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_sessions_are_shared_and_each_node_replaces_its_own() {
    let a = pg_store("sessions", "a").await;
    let b = pg_store("sessions", "b").await;
    let c = pg_store("sessions", "c").await;
    a.share_sessions(&[("ok.test".into(), 2), ("far.test".into(), 1)])
        .await
        .expect("a");
    b.share_sessions(&[("ok.test".into(), 3)]).await.expect("b");
    let seen = c.share_sessions(&[]).await.expect("c");
    assert_eq!(seen.get("ok.test"), Some(&5), "summed over the others");
    assert_eq!(seen.get("far.test"), Some(&1));
    let seen = a.share_sessions(&[]).await.expect("a again");
    assert_eq!(
        seen.get("ok.test"),
        Some(&3),
        "only b's: a replaced its own"
    );
    assert!(!seen.contains_key("far.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_usage_is_shared_and_each_node_replaces_its_own() {
    let a = pg_store("usage", "a").await;
    let b = pg_store("usage", "b").await;
    a.share_usage(&[("Client Messages 192.0.2.1".into(), 3.5)])
        .await
        .expect("a");
    let seen = b
        .share_usage(&[("Client Messages 192.0.2.1".into(), 1.0)])
        .await
        .expect("b");
    assert_eq!(seen.get("Client Messages 192.0.2.1"), Some(&3.5));
    let seen = a.share_usage(&[]).await.expect("a again");
    assert_eq!(seen.get("Client Messages 192.0.2.1"), Some(&1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_secret_is_made_once_and_the_same_for_every_node() {
    let a = pg_store("secrets", "a").await;
    let b = pg_store("secrets", "b").await;
    let (sa, sb) = tokio::join!(
        a.shared_secret("scram-decoy"),
        b.shared_secret("scram-decoy")
    );
    let (sa, sb) = (sa.expect("a"), sb.expect("b"));
    assert_eq!(sa, sb);
    assert_ne!(sa, [0u8; 32]);
    assert_ne!(sa, a.shared_secret("other").await.expect("other"));
    assert_eq!(sa, a.shared_secret("scram-decoy").await.expect("again"));
}
