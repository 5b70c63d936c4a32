//! A login attempt, from start to verdict: the lockout of the client's
//! address, the password check in the pool, and the delay a wrong guess
//! costs. SMTP AUTH and the web login both come through here, so that they
//! share one lockout and one pool, with one set of limits.
//!
//! Order matters, and is the point of this module:
//! 1. a locked-out address is refused before anything else, whatever it
//!    sends, and costs nothing;
//! 2. the attempt takes its failure slot before the check runs;
//! 3. the check runs in the bounded pool, or is refused as busy (and the
//!    slot is given back: a busy server is not the client's failure);
//! 4. a wrong guess waits out the failure delay before it is answered.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lockout::Lockout;
use crate::passwords::{PasswordPool, hash_password};
use crate::scram::ScramKeys;

/// Failed logins from one address before it is locked out...
pub const MAX_FAILURES: u32 = 10;
/// ...for this long after the first of them.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a wrong guess waits before its answer: slows guessing.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Where password hashes come from (the store).
pub trait UserHashes: Send + Sync + 'static {
    /// The PHC hash of `user`'s password, if there is such a user.
    /// Blocking: called on a pool thread.
    fn user_hash(&self, user: &str) -> Option<String>;

    /// As [`UserHashes::user_hash`], telling a failure to read the
    /// accounts (a database that is down) from an unknown user: the login
    /// is then not checked, and not counted against the client.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn try_user_hash(&self, user: &str) -> Result<Option<String>, String> {
        Ok(self.user_hash(user))
    }

    /// `user`'s SCRAM-SHA-256 keys in RFC 5803's form, if there is such a
    /// user and its password was set since Postel made them. Blocking.
    fn user_scram(&self, _user: &str) -> Option<String> {
        None
    }

    /// As [`UserHashes::user_scram`], telling a failure to read the
    /// accounts from a user without keys.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn try_user_scram(&self, user: &str) -> Result<Option<String>, String> {
        Ok(self.user_scram(user))
    }
}

/// The verdict on a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The credentials are right.
    Ok,
    /// They are not (after the failure delay).
    Wrong,
    /// Too many failures from this address: not checked.
    LockedOut,
    /// No room to check now: try again later. Not a failure.
    Busy,
}

/// Login attempts: one lockout, one pool, the users' hashes.
pub struct Authenticator {
    users: Arc<dyn UserHashes>,
    pool: PasswordPool,
    lockout: Lockout,
    /// Checked for unknown users, so that they cost what a wrong password
    /// costs and cannot be told apart by time.
    dummy_hash: Arc<str>,
    /// Makes the SCRAM keys given for unknown users (see `ScramKeys::decoy`).
    decoy_secret: [u8; 32],
    failure_delay: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("pool", &self.pool)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks against `users`, in `pool`, with the default lockout
    /// ([`MAX_FAILURES`] in [`FAILURE_WINDOW`]) and [`FAILURE_DELAY`].
    ///
    /// # Errors
    /// Only if the dummy hash cannot be made.
    pub fn new(
        users: Arc<dyn UserHashes>,
        pool: PasswordPool,
    ) -> Result<Authenticator, argon2::password_hash::Error> {
        Ok(Authenticator {
            users,
            pool,
            lockout: Lockout::new(MAX_FAILURES, FAILURE_WINDOW),
            dummy_hash: hash_password("postel-dummy-password-for-unknown-users")?.into(),
            decoy_secret: ScramKeys::decoy_secret()
                .map_err(|_| argon2::password_hash::Error::Crypto)?,
            failure_delay: FAILURE_DELAY,
        })
    }

    /// The lockout (to share its counts with other nodes).
    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// The same, with another lockout and failure delay (tests, and
    /// operators who want others).
    pub fn with_limits(mut self, lockout: Lockout, failure_delay: Duration) -> Authenticator {
        self.lockout = lockout;
        self.failure_delay = failure_delay;
        self
    }

