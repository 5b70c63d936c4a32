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
//! user, or a bearer token. Password checks are few at a time, and an
//! address with too many failures is locked out for a while.

#![warn(missing_docs)]

mod api;
pub mod json;
mod mime;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use postel_store::Store;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Live counts from the SMTP side, for `/api/v1/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionCounts {
    /// Sessions open now.
    pub open: u64,
    /// Sessions accepted since start.
    pub total: u64,
}

/// Checks a user name and password; true if and only if they are right.
/// Called on a blocking thread (it may run a slow password hash).
pub type CheckUser = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Who may use the web side when it is not on loopback.
#[derive(Clone)]
pub struct Login {
    /// A secret accepted as `Authorization: Bearer <token>`, or as the
    /// password of HTTP Basic with any user name.
    pub token: Option<String>,
    /// Postel's users, by HTTP Basic.
    pub users: Option<CheckUser>,
}

/// How long a checked `Authorization` header is trusted without checking
/// the password hash again (a browser sends it with every request). A
/// removed user keeps access at most this long.
const LOGIN_CACHE: Duration = Duration::from_secs(60);
/// Password checks (Argon2, 19 MiB each) running at once.
const CONCURRENT_CHECKS: usize = 2;
/// Failed logins from one address before it is locked out...
const MAX_FAILURES: u32 = 10;
/// ...for this long after the first of them.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a request's credentials get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Allowed,
    Denied,
    /// Too many failures from this address.
    LockedOut,
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
    /// Recent failed logins per client address.
    failures: postel_server::Lockout,
    checks: tokio::sync::Semaphore,
    stop: watch::Receiver<bool>,
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
            failures: postel_server::Lockout::new(MAX_FAILURES, FAILURE_WINDOW),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            stop,
        }
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
        if ip.is_some_and(|ip| self.failures.locked_out(ip)) {
            return Access::LockedOut;
        }
        let ok = match credentials(value) {
            Some(Credentials::Bearer(t)) => login.token.as_deref().is_some_and(|want| eq(&t, want)),
            Some(Credentials::Basic(user, password)) => {
                if login
                    .token
                    .as_deref()
                    .is_some_and(|want| eq(&password, want))
                {
                    true
                } else if let Some(check) = login.users.clone() {
                    // Few at a time: each check takes 19 MiB and a thread.
                    let Ok(_permit) = self.checks.acquire().await else {
                        return Access::Denied;
                    };
                    tokio::task::spawn_blocking(move || check(&user, &password))
                        .await
                        .unwrap_or(false)
                } else {
                    false
                }
            }
            None => false,
        };
        if ok {
            lock(&self.logged_in).insert(value.to_owned(), Instant::now());
            return Access::Allowed;
        }
        if let Some(ip) = ip {
            self.failures.record_failure(ip);
        }
        // As for SMTP AUTH: a wrong guess costs the guesser a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Access::Denied
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

/// Serves HTTP on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the listener fails.
pub async fn serve<S: Store + Clone>(
    listener: TcpListener,
    web: Arc<Web<S>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(web).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
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
