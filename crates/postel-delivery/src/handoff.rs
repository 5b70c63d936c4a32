//! Messages handed over from intake to delivery in memory: the backend
//! puts a message it has just committed with queued recipients, and the
//! worker takes it instead of reading it back from the store. Bounded in
//! octets; past the bound the oldest go, and the worker reads those from
//! the store as it would have anyway. Only ever a shortcut: what is here
//! is exactly what was committed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The default bound: 32 MiB of messages.
pub const DEFAULT_BUDGET: usize = 32 << 20;

/// Recently committed messages, by id.
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

    /// Keeps `raw`, the committed content of message `id`.
    pub fn put(&self, id: &str, raw: Arc<Vec<u8>>) {
        if raw.len() > self.budget / 8 {
            return;
        }
        let mut g = self.lock();
        g.bytes += raw.len();
        if let Some(old) = g.by_id.insert(id.to_owned(), raw) {
            g.bytes -= old.len();
        } else {
            g.order.push_back(id.to_owned());
        }
        while g.bytes > self.budget {
            let Some(oldest) = g.order.pop_front() else {
                break;
            };
            if let Some(gone) = g.by_id.remove(&oldest) {
                g.bytes -= gone.len();
            }
        }
    }

    /// The content of message `id`, if it is still here. It stays for the
    /// message's other destinations; [`Handoff::forget`] drops it.
    pub fn get(&self, id: &str) -> Option<Arc<Vec<u8>>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Drops message `id` (its delivery is done here).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_oldest_first() {
        let h = Handoff::new(800);
        h.put("a", Arc::new(vec![1; 100]));
        h.put("b", Arc::new(vec![2; 100]));
        assert_eq!(h.get("a").map(|v| v.len()), Some(100));
        h.put("huge", Arc::new(vec![0; 101]));
        assert!(h.get("huge").is_none(), "over an eighth of the budget");
        for i in 0..8 {
            h.put(&format!("m{i}"), Arc::new(vec![0; 100]));
        }
        assert!(
            h.get("a").is_none() && h.get("b").is_none(),
            "the oldest went"
        );
        assert!(h.bytes() <= 800);
        h.forget("m6");
        assert!(h.get("m6").is_none());
        assert_eq!(h.bytes(), 700);
    }
}
