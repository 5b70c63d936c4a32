//! The delivery queue as the store keeps it: one row per recipient that is
//! to be sent on, written in the same commit as its message (so that the
//! `250` also means "queued"), and updated by the delivery worker after
//! each attempt.
//!
//! A delivery claims the rows it works on with a lease (`leased_until`), so
//! that no other delivery takes them meanwhile; recording the outcome ends
//! the lease. A deferral does not overwrite what an operator did meanwhile
//! (hold, delete); a delivery or a failure is recorded whatever happened.
//!
//! A message whose rows are all done (delivered or failed) leaves the
//! queue; its body goes too unless the message is also kept in the inbox.
//! While any row is still queued, deferred or held, no delete or prune
//! removes the body: they only take the message out of the inbox.

/// Where a queued recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    /// Not tried yet.
    Queued,
    /// Tried, failed transiently: tried again at `next_attempt`.
    Deferred,
    /// Accepted by the next hop.
    Delivered,
    /// Given up: refused permanently, or past the lifetime.
    Failed,
    /// Kept, not tried, until released.
    Held,
}

impl QueueState {
    /// The name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Deferred => "deferred",
            QueueState::Delivered => "delivered",
            QueueState::Failed => "failed",
            QueueState::Held => "held",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<QueueState> {
        Some(match s {
            "queued" => QueueState::Queued,
            "deferred" => QueueState::Deferred,
            "delivered" => QueueState::Delivered,
            "failed" => QueueState::Failed,
            "held" => QueueState::Held,
            _ => return None,
        })
    }

    /// Returns true if and only if nothing more will be done for it.
    pub fn is_done(self) -> bool {
        matches!(self, QueueState::Delivered | QueueState::Failed)
    }
}

/// One queued recipient, with what a delivery attempt needs of its
/// message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The message id.
    pub id: String,
    /// The recipient's position in the envelope.
    pub position: u32,
    /// The forward-path, without brackets.
    pub recipient: String,
    /// Its RCPT parameters as sent (NOTIFY, ORCPT...).
    pub rcpt_params: Vec<String>,
    /// The reverse-path, without brackets; empty for `<>`.
    pub mail_from: String,
    /// MAIL parameters as sent (RET, ENVID, BODY, SMTPUTF8...).
    pub mail_params: Vec<String>,
    /// The authenticated user who sent it, if any.
    pub auth_user: Option<String>,
    /// The client that sent it.
    pub client_addr: String,
    /// Seconds since the Unix epoch.
    pub received_at: i64,
    /// Octets of the message.
    pub size: u64,
    /// Where it stands.
    pub state: QueueState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When to try next (Unix seconds).
    pub next_attempt: i64,
    /// The last reply from a remote server, or why it failed.
    pub last_reply: Option<String>,
    /// Delay notices sent so far (one bit per warning step).
    pub warned: u32,
    /// Claimed by a delivery until then (Unix seconds).
    pub leased_until: Option<i64>,
    /// The operator asked for it to be returned to its sender.
    pub bounce: bool,
    /// Which claim holds it: a store that several nodes share writes an
    /// outcome only under the claim it was made with (0 for rows committed
    /// claimed, and for stores that one node owns).
    pub lease_token: i64,
}

/// The outcome of an attempt for one queued recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUpdate {
    /// The message id.
    pub id: String,
    /// The recipient's position in the envelope.
    pub position: u32,
    /// The new state.
    pub state: QueueState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When to try next (Unix seconds).
    pub next_attempt: i64,
    /// The last reply, or why it failed.
    pub last_reply: Option<String>,
    /// Delay notices sent so far.
    pub warned: u32,
    /// The claim it was made under ([`QueueEntry::lease_token`]).
    pub lease_token: i64,
}

impl QueueEntry {
    /// The row of recipient `position` of a message as it is committed:
    /// never tried, due at once, queued (or held), claimed until
    /// `claimed_until` if given. None if there is no such recipient.
    pub fn committed(
        id: &str,
        position: u32,
        envelope: &crate::Envelope,
        received_at: i64,
        size: u64,
        claimed_until: Option<i64>,
        hold: bool,
    ) -> Option<QueueEntry> {
        let r = envelope.recipients.get(position as usize)?;
        Some(QueueEntry {
            id: id.to_owned(),
            position,
            recipient: r.address.clone(),
            rcpt_params: r.params.clone(),
            mail_from: envelope.mail_from.clone(),
            mail_params: envelope.mail_params.clone(),
            auth_user: envelope.auth_user.clone(),
            client_addr: envelope.client_addr.clone(),
            received_at,
            size,
            state: if hold {
                QueueState::Held
            } else {
                QueueState::Queued
            },
            attempts: 0,
            next_attempt: received_at,
            last_reply: None,
            warned: 0,
            leased_until: claimed_until,
            bounce: false,
            lease_token: 0,
        })
    }

    /// An update of this entry that changes nothing yet.
    pub fn update(&self) -> QueueUpdate {
        QueueUpdate {
            id: self.id.clone(),
            position: self.position,
            state: self.state,
            attempts: self.attempts,
            next_attempt: self.next_attempt,
            last_reply: self.last_reply.clone(),
            warned: self.warned,
            lease_token: self.lease_token,
        }
    }
}

/// What an operator asks of queued recipients (`postel queue ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Try now: queued, deferred and held rows become due at once.
    Retry,
    /// Stop trying until released.
    Hold,
    /// Held rows are tried again at once.
    Release,
    /// Forget the rows; no notice is sent.
    Delete,
    /// Give up at once, with a failure notice to the sender.
    Bounce,
}

/// Which rows a delivery worker claims (see `Store::queue_claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueClaim {
    /// Now (Unix seconds): rows due at or before it.
    pub now: i64,
    /// The claim runs until then, unless the outcome comes first.
    pub until: i64,
    /// The most rows in all.
    pub limit: usize,
    /// The most rows for one destination domain, so that one domain's
    /// backlog cannot fill the claim and hold up the others.
    pub per_domain: usize,
    /// Domains not to claim for now (their connections are all busy).
    pub skip: Vec<String>,
    /// Only this domain (a session asking for more of its destination).
    pub only: Option<String>,
}

/// The domain of an address (lowercase), where its mail goes; empty for
/// one without a domain.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase()
}
