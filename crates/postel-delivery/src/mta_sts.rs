//! MTA-STS (RFC 8461): a domain's published TLS policy for mail to it.
//!
//! The `_mta-sts.<domain>` TXT record says a policy exists and names its
//! version (`id`); the policy itself is fetched over HTTPS from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, its certificate
//! verified, and kept for its `max_age` (a year at most). A policy in
//! `enforce` mode lets mail go only to MX hosts that match its `mx`
//! patterns, over TLS with a certificate valid for that MX name; never in
//! plaintext. `testing` is reported and delivered as usual.
//!
//! Parsing and matching are sans-IO ([`Policy::parse`], [`Policy::allows`]);
//! [`MtaSts`] looks records up, fetches and caches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::mta_sts::MtaSts as StsRecord;

use crate::mx::Dns;

/// The longest policy read (RFC 8461 3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;

/// The longest a policy is kept (RFC 8461 3.2: max_age at most a year).
pub const MAX_AGE: u64 = 31_557_600;

/// How long fetching a policy may take, whole.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Domains whose policy is remembered at once.
const CACHE_SIZE: usize = 50_000;

/// How long one address of a policy host may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// After a fetch fails, how long (seconds) before the next is tried: a
/// dead policy server does not cost every delivery attempt its timeout.
const RETRY_FETCH: i64 = 300;

/// A kept policy is fetched again after a day, even under the same id
/// (RFC 8461 3.3: refresh before it expires); a failure keeps it.
const REFRESH: i64 = 86_400;

/// The shortest time a policy is kept, whatever its max_age says.
const MIN_KEEP: i64 = 300;

/// What a policy asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only matching MX hosts, only over verified TLS.
    Enforce,
    /// Report what enforce would refuse, and deliver.
    Testing,
    /// No policy (a domain stepping back from MTA-STS).
    None,
}

/// A domain's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its mode.
    pub mode: Mode,
    /// MX patterns: a name, or `*.` and a name (one more label).
    pub mx: Vec<String>,
    /// Seconds it may be kept.
    pub max_age: u64,
}

impl Policy {
    /// Reads a policy file (RFC 8461 3.2): `key: value` lines, CRLF or LF.
    ///
    /// # Errors
    /// When the version is not STSv1, or the mode or max_age is missing or
    /// not understood, or an enforce/testing policy names no MX.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_owned()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode {other:?}")),
                    });
                }
                "max_age" => {
                    max_age = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| format!("max_age {value:?} is not a number"))?,
                    );
                }
                "mx" if mx.len() < 100 => mx.push(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("not an STSv1 policy".to_owned());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?.min(MAX_AGE);
        if mode != Mode::None && mx.is_empty() {
            return Err("no mx".to_owned());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether MX host `name` matches one of the patterns (RFC 8461 4.1:
    /// `*.example.com` stands for exactly one more label).
    pub fn allows(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.');
            match pattern.strip_prefix("*.") {
                Some(parent) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => name == pattern,
            }
        })
    }
}

struct Cached {
    /// The record's id the policy was fetched under.
    id: String,
    policy: Arc<Policy>,
    /// Unix seconds: when it was fetched, and when it expires.
    fetched: i64,
    until: i64,
}

/// Whether a domain has an MTA-STS policy cannot be told now: its record
/// or its policy could not be read, and none is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown;

/// Policies by domain: looked up, fetched, kept.
pub struct MtaSts {
    dns: Dns,
    roots: Arc<rustls::RootCertStore>,
    port: u16,
    allow_private: bool,
    cache: Mutex<HashMap<String, Cached>>,
    /// Domains whose last fetch failed, until when it is not tried again.
    failed: Mutex<HashMap<String, i64>>,
    /// Where the kept policies survive a restart (`policy_file`).
    file: Option<std::path::PathBuf>,
}

impl MtaSts {
    /// Fetches from port `port` (443; another only in tests), verifying
    /// against `roots`; from a private address only when `allow_private`.
    pub fn new(
        dns: Dns,
        roots: Arc<rustls::RootCertStore>,
        port: u16,
        allow_private: bool,
    ) -> MtaSts {
        MtaSts {
            dns,
            roots,
            port,
            allow_private,
            cache: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            file: None,
        }
    }

    /// The same, keeping its policies in `file` across restarts: those
    /// still valid at `now` are read back now.
    pub fn kept_in(mut self, file: std::path::PathBuf, now: i64) -> MtaSts {
        let kept = crate::policy_file::load(&file, now);
        if !kept.is_empty() {
            tracing::info!(policies = kept.len(), "MTA-STS policies read back");
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for k in kept.into_iter().take(CACHE_SIZE) {
                cache.insert(
                    k.domain,
                    Cached {
                        id: k.id,
                        policy: Arc::new(k.policy),
                        fetched: k.fetched,
                        until: k.until,
                    },
                );
            }
        }
        self.file = Some(file);
        self
    }

