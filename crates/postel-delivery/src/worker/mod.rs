//! The queue worker: claims the due rows from the store (at most so many
//! per domain, none for a domain whose connections are all busy), groups
//! them by destination, and delivers each group over one session, within
//! the limits on connections in all and per destination.
//!
//! The durability rule: a row changes only after its attempt. Each
//! message's outcomes are recorded as soon as its transaction ends (in the
//! store's group commit, beside new mail), so a crash or a restart resends
//! at most the message in flight. A claim keeps other deliveries off a row
//! while it is worked on; claims are released when the worker starts, as
//! this node then owns every delivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postel_store::{QueueClaim, QueueEntry, QueueUpdate, Store};
use tokio::sync::{Notify, Semaphore};
use tracing::{error, warn};

use crate::down::DownHosts;
use crate::handoff::Handoff;
use crate::local::Target;
use crate::metrics::DeliveryMetrics;
use crate::mx::Dns;
use crate::outcome::{Failure, Outcome};
use crate::report::report;
use crate::requiretls;
use crate::session::{Job, Session};
use crate::settings::Settings;
use crate::{lmtp, maildir};

mod elsewhere;
mod leases;
mod route;

/// A recording of outcomes under way (the store's group commit).
type Pending = tokio::task::JoinHandle<Result<(), postel_store::StoreError>>;

/// Rows claimed per look at the queue.
const BATCH: usize = 1024;

/// Rows claimed per domain per look: a session's worth.
const PER_DOMAIN: usize = 200;

/// How long a claim lasts if its outcome never comes (a task that hangs):
/// longer than any session can take under the timeouts. Rows handed over
/// in memory are committed claimed for as long.
pub const CLAIM: i64 = 6 * 3600;

/// How often the queue is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

/// How long one session goes on taking more messages for its destination.
const SESSION_REUSE: Duration = Duration::from_secs(300);

/// How long deliveries in flight may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(10);

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
    metrics: DeliveryMetrics,
    /// Messages just committed, handed over from intake in memory.
    handoff: Arc<Handoff>,
    /// Sessions open per destination.
    per_destination: Mutex<HashMap<String, usize>>,
    /// Sessions the other nodes have open per destination (a store that
    /// several nodes share), as they last said.
    elsewhere: Mutex<HashMap<String, usize>>,
    /// When the store was last asked for due rows.
    last_claim: Mutex<Option<std::time::Instant>>,
    connections: Arc<Semaphore>,
    /// Destinations' MTA-STS policies, when on.
    mta_sts: Option<crate::mta_sts::MtaSts>,
    /// The validating resolver, when DANE is on.
    dane: Option<crate::dane::Dane>,
    /// TLS results for reports, when on.
    tls: Option<Arc<crate::tls_report::TlsResults>>,
    /// Where the TLS-report counts are kept across restarts.
    tls_file: Option<std::path::PathBuf>,
    /// Rows claimed and not yet recorded, with when they were claimed:
    /// their leases are renewed while they are worked on (a store that
    /// several nodes share).
    held: Arc<leases::Held>,
}

