//! REQUIRETLS mail a host refused for itself (it does not offer
//! REQUIRETLS, or its certificate did not verify) goes to the
//! destination's other MX hosts, each in turn (RFC 8689 4.2.1), before
//! its `5.7.30` stands.

use postel_store::{QueueEntry, Store};

use super::{Pending, Worker};
use crate::outcome::{Failure, Outcome};
use crate::session::Job;

/// Whether every outcome is a REQUIRETLS refusal that another host might
/// not make.
pub(super) fn refused_here(outcomes: &[Outcome]) -> bool {
    !outcomes.is_empty()
        && outcomes.iter().all(|o| {
            matches!(o, Outcome::Failed(f) if f.status == "5.7.30"
                && (f.text.contains("does not offer REQUIRETLS")
                    || f.text.contains("certificate is not verified")))
        })
}

impl<S: Store + Clone> Worker<S> {
    /// Tries `messages` on the hosts of `dest` not in `tried`, one after
    /// another, and records what each got; what none took fails with
    /// `5.7.30`.
    pub(super) async fn requiretls_elsewhere(
        &self,
        dest: &str,
        mut messages: Vec<Vec<QueueEntry>>,
        mut tried: Vec<String>,
        pending: &mut Vec<Pending>,
    ) {
        let s = &self.settings;
        while !messages.is_empty() {
            let (mut hosts, dial) = match self.route(dest, false).await {
                Ok(r) => r,
                Err((o, _)) => {
                    for rows in &messages {
                        pending.push(self.record(rows, vec![o.clone(); rows.len()]).await);
                    }
                    return;
                }
            };
            hosts.retain(|h| !tried.iter().any(|t| t.eq_ignore_ascii_case(&h.name)));
            if hosts.is_empty() {
                break;
            }
            let mut session = match dial.open(&hosts).await {
                Ok(session) => session,
                // The others do not answer now: try again later.
                Err(f) => {
                    for rows in &messages {
                        let o = Outcome::Deferred(f.clone());
                        pending.push(self.record(rows, vec![o; rows.len()]).await);
                    }
                    return;
                }
            };
            tried.push(session.host.clone());
            let mut again = Vec::new();
            for rows in messages {
                let outcomes = match self.load(&rows).await {
                    Err(o) => vec![o; rows.len()],
                    Ok(content) => {
                        let job = Job {
                            entries: rows.clone(),
                            content,
                        };
                        session.deliver(&job, s).await
                    }
                };
                if refused_here(&outcomes) {
                    again.push(rows);
                } else {
                    pending.push(self.record(&rows, outcomes).await);
                }
            }
            session.quit().await;
            messages = again;
        }
        let f = Failure::local(
            "5.7.30",
            format!(
                "REQUIRETLS support required: no MX host of {dest} takes this message over authenticated TLS (tried {})",
                tried.join(", ")
            ),
        );
        for rows in &messages {
            pending.push(
                self.record(rows, vec![Outcome::Failed(f.clone()); rows.len()])
                    .await,
            );
        }
    }
}