    /// Writes the kept policies to the file, if there is one.
    fn save(&self, now: i64) {
        let Some(file) = &self.file else { return };
        let kept: Vec<crate::policy_file::Kept> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .iter()
                .filter(|(_, c)| c.until > now)
                .map(|(d, c)| crate::policy_file::Kept {
                    domain: d.clone(),
                    id: c.id.clone(),
                    fetched: c.fetched,
                    until: c.until,
                    policy: (*c.policy).clone(),
                })
                .collect()
        };
        if let Err(e) = crate::policy_file::save(file, &kept) {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the MTA-STS policies");
        }
    }

    /// The kept policy, its id, and whether it is due for a refresh.
    fn cached(&self, domain: &str, now: i64) -> Option<(String, Arc<Policy>, bool)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|c| c.until > now)
            .map(|c| (c.id.clone(), c.policy.clone(), now - c.fetched > REFRESH))
    }

    /// The policy of `domain`, if it has one: the one kept, while its
    /// record names the same id (or cannot be read) and it has not
    /// expired; else a fresh one. A policy that cannot be fetched leaves
    /// the kept one in force (RFC 8461 5.1), or none.
    pub async fn policy(&self, domain: &str, now: i64) -> Option<Arc<Policy>> {
        self.lookup(domain, now).await.ok().flatten()
    }

    /// As [`MtaSts::policy`], telling "no policy" (`Ok(None)`: no record)
    /// from "cannot tell" (`Err`: the record or the policy could not be
    /// read, and none is kept). REQUIRETLS mail waits on the second.
    pub async fn lookup(&self, domain: &str, now: i64) -> Result<Option<Arc<Policy>>, Unknown> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let cached = self.cached(&domain, now);
        let kept = |cached: Option<(String, Arc<Policy>, bool)>| match cached {
            Some((_, p, _)) => Ok(Some(p)),
            None => Err(Unknown),
        };
        let id = match self.record_id(&domain).await {
            Ok(Some(id)) => id,
            // No record: a kept policy still holds.
            Ok(None) => return Ok(cached.map(|(_, p, _)| p)),
            // DNS failed: the kept one, or nobody knows.
            Err(()) => return kept(cached),
        };
        if let Some((kept_id, policy, stale)) = &cached
            && *kept_id == id
            && !stale
        {
            return Ok(Some(policy.clone()));
        }
        {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.retain(|_, until| *until > now);
            if failed.contains_key(&domain) {
                return kept(cached);
            }
        }
        match self.fetch(&domain).await {
            Ok(policy) => {
                let policy = Arc::new(policy);
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_SIZE && !cache.contains_key(&domain) {
                    cache.retain(|_, c| c.until > now);
                    // Then what protects nothing (none, testing), then the
                    // oldest: an enforce policy goes last.
                    if cache.len() >= CACHE_SIZE {
                        cache.retain(|_, c| c.policy.mode == Mode::Enforce);
                    }
                    if cache.len() >= CACHE_SIZE
                        && let Some(oldest) = cache
                            .iter()
                            .min_by_key(|(_, c)| c.fetched)
                            .map(|(d, _)| d.clone())
                    {
                        cache.remove(&oldest);
                    }
                }
                {
                    cache.insert(
                        domain,
                        Cached {
                            id,
                            policy: policy.clone(),
                            fetched: now,
                            until: now.saturating_add((policy.max_age as i64).max(MIN_KEEP)),
                        },
                    );
                }
                // The lock is not held while the file is written (save
                // takes it again).
                drop(cache);
                self.save(now);
                Ok(Some(policy))
            }
            Err(e) => {
                tracing::warn!(domain, error = e, "MTA-STS policy not fetched");
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.len() < CACHE_SIZE {
                    failed.insert(domain, now.saturating_add(RETRY_FETCH));
                }
                kept(cached)
            }
        }
    }

    /// The id of `_mta-sts.<domain>`'s STSv1 record, if there is one;
    /// `Err` when DNS did not answer.
    async fn record_id(&self, domain: &str) -> Result<Option<String>, ()> {
        let texts = self
            .dns
            .txt(&format!("_mta-sts.{domain}"))
            .await
            .map_err(|_| ())?;
        Ok(record_id(&texts))
    }

    /// GET the policy file over HTTPS, its certificate verified for
    /// `mta-sts.<domain>`; redirects are not followed (RFC 8461 3.3).
    async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        tokio::time::timeout(FETCH_TIMEOUT, self.get(&host))
            .await
            .map_err(|_| format!("no answer from {host} within {FETCH_TIMEOUT:?}"))?
            .and_then(|text| Policy::parse(&text))
    }

    async fn get(&self, host: &str) -> Result<String, String> {
        let addrs: Vec<std::net::IpAddr> = self
            .dns
            .addresses(host)
            .await
            .map_err(|f| f.text.clone())?
            .into_iter()
            .filter(|ip| self.allow_private || !crate::mx::is_private(*ip))
            .collect();
        // Each address in turn (IPv6 first), within the fetch's time.
        let mut tcp = None;
        let mut last = format!("{host} has no usable address");
        for ip in addrs {
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(ip, self.port));
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(t)) => {
                    tcp = Some(t);
                    break;
                }
                Ok(Err(e)) => last = format!("cannot connect to {host} [{ip}]: {e}"),
                Err(_) => {
                    last = format!("no connection to {host} [{ip}] within {CONNECT_TIMEOUT:?}")
                }
            }
        }
        let tcp = tcp.ok_or(last)?;
        let config = crate::connection::tls_config(Some(self.roots.clone()));
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(16 * 1024)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        // Ends with this fetch, however it ends.
        let conn = AbortOnDrop(tokio::spawn(conn));
        let req = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("{host} answered {}", resp.status()));
        }
        // RFC 8461 3.2: text/plain (parameters aside), so that a page a
        // user can put up elsewhere on the host is not taken for one.
        let plain = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"));
        if !plain {
            return Err(format!("{host}: the policy is not text/plain"));
        }
        let body = Limited::new(resp.into_body(), MAX_POLICY)
            .collect()
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .to_bytes();
        drop(conn);
        String::from_utf8(body.to_vec()).map_err(|_| format!("{host}: the policy is not UTF-8"))
    }
}