impl<S: Store + Clone> Worker<S> {
    /// A worker for `store`. `wake` is notified when new rows are queued;
    /// `handoff` holds messages just committed, so that they need not be
    /// read back.
    ///
    /// # Errors
    /// When the DNS resolver cannot be set up.
    pub fn new(
        store: S,
        settings: Settings,
        wake: Arc<Notify>,
        metrics: DeliveryMetrics,
        handoff: Arc<Handoff>,
    ) -> Result<Arc<Worker<S>>, String> {
        let dns = Dns::new(&settings.nameservers)?;
        let connections = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        let mta_sts = settings.mta_sts.then(|| {
            let sts = crate::mta_sts::MtaSts::new(
                dns.clone(),
                settings.roots(),
                settings.mta_sts_port,
                settings.allow_private_addresses,
            );
            match &settings.state_dir {
                Some(dir) => sts.kept_in(dir.join("mta-sts.policies"), unix_now()),
                None => sts,
            }
        });
        let mut tls_file = None;
        let settings_tls = settings.tls_reports.then(|| {
            let results =
                crate::tls_report::TlsResults::new(settings.tls_report_period, unix_now());
            match &settings.state_dir {
                Some(dir) => {
                    let (results, file) = results.kept_in(dir.join("tls-report.json"));
                    tls_file = Some(file);
                    Arc::new(results)
                }
                None => Arc::new(results),
            }
        });
        let dane = if settings.dane {
            Some(crate::dane::Dane::new(
                &settings.nameservers,
                settings.trust_anchor.as_deref(),
            )?)
        } else {
            None
        };
        Ok(Arc::new(Worker {
            store,
            settings: Arc::new(settings),
            dns,
            down: Arc::new(DownHosts::new()),
            wake,
            metrics,
            handoff,
            per_destination: Mutex::new(HashMap::new()),
            elsewhere: Mutex::new(HashMap::new()),
            last_claim: Mutex::new(None),
            held: Arc::default(),
            connections,
            mta_sts,
            dane,
            tls: settings_tls,
            tls_file,
        }))
    }

