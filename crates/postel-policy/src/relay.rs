//! With delivery on, the routing decision: a recipient in a local domain
//! is checked by [`Policy`] and kept; any other is remote, and is taken
//! only from a client that may relay: an authenticated user, or an
//! address in `relay_networks` (Postfix's `mynetworks`). Everyone else
//! gets `554 5.7.1`, so Postel is never an open relay.
//!
//! And the sender check: an authenticated user sends only from the
//! addresses given to that user (Postfix's `reject_sender_login_mismatch`),
//! or anyone with a login could send (and soon, sign) mail as anyone.

use std::net::IpAddr;

use postel_proto::{ForwardPath, Reply, reply};

use crate::Policy;

/// Where a recipient's mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Kept here: the inbox.
    Local,
    /// Sent on: the queue.
    Remote,
}

/// Who may relay without logging in.
#[derive(Debug, Clone, Default)]
pub struct RelayPolicy {
    /// Trusted client networks.
    pub networks: Vec<ipnet::IpNet>,
}

impl RelayPolicy {
    /// Whether a client at `ip` may relay without logging in.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The route of `to`, or the refusal. `may_relay`: the client is
    /// authenticated or trusted.
    ///
    /// # Errors
    /// The reply to RCPT: `550 5.1.1` for an unknown local mailbox,
    /// `554 5.7.1` for a remote recipient from a client that may not relay.
    pub fn route(
        &self,
        policy: &Policy,
        to: &ForwardPath,
        may_relay: bool,
    ) -> Result<Route, Reply> {
        let ForwardPath::Mailbox(m) = to else {
            return Ok(Route::Local);
        };
        if policy.domains.contains(&m.domain.to_lowercase()) {
            policy.recipient(to)?;
            return Ok(Route::Local);
        }
        if may_relay {
            Ok(Route::Remote)
        } else {
            Err(reply::relay_denied())
        }
    }
}

/// Whether `from` (a reverse-path without brackets) is one of `addresses`:
/// an exact address, or `*@domain` for every address at a domain; ASCII
/// case does not matter.
pub fn owns(addresses: &[String], from: &str) -> bool {
    let from = from.to_ascii_lowercase();
    let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
    addresses.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*@") {
            Some(d) => !domain.is_empty() && d == domain,
            None => a == from,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postel_proto::address::parse_forward_path;

    fn to(s: &str) -> ForwardPath {
        parse_forward_path(s.as_bytes(), true).expect("valid path")
    }

    #[test]
    fn local_remote_and_refused() {
        let mut policy = Policy::default();
        policy.domains.insert("here.test".into());
        policy
            .mailboxes
            .insert("here.test".into(), ["alice".to_owned()].into());
        let relay = RelayPolicy {
            networks: vec!["10.0.0.0/8".parse().expect("net")],
        };
        assert_eq!(
            relay.route(&policy, &to("<alice@HERE.test>"), false),
            Ok(Route::Local)
        );
        assert_eq!(
            relay.route(&policy, &to("<postmaster>"), false),
            Ok(Route::Local)
        );
        assert_eq!(
            relay.route(&policy, &to("<bob@here.test>"), true),
            Err(reply::no_such_mailbox())
        );
        assert_eq!(
            relay.route(&policy, &to("<x@far.test>"), true),
            Ok(Route::Remote)
        );
        assert_eq!(
            relay.route(&policy, &to("<x@far.test>"), false),
            Err(reply::relay_denied())
        );
        assert!(relay.trusts("10.1.2.3".parse().expect("ip")));
        assert!(relay.trusts("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!relay.trusts("11.1.2.3".parse().expect("ip")));
    }

    #[test]
    fn sender_addresses() {
        let mine = vec![
            "alice@example.test".to_owned(),
            "*@sales.example.test".to_owned(),
        ];
        assert!(owns(&mine, "Alice@Example.test"));
        assert!(owns(&mine, "anyone@SALES.example.test"));
        assert!(!owns(&mine, "bob@example.test"));
        assert!(!owns(&mine, "anyone@sub.sales.example.test"));
        assert!(!owns(&mine, "sales.example.test"));
        assert!(!owns(&[], "alice@example.test"));
    }
}