    /// The same, with the secret behind unknown users' SCRAM keys (kept
    /// by the caller, so that it outlives a restart).
    pub fn with_decoy_secret(mut self, secret: [u8; 32]) -> Authenticator {
        self.decoy_secret = secret;
        self
    }

    /// Returns true if and only if `ip` is locked out at `now`.
    pub fn locked_out(&self, ip: IpAddr, now: Instant) -> bool {
        self.lockout.locked_out(ip, now)
    }

    /// Checks `user`'s `password`, for a client at `ip` (None: not counted
    /// per address, as for a client whose address is unknown).
    pub async fn check_password(
        &self,
        ip: Option<IpAddr>,
        now: Instant,
        user: &str,
        password: &str,
    ) -> Checked {
        let (users, dummy) = (self.users.clone(), self.dummy_hash.clone());
        let (user, password) = (user.to_owned(), password.to_owned());
        let pool = self.pool.clone();
        self.attempt(ip, now, async move {
            pool.run(move |scratch| {
                // Unreadable accounts: not checked (busy), not a failure.
                let hash = users.try_user_hash(&user).ok()?;
                let matches = scratch.verify(hash.as_deref().unwrap_or(&dummy), &password);
                Some(matches && hash.is_some())
            })
            .await
            .ok()
            .flatten()
        })
        .await
    }

    /// `user`'s SCRAM keys; for a user who does not exist or has none, keys
    /// that look alike and match no proof, so that the answer and its time
    /// are those of a wrong password.
    ///
    /// None when the accounts cannot be read (a database that is down):
    /// the login is then not tried, and not counted against the client.
    pub async fn scram_keys(&self, user: &str) -> Option<ScramKeys> {
        let (users, name) = (self.users.clone(), user.to_owned());
        let stored = tokio::task::spawn_blocking(move || users.try_user_scram(&name))
            .await
            .ok()?
            .ok()?;
        Some(
            stored
                .as_deref()
                .and_then(ScramKeys::from_text)
                .unwrap_or_else(|| ScramKeys::decoy(&self.decoy_secret, user)),
        )
    }

    /// Checks a SCRAM proof as a login attempt from `ip` (lockout, failure
    /// slot and delay as for a password). On success, also the server's
    /// final message.
    pub async fn check_scram(
        &self,
        ip: Option<IpAddr>,
        now: Instant,
        keys: &ScramKeys,
        auth_message: &str,
        proof: &[u8],
    ) -> (Checked, Option<String>) {
        let mut server_final = None;
        let checked = self
            .attempt(ip, now, async {
                server_final = keys.verify(auth_message, proof);
                Some(server_final.is_some())
            })
            .await;
        (checked, server_final.filter(|_| checked == Checked::Ok))
    }

