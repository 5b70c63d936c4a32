//! Postel's web side: the inbox a person opens in a browser, the JSON API
//! under `/api/v1/` (described in `docs/openapi.yaml`), live updates by
//! server-sent events, and `/metrics` for Prometheus.
//!
//! It reads and deletes through the [`Store`] trait and never writes
//! messages. The page and its script are built into the binary; the HTML of
//! a message is only ever served with a Content-Security-Policy that
//! forbids scripts and remote content, and shown in a sandboxed iframe.
//!
//! Access: on a loopback address without a token anyone on the machine may
//! look (as with Mailpit), and only with a loopback `Host` (so a web page
//! cannot reach it by DNS rebinding). Elsewhere, or with a token, every
//! request needs a login, checked by [`Login`]: HTTP Basic with a Postel
//! user, or a bearer token. Logins go through the same
//! [`postel_policy::Authenticator`] as SMTP AUTH: one bounded pool of
//! password checks, and one lockout per client address, which is checked
//! before anything else (a locked-out address gets `429` whatever it
//! sends, even a password that is right).
//!
//! # Layout
//! - this file: [`Web`], the login ([`Login`], the cache, the lockout
//!   first) and [`WebLimits`];
//! - `serve`: the accept loop, with its connection caps and header timeout;
//! - `guard`: the Host check, the login, the headers on every response;
//! - `api`: the routes;
//! - `queue`: the delivery queue's routes;
//! - `release`: a stored message sent on to a configured target;
//! - `structure`: what the parser would build, checked before it parses;
//! - `mime`: a message seen through MIME, parsed on a thread of its own;
//! - [`json`]: the summary and queue-entry objects.

#![warn(missing_docs)]

mod api;
mod guard;
pub mod json;
mod mime;
mod queue;
mod release;
mod serve;
mod structure;

pub use release::{Released, Releaser};