    /// Runs until `shutdown` completes; deliveries in flight then get a
    /// few seconds to finish their transaction and record it.
    ///
    /// The caller releases the store's claims first
    /// ([`Store::queue_release_claims`]), before intake starts: rows
    /// committed claimed from then on are this worker's.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        let mut counted = std::time::Instant::now() - Duration::from_secs(60);
        let mut saved = std::time::Instant::now();
        let renewing = self.store.lease().map(|lease| {
            let (renewer, sharer) = (self.clone(), self.clone());
            (
                tokio::spawn(async move { renewer.renew(lease).await }),
                tokio::spawn(async move { sharer.share_sessions().await }),
            )
        });
        loop {
            self.dispatch(&mut tasks).await;
            if counted.elapsed() >= Duration::from_secs(5) {
                counted = std::time::Instant::now();
                self.count().await;
            }
            if saved.elapsed() >= Duration::from_secs(300) {
                saved = std::time::Instant::now();
                self.save_tls_counts();
            }
            if let Some(tls) = &self.tls
                && let Some(reports) = tls.close(unix_now(), &self.settings.hostname)
                && !reports.is_empty()
            {
                let worker = self.clone();
                tasks.spawn(async move {
                    crate::tls_report::send(
                        &worker.store,
                        &worker.settings,
                        &worker.dns,
                        reports,
                        unix_now(),
                    )
                    .await;
                    worker.wake.notify_one();
                });
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ =
            tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        if let Some((renew, share)) = renewing {
            renew.abort();
            share.abort();
        }
        self.save_tls_counts();
    }

    /// Writes the day's TLS-report counts to their file (off the runtime's
    /// threads would be nicer; it is a small file every five minutes).
    fn save_tls_counts(&self) {
        if let (Some(tls), Some(file)) = (&self.tls, &self.tls_file) {
            tls.save(file);
        }
    }

    pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether to ask the store for due rows now: when nothing came in
    /// memory, or a second after it was last asked. Asking starts the wait.
    fn time_to_ask(&self, nothing_handed: bool) -> bool {
        let mut last = Self::lock(&self.last_claim);
        let ask = nothing_handed || last.is_none_or(|t| t.elapsed() >= POLL);
        if ask {
            *last = Some(std::time::Instant::now());
        }
        ask
    }

    /// The queue by state, for `/metrics`.
    async fn count(&self) {
        if let Ok(counts) = self.store.queue_counts().await {
            for state in ["queued", "deferred", "held", "delivered", "failed"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s.as_str() == state)
                    .map_or(0, |(_, n)| *n);
                self.metrics
                    .queue
                    .get_or_create(&[("state", state)])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Claims due rows and starts a task for each destination share.
    async fn dispatch(self: &Arc<Self>, tasks: &mut tokio::task::JoinSet<()>) {
        let now = unix_now();
        let max = self.settings.max_connections_per_destination;
        // The names first, each lock let go: open_sessions takes both.
        let mut skip: Vec<String> = Self::lock(&self.per_destination).keys().cloned().collect();
        skip.extend(Self::lock(&self.elsewhere).keys().cloned());
        skip.sort();
        skip.dedup();
        skip.retain(|d| self.open_sessions(d) >= max);
        // Rows whose content left the handoff before they were taken:
        // their claims go, and the store's claims below find them. If the
        // release fails, they are kept to try again at the next look.
        let evicted = self.handoff.take_evicted();
        if !evicted.is_empty() {
            let release = evicted.iter().map(QueueEntry::update).collect();
            if let Err(e) = self.store.queue_record(release).await {
                error!(error = %e, "cannot release handed-over claims: trying again");
                self.handoff.set_aside(evicted);
            }
        }
        let smarthost_busy =
            self.settings.smarthost.is_some() && self.open_sessions(SMARTHOST) >= max;
        if smarthost_busy {
            return;
        }
        let mut handed: Vec<QueueEntry> = Vec::new();
        {
            let busy = |dest: &str| self.open_sessions(dest) >= max;
            for domain in self.handoff.domains() {
                if !busy(&self.destination(&format!("x@{domain}"))) {
                    handed.extend(
                        self.handoff
                            .take(Some(&domain), PER_DOMAIN)
                            .into_iter()
                            .flatten(),
                    );
                }
            }
        }
        // The store is asked only when there is something for it to find:
        // a wake-up that brought nothing in memory (a large message, an
        // operator's action), or once a second for what came due. New mail
        // handed over in memory needs no question.
        let mut rows = Vec::new();
        if self.time_to_ask(handed.is_empty()) {
            let claim = QueueClaim {
                now,
                until: now + self.claim_for(),
                limit: BATCH,
                per_domain: PER_DOMAIN,
                skip,
                only: None,
            };
            match self.store.queue_claim(&claim).await {
                Ok(r) => {
                    self.hold(&r);
                    rows = r;
                }
                Err(e) => error!(error = %e, "cannot read the queue"),
            }
        }
        rows.extend(handed);
        // Destination → message id → its rows there.
        let mut groups: BTreeMap<String, BTreeMap<String, Vec<QueueEntry>>> = BTreeMap::new();
        for e in rows {
            groups
                .entry(self.destination(&e.recipient))
                .or_default()
                .entry(e.id.clone())
                .or_default()
                .push(e);
        }
        for (dest, messages) in groups {
            let active = self.open_sessions(&dest);
            // At least one: what was claimed is delivered now, not left
            // claimed and idle (a destination at its limit was skipped).
            let sessions = max.saturating_sub(active).max(1).min(messages.len());
            let mut shares: Vec<Vec<Vec<QueueEntry>>> = vec![Vec::new(); sessions];
            for (i, (_, rows)) in messages.into_iter().enumerate() {
                shares[i % sessions].push(rows);
            }
            for share in shares {
                *Self::lock(&self.per_destination)
                    .entry(dest.clone())
                    .or_default() += 1;
                let worker = self.clone();
                let dest = dest.clone();
                tasks.spawn(async move {
                    // The session's slot is given back however the task
                    // ends, a panic included.
                    let _slot = Slot {
                        worker: worker.clone(),
                        dest: dest.clone(),
                    };
                    let permit = worker.connections.clone().acquire_owned().await;
                    let rows: Vec<QueueEntry> = share.iter().flatten().cloned().collect();
                    worker.deliver(&dest, share).await;
                    worker.let_go(&rows);
                    drop(permit);
                });
            }
        }
    }

    /// Where a recipient's mail goes: its local target (a Maildir, an
    /// LMTP server), else its domain, or the smarthost.
    fn destination(&self, recipient: &str) -> String {
        if let Some(target) = self.settings.local_routes.queued(recipient) {
            return target.name();
        }
        if self.settings.smarthost.is_some() {
            return SMARTHOST.to_owned();
        }
        postel_store::domain_of(recipient)
    }

    /// One session's worth: the messages (each its rows) for `dest`.
    async fn deliver(&self, dest: &str, messages: Vec<Vec<QueueEntry>>) {
        let mut pending = Vec::new();
        let mut todo = Vec::new();
        for rows in messages {
            // Returned by the operator: failed at once, with a notice.
            if rows.iter().any(|e| e.bounce) {
                let f = Failure::local("5.0.0", "returned to the sender by the operator");
                let outcomes = vec![Outcome::Failed(f); rows.len()];
                pending.push(self.record(&rows, outcomes).await);
            } else {
                todo.push(rows);
            }
        }
        if !todo.is_empty() {
            self.send(dest, &todo, &mut pending).await;
        }
        for p in pending {
            match p.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %e, "cannot record delivery outcomes: the rows stay claimed, and are tried again later")
                }
                Err(e) => error!(error = %e, "recording delivery outcomes failed"),
            }
        }
    }

