//! `[limits.rate]` and `[[dnsbl]]`: rate limits per client, user and
//! sender domain, and DNS block and allow lists asked at connect.

use std::time::Duration;

use postel_delivery::schedule::parse_duration;
use postel_policy::dnsbl::List;
use postel_policy::rate::{Limit, RateLimits};
use postel_proto::address::is_domain;
use serde::{Deserialize, Serialize};

/// `[limits.rate]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSection {
    /// Per client address (IPv6 per /64).
    pub(crate) client: Option<RateEntry>,
    /// Per authenticated user.
    pub(crate) user: Option<RateEntry>,
    /// Per domain of the MAIL FROM address.
    pub(crate) sender_domain: Option<RateEntry>,
}

/// `[limits.rate.client]` and the others.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateEntry {
    /// Messages (MAIL commands) per window.
    pub(crate) messages: Option<u32>,
    /// Recipients (accepted RCPTs) per window.
    pub(crate) recipients: Option<u32>,
    /// The window, such as `"1h"`. Default one hour.
    pub(crate) window: Option<String>,
}

/// `[[dnsbl]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsblEntry {
    /// The list's zone, such as `zen.spamhaus.org`.
    pub(crate) zone: String,
    /// What a listing adds to the score; negative for an allow list.
    /// Default 1.
    pub(crate) weight: Option<i32>,
    /// The answers that count (addresses or networks); default any in
    /// 127.0.0.0/8 outside 127.255.255.0/24.
    pub(crate) answers: Option<Vec<String>>,
}

/// The rate limits.
pub(super) fn rate_limits(r: Option<&RateSection>, problems: &mut Vec<String>) -> RateLimits {
    let Some(r) = r else {
        return RateLimits::default();
    };
    let one = |key: &str, e: &Option<RateEntry>, problems: &mut Vec<String>| {
        let e = e.as_ref()?;
        let window = match &e.window {
            None => Duration::from_secs(3600),
            Some(w) => match parse_duration(w) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    problems.push(format!(
                        "limits.rate.{key}.window: {w:?} is not a duration such as \"1h\""
                    ));
                    return None;
                }
            },
        };
        if e.messages == Some(0) || e.recipients == Some(0) {
            problems.push(format!(
                "limits.rate.{key}: a limit of 0 refuses everything (leave it out for none)"
            ));
        }
        if e.messages.is_none() && e.recipients.is_none() {
            problems.push(format!(
                "limits.rate.{key}: give messages, recipients or both"
            ));
        }
        Some(Limit {
            messages: e.messages,
            recipients: e.recipients,
            window,
        })
    };
    RateLimits {
        client: one("client", &r.client, problems),
        user: one("user", &r.user, problems),
        sender_domain: one("sender_domain", &r.sender_domain, problems),
    }
}

/// The DNS lists.
pub(super) fn dnsbl(entries: &[DnsblEntry], problems: &mut Vec<String>) -> Vec<List> {
    let mut lists = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if !is_domain(e.zone.trim_end_matches('.').as_bytes(), false) {
            problems.push(format!(
                "dnsbl[{i}].zone: {:?} is not a domain name",
                e.zone
            ));
            continue;
        }
        let mut answers = Vec::new();
        for (j, a) in e.answers.iter().flatten().enumerate() {
            match super::network(a) {
                Some(n) => answers.push(n),
                None => problems.push(format!(
                    "dnsbl[{i}].answers[{j}]: {a:?} is not an address or a network such as \"127.0.0.2/31\""
                )),
            }
        }
        lists.push(List {
            zone: e.zone.trim_end_matches('.').to_lowercase(),
            weight: e.weight.unwrap_or(1),
            answers,
        });
    }
    lists
}

/// The effective sections.
pub(super) fn effective_rate(r: &RateLimits) -> Option<RateSection> {
    if r.is_empty() {
        return None;
    }
    let one = |l: &Option<Limit>| {
        l.map(|l| RateEntry {
            messages: l.messages,
            recipients: l.recipients,
            window: Some(format!("{}s", l.window.as_secs())),
        })
    };
    Some(RateSection {
        client: one(&r.client),
        user: one(&r.user),
        sender_domain: one(&r.sender_domain),
    })
}

/// The effective `[[dnsbl]]` tables.
pub(super) fn effective_dnsbl(lists: &[List]) -> Vec<DnsblEntry> {
    lists
        .iter()
        .map(|l| DnsblEntry {
            zone: l.zone.clone(),
            weight: Some(l.weight),
            answers: Some(l.answers.iter().map(ToString::to_string).collect()),
        })
        .collect()
}