/// The policy id of a domain's `_mta-sts` TXT records (RFC 8461 3.1):
/// records not starting with `v=STSv1` are not looked at; of the rest
/// there must be exactly one, valid, with an id of 1 to 32 letters and
/// digits; else there is no policy.
pub fn record_id(texts: &[String]) -> Option<String> {
    let candidates: Vec<&String> = texts
        .iter()
        .filter(|t| t.starts_with("v=STSv1;") || t.as_str() == "v=STSv1")
        .collect();
    let [one] = candidates.as_slice() else {
        return None;
    };
    let id = StsRecord::parse(one.as_bytes()).ok()?.id;
    let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(id)
}

/// A task aborted when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a policy server sends, reading it ends (no panic), and
        /// what it accepts is bounded.
        #[test]
        fn any_text(text in "(version: STSv1\r?\n)?(mode: (enforce|testing|none)\r?\n)?((mx|max_age|x): [ -~]{0,20}\r?\n){0,8}[ -~\r\n]{0,64}") {
            if let Ok(p) = Policy::parse(&text) {
                proptest::prop_assert!(p.mx.len() <= 100 && p.max_age <= MAX_AGE);
                let _ = p.allows("mx.example.test");
            }
        }
    }

    #[test]
    fn one_valid_record_names_the_policy() {
        let r =
            |texts: &[&str]| record_id(&texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
        assert_eq!(r(&["v=STSv1; id=20261130"]).as_deref(), Some("20261130"));
        assert_eq!(
            r(&["v=spf1 -all", "v=STSv1; id=abc"]).as_deref(),
            Some("abc"),
            "other records are not looked at"
        );
        assert_eq!(r(&["v=STSv1; id=a", "v=STSv1; id=b"]), None, "two: none");
        assert_eq!(
            r(&["v=STSv1; id=abc", "v=STSv1; junk"]),
            None,
            "a bad one counts"
        );
        assert_eq!(r(&[&format!("v=STSv1; id={}", "a".repeat(33))]), None);
        assert_eq!(r(&["v=STSv1; id=a-b"]), None);
        assert_eq!(r(&[]), None);
    }

    #[test]
    fn a_policy_is_read_as_rfc_8461_writes_it() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\nmax_age: 604800\r\n",
        )
        .expect("policy");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert!(p.allows("mail.example.com") && p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"), "a wildcard needs one more label");
        assert!(!p.allows("a.b.example.net"), "and only one");
        assert!(!p.allows("mail.example.com.evil.test"));
        let long =
            Policy::parse("version: STSv1\nmode: testing\nmx: m.test\nmax_age: 99999999999\n")
                .expect("policy");
        assert_eq!(long.max_age, MAX_AGE, "a year at most");
        for bad in [
            "version: STSv2\nmode: enforce\nmx: m.test\nmax_age: 1\n",
            "version: STSv1\nmode: sometimes\nmx: m.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: m.test\n",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n")
                .expect("none")
                .mode,
            Mode::None
        );
    }
}