    /// Turns outcomes into updates and notices, and hands the updates to
    /// the store's group commit (not waited for here).
    async fn record(
        &self,
        rows: &[QueueEntry],
        outcomes: Vec<Outcome>,
    ) -> tokio::task::JoinHandle<Result<(), postel_store::StoreError>> {
        let updates: Vec<QueueUpdate> = report(
            &self.store,
            &self.settings,
            &self.metrics,
            rows,
            outcomes,
            unix_now(),
        )
        .await;
        let store = self.store.clone();
        let (held, keys) = (self.held.clone(), leases::keys(rows));
        tokio::spawn(async move {
            // Renewed until recorded: a record that outlasts the lease
            // must not find the rows taken over.
            let recorded = store.queue_record(updates).await;
            held.release(&keys);
            recorded
        })
    }

    /// Resolves, opens a session and sends every message, recording each
    /// one's outcomes as soon as its transaction ends.
    async fn send(
        &self,
        dest: &str,
        messages: &[Vec<QueueEntry>],
        pending: &mut Vec<tokio::task::JoinHandle<Result<(), postel_store::StoreError>>>,
    ) {
        let s = &self.settings;
        if let Some(Target::Maildir(template)) = s.local_routes.by_name(dest) {
            for rows in messages {
                let outcomes = match self.load(rows).await {
                    Err(o) => vec![o; rows.len()],
                    Ok(content) => {
                        let mut out = Vec::with_capacity(rows.len());
                        for e in rows {
                            let (from, to) = (&e.mail_from, &e.recipient);
                            let c = content.clone();
                            out.push(maildir::deliver(template, &s.hostname, from, to, c).await);
                        }
                        out
                    }
                };
                self.handoff.forget(&rows[0].id);
                pending.push(self.record(rows, outcomes).await);
            }
            return;
        }
        let mut batch: Vec<Vec<QueueEntry>> = messages.to_vec();
        let mut waived = false;
        let opened = self.open(dest, false).await;
        // TLS results are the destination's, through its MX hosts; not
        // a smarthost's or a local server's, and not those of Postel's own
        // mail (notices, and the reports themselves: RFC 8460 3).
        let own = messages.iter().all(|rows| {
            rows[0].mail_from.is_empty() && rows[0].client_addr == crate::report::OWN_CLIENT
        });
        let counted = s.smarthost.is_none() && s.local_routes.by_name(dest).is_none() && !own;
        if let Some(tls) = self.tls.as_ref().filter(|_| counted) {
            match &opened {
                Ok(session) => {
                    tls.session(
                        dest,
                        session.has_tls(),
                        session.offered_starttls(),
                        &session.host,
                    );
                }
                Err((Outcome::Deferred(f) | Outcome::Failed(f), _)) => tls.failed(dest, f),
                _ => {}
            }
        }
        let mut session = match opened {
            Ok(session) => Some(session),
            Err((o, enforced)) => {
                // Under the destination's MTA-STS policy nothing works:
                // mail whose sender waived it (`TLS-Required: No`) goes
                // on without it, in a session of its own.
                let mut rest = Vec::new();
                for rows in messages {
                    let waives = enforced
                        && match self.load(rows).await {
                            Ok(content) => requiretls::waived(&rows[0].mail_params, &content),
                            Err(_) => false,
                        };
                    if waives {
                        rest.push(rows.clone());
                    } else {
                        self.handoff.forget(&rows[0].id);
                        pending.push(self.record(rows, vec![o.clone(); rows.len()]).await);
                    }
                }
                if rest.is_empty() {
                    return;
                }
                match self.open(dest, true).await {
                    Ok(session) => {
                        tracing::info!(
                            domain = dest,
                            messages = rest.len(),
                            "TLS-Required: No: delivered without the destination's MTA-STS policy"
                        );
                        (batch, waived) = (rest, true);
                        Some(session)
                    }
                    Err((o, _)) => {
                        for rows in &rest {
                            self.handoff.forget(&rows[0].id);
                            pending.push(self.record(rows, vec![o.clone(); rows.len()]).await);
                        }
                        return;
                    }
                }
            }
        };
        let started = std::time::Instant::now();
        // REQUIRETLS mail this host refused for itself: for the others.
        let mut elsewhere: Vec<Vec<QueueEntry>> = Vec::new();
        loop {
            for rows in &batch {
                let outcomes = match self.load(rows).await {
                    Err(o) => vec![o; rows.len()],
                    Ok(content) => match session.as_mut().filter(|s| s.is_open()) {
                        None => {
                            let f = Failure::local("4.4.2", "the session ended");
                            vec![Outcome::Deferred(f); rows.len()]
                        }
                        Some(session) => {
                            let job = Job {
                                entries: rows.clone(),
                                content,
                            };
                            session.deliver(&job, s).await
                        }
                    },
                };
                self.handoff.forget(&rows[0].id);
                if elsewhere::refused_here(&outcomes) {
                    elsewhere.push(rows.clone());
                    continue;
                }
                pending.push(self.record(rows, outcomes).await);
            }
            // The next messages for this destination, on the same session
            // (Postfix's connection reuse), for up to five minutes.
            // A session outside the policy carries only the mail that
            // waived it.
            let open = session.as_ref().is_some_and(|s| s.is_open());
            if !open || waived || started.elapsed() > SESSION_REUSE {
                break;
            }
            batch = self.more(dest).await;
            if batch.is_empty() {
                break;
            }
        }
        let tried: Vec<String> = session.iter().map(|s| s.host.clone()).collect();
        if let Some(session) = session.take() {
            session.quit().await;
        }
        if !elsewhere.is_empty() {
            self.requiretls_elsewhere(dest, elsewhere, tried, pending)
                .await;
        }
    }

