//! Releasing a stored message: sending it on to an SMTP server, as it is
//! stored, to the recipients given (Mailpit's "release"). From the CLI to
//! any server (`postel messages release`); from the web inbox only to the
//! targets the config lists, behind a login ([`WebReleaser`]).
//!
//! The sending is delivery's own session: STARTTLS by the policy given,
//! SIZE, 8BITMIME and SMTPUTF8 respected, content never rewritten.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use postel_delivery::down::DownHosts;
use postel_delivery::mx::Host;
use postel_delivery::outcome::Outcome;
use postel_delivery::session::{Dial, Job};
use postel_delivery::{Settings, TlsPolicy};
use postel_store::{Message, QueueEntry, QueueState};

/// Sends `message` to `server` (`HOST:PORT`) for `to`, from `from`: each
/// recipient with the reply to it.
///
/// # Errors
/// When the server cannot be reached or refuses the session.
pub(crate) async fn send_to(
    server: &str,
    tls: TlsPolicy,
    hostname: &str,
    message: &Message,
    from: &str,
    to: &[String],
) -> Result<Vec<(String, String)>, String> {
    let (host, port) = server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{server:?} is not HOST:PORT"))?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    let mut settings = Settings::new(hostname);
    settings.tls = tls;
    let down = DownHosts::new();
    let dial = Dial {
        settings: &settings,
        tls,
        auth: None,
        implicit_tls: port == 465,
        port,
        down: &down,
        // The operator named the host.
        authenticated: true,
        sts_unknown: false,
    };
    let hosts = [Host {
        name: host.to_owned(),
        preference: 0,
        addrs: addrs.iter().map(SocketAddr::ip).collect(),
        dane: None,
        encrypt: false,
    }];
    let mut session = dial.open(&hosts).await.map_err(|f| f.text)?;
    let s = &message.summary;
    let entries: Vec<QueueEntry> = to
        .iter()
        .enumerate()
        .map(|(i, rcpt)| QueueEntry {
            id: s.id.clone(),
            position: i as u32,
            recipient: rcpt.clone(),
            rcpt_params: Vec::new(),
            mail_from: from.to_owned(),
            mail_params: Vec::new(),
            auth_user: None,
            client_addr: String::new(),
            received_at: s.received_at,
            size: s.size,
            state: QueueState::Queued,
            attempts: 0,
            next_attempt: 0,
            last_reply: None,
            warned: 0,
            leased_until: None,
            bounce: false,
            lease_token: 0,
        })
        .collect();
    let job = Job {
        entries,
        content: Arc::new(message.raw.clone()),
    };
    let outcomes = session.deliver(&job, &settings).await;
    session.quit().await;
    Ok(to
        .iter()
        .cloned()
        .zip(outcomes.into_iter().map(|o| match o {
            Outcome::Delivered { reply, .. } => reply,
            Outcome::Deferred(f) | Outcome::Failed(f) => f.text,
        }))
        .collect())
}

/// `postel messages release ID --server HOST:PORT [--to ADDR]...`
pub(crate) fn cli(
    args: &crate::cli::StoreArgs,
    id: &str,
    server: &str,
    to: &[String],
    from: Option<&str>,
    tls: &str,
) -> anyhow::Result<bool> {
    let tls = TlsPolicy::parse(tls)
        .with_context(|| format!("--tls {tls:?}: none, may, encrypt or verify"))?;
    let message = {
        use postel_store::Store as _;
        let admin = crate::admin::Admin::open(args, false)?;
        match admin.run(admin.store.get(id))? {
            Some(m) => m,
            None => bail!("no message {id} {}", admin.place),
        }
    };
    let to: Vec<String> = if to.is_empty() {
        message.summary.envelope.addresses()
    } else {
        to.to_vec()
    };
    let from = from
        .map(str::to_owned)
        .unwrap_or_else(|| message.summary.envelope.mail_from.clone());
    let hostname = crate::config::system_hostname();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt
        .block_on(send_to(server, tls, &hostname, &message, &from, &to))
        .map_err(|e| anyhow::anyhow!("release to {server} failed: {e}"))?;
    let mut all_ok = true;
    for (rcpt, reply) in results {
        all_ok &= reply.starts_with('2');
        println!(
            "<{}>: {}",
            crate::client::printable(&rcpt),
            crate::client::printable(&reply)
        );
    }
    Ok(all_ok)
}

/// The web inbox's releases: to the configured targets only.
pub(crate) struct WebReleaser {
    /// Name → `HOST:PORT`.
    pub(crate) targets: BTreeMap<String, String>,
    /// The name in EHLO.
    pub(crate) hostname: String,
}

impl postel_web::Releaser for WebReleaser {
    fn targets(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }

    fn release(
        &self,
        target: &str,
        message: Message,
        to: Vec<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = postel_web::Released> + Send>> {
        let server = self.targets.get(target).cloned();
        let hostname = self.hostname.clone();
        Box::pin(async move {
            let server = server.ok_or("no such release target")?;
            let from = message.summary.envelope.mail_from.clone();
            send_to(&server, TlsPolicy::May, &hostname, &message, &from, &to).await
        })
    }
}
