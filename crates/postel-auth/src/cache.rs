//! The records the checks read, parsed, for their TTL: a DKIM key, an SPF
//! or DMARC record is parsed once (an RSA key's set-up costs more than
//! its signature check), not once per message. Bounded: at the limit,
//! expired entries go first, then everything (the next lookups refill it).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{ResolverCache, Txt};

/// Parsed TXT records by name, until their answer's TTL ends.
pub struct TxtCache {
    entries: Mutex<HashMap<Box<str>, (Txt, Instant)>>,
    max: usize,
}

impl TxtCache {
    /// A cache of at most `max` records.
    pub fn new(max: usize) -> TxtCache {
        TxtCache {
            entries: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, (Txt, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records held now (expired ones included until they are replaced).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.lock();
        let (txt, until) = entries.get(name)?;
        (*until > Instant::now()).then(|| txt.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(txt, _)| txt)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> Txt {
        Txt::Error(mail_auth::Error::ParseError)
    }

    #[test]
    fn entries_last_their_ttl_and_the_size_is_bounded() {
        let c = TxtCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert("a.test".into(), record(), later);
        assert!(c.get("a.test").is_some());
        c.insert("gone.test".into(), record(), Instant::now());
        assert!(c.get("gone.test").is_none(), "expired");
        // Full: the expired entry makes room.
        c.insert("b.test".into(), record(), later);
        assert!(c.get("a.test").is_some() && c.get("b.test").is_some());
        assert_eq!(c.len(), 2);
        // Full of live entries: it starts again, never past its size.
        c.insert("c.test".into(), record(), later);
        assert_eq!(c.len(), 1);
        assert!(c.get("c.test").is_some());
    }
}
