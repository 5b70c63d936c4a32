//! Where each recipient goes (kept in the store, or queued), for the
//! client's RCPTs, the addresses a forward names and the recipients
//! milters add; and the milters' envelope changes (sender, added and
//! removed recipients).

use postel_delivery::local::Target;
use postel_milter::Edit;
use postel_policy::relay::Route;
use postel_proto::address::parse_mailbox;
use postel_proto::{ForwardPath, Reply, reply};
use postel_store::{Recipient, Store};
use tracing::warn;

use super::PostelSession;

impl<S: Store> PostelSession<S> {
    /// Whether `to` is queued (true) or kept in the store (false), or its
    /// refusal. `may_relay`: the client may send to other domains.
    pub(super) fn placement(&self, to: &ForwardPath, may_relay: bool) -> Result<bool, Reply> {
        let Some(relay) = &self.inner.relay else {
            if !may_relay {
                self.inner.policy.recipient(to)?;
            }
            return Ok(false);
        };
        match relay.policy.route(&self.inner.policy, to, may_relay)? {
            Route::Remote => Ok(true),
            Route::Local => {
                let ForwardPath::Mailbox(_) = to else {
                    return Ok(false);
                };
                // A local recipient with a Maildir or LMTP target is
                // queued; its name must be able to become a folder.
                let address = to.to_string();
                match relay.local_routes.queued(&address) {
                    Some(Target::Maildir(template)) => {
                        if postel_delivery::maildir::folder(template, &address).is_err() {
                            return Err(reply::mailbox_name_unusable());
                        }
                        Ok(true)
                    }
                    Some(_) => Ok(true),
                    None => Ok(false),
                }
            }
        }
    }

    /// The addresses `to` is forwarded to (`[delivery.forward]`), if it is
    /// forwarded.
    pub(super) fn forward_targets(&self, to: &ForwardPath) -> Option<Vec<ForwardPath>> {
        let relay = self.inner.relay.as_ref()?;
        if relay.forward.is_empty() {
            return None;
        }
        let ForwardPath::Mailbox(m) = to else {
            return None;
        };
        let key = format!("{}@{}", m.local, m.domain).to_lowercase();
        let targets = relay.forward.get(&key)?;
        Some(
            targets
                .iter()
                .filter_map(|t| parse_mailbox(t.as_bytes(), true).ok())
                .map(ForwardPath::Mailbox)
                .collect(),
        )
    }

