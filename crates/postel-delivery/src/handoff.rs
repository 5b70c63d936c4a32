//! Messages handed over from intake to delivery in memory. The backend
//! commits a message with its queue rows already claimed (leased), then
//! puts the message and its rows here; the worker takes the rows from here
//! instead of claiming them from the store, and the content instead of
//! reading it back.
//!
//! Bounded in octets; past the bound the oldest content goes. Rows whose
//! content goes before the worker took them are set aside as evicted, and
//! the worker releases their claims, so that the store's own claims pick
//! them up: nothing handed over is ever stranded. After a crash, every
//! claim is released at start. What is here is exactly what was committed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use postel_store::{QueueEntry, domain_of};

/// The default bound: 32 MiB of messages.
pub const DEFAULT_BUDGET: usize = 32 << 20;

/// The most rows waiting to be taken: past it, new messages are not handed
/// over (they are claimed from the store instead).
const MAX_ROWS: usize = 50_000;

/// Recently committed messages, by id, and their rows by domain.
#[derive(Debug)]
pub struct Handoff {
    inner: Mutex<Inner>,
    budget: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
    bytes: usize,
    /// Rows not yet taken: domain → messages (each its rows there).
    jobs: HashMap<String, Vec<Vec<QueueEntry>>>,
    /// Rows whose content was evicted before they were taken.
    evicted: Vec<QueueEntry>,
    /// Rows in `jobs`.
    rows: usize,
}

impl Default for Handoff {
    fn default() -> Handoff {
        Handoff::new(DEFAULT_BUDGET)
    }
}