    /// A session for `dest`: its LMTP server, or the first of its hosts
    /// that answers; or the outcome for every recipient when there is
    /// none, and whether the destination's MTA-STS policy was enforced.
    /// `waived`: without that policy (`TLS-Required: No`).
    async fn open(&self, dest: &str, waived: bool) -> Result<Session, (Outcome, bool)> {
        if let Some(Target::Lmtp(addr)) = self.settings.local_routes.by_name(dest) {
            return lmtp::open(addr, &self.settings)
                .await
                .map_err(|f| (Outcome::Deferred(f), false));
        }
        let (hosts, dial) = self.route(dest, waived).await?;
        let mut noted = Vec::new();
        let opened = dial.open_noting(&hosts, &mut noted).await;
        // Every host's TLS failure counts in the report; the last one of a
        // failed open is the outcome, which `send` records.
        if let Some(tls) = self
            .tls
            .as_ref()
            .filter(|_| self.settings.smarthost.is_none())
        {
            let earlier = if opened.is_err() {
                noted.len().saturating_sub(1)
            } else {
                noted.len()
            };
            for f in &noted[..earlier] {
                tls.failed(dest, f);
            }
        }
        // Enforced: by the destination's policy, MTA-STS or DANE (not a
        // smarthost's name).
        let enforced = (dial.authenticated || hosts.iter().any(|h| h.dane.is_some() || h.encrypt))
            && !waived
            && self.settings.smarthost.is_none();
        opened.map_err(|f| (Outcome::Deferred(f), enforced))
    }

