//! Where each recipient goes (kept in the store, or queued), for the
//! client's RCPTs and for the recipients milters add; and the milters'
//! envelope changes (sender, added and removed recipients).

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
                        self.mail_params = clean(args);
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
