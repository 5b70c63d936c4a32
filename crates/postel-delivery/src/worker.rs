//! The queue worker: takes the due rows from the store, groups them by
//! destination, delivers each group over one session (within the limits
//! on connections in all and per destination), records every outcome, and
//! sends the notices that the outcomes call for.
//!
//! The durability rule: a row changes only after its attempt, in one
//! commit with the others of its group. A process killed mid-delivery
//! leaves the row as it was, and it is tried again; a recipient that the
//! remote took and that was recorded is never sent again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postel_store::{Envelope, NewMessage, QueueEntry, QueueState, Recipient, Store};
use tokio::sync::{Notify, Semaphore};
use tracing::{error, info, warn};

use crate::down::DownHosts;
use crate::dsn::{self, Action, Notice, Reported};
use crate::mx::{self, Dns, Host, Myself};
use crate::outcome::{Failure, Outcome};
use crate::schedule::delay_warning_due;
use crate::session::{Dial, Job};
use crate::settings::{Settings, TlsPolicy};

/// Due rows taken per look at the queue.
const BATCH: usize = 2048;

/// How often the queue is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The worker and what its tasks share.
pub struct Worker<S> {
    store: S,
    settings: Arc<Settings>,
    dns: Dns,
    down: Arc<DownHosts>,
    wake: Arc<Notify>,
    in_flight: Mutex<HashSet<(String, u32)>>,
    per_destination: Mutex<HashMap<String, usize>>,
    connections: Arc<Semaphore>,
}

impl<S: Store + Clone> Worker<S> {
    /// A worker for `store`. `wake` is notified when new rows are queued.
    ///
    /// # Errors
    /// When the DNS resolver cannot be set up.
    pub fn new(store: S, settings: Settings, wake: Arc<Notify>) -> Result<Arc<Worker<S>>, String> {
        let dns = Dns::new(&settings.nameservers)?;
        let connections = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        Ok(Arc::new(Worker {
            store,
            settings: Arc::new(settings),
            dns,
            down: Arc::new(DownHosts::new()),
            wake,
            in_flight: Mutex::new(HashSet::new()),
            per_destination: Mutex::new(HashMap::new()),
            connections,
        }))
    }

