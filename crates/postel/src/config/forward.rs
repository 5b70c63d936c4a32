//! `[delivery.forward]` and `[arc]`: local addresses whose mail is sent on
//! to other addresses (Postfix's virtual aliases), and the key that
//! ARC-seals the mail Postel forwards from outside (RFC 8617).

use std::collections::{BTreeMap, BTreeSet};

use postel_proto::address::parse_mailbox;

use super::authentication::DkimEntry;

/// The most addresses one forward may name.
const MAX_TARGETS: usize = 50;

/// Checks `[delivery.forward]`: each key a mailbox in a local domain, each
/// target a mailbox, 1 to [`MAX_TARGETS`] of them. Keys lowercase.
pub(super) fn forward(
    entries: Option<&BTreeMap<String, Vec<String>>>,
    domains: &BTreeSet<String>,
    delivery_on: bool,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(entries) = entries.filter(|e| !e.is_empty()) else {
        return out;
    };
    if !delivery_on {
        problems.push(
            "delivery.forward: forwarding sends mail on; it needs [delivery] enabled = true"
                .to_owned(),
        );
        return out;
    }
    for (from, targets) in entries {
        let Ok(mailbox) = parse_mailbox(from.as_bytes(), true) else {
            problems.push(format!(
                "delivery.forward: {from:?} is not an address such as info@example.test"
            ));
            continue;
        };
        if !domains.contains(&mailbox.domain.to_lowercase()) {
            problems.push(format!(
                "delivery.forward: {from:?} is not in a local domain ([policy] domains)"
            ));
            continue;
        }
        if targets.is_empty() || targets.len() > MAX_TARGETS {
            problems.push(format!(
                "delivery.forward.{from:?}: name 1 to {MAX_TARGETS} addresses"
            ));
            continue;
        }
        if let Some(bad) = targets
            .iter()
            .find(|t| parse_mailbox(t.as_bytes(), true).is_err())
        {
            problems.push(format!(
                "delivery.forward.{from:?}: {bad:?} is not an address"
            ));
            continue;
        }
        if out.insert(from.to_lowercase(), targets.clone()).is_some() {
            problems.push(format!(
                "delivery.forward: {from:?} is listed twice (addresses are compared without case)"
            ));
        }
    }
    out
}

/// Checks `[arc]`: an RSA key of 2048 bits or more that loads.
pub(super) fn arc(entry: Option<&DkimEntry>, problems: &mut Vec<String>) -> Option<DkimEntry> {
    let e = entry?;
    match postel_auth::Sealer::load(&e.domain, &e.selector, &e.key) {
        Ok(_) => Some(e.clone()),
        Err(err) => {
            problems.push(format!(
                "arc.key: {err} (ARC seals with an RSA key of 2048 bits or more)"
            ));
            None
        }
    }
}

/// The sealer for `[arc]`.
///
/// # Errors
/// When the key file changed since the config was checked.
pub(crate) fn sealer(entry: Option<&DkimEntry>) -> anyhow::Result<Option<postel_auth::Sealer>> {
    entry
        .map(|e| postel_auth::Sealer::load(&e.domain, &e.selector, &e.key))
        .transpose()
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_are_checked() {
        let domains: BTreeSet<String> = ["example.test".to_owned()].into();
        let mut entries = BTreeMap::new();
        entries.insert(
            "Info@Example.test".to_owned(),
            vec!["a@elsewhere.test".to_owned()],
        );
        entries.insert(
            "x@other.test".to_owned(),
            vec!["a@elsewhere.test".to_owned()],
        );
        entries.insert(
            "y@example.test".to_owned(),
            vec!["not an address".to_owned()],
        );
        entries.insert("z@example.test".to_owned(), Vec::new());
        let mut problems = Vec::new();
        let out = forward(Some(&entries), &domains, true, &mut problems);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["info@example.test"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let mut problems = Vec::new();
        assert!(forward(Some(&entries), &domains, false, &mut problems).is_empty());
        assert!(problems[0].contains("[delivery] enabled"), "{problems:?}");
    }
}
