//! `[policy]`: accepted domains, known mailboxes, bare line endings.

use std::collections::{BTreeMap, BTreeSet};

use postel_proto::BareLinePolicy;
use postel_proto::address::{is_domain, parse_mailbox};

use super::PolicySection;

/// Checks `[policy]`; `over_domains`, from the command line, replace the
/// file's domains when given.
pub(super) fn validate(
    p: &PolicySection,
    over_domains: Vec<String>,
    problems: &mut Vec<String>,
) -> (
    BareLinePolicy,
    BTreeSet<String>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let bare_line_endings = match p.bare_line_endings.as_deref() {
        None | Some("reject") => BareLinePolicy::Reject,
        Some("normalize") => BareLinePolicy::Normalize,
        Some(other) => {
            problems.push(format!(
                "policy.bare_line_endings: {other:?} is not \"reject\" or \"normalize\""
            ));
            BareLinePolicy::Reject
        }
    };
    let domain_list = if over_domains.is_empty() {
        p.domains.clone().unwrap_or_default()
    } else {
        over_domains
    };
    let mut domains = BTreeSet::new();
    for (i, d) in domain_list.iter().enumerate() {
        if is_domain(d.as_bytes(), true) {
            domains.insert(d.to_lowercase());
        } else {
            problems.push(format!(
                "policy.domains[{i}]: {d:?} is not a valid domain name"
            ));
        }
    }
    let mut mailboxes = BTreeMap::new();
    for (domain, locals) in p.mailboxes.clone().unwrap_or_default() {
        let key = domain.to_lowercase();
        if !domains.contains(&key) {
            problems.push(format!(
                "policy.mailboxes.{domain}: the domain is not in policy.domains (add it there, or remove its mailboxes)"
            ));
        }
        let mut set = BTreeSet::new();
        for (i, local) in locals.iter().enumerate() {
            if parse_mailbox(format!("{local}@{key}").as_bytes(), true).is_err() {
                problems.push(format!(
                    "policy.mailboxes.{domain}[{i}]: {local:?} is not a valid local part"
                ));
            }
            set.insert(local.to_lowercase());
        }
        mailboxes.insert(key, set);
    }

    (bare_line_endings, domains, mailboxes)
}