    /// Runs until `shutdown` completes. Deliveries in flight then are cut
    /// off, and tried again at the next start.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            self.dispatch(&mut tasks).await;
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a task for each destination with due rows, within limits.
    async fn dispatch(self: &Arc<Self>, tasks: &mut tokio::task::JoinSet<()>) {
        let now = unix_now();
        let due = match self.store.queue_due(now, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                error!(error = %e, "cannot read the queue");
                return;
            }
        };
        // Destination → message id → its rows there.
        let mut groups: BTreeMap<String, BTreeMap<String, Vec<QueueEntry>>> = BTreeMap::new();
        {
            let in_flight = Self::lock(&self.in_flight);
            for e in due {
                if in_flight.contains(&(e.id.clone(), e.position)) {
                    continue;
                }
                let dest = self.destination(&e.recipient);
                groups
                    .entry(dest)
                    .or_default()
                    .entry(e.id.clone())
                    .or_default()
                    .push(e);
            }
        }
        for (dest, messages) in groups {
            let active = *Self::lock(&self.per_destination).get(&dest).unwrap_or(&0);
            let free = self
                .settings
                .max_connections_per_destination
                .saturating_sub(active);
            if free == 0 {
                continue;
            }
            // Spread the messages over as many sessions as may open.
            let sessions = free.min(messages.len());
            let mut shares: Vec<Vec<Vec<QueueEntry>>> = vec![Vec::new(); sessions];
            for (i, (_, rows)) in messages.into_iter().enumerate() {
                shares[i % sessions].push(rows);
            }
            for share in shares {
                {
                    let mut in_flight = Self::lock(&self.in_flight);
                    for e in share.iter().flatten() {
                        in_flight.insert((e.id.clone(), e.position));
                    }
                    *Self::lock(&self.per_destination)
                        .entry(dest.clone())
                        .or_default() += 1;
                }
                let worker = self.clone();
                let dest = dest.clone();
                tasks.spawn(async move {
                    let permit = worker.connections.clone().acquire_owned().await;
                    worker.deliver(&dest, &share).await;
                    drop(permit);
                    let mut in_flight = Self::lock(&worker.in_flight);
                    for e in share.iter().flatten() {
                        in_flight.remove(&(e.id.clone(), e.position));
                    }
                    let mut per = Self::lock(&worker.per_destination);
                    if let Some(n) = per.get_mut(&dest) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            per.remove(&dest);
                        }
                    }
                });
            }
        }
    }

    /// Where a recipient's mail goes: its domain, or the smarthost.
    fn destination(&self, recipient: &str) -> String {
        if self.settings.smarthost.is_some() {
            return "[smarthost]".to_owned();
        }
        recipient
            .rsplit_once('@')
            .map_or(recipient, |(_, d)| d)
            .to_ascii_lowercase()
    }

    /// One session's worth: the messages (each its rows) for `dest`.
    async fn deliver(&self, dest: &str, messages: &[Vec<QueueEntry>]) {
        let now = unix_now();
        let mut results: Vec<(Vec<QueueEntry>, Vec<Outcome>)> = Vec::new();
        let mut jobs = Vec::new();
        for rows in messages {
            let Some(first) = rows.first() else { continue };
            match self.store.get(&first.id).await {
                Ok(Some(m)) if hops(&m.raw) > self.settings.max_hops => {
                    let f = Failure::local("5.4.6", "too many Received: headers: a mail loop");
                    results.push((rows.clone(), vec![Outcome::Failed(f); rows.len()]));
                }
                Ok(Some(m)) => jobs.push(Job {
                    entries: rows.clone(),
                    content: Arc::new(m.raw),
                }),
                Ok(None) => {
                    error!(
                        id = first.id,
                        "a queued message has no body: failing its recipients"
                    );
                    let f =
                        Failure::local("5.3.0", "the message's content is missing from the store");
                    results.push((rows.clone(), vec![Outcome::Failed(f); rows.len()]));
                }
                Err(e) => {
                    warn!(id = first.id, error = %e, "cannot read a queued message");
                    let f = Failure::local("4.3.0", format!("cannot read the message: {e}"));
                    results.push((rows.clone(), vec![Outcome::Deferred(f); rows.len()]));
                }
            }
        }
        if !jobs.is_empty() {
            let outcomes = self.send(dest, &jobs).await;
            for (job, o) in jobs.into_iter().zip(outcomes) {
                results.push((job.entries, o));
            }
        }
        self.record(results, now).await;
    }

    /// Resolves, opens a session and sends every job: one outcome per row.
    async fn send(&self, dest: &str, jobs: &[Job]) -> Vec<Vec<Outcome>> {
        let s = &self.settings;
        let all = |o: Outcome| {
            jobs.iter()
                .map(|j| vec![o.clone(); j.entries.len()])
                .collect()
        };
        let (hosts, dial) = match &s.smarthost {
            Some(sh) => {
                let addrs = match self.dns.addresses(&sh.host).await {
                    Ok(a) if !a.is_empty() => a,
                    Ok(_) => {
                        return all(Outcome::Deferred(Failure::local(
                            "4.4.4",
                            format!("the smarthost {} has no address", sh.host),
                        )));
                    }
                    Err(f) => return all(Outcome::Deferred(f)),
                };
                let host = Host {
                    name: sh.host.clone(),
                    preference: 0,
                    addrs,
                };
                let dial = Dial {
                    settings: s,
                    tls: TlsPolicy::Verify,
                    auth: sh.auth.as_ref(),
                    implicit_tls: sh.implicit_tls,
                    port: sh.port,
                    down: &self.down,
                };
                (vec![host], dial)
            }
            None => {
                let myself = Myself {
                    hostname: s.hostname.to_ascii_lowercase(),
                    listeners: s.own_addresses.clone(),
                    mx_port: s.mx_port,
                };
                match mx::route(&self.dns, dest, &myself, s.allow_private_addresses).await {
                    Ok(hosts) => (
                        hosts,
                        Dial {
                            settings: s,
                            tls: s.tls_for(dest),
                            auth: None,
                            implicit_tls: false,
                            port: s.mx_port,
                            down: &self.down,
                        },
                    ),
                    Err(f) if f.is_permanent() => return all(Outcome::Failed(f)),
                    Err(f) => return all(Outcome::Deferred(f)),
                }
            }
        };
        let mut session = match dial.open(&hosts).await {
            Ok(session) => session,
            Err(f) => return all(Outcome::Deferred(f)),
        };
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !session.is_open() {
                let f = Failure::local("4.4.2", format!("{}: the session ended", session.host));
                out.push(vec![Outcome::Deferred(f); job.entries.len()]);
                continue;
            }
            out.push(session.deliver(job, s).await);
        }
        session.quit().await;
        out
    }

    /// Writes the outcomes, after sending the notices they call for (so
    /// that a crash between the two repeats a notice, never loses one).
    async fn record(&self, results: Vec<(Vec<QueueEntry>, Vec<Outcome>)>, now: i64) {
        let s = &self.settings;
        let mut updates = Vec::new();
        for (rows, outcomes) in results {
            let mut reported: Vec<Reported<'_>> = Vec::new();
            for (e, o) in rows.iter().zip(outcomes) {
                let mut u = e.update();
                u.attempts = e.attempts.saturating_add(1);
                match o {
                    Outcome::Delivered {
                        remote,
                        reply,
                        passed_dsn,
                    } => {
                        info!(id = e.id, to = e.recipient, %remote, reply, "delivered");
                        u.state = QueueState::Delivered;
                        u.last_reply = Some(reply.clone());
                        if !passed_dsn && dsn::wanted(e, Action::Relayed) {
                            reported.push(report(
                                e,
                                Action::Relayed,
                                "2.0.0",
                                Some(remote),
                                Some(reply),
                                None,
                            ));
                        }
                    }
                    Outcome::Failed(f) => {
                        warn!(
                            id = e.id,
                            to = e.recipient,
                            status = f.status,
                            reply = f.text,
                            "delivery failed"
                        );
                        u.state = QueueState::Failed;
                        u.last_reply = Some(f.text.clone());
                        if dsn::wanted(e, Action::Failed) {
                            reported.push(failed(e, f));
                        }
                    }
                    Outcome::Deferred(f) => {
                        u.last_reply = Some(f.text.clone());
                        let jitter = fastrand::f64();
                        match s
                            .schedule
                            .next_attempt(e.received_at, u.attempts, now, jitter)
                        {
                            None => {
                                warn!(
                                    id = e.id,
                                    to = e.recipient,
                                    reply = f.text,
                                    "gave up: the queue lifetime is over"
                                );
                                u.state = QueueState::Failed;
                                if dsn::wanted(e, Action::Failed) {
                                    reported.push(failed(e, f));
                                }
                            }
                            Some(next) => {
                                info!(
                                    id = e.id,
                                    to = e.recipient,
                                    reply = f.text,
                                    next,
                                    "deferred"
                                );
                                u.state = QueueState::Deferred;
                                u.next_attempt = next;
                                if let Some(w) = delay_warning_due(e.received_at, now, e.warned) {
                                    u.warned = w;
                                    if dsn::wanted(e, Action::Delayed) {
                                        let mut r = failed(e, f);
                                        r.action = Action::Delayed;
                                        r.will_retry_until =
                                            Some(s.schedule.expires(e.received_at));
                                        reported.push(r);
                                    }
                                }
                            }
                        }
                    }
                }
                updates.push(u);
            }
            if !reported.is_empty() {
                self.notify(reported, now).await;
            }
        }
        if let Err(e) = self.store.queue_record(updates).await {
            error!(error = %e, "cannot record delivery outcomes: they will be tried again");
        }
    }

    /// Builds and stores one notice about one message, to its sender:
    /// locally when the sender's domain is local, else queued.
    async fn notify(&self, reported: Vec<Reported<'_>>, now: i64) {
        let e = reported[0].entry;
        let original = match self.store.get(&e.id).await {
            Ok(Some(m)) => m.raw,
            _ => Vec::new(),
        };
        let s = &self.settings;
        let trusted = e.auth_user.is_some()
            || e.client_addr
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| s.is_trusted(a.ip()));
        let ret_hdrs = e
            .mail_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case("RET=HDRS"));
        let failure = reported.iter().any(|r| r.action == Action::Failed);
        let id = self.store.next_id();
        let notice = Notice {
            hostname: &s.hostname,
            notice_id: &id,
            full_content: trusted
                && !ret_hdrs
                && failure
                && original.len() <= s.notice_content_limit,
            recipients: reported,
            original: &original,
            now,
        };
        let raw = notice.render();
        let sender_domain = e.mail_from.rsplit_once('@').map_or("", |(_, d)| d);
        let local = s.is_local(sender_domain);
        let subject = if failure {
            "Undelivered Mail Returned to Sender"
        } else {
            "Delivery Status Notification"
        };
        let msg = NewMessage {
            id: id.clone(),
            received_at: now,
            envelope: Envelope {
                mail_from: String::new(),
                mail_params: Vec::new(),
                recipients: vec![Recipient {
                    address: e.mail_from.clone(),
                    params: vec!["NOTIFY=NEVER".into()],
                }],
                client_addr: "127.0.0.1:0".into(),
                helo: s.hostname.clone(),
                protocol: "local".into(),
                tls: None,
                auth_user: None,
            },
            subject: Some(subject.into()),
            raw,
            spooled: None,
            queue: if local { Vec::new() } else { vec![0] },
            local,
        };
        match self.store.insert(msg).await {
            Ok(()) => {
                info!(id, about = e.id, to = e.mail_from, "notice sent");
                if !local {
                    self.wake.notify_one();
                }
            }
            Err(err) => error!(about = e.id, error = %err, "cannot store a delivery notice"),
        }
    }
}

fn report<'a>(
    e: &'a QueueEntry,
    action: Action,
    status: &str,
    remote: Option<String>,
    diagnostic: Option<String>,
    until: Option<i64>,
) -> Reported<'a> {
    Reported {
        entry: e,
        action,
        status: status.to_owned(),
        remote,
        diagnostic,
        will_retry_until: until,
    }
}

fn failed(e: &QueueEntry, f: Failure) -> Reported<'_> {
    let diagnostic = f.remote.is_some().then(|| f.text.clone());
    let remote = f.remote.clone();
    let mut r = report(e, Action::Failed, &f.status, remote, diagnostic, None);
    if r.diagnostic.is_none() {
        // Postel's own reason, in the status line of the human part.
        r.diagnostic = None;
        r.status = f.status;
    }
    r
}

/// The `Received:` headers of a message (its hop count).
fn hops(raw: &[u8]) -> usize {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    raw[..end]
        .split(|b| *b == b'\n')
        .filter(|line| line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_counted_in_the_header_only() {
        let m = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: not a header\r\n";
        assert_eq!(hops(m), 2);
    }
}