    /// More due messages for `dest`, for a session already open: handed
    /// over in memory first, else claimed from the store. None for a
    /// local target, whose rows are not claimed by destination.
    async fn more(&self, dest: &str) -> Vec<Vec<QueueEntry>> {
        if self.settings.local_routes.by_name(dest).is_some() {
            return Vec::new();
        }
        let domain = (dest != SMARTHOST).then_some(dest);
        let handed = self.handoff.take(domain, PER_DOMAIN);
        // Mail waiting in the store (retries, released claims) is not
        // starved by new mail: the store is asked at least once a second.
        if !self.time_to_ask(handed.is_empty()) {
            return handed;
        }
        let mut out = handed;
        let now = unix_now();
        let claim = QueueClaim {
            now,
            until: now + self.claim_for(),
            limit: PER_DOMAIN,
            per_domain: PER_DOMAIN,
            skip: Vec::new(),
            only: (dest != SMARTHOST).then(|| dest.to_owned()),
        };
        let rows = self.store.queue_claim(&claim).await.unwrap_or_default();
        self.hold(&rows);
        let mut by_id: BTreeMap<String, Vec<QueueEntry>> = BTreeMap::new();
        for e in rows {
            by_id.entry(e.id.clone()).or_default().push(e);
        }
        out.extend(by_id.into_values());
        out
    }

    /// A message's content, just before it is sent (so that a session
    /// holds one message in memory at a time): handed over from intake, or
    /// read from the store; or the outcome when it cannot be sent.
    async fn load(&self, rows: &[QueueEntry]) -> Result<Arc<Vec<u8>>, Outcome> {
        let id = &rows[0].id;
        let loop_failure = || {
            Outcome::Failed(Failure::local(
                "5.4.6",
                "too many Received: headers: a mail loop",
            ))
        };
        if let Some(raw) = self.handoff.get(id) {
            if hops(&raw) > self.settings.max_hops {
                return Err(loop_failure());
            }
            return Ok(raw);
        }
        match self.store.get(id).await {
            Ok(Some(m)) if hops(&m.raw) > self.settings.max_hops => Err(loop_failure()),
            Ok(Some(m)) => Ok(Arc::new(m.raw)),
            Ok(None) => {
                error!(id, "a queued message has no body: failing its recipients");
                Err(Outcome::Failed(Failure::local(
                    "5.3.0",
                    "the message's content is missing from the store",
                )))
            }
            Err(e @ postel_store::StoreError::ContentLost { .. }) => {
                error!(id, error = %e, "a queued message's content is lost: failing its recipients");
                Err(Outcome::Failed(Failure::local(
                    "5.3.0",
                    format!("the message's content is lost: {e}"),
                )))
            }
            Err(e) => {
                warn!(id, error = %e, "cannot read a queued message");
                Err(Outcome::Deferred(Failure::local(
                    "4.3.0",
                    format!("cannot read the message: {e}"),
                )))
            }
        }
    }
}

/// A session's place in its destination's count, given back on drop.
struct Slot<S> {
    worker: Arc<Worker<S>>,
    dest: String,
}

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        let mut per = self
            .worker
            .per_destination
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per.get_mut(&self.dest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.dest);
            }
        }
    }
}

/// The destination name of the smarthost (not a domain: brackets).
const SMARTHOST: &str = "[smarthost]";

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