impl Handoff {
    /// An empty handoff holding at most `budget` octets.
    pub fn new(budget: usize) -> Handoff {
        Handoff {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a message of `len` octets would be taken: asked before the
    /// commit, since its rows are then committed already claimed.
    pub fn accepts(&self, len: usize) -> bool {
        len <= self.budget / 8 && self.lock().rows < MAX_ROWS
    }

    /// Sets rows aside to have their claims released (again): rows
    /// committed claimed that were never handed over (a commit whose
    /// outcome is unknown), or a release that failed.
    pub fn set_aside(&self, rows: Vec<QueueEntry>) {
        self.lock().evicted.extend(rows);
    }

    /// Keeps `raw`, the committed content of message `id`, and its queue
    /// rows (committed claimed) for the worker to take.
    pub fn put(&self, id: &str, raw: Arc<Vec<u8>>, entries: Vec<QueueEntry>) {
        let mut g = self.lock();
        g.bytes += raw.len();
        if let Some(old) = g.by_id.insert(id.to_owned(), raw) {
            g.bytes -= old.len();
        } else {
            g.order.push_back(id.to_owned());
        }
        let mut by_domain: HashMap<String, Vec<QueueEntry>> = HashMap::new();
        for e in entries {
            by_domain
                .entry(domain_of(&e.recipient))
                .or_default()
                .push(e);
        }
        for (domain, rows) in by_domain {
            g.rows += rows.len();
            g.jobs.entry(domain).or_default().push(rows);
        }
        while g.bytes > self.budget {
            let Some(oldest) = g.order.pop_front() else {
                break;
            };
            evict(&mut g, &oldest);
        }
    }

    /// The domains with rows waiting to be taken.
    pub fn domains(&self) -> Vec<String> {
        self.lock().jobs.keys().cloned().collect()
    }

    /// Takes up to `max` messages' rows for `domain` (any domain for
    /// None), oldest first.
    pub fn take(&self, domain: Option<&str>, max: usize) -> Vec<Vec<QueueEntry>> {
        let mut g = self.lock();
        let keys: Vec<String> = match domain {
            Some(d) => vec![d.to_owned()],
            None => g.jobs.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for k in keys {
            if out.len() >= max {
                break;
            }
            let Some(list) = g.jobs.get_mut(&k) else {
                continue;
            };
            let n = (max - out.len()).min(list.len());
            let taken: Vec<Vec<QueueEntry>> = list.drain(..n).collect();
            let count: usize = taken.iter().map(Vec::len).sum();
            out.extend(taken);
            g.rows = g.rows.saturating_sub(count);
            let Some(list) = g.jobs.get(&k) else {
                continue;
            };
            if list.is_empty() {
                g.jobs.remove(&k);
            }
        }
        out
    }

    /// Takes the rows whose content was evicted before they were taken:
    /// their claims are to be released.
    pub fn take_evicted(&self) -> Vec<QueueEntry> {
        std::mem::take(&mut self.lock().evicted)
    }

    /// The content of message `id`, if it is still here. It stays for the
    /// message's other destinations; [`Handoff::forget`] drops it.
    pub fn get(&self, id: &str) -> Option<Arc<Vec<u8>>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Drops message `id`'s content (its delivery is done here).
    pub fn forget(&self, id: &str) {
        let mut g = self.lock();
        if let Some(gone) = g.by_id.remove(id) {
            g.bytes -= gone.len();
        }
        // Forgotten ids leave `order` lazily; compacted when they pile up.
        if g.order.len() > 2 * g.by_id.len() + 1024 {
            let Inner { by_id, order, .. } = &mut *g;
            order.retain(|o| by_id.contains_key(o));
        }
    }

    /// Octets held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Drops `id`'s content, and sets aside its rows not yet taken.
fn evict(g: &mut Inner, id: &str) {
    if let Some(gone) = g.by_id.remove(id) {
        g.bytes -= gone.len();
    }
    let mut emptied = Vec::new();
    let mut set_aside = Vec::new();
    for (domain, list) in &mut g.jobs {
        list.retain(|rows| {
            let mine = rows.first().is_some_and(|e| e.id == id);
            if mine {
                set_aside.extend(rows.iter().cloned());
            }
            !mine
        });
        if list.is_empty() {
            emptied.push(domain.clone());
        }
    }
    for d in emptied {
        g.jobs.remove(&d);
    }
    g.rows = g.rows.saturating_sub(set_aside.len());
    g.evicted.extend(set_aside);
}

#[cfg(test)]
mod tests {
    use super::*;
    use postel_store::QueueState;

    fn rows(id: &str, to: &[&str]) -> Vec<QueueEntry> {
        to.iter()
            .enumerate()
            .map(|(i, r)| QueueEntry {
                id: id.into(),
                position: i as u32,
                recipient: (*r).into(),
                rcpt_params: vec![],
                mail_from: "a@b.test".into(),
                mail_params: vec![],
                auth_user: None,
                client_addr: String::new(),
                received_at: 0,
                size: 0,
                state: QueueState::Queued,
                attempts: 0,
                next_attempt: 0,
                last_reply: None,
                warned: 0,
                leased_until: Some(100),
                bounce: false,
                lease_token: 0,
            })
            .collect()
    }

    #[test]
    fn rows_by_domain_and_content_bounded_oldest_first() {
        let h = Handoff::new(800);
        assert!(h.accepts(100) && !h.accepts(101));
        h.put(
            "a",
            Arc::new(vec![1; 100]),
            rows("a", &["x@one.test", "y@two.test"]),
        );
        h.put("b", Arc::new(vec![2; 100]), rows("b", &["z@one.test"]));
        let mut d = h.domains();
        d.sort();
        assert_eq!(d, ["one.test", "two.test"]);
        let one = h.take(Some("one.test"), 10);
        assert_eq!(one.len(), 2);
        assert_eq!(h.domains(), ["two.test"]);
        // Eight more: "a" and "b" lose their content; "a"'s row for
        // two.test, not yet taken, is set aside to be released.
        for i in 0..8 {
            h.put(&format!("m{i}"), Arc::new(vec![0; 100]), Vec::new());
        }
        assert!(h.get("a").is_none() && h.get("b").is_none());
        let evicted = h.take_evicted();
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].recipient, "y@two.test");
        assert!(h.take(None, 10).is_empty());
        assert!(h.bytes() <= 800);
        h.forget("m7");
        assert!(h.get("m7").is_none());
        assert_eq!(h.bytes(), 700);
    }
}
