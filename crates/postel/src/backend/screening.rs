//! The checks on who sends, before what is sent: DNS block and allow
//! lists at connect, and rate limits at MAIL and RCPT. Clients in
//! `relay_networks` are not looked up in the lists (Postfix's
//! `permit_mynetworks` before postscreen's lists); rate limits apply to
//! everyone.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postel_policy::dnsbl::{self, List, Outcome};
use postel_policy::rate::{RateLimiter, Sender};
use postel_proto::{Reply, reply};
use tracing::{info, warn};

/// How long each list's lookup may take; then it counts for nothing.
const DNSBL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the backend checks of a client and its counts.
pub(crate) struct Screening {
    pub(crate) rate: Arc<RateLimiter>,
    pub(crate) lists: Vec<List>,
    pub(crate) threshold: i32,
    /// The resolver for the lists (None when there are none).
    pub(crate) dns: Option<Arc<postel_delivery::mx::Dns>>,
    /// Clients never looked up.
    pub(crate) trusted: Vec<ipnet::IpNet>,
}

impl Screening {
    /// No lists and no limits.
    #[cfg(test)]
    pub(crate) fn none() -> Screening {
        Screening {
            rate: Arc::default(),
            lists: Vec::new(),
            threshold: 1,
            dns: None,
            trusted: Vec::new(),
        }
    }

    /// Looks the client up in every list at once: the refusal when its
    /// score reaches the threshold. A list that fails or times out counts
    /// for nothing (the client is let in).
    pub(crate) async fn connect(&self, session: u64, ip: IpAddr) -> Result<(), Reply> {
        let Some(dns) = &self.dns else {
            return Ok(());
        };
        let plain = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.lists.is_empty() || self.trusted.iter().any(|n| n.contains(&plain)) {
            return Ok(());
        }
        // Each list has its own time: one slow list does not void the
        // others' answers.
        let lookups = self.lists.iter().map(|list| async move {
            let name = dnsbl::query_name(ip, &list.zone);
            match tokio::time::timeout(DNSBL_TIMEOUT, dns.ipv4(&name)).await {
                Ok(Ok(answers)) => (list, Outcome::of(list, &answers)),
                Ok(Err(e)) => {
                    warn!(session, client = %ip, zone = %list.zone, error = %e, "DNS list lookup failed");
                    (list, Outcome::NotListed)
                }
                Err(_) => {
                    warn!(session, client = %ip, zone = %list.zone, "DNS list lookup timed out");
                    (list, Outcome::NotListed)
                }
            }
        });
        let results = futures_util::future::join_all(lookups).await;
        for (list, outcome) in &results {
            if let Outcome::ListError(code) = outcome {
                warn!(session, zone = %list.zone, %code, "the DNS list answered with an error code (a refused query?): not a listing");
            }
        }
        let (score, zone) = dnsbl::score(&results);
        match zone {
            Some(zone) if score >= self.threshold => {
                info!(session, client = %ip, score, zone, "client refused: listed");
                Err(reply::blocked_by_list(&ip.to_string(), zone))
            }
            _ => Ok(()),
        }
    }

    /// Counts a message (MAIL).
    pub(crate) fn message(&self, sender: &Sender<'_>) -> Result<(), Reply> {
        self.rate
            .message(sender, Instant::now())
            .map_err(|scope| reply::rate_limited(scope.name()))
    }

    /// Counts a recipient (an accepted RCPT).
    pub(crate) fn recipient(&self, sender: &Sender<'_>) -> Result<(), Reply> {
        self.rate
            .recipient(sender, Instant::now())
            .map_err(|scope| reply::rate_limited(scope.name()))
    }
}