pub use serve::serve;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use postel_store::Store;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Live counts from the SMTP side, for `/api/v1/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionCounts {
    /// Sessions open now.
    pub open: u64,
    /// Sessions accepted since start.
    pub total: u64,
}

/// Who may use the web side when it is not on loopback.
#[derive(Clone)]
pub struct Login {
    /// A secret accepted as `Authorization: Bearer <token>`, or as the
    /// password of HTTP Basic with any user name.
    pub token: Option<String>,
    /// Postel's users (HTTP Basic), the lockout and the password pool,
    /// shared with SMTP AUTH.
    pub auth: Arc<postel_policy::Authenticator>,
}

/// How long a checked `Authorization` header is trusted without checking
/// the password hash again (a browser sends it with every request). A
/// removed user keeps access at most this long.
const LOGIN_CACHE: Duration = Duration::from_secs(60);
/// The most `Authorization` values the cache holds.
const LOGIN_CACHE_ENTRIES: usize = 1024;

/// What a request's credentials get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Allowed,
    Denied,
    /// Too many failures from this address.
    LockedOut,
    /// No room to check the password now.
    Busy,
}

/// Everything the handlers share.
pub struct Web<S> {
    store: S,
    version: String,
    started: Instant,
    sessions: Arc<dyn Fn() -> SessionCounts + Send + Sync>,
    registry: Arc<Registry>,
    login: Option<Login>,
    /// `Authorization` values that passed, with when they did.
    logged_in: Mutex<HashMap<String, Instant>>,
    /// Views that parse a message, at once: each may take a few times the
    /// message's size in memory.
    pub(crate) views: Arc<tokio::sync::Semaphore>,
    /// Live event streams open now.
    pub(crate) streams: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) limits: WebLimits,
    stop: watch::Receiver<bool>,
    /// Where stored messages may be released to, if anywhere.
    pub(crate) release: Option<Arc<dyn Releaser>>,
}

impl<S: Store + Clone> Web<S> {
    /// The web side over `store`. `login` None: open to anyone who can
    /// connect (loopback). `stop` turning true ends the live event streams.
    pub fn new(
        store: S,
        version: String,
        sessions: Arc<dyn Fn() -> SessionCounts + Send + Sync>,
        registry: Arc<Registry>,
        login: Option<Login>,
        limits: WebLimits,
        stop: watch::Receiver<bool>,
    ) -> Web<S> {
        Web {
            store,
            version,
            started: Instant::now(),
            sessions,
            registry,
            login,
            logged_in: Mutex::new(HashMap::new()),
            views: Arc::new(tokio::sync::Semaphore::new(limits.concurrent_views)),
            streams: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            limits,
            stop,
            release: None,
        }
    }

    /// Lets messages be released to `releaser`'s targets (behind a login).
    #[must_use]
    pub fn with_release(mut self, releaser: Arc<dyn Releaser>) -> Web<S> {
        self.release = Some(releaser);
        self
    }

    /// True if and only if a login is needed.
    pub(crate) fn login_required(&self) -> bool {
        self.login.is_some()
    }

    /// What the `Authorization` header value of a request from `ip` gets.
    pub(crate) async fn access(
        self: &Arc<Self>,
        authorization: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Access {
        let Some(login) = &self.login else {
            return Access::Allowed;
        };
        let now = Instant::now();
        // The lockout first: a locked-out address gets the same answer
        // whatever it sends, and the cache below cannot be used to guess.
        if ip.is_some_and(|ip| login.auth.locked_out(ip, now)) {
            return Access::LockedOut;
        }
        let Some(value) = authorization else {
            return Access::Denied;
        };
        {
            let mut cache = lock(&self.logged_in);
            cache.retain(|_, at| at.elapsed() < LOGIN_CACHE);
            if cache.contains_key(value) {
                return Access::Allowed;
            }
        }
        let token = login.token.as_deref();
        let checked = match credentials(value) {
            Some(Credentials::Bearer(t)) => {
                let ok = token.is_some_and(|want| eq(&t, want));
                login.auth.attempt(ip, now, async move { Some(ok) }).await
            }
            Some(Credentials::Basic(_, password)) if token.is_some_and(|w| eq(&password, w)) => {
                login.auth.attempt(ip, now, async { Some(true) }).await
            }
            Some(Credentials::Basic(user, password)) => {
                login.auth.check_password(ip, now, &user, &password).await
            }
            None => login.auth.attempt(ip, now, async { Some(false) }).await,
        };
        match checked {
            postel_policy::Checked::Ok => {
                let mut cache = lock(&self.logged_in);
                // Bounded: a token holder can vary the Basic user name at
                // will; past the bound, logins are simply checked again.
                if cache.len() >= LOGIN_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(value.to_owned(), Instant::now());
                Access::Allowed
            }
            postel_policy::Checked::Wrong => Access::Denied,
            postel_policy::Checked::LockedOut => Access::LockedOut,
            postel_policy::Checked::Busy => Access::Busy,
        }
    }
}

/// Limits of the web side: what it lets a client hold.
#[derive(Debug, Clone, Copy)]
pub struct WebLimits {
    /// HTTP connections open at once. Default 256. Past it, new
    /// connections wait in the listen queue: they cost no descriptor.
    pub max_connections: usize,
    /// HTTP connections open at once from one address. Default 32 (a
    /// browser opens six); past it, a connection is closed at once.
    pub max_connections_per_ip: usize,
    /// How long a request's header may take to arrive, from the first
    /// octet of the connection or the end of the last response. Default
    /// 10 s.
    pub header_timeout: Duration,
    /// Live event streams (`/api/v1/events`) open at once. Default 64;
    /// past it, `503`.
    pub max_streams: usize,
    /// Views that parse a message at once. Default 2.
    pub concurrent_views: usize,
}

impl Default for WebLimits {
    fn default() -> WebLimits {
        WebLimits {
            max_connections: 256,
            max_connections_per_ip: 32,
            header_timeout: Duration::from_secs(10),
            max_streams: 64,
            concurrent_views: 2,
        }
    }
}

enum Credentials {
    Bearer(String),
    Basic(String, String),
}

fn credentials(header: &str) -> Option<Credentials> {
    use base64::Engine as _;
    let (scheme, rest) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.trim().to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::Basic(user.to_owned(), password.to_owned()))
}

/// Compares secrets in time independent of where they differ.
fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The routes, for [`serve`] and for tests.
pub fn router<S: Store + Clone>(web: Arc<Web<S>>) -> Router {
    api::routes(web)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse() {
        assert!(matches!(
            credentials("Bearer  abc "),
            Some(Credentials::Bearer(t)) if t == "abc"
        ));
        // "alice:pa:ss" in base64: the password may hold colons.
        assert!(matches!(
            credentials("basic YWxpY2U6cGE6c3M="),
            Some(Credentials::Basic(u, p)) if u == "alice" && p == "pa:ss"
        ));
        assert!(credentials("Basic !!!").is_none());
        assert!(credentials("Digest x").is_none());
        assert!(credentials("Basic").is_none());
        assert!(eq("secret", "secret"));
        assert!(!eq("secret", "secreT"));
        assert!(!eq("secret", "secret2"));
    }
}