    /// Runs `check` as a login attempt from `ip`: refused outright when the
    /// address is locked out, counted as a failure unless it succeeds, and
    /// delayed when it fails. `check` yields None when it could not run
    /// (busy). Used for password checks and for the web token alike.
    pub async fn attempt(
        &self,
        ip: Option<IpAddr>,
        now: Instant,
        check: impl Future<Output = Option<bool>>,
    ) -> Checked {
        let attempt = match ip {
            Some(ip) => match self.lockout.begin(ip, now) {
                Some(a) => Some(a),
                None => return Checked::LockedOut,
            },
            None => None,
        };
        match check.await {
            Some(true) => {
                if let Some(a) = attempt {
                    a.succeeded();
                }
                Checked::Ok
            }
            None => {
                if let Some(a) = attempt {
                    a.not_run();
                }
                Checked::Busy
            }
            Some(false) => {
                if let Some(a) = attempt {
                    a.failed();
                }
                tokio::time::sleep(self.failure_delay).await;
                Checked::Wrong
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Users(HashMap<String, String>);

    impl UserHashes for Users {
        fn user_hash(&self, user: &str) -> Option<String> {
            self.0.get(user).cloned()
        }
    }

    fn authenticator() -> Authenticator {
        let users = Users(HashMap::from([(
            "alice".to_owned(),
            hash_password("right").expect("hash"),
        )]));
        Authenticator::new(Arc::new(users), PasswordPool::new(1, 4))
            .expect("dummy hash")
            .with_limits(Lockout::new(3, FAILURE_WINDOW), Duration::from_secs(1))
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    /// Accounts that cannot be read (a database that is down).
    struct Down;

    impl UserHashes for Down {
        fn user_hash(&self, _: &str) -> Option<String> {
            None
        }

        fn try_user_hash(&self, _: &str) -> Result<Option<String>, String> {
            Err("the database is down".into())
        }

        fn try_user_scram(&self, _: &str) -> Result<Option<String>, String> {
            Err("the database is down".into())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unreadable_accounts_are_busy_not_a_failure() {
        let a = Authenticator::new(Arc::new(Down), PasswordPool::new(1, 4))
            .expect("dummy hash")
            .with_limits(Lockout::new(2, FAILURE_WINDOW), Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                a.check_password(IP, now, "alice", "right").await,
                Checked::Busy
            );
        }
        assert!(!a.locked_out(IP.expect("ip"), now), "no strikes");
        assert!(a.scram_keys("alice").await.is_none(), "SCRAM: not tried");
    }

    #[tokio::test(start_paused = true)]
    async fn right_wrong_unknown_and_locked_out() {
        let a = authenticator();
        let now = Instant::now();
        assert_eq!(
            a.check_password(IP, now, "alice", "right").await,
            Checked::Ok
        );
        assert_eq!(
            a.check_password(IP, now, "alice", "wrong").await,
            Checked::Wrong
        );
        assert_eq!(
            a.check_password(IP, now, "bob", "right").await,
            Checked::Wrong
        );
        // A success gave its slot back: two failures so far, room for one.
        assert_eq!(
            a.check_password(IP, now, "alice", "right").await,
            Checked::Ok
        );
        assert_eq!(
            a.check_password(IP, now, "alice", "nope").await,
            Checked::Wrong
        );
        // Locked out: even the right password gets the same answer.
        assert_eq!(
            a.check_password(IP, now, "alice", "right").await,
            Checked::LockedOut
        );
        assert_eq!(
            a.attempt(IP, now, async { Some(true) }).await,
            Checked::LockedOut
        );
        let later = now + FAILURE_WINDOW + Duration::from_secs(1);
        assert_eq!(
            a.check_password(IP, later, "alice", "right").await,
            Checked::Ok
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scram_proofs_share_the_lockout() {
        let a = authenticator();
        let now = Instant::now();
        // No stored keys (the Users above has none): decoys, stable.
        let keys = a.scram_keys("alice").await.expect("readable");
        assert_eq!(Some(&keys), a.scram_keys("alice").await.as_ref());
        assert_eq!(keys.iterations, crate::scram::ITERATIONS);
        for _ in 0..3 {
            let (c, v) = a.check_scram(IP, now, &keys, "n=alice", &[0; 32]).await;
            assert_eq!((c, v), (Checked::Wrong, None));
        }
        // Locked out, for SCRAM and passwords alike.
        let (c, _) = a.check_scram(IP, now, &keys, "n=alice", &[0; 32]).await;
        assert_eq!(c, Checked::LockedOut);
        assert_eq!(
            a.check_password(IP, now, "alice", "right").await,
            Checked::LockedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_guess_waits_the_delay_and_busy_is_no_failure() {
        let a = authenticator();
        let start = tokio::time::Instant::now();
        assert_eq!(
            a.attempt(IP, Instant::now(), async { Some(false) }).await,
            Checked::Wrong
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        for _ in 0..10 {
            assert_eq!(
                a.attempt(IP, Instant::now(), async { None }).await,
                Checked::Busy
            );
        }
        assert!(!a.locked_out(IP.expect("ip"), Instant::now()));
    }
}
