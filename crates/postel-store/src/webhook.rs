//! The webhook outbox: one row per stored message and webhook, written in
//! the message's own commit (so that a `250` also means "will be posted"),
//! claimed by the webhook worker, and updated with each attempt's outcome.

/// Where one message's delivery to one webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Not yet taken (or to be tried again).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up.
    Failed,
}

impl WebhookState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Failed => "failed",
        }
    }

    /// From its stored name.
    pub fn parse(s: &str) -> Option<WebhookState> {
        Some(match s {
            "pending" => WebhookState::Pending,
            "delivered" => WebhookState::Delivered,
            "failed" => WebhookState::Failed,
            _ => return None,
        })
    }
}

/// One message's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEntry {
    /// The message id (the receiver's idempotency key).
    pub id: String,
    /// The webhook, by its URL.
    pub hook: String,
    /// Where it stands.
    pub state: WebhookState,
    /// Attempts made.
    pub attempts: u32,
    /// When it is next due (Unix seconds); while claimed, when the claim
    /// ends.
    pub next_attempt: i64,
    /// The last attempt's outcome: the HTTP status, or why there was none.
    pub last_status: Option<String>,
    /// When the message arrived.
    pub received_at: i64,
}

impl WebhookEntry {
    /// An update of this entry: the outcome of an attempt.
    pub fn update(
        &self,
        state: WebhookState,
        next_attempt: i64,
        last_status: impl Into<String>,
    ) -> WebhookUpdate {
        WebhookUpdate {
            id: self.id.clone(),
            hook: self.hook.clone(),
            state,
            attempts: self.attempts + 1,
            next_attempt,
            last_status: Some(last_status.into()),
        }
    }
}

/// The outcome of an attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUpdate {
    /// The message id.
    pub id: String,
    /// The webhook.
    pub hook: String,
    /// Where it stands now.
    pub state: WebhookState,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// When it is next due.
    pub next_attempt: i64,
    /// The attempt's outcome.
    pub last_status: Option<String>,
}
