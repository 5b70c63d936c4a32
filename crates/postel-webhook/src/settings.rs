//! The webhooks, as the config gives them, and when an attempt is retried.

use std::sync::Arc;
use std::time::Duration;

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Where to post: `http://` or `https://`.
    pub url: String,
    /// The HMAC-SHA256 key of the signature.
    pub secret: Vec<u8>,
    /// Messages up to this size go inline (base64); larger ones only by
    /// their path in the API.
    pub inline_max: u64,
    /// The wait after a first failed attempt; it doubles after each
    /// further one, up to an hour.
    pub retry: Duration,
}

impl Hook {
    /// Checks `url`: an absolute `http` or `https` URL with a host.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn check_url(url: &str) -> Result<(), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("{url:?} has no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{url:?} has a user and password in it: put a token in the path or the query"
            ));
        }
        Ok(())
    }
}

/// Everything the worker needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The webhooks.
    pub hooks: Vec<Hook>,
    /// One attempt, connection to answer.
    pub timeout: Duration,
    /// How long a message is tried for before its delivery fails.
    pub lifetime: Duration,
    /// Extra trusted roots for `https` (PEM certificates, `[tls] ca_file`).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The version in `User-Agent`.
    pub version: String,
}

impl Settings {
    /// The roots that verify a receiver's certificate.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.extra_roots {
            let _ = roots.add(cert.clone());
        }
        Arc::new(roots)
    }

    /// The hook posting to `url`.
    pub fn hook(&self, url: &str) -> Option<&Hook> {
        self.hooks.iter().find(|h| h.url == url)
    }
}

/// The wait before attempt `attempts + 2`: `first`, doubling after each
/// attempt, at most an hour.
pub fn backoff(first: Duration, attempts: u32) -> Duration {
    let secs = first
        .as_secs()
        .max(1)
        .saturating_mul(1u64 << attempts.min(20));
    Duration::from_secs(secs.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_an_hour() {
        let ten = Duration::from_secs(10);
        assert_eq!(backoff(ten, 0), Duration::from_secs(10));
        assert_eq!(backoff(ten, 1), Duration::from_secs(20));
        assert_eq!(backoff(ten, 5), Duration::from_secs(320));
        assert_eq!(backoff(ten, 9), Duration::from_secs(3600));
        assert_eq!(backoff(ten, u32::MAX), Duration::from_secs(3600));
        assert_eq!(backoff(Duration::ZERO, 0), Duration::from_secs(1));
    }

    #[test]
    fn only_absolute_http_urls_are_taken() {
        assert!(Hook::check_url("https://hooks.example/in?x=1").is_ok());
        assert!(Hook::check_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://x/",
            "/relative",
            "https://",
            "not a url",
            "https://u:p@x/",
        ] {
            assert!(Hook::check_url(bad).is_err(), "{bad}");
        }
    }
}
