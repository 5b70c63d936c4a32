//! Where mail for a local recipient goes: Postel's own store (the web
//! inbox, the default), a Maildir, or an LMTP server such as Dovecot's
//! `dovecot-lmtpd`; chosen per domain or per mailbox
//! (`[[local_delivery]]`). A Maildir or LMTP recipient is queued like a
//! remote one, so it gets the same retries, and a notice when it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// An LMTP server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddr {
    /// `HOST:PORT` (a host name or an IP address).
    Tcp(String, u16),
    /// A local socket.
    Unix(PathBuf),
}

/// Where a local recipient's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Postel's own store.
    Store,
    /// A Maildir: the path, with `{domain}` and `{local}` replaced by the
    /// recipient's (both checked first, then lowercased).
    Maildir(String),
    /// An LMTP server.
    Lmtp(LmtpAddr),
}

impl Target {
    /// The target named `s`: `store`, `maildir:/path/{domain}/{local}`,
    /// `lmtp:HOST:PORT` or `lmtp:unix:/path`.
    ///
    /// # Errors
    /// What is wrong with `s`, for the config's message.
    pub fn parse(s: &str) -> Result<Target, String> {
        if s == "store" {
            return Ok(Target::Store);
        }
        if let Some(path) = s.strip_prefix("maildir:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: the Maildir path must be absolute"));
            }
            if !path.contains("{local}") {
                return Err(format!(
                    "{s:?}: the Maildir path must hold {{local}} (one Maildir per mailbox)"
                ));
            }
            return Ok(Target::Maildir(path.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("lmtp:") {
            if let Some(path) = rest.strip_prefix("unix:") {
                if !path.starts_with('/') {
                    return Err(format!("{s:?}: the socket path must be absolute"));
                }
                return Ok(Target::Lmtp(LmtpAddr::Unix(PathBuf::from(path))));
            }
            if let Some((host, port)) = rest.rsplit_once(':')
                && let Ok(port) = port.parse::<u16>()
                && port > 0
                && !host.is_empty()
            {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                return Ok(Target::Lmtp(LmtpAddr::Tcp(host.to_owned(), port)));
            }
            return Err(format!("{s:?} is not lmtp:HOST:PORT or lmtp:unix:/path"));
        }
        Err(format!(
            "{s:?} is not \"store\", \"maildir:/path/{{domain}}/{{local}}\", \"lmtp:HOST:PORT\" or \"lmtp:unix:/path\""
        ))
    }

    /// The target as written in the config.
    pub fn name(&self) -> String {
        match self {
            Target::Store => "store".to_owned(),
            Target::Maildir(p) => format!("maildir:{p}"),
            Target::Lmtp(LmtpAddr::Tcp(h, p)) => format!("lmtp:{h}:{p}"),
            Target::Lmtp(LmtpAddr::Unix(p)) => format!("lmtp:unix:{}", p.display()),
        }
    }
}

/// The local delivery table: a mailbox's own entry first, then its
/// domain's; none means the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalRoutes {
    by_address: BTreeMap<String, Target>,
    by_domain: BTreeMap<String, Target>,
}

impl LocalRoutes {
    /// Routes `entry` (a domain, or a whole address for one mailbox) to
    /// `target`. A later entry for the same name replaces an earlier one.
    pub fn add(&mut self, entry: &str, target: Target) {
        let key = entry.to_lowercase();
        if key.contains('@') {
            self.by_address.insert(key, target);
        } else {
            self.by_domain.insert(key, target);
        }
    }

    /// Whether every local recipient goes to the store.
    pub fn is_empty(&self) -> bool {
        self.queued_targets().next().is_none()
    }

    fn queued_targets(&self) -> impl Iterator<Item = &Target> {
        self.by_address
            .values()
            .chain(self.by_domain.values())
            .filter(|t| **t != Target::Store)
    }

    /// Where mail for `recipient` (an address without brackets) goes,
    /// if not to the store: it is then queued.
    pub fn queued(&self, recipient: &str) -> Option<&Target> {
        let lower = recipient.to_lowercase();
        let domain = lower.rsplit_once('@').map_or("", |(_, d)| d);
        self.by_address
            .get(&lower)
            .or_else(|| self.by_domain.get(domain))
            .filter(|t| **t != Target::Store)
    }

    /// Every entry (a domain or an address) and its target.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Target)> {
        self.by_domain
            .iter()
            .chain(self.by_address.iter())
            .map(|(k, t)| (k.as_str(), t))
    }

    /// The target whose config name is `name`, if it is one of these.
    pub fn by_name(&self, name: &str) -> Option<&Target> {
        self.queued_targets().find(|t| t.name() == name)
    }
}

/// Whether `part` (a local part or a domain) may become a path
/// component: not empty, no `/`, no `..`, no control character, not
/// starting with a dot (no hidden or parent folder).
pub fn safe_path_part(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && !part.contains('/')
        && !part.contains("..")
        && !part.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_the_config_names_them() {
        assert_eq!(Target::parse("store"), Ok(Target::Store));
        assert_eq!(
            Target::parse("lmtp:127.0.0.1:24"),
            Ok(Target::Lmtp(LmtpAddr::Tcp("127.0.0.1".into(), 24)))
        );
        assert_eq!(
            Target::parse("lmtp:[::1]:24"),
            Ok(Target::Lmtp(LmtpAddr::Tcp("::1".into(), 24)))
        );
        assert_eq!(
            Target::parse("lmtp:unix:/run/dovecot/lmtp"),
            Ok(Target::Lmtp(LmtpAddr::Unix("/run/dovecot/lmtp".into())))
        );
        let m = Target::parse("maildir:/var/mail/{domain}/{local}").expect("ok");
        assert_eq!(m.name(), "maildir:/var/mail/{domain}/{local}");
        for bad in [
            "maildir:relative/{local}",
            "maildir:/var/mail/{domain}",
            "lmtp:host",
            "lmtp:host:0",
            "lmtp:unix:relative",
            "mbox:/var/mail",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mailbox_entry_wins_over_its_domain() {
        let mut r = LocalRoutes::default();
        r.add(
            "Here.test",
            Target::Lmtp(LmtpAddr::Tcp("127.0.0.1".into(), 24)),
        );
        r.add("web@here.test", Target::Store);
        r.add("box@there.test", Target::Maildir("/m/{local}".into()));
        assert!(matches!(r.queued("Alice@HERE.test"), Some(Target::Lmtp(_))));
        assert_eq!(r.queued("web@here.test"), None);
        assert!(matches!(
            r.queued("box@there.test"),
            Some(Target::Maildir(_))
        ));
        assert_eq!(r.queued("other@there.test"), None);
        assert!(!r.is_empty());
        assert!(r.by_name("lmtp:127.0.0.1:24").is_some());
    }

    #[test]
    fn only_plain_names_become_paths() {
        assert!(safe_path_part("alice"));
        assert!(safe_path_part("first.last+tag"));
        for bad in [
            "", "..", "a/b", "a..b", ".hidden", "a\u{0}b", "a\nb", "\u{7f}",
        ] {
            assert!(!safe_path_part(bad), "{bad:?}");
        }
    }
}