    /// Puts the targets of a forwarded recipient in its place, each routed
    /// as the operator's own mail (the operator named them), with the
    /// original address as its `ORCPT` (RFC 3461 4.2) unless the client
    /// gave one. A target that cannot be routed is left out (and logged);
    /// if none can, the recipient is refused with the first refusal.
    pub(super) fn push_forwarded(
        &mut self,
        to: &ForwardPath,
        targets: &[ForwardPath],
        params: &[String],
    ) -> Result<(), Reply> {
        let mut params = params.to_vec();
        if !params
            .iter()
            .any(|p| p.len() > 6 && p[..6].eq_ignore_ascii_case("ORCPT="))
        {
            params.push(format!("ORCPT={}", orcpt(&to.to_string())));
        }
        let mut first_refusal = None;
        let mut placed = 0;
        for t in targets {
            // Once per message: the same target twice (two forwards, or
            // the forward given in several RCPTs) is one recipient.
            let address = t.to_string();
            if self
                .recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&address))
            {
                placed += 1;
                continue;
            }
            if self.recipients.len() >= MAX_EXPANDED {
                return Err(reply::too_many_recipients());
            }
            match self.placement(t, true) {
                Ok(queued) => {
                    let ForwardPath::Mailbox(m) = t else { continue };
                    if !self.inner.policy.domains.contains(&m.domain.to_lowercase()) {
                        self.forwarded = true;
                    }
                    self.push_recipient(t, params.clone(), queued);
                    placed += 1;
                }
                Err(r) => {
                    warn!(
                        session = self.meta.session_id,
                        code = r.code,
                        "a forward's target was refused: left out"
                    );
                    first_refusal.get_or_insert(r);
                }
            }
        }
        match first_refusal {
            Some(r) if placed == 0 => Err(r),
            _ => Ok(()),
        }
    }

    /// Adds a recipient at its place.
    pub(super) fn push_recipient(&mut self, to: &ForwardPath, params: Vec<String>, queued: bool) {
        if queued {
            self.queue.push(self.recipients.len() as u32);
        } else {
            self.local = true;
        }
        self.recipients.push(Recipient {
            address: to.to_string(),
            params,
        });
    }

    /// Applies milters' envelope changes. Added recipients are routed as
    /// if from a client that may relay (a filter is trusted as the
    /// operator's own), and refused ones are left out.
    pub(super) fn apply_envelope(&mut self, edits: Vec<Edit>) {
        let session = self.meta.session_id;
        let strip = |s: &str| {
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        };
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|a| !a.is_empty() && !a.chars().any(char::is_control))
                .take(10)
                .collect()
        };
        for e in edits {
            match e {
                Edit::ChangeFrom(from, args) => {
                    let from = strip(&from);
                    if from.is_empty() || parse_mailbox(from.as_bytes(), true).is_ok() {
                        self.from = from;
                        // The sender's REQUIRETLS stays with the message
                        // (RFC 8689 4.1), whatever the milter passes.
                        let requiretls = self
                            .mail_params
                            .iter()
                            .find(|p| p.eq_ignore_ascii_case("REQUIRETLS"))
                            .cloned();
                        self.mail_params = clean(args);
                        if let Some(p) = requiretls
                            && !self.mail_params.iter().any(|a| a.eq_ignore_ascii_case(&p))
                        {
                            self.mail_params.push(p);
                        }
                    } else {
                        warn!(session, "a milter's new sender is not an address: ignored");
                    }
                }
                Edit::AddRecipient(rcpt, args) => {
                    let address = strip(&rcpt);
                    let Ok(mailbox) = parse_mailbox(address.as_bytes(), true) else {
                        warn!(
                            session,
                            "a milter's new recipient is not an address: ignored"
                        );
                        continue;
                    };
                    let to = ForwardPath::Mailbox(mailbox);
                    match self.placement(&to, true) {
                        Ok(queued) => self.push_recipient(&to, clean(args), queued),
                        Err(r) => {
                            warn!(
                                session,
                                code = r.code,
                                "a milter's new recipient was refused: left out"
                            );
                        }
                    }
                }
                Edit::DeleteRecipient(rcpt) => {
                    let address = strip(&rcpt);
                    let queued: Vec<bool> = (0..self.recipients.len())
                        .map(|i| self.queue.contains(&(i as u32)))
                        .collect();
                    let keep: Vec<bool> = self
                        .recipients
                        .iter()
                        .map(|r| !r.address.eq_ignore_ascii_case(&address))
                        .collect();
                    let mut recipients = Vec::new();
                    let (mut queue, mut local) = (Vec::new(), false);
                    for (i, r) in std::mem::take(&mut self.recipients).into_iter().enumerate() {
                        if !keep[i] {
                            continue;
                        }
                        if queued[i] {
                            queue.push(recipients.len() as u32);
                        } else {
                            local = true;
                        }
                        recipients.push(r);
                    }
                    self.recipients = recipients;
                    self.queue = queue;
                    self.local = local;
                }
                _ => {}
            }
        }
    }
}

/// A message's recipients at most, forwards expanded (a client's RCPTs
/// are bounded by the session; a forward names up to 50 each).
const MAX_EXPANDED: usize = 1000;

/// The `ORCPT` value for `address` (without brackets): `rfc822;` and
/// xtext for ASCII (RFC 3461 4.2), `utf-8;` and utf-8-addr-xtext for the
/// rest (RFC 6533 3: `\x{HEX}` for `+`, `=`, `\` and what is not
/// printable ASCII).
fn orcpt(address: &str) -> String {
    if address.is_ascii() {
        return format!("rfc822;{}", xtext(address));
    }
    let mut out = String::from("utf-8;");
    for c in address.chars() {
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// `s` as xtext (RFC 3461 4): `+`, `=` and octets outside `!`..`~` as
/// `+XX`.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn xtext_encodes_plus_equals_and_the_rest() {
        assert_eq!(super::xtext("a+b=c@d.test"), "a+2Bb+3Dc@d.test");
        assert_eq!(super::xtext("é"), "+C3+A9");
        assert!(postel_proto::params::is_xtext(
            super::xtext("x y+z").as_bytes()
        ));
        assert_eq!(super::orcpt("a+b@c.test"), "rfc822;a+2Bb@c.test");
        assert_eq!(super::orcpt("jö+x@c.test"), "utf-8;j\\x{F6}\\x{2B}x@c.test");
    }
}
