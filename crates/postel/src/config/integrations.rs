//! `[[local_delivery]]` and `[[policy_service]]`: where local mail goes
//! (the store, a Maildir, LMTP), and the policy servers asked on the way
//! in (Postfix's `check_policy_service`).

use std::collections::BTreeSet;
use std::time::Duration;

use postel_delivery::local::{LocalRoutes, Target};
use postel_delivery::schedule::parse_duration;
use postel_policy::delegation::{PolicyAddr, Service, Stage};
use postel_proto::address::{is_domain, parse_mailbox};
use serde::{Deserialize, Serialize};

use crate::backend::{DefaultAction, MilterConfig};

/// `[[local_delivery]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalDeliveryEntry {
    /// Local domains, or whole addresses for one mailbox.
    pub(crate) domains: Vec<String>,
    /// `store`, `maildir:/path/{domain}/{local}`, `lmtp:HOST:PORT` or
    /// `lmtp:unix:/path`.
    pub(crate) to: String,
}

/// A timeout as seconds, or as a duration such as `"10s"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum Timeout {
    Seconds(u64),
    Text(String),
}

/// `[[milter]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MilterEntry {
    /// `HOST:PORT`, `inet:HOST:PORT` or `unix:/path`.
    pub(crate) address: String,
    /// How long each answer may take; default 30 s.
    pub(crate) timeout: Option<Timeout>,
    /// `tempfail` (default), `reject`, `accept` or `quarantine`.
    pub(crate) default_action: Option<String>,
}

/// `[[webhook]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookEntry {
    /// Where to post: `http://` or `https://`.
    pub(crate) url: String,
    /// The HMAC-SHA256 key of `X-Postel-Signature`.
    pub(crate) secret: String,
    /// Messages up to this many octets go inline; default 1 MiB.
    pub(crate) inline_max: Option<u64>,
    /// The wait after a first failed attempt, doubling after each; default
    /// `"10s"`.
    pub(crate) retry: Option<String>,
}

/// `[[policy_service]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyServiceEntry {
    /// `HOST:PORT` or `unix:/path`.
    pub(crate) address: String,
    /// `mail`, `rcpt` (default) or `end_of_data`.
    pub(crate) stage: Option<String>,
    /// How long it may take; default 10 s.
    pub(crate) timeout: Option<Timeout>,
}

/// The local delivery table; `accepted` are `policy.domains`.
pub(super) fn local_routes(
    entries: &[LocalDeliveryEntry],
    accepted: &BTreeSet<String>,
    delivery_on: bool,
    problems: &mut Vec<String>,
) -> LocalRoutes {
    let mut routes = LocalRoutes::default();
    for (i, e) in entries.iter().enumerate() {
        let target = Target::parse(&e.to)
            .map_err(|why| problems.push(format!("local_delivery[{i}].to: {why}")))
            .ok();
        if target.as_ref().is_some_and(|t| *t != Target::Store) && !delivery_on {
            problems.push(format!(
                "local_delivery[{i}].to: {:?} needs [delivery] enabled = true: Maildir and LMTP deliveries go through the delivery queue, and a failure is reported to its sender by mail",
                e.to
            ));
        }
        if e.domains.is_empty() {
            problems.push(format!("local_delivery[{i}].domains: list at least one"));
        }
        for (j, d) in e.domains.iter().enumerate() {
            let domain = match d.rsplit_once('@') {
                Some((_, dom)) if parse_mailbox(d.as_bytes(), true).is_ok() => dom,
                Some(_) => {
                    problems.push(format!(
                        "local_delivery[{i}].domains[{j}]: {d:?} is not a valid address"
                    ));
                    continue;
                }
                None if is_domain(d.as_bytes(), true) => d.as_str(),
                None => {
                    problems.push(format!(
                        "local_delivery[{i}].domains[{j}]: {d:?} is not a valid domain name"
                    ));
                    continue;
                }
            };
            if !accepted.contains(&domain.to_lowercase()) {
                problems.push(format!(
                    "local_delivery[{i}].domains[{j}]: {d:?} is not in policy.domains (mail for it is not accepted)"
                ));
            }
            if let Some(t) = &target {
                routes.add(d, t.clone());
            }
        }
    }
    routes
}

/// The policy servers, in order.
pub(super) fn policy_services(
    entries: &[PolicyServiceEntry],
    problems: &mut Vec<String>,
) -> Vec<Service> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(address) = PolicyAddr::parse(&e.address) else {
            problems.push(format!(
                "policy_service[{i}].address: {:?} is not IP:PORT or unix:/path (for example 127.0.0.1:10023)",
                e.address
            ));
            continue;
        };
        let stage = match e.stage.as_deref() {
            None => Stage::Rcpt,
            Some(s) => match Stage::parse(s) {
                Some(st) => st,
                None => {
                    problems.push(format!(
                        "policy_service[{i}].stage: {s:?} is not \"mail\", \"rcpt\" or \"end_of_data\""
                    ));
                    continue;
                }
            },
        };
        let Some(timeout) = timeout(
            &format!("policy_service[{i}].timeout"),
            e.timeout.as_ref(),
            Duration::from_secs(10),
            problems,
        ) else {
            continue;
        };
        out.push(Service {
            address,
            stage,
            timeout,
        });
    }
    out
}

