//! Which recipients are accepted: the accepted domains and, per domain,
//! the known mailboxes. In order (the reply contract's "Recipients" rows):
//! - `<postmaster>` is always accepted (RFC 5321 4.5.1);
//! - with no accepted domains configured, every recipient is accepted (the
//!   zero-config sink: nothing is relayed onward, so this is no open relay);
//! - a recipient in an accepted domain is accepted, unless the domain lists
//!   its mailboxes and this is not one of them (`550 5.1.1`);
//! - anything else is `554 5.7.1 Relaying denied`: never an open relay.
//!
//! An authenticated user may send anywhere: the backend does not ask.

use std::collections::{BTreeMap, BTreeSet};

use postel_proto::{ForwardPath, Reply, reply};

/// Accepted domains and known mailboxes.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Lowercase; empty: every domain.
    pub domains: BTreeSet<String>,
    /// Lowercase local parts per lowercase domain.
    pub mailboxes: BTreeMap<String, BTreeSet<String>>,
}

impl Policy {
    /// The verdict on one recipient.
    pub fn recipient(&self, to: &ForwardPath) -> Result<(), Reply> {
        let ForwardPath::Mailbox(m) = to else {
            return Ok(());
        };
        if self.domains.is_empty() {
            return Ok(());
        }
        let domain = m.domain.to_lowercase();
        if !self.domains.contains(&domain) {
            return Err(reply::relay_denied());
        }
        let local = unquote(&m.local).to_lowercase();
        match self.mailboxes.get(&domain) {
            Some(known) if !known.contains(&local) && local != "postmaster" => {
                Err(reply::no_such_mailbox())
            }
            _ => Ok(()),
        }
    }
}

/// A local part without its quoting: `"al\\ice"` and `alice` name the same
/// mailbox (RFC 5321 4.1.2: quoting is only needed for special characters).
fn unquote(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return local.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postel_proto::address::parse_forward_path;

    fn to(s: &str) -> ForwardPath {
        parse_forward_path(s.as_bytes(), true).expect("valid path")
    }

    #[test]
    fn policy_rows() {
        let open = Policy::default();
        assert!(open.recipient(&to("<anyone@anywhere.test>")).is_ok());

        let mut p = Policy::default();
        p.domains.insert("a.test".into());
        p.domains.insert("b.test".into());
        p.mailboxes
            .insert("b.test".into(), ["alice".to_owned()].into());
        assert!(p.recipient(&to("<x@A.TEST>")).is_ok());
        assert!(p.recipient(&to("<Alice@b.test>")).is_ok());
        assert!(p.recipient(&to("<\"alice\"@b.test>")).is_ok());
        assert!(p.recipient(&to("<\"al\\ice\"@b.test>")).is_ok());
        assert_eq!(
            p.recipient(&to("<\"bob\"@b.test>")),
            Err(reply::no_such_mailbox())
        );
        assert!(p.recipient(&to("<postmaster@b.test>")).is_ok());
        assert!(p.recipient(&to("<postmaster>")).is_ok());
        assert_eq!(
            p.recipient(&to("<bob@b.test>")),
            Err(reply::no_such_mailbox())
        );
        assert_eq!(p.recipient(&to("<x@c.test>")), Err(reply::relay_denied()));
        assert_eq!(
            p.recipient(&to("<x@sub.a.test>")),
            Err(reply::relay_denied())
        );
    }
}
