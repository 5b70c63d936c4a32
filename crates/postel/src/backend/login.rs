//! AUTH for a session: a password (PLAIN, LOGIN) or a SCRAM-SHA-256
//! exchange, each checked through the one `Authenticator` (lockout, failure
//! slot, delay), and what a login brings: the user and its sender addresses.

use std::time::Instant;

use postel_policy::Checked;
use postel_policy::scram::{self, ScramKeys};
use postel_proto::sasl::Mechanism;
use postel_proto::{Reply, reply};
use postel_store::Store;
use tracing::{info, warn};

use super::PostelSession;

impl<S: Store> PostelSession<S> {
    /// PLAIN and LOGIN.
    pub(super) async fn password_login(
        &mut self,
        mechanism: Mechanism,
        authzid: &str,
        username: &str,
        password: &str,
    ) -> Result<(), Reply> {
        let inner = self.inner.clone();
        let (ip, now) = (self.meta.peer.ip(), Instant::now());
        // Acting as someone else (a PLAIN authzid) is not allowed: a
        // failure like any other, with its slot and its delay.
        let checked = if authzid.is_empty() || authzid == username {
            inner
                .auth
                .check_password(Some(ip), now, username, password)
                .await
        } else {
            inner
                .auth
                .attempt(Some(ip), now, async { Some(false) })
                .await
        };
        self.logged_in(checked, mechanism, username).await
    }

    /// SCRAM's first step: the user's keys (decoys for an unknown user,
    /// one without keys, or one acting as another), and the server's first
    /// message over them.
    pub(super) async fn scram_login_first(
        &mut self,
        authzid: &str,
        username: &str,
        client_nonce: &str,
    ) -> Result<String, Reply> {
        let inner = self.inner.clone();
        self.scram_proven = None;
        if inner.auth.locked_out(self.meta.peer.ip(), Instant::now()) {
            return self
                .logged_in(Checked::LockedOut, Mechanism::ScramSha256, username)
                .await
                .map(|()| String::new());
        }
        let Some(mut keys) = inner.auth.scram_keys(username).await else {
            warn!(
                session = self.meta.session_id,
                "AUTH not tried: the accounts cannot be read"
            );
            return Err(reply::auth_busy());
        };
        if !authzid.is_empty() && authzid != username {
            // Fails at the proof, with a failure's slot and delay.
            keys.stored_key = [0; 32];
        }
        let Ok(server_nonce) = scram::nonce() else {
            return Err(reply::local_error());
        };
        let first = postel_proto::scram::server_first(
            client_nonce,
            &server_nonce,
            &keys.salt,
            keys.iterations,
        );
        self.scram = Some((username.to_owned(), keys));
        Ok(first)
    }

    /// SCRAM's final step: the proof checked as a login attempt.
    pub(super) async fn scram_login_final(
        &mut self,
        auth_message: &str,
        proof: &[u8],
    ) -> Result<String, Reply> {
        let Some((username, keys)) = self.scram.take() else {
            return Err(reply::local_error());
        };
        let (checked, server_final) = self
            .inner
            .auth
            .check_scram(
                Some(self.meta.peer.ip()),
                Instant::now(),
                &keys,
                auth_message,
                proof,
            )
            .await;
        match (checked, server_final) {
            // Not a login until the client takes our signature
            // (`scram_done`): it may still cancel.
            (Checked::Ok, Some(server_final)) => {
                self.scram_proven = Some(username);
                Ok(server_final)
            }
            (Checked::Ok, None) => Err(reply::local_error()),
            (checked, _) => self
                .logged_in(checked, Mechanism::ScramSha256, &username)
                .await
                .and(Err(reply::auth_failed())),
        }
    }

    /// SCRAM's end: the client took the server's signature.
    pub(super) async fn scram_login_done(&mut self) {
        if let Some(username) = self.scram_proven.take() {
            // Ok is Ok: nothing to refuse.
            let _ = self
                .logged_in(Checked::Ok, Mechanism::ScramSha256, &username)
                .await;
        }
    }

    /// The verdict on a login, logged and counted; on success the user and
    /// its sender addresses are the session's.
    async fn logged_in(
        &mut self,
        checked: Checked,
        mechanism: Mechanism,
        username: &str,
    ) -> Result<(), Reply> {
        let inner = self.inner.clone();
        let (session, client) = (self.meta.session_id, self.meta.peer);
        let user = postel_proto::display::visible(username);
        match checked {
            Checked::Ok => {
                info!(session, %client, %user, mechanism = mechanism.name(), "authenticated");
                self.user = Some(username.to_owned());
                self.mechanism = Some(mechanism);
                let (users, name) = (inner.users.clone(), username.to_owned());
                self.addresses = tokio::task::spawn_blocking(move || users.user_addresses(&name))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                Ok(())
            }
            Checked::Wrong => {
                inner.metrics.auth_failures.inc();
                warn!(session, %client, %user, mechanism = mechanism.name(), "AUTH failed");
                Err(reply::auth_failed())
            }
            Checked::LockedOut => {
                inner.metrics.auth_failures.inc();
                warn!(session, %client, "AUTH refused: too many failures from this address");
                Err(reply::too_many_auth_failures())
            }
            Checked::Busy => {
                warn!(session, %client, "AUTH not checked: every password check is busy, or the accounts cannot be read");
                Err(reply::auth_busy())
            }
        }
    }
}

/// The keys to store with a new password; None (PLAIN and LOGIN only) when
/// SASLprep forbids a character of it.
pub(crate) fn scram_keys_for(password: &str) -> anyhow::Result<Option<String>> {
    match ScramKeys::new(password) {
        Ok(keys) => Ok(Some(keys.to_text())),
        Err(scram::ScramError::Prohibited) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot make SCRAM keys: {e}")),
    }
}

/// The secret behind the decoy SCRAM keys of unknown users, kept in the
/// data folder (mode 0600) so that their salts stay the same across
/// restarts, as real users' do: a salt that changed with a restart would
/// tell who does not exist.
pub(crate) fn decoy_secret(data_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join("scram-decoy.key");
    for _ in 0..2 {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(secret) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(secret);
        }
        let secret = ScramKeys::decoy_secret().map_err(|e| anyhow::anyhow!("{e}"))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match file {
            Ok(mut f) => {
                f.write_all(&secret)?;
                f.sync_all()?;
                return Ok(secret);
            }
            // Another process made it first (or a torn file): read it, or
            // replace a torn one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::metadata(&path).is_ok_and(|m| m.len() != 32) {
                    std::fs::remove_file(&path)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("cannot make {}", path.display())
}