/// The effective tables, as config entries.
pub(super) fn effective_policy_services(services: &[Service]) -> Vec<PolicyServiceEntry> {
    services
        .iter()
        .map(|s| PolicyServiceEntry {
            address: s.address.to_string(),
            stage: Some(s.stage.name().to_owned()),
            timeout: Some(Timeout::Seconds(s.timeout.as_secs().max(1))),
        })
        .collect()
}

/// The local delivery table as config entries, one per target.
pub(super) fn effective_local_delivery(routes: &LocalRoutes) -> Vec<LocalDeliveryEntry> {
    let mut by_target: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (entry, target) in routes.entries() {
        by_target
            .entry(target.name())
            .or_default()
            .push(entry.to_owned());
    }
    by_target
        .into_iter()
        .map(|(to, domains)| LocalDeliveryEntry { domains, to })
        .collect()
}

/// A timeout in a table, or `default`.
fn timeout(
    key: &str,
    t: Option<&Timeout>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Option<Duration> {
    match t {
        None => Some(default),
        Some(Timeout::Seconds(n)) if *n > 0 => Some(Duration::from_secs(*n)),
        Some(Timeout::Text(s)) if parse_duration(s).is_some_and(|d| !d.is_zero()) => {
            parse_duration(s)
        }
        Some(t) => {
            problems.push(format!(
                "{key}: {t:?} is not seconds or a duration such as \"10s\""
            ));
            None
        }
    }
}

/// The milters, in order.
pub(super) fn milters(entries: &[MilterEntry], problems: &mut Vec<String>) -> Vec<MilterConfig> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(address) = postel_milter::Address::parse(&e.address) else {
            problems.push(format!(
                "milter[{i}].address: {:?} is not HOST:PORT or unix:/path (for example 127.0.0.1:11332)",
                e.address
            ));
            continue;
        };
        let default_action = match e.default_action.as_deref() {
            None => DefaultAction::Tempfail,
            Some(a) => match DefaultAction::parse(a) {
                Some(a) => a,
                None => {
                    problems.push(format!(
                        "milter[{i}].default_action: {a:?} is not tempfail, reject, accept or quarantine"
                    ));
                    continue;
                }
            },
        };
        let Some(timeout) = timeout(
            &format!("milter[{i}].timeout"),
            e.timeout.as_ref(),
            Duration::from_secs(30),
            problems,
        ) else {
            continue;
        };
        out.push(MilterConfig {
            address,
            timeout,
            default_action,
        });
    }
    out
}

/// The effective `[[milter]]` tables.
pub(super) fn effective_milters(milters: &[MilterConfig]) -> Vec<MilterEntry> {
    milters
        .iter()
        .map(|m| MilterEntry {
            address: m.address.to_string(),
            timeout: Some(Timeout::Seconds(m.timeout.as_secs().max(1))),
            default_action: Some(m.default_action.name().to_owned()),
        })
        .collect()
}

/// The webhooks.
pub(super) fn webhooks(
    entries: &[WebhookEntry],
    problems: &mut Vec<String>,
) -> Vec<postel_webhook::Hook> {
    let mut out: Vec<postel_webhook::Hook> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if let Err(why) = postel_webhook::Hook::check_url(&e.url) {
            problems.push(format!("webhook[{i}].url: {why}"));
            continue;
        }
        if e.secret.len() < 16 {
            problems.push(format!(
                "webhook[{i}].secret: at least 16 characters (the receiver checks the signature with it)"
            ));
            continue;
        }
        if out.iter().any(|h| h.url == e.url) {
            problems.push(format!("webhook[{i}].url: {:?} is listed twice", e.url));
            continue;
        }
        let retry = match e.retry.as_deref().map(parse_duration) {
            None => Duration::from_secs(10),
            Some(Some(d)) if !d.is_zero() => d,
            Some(_) => {
                problems.push(format!(
                    "webhook[{i}].retry: {:?} is not a duration such as \"10s\"",
                    e.retry
                ));
                continue;
            }
        };
        out.push(postel_webhook::Hook {
            url: e.url.clone(),
            secret: e.secret.clone().into_bytes(),
            inline_max: e.inline_max.unwrap_or(1 << 20),
            retry,
        });
    }
    out
}

/// The effective `[[webhook]]` tables (secrets hidden).
pub(super) fn effective_webhooks(hooks: &[postel_webhook::Hook]) -> Vec<WebhookEntry> {
    hooks
        .iter()
        .map(|h| WebhookEntry {
            url: h.url.clone(),
            secret: "(set: not shown)".to_owned(),
            inline_max: Some(h.inline_max),
            retry: Some(format!("{}s", h.retry.as_secs())),
        })
        .collect()
}
