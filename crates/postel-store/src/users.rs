//! The accounts that may AUTH: names, Argon2id password hashes and
//! SCRAM-SHA-256 keys (never passwords). A trait of its own beside [`crate::Store`], so that a store
//! of messages and a store of accounts can be one database (SQLite,
//! PostgreSQL) or not.
//!
//! The calls are blocking: password checks run on their own pool of
//! threads (postel-policy), and the admin commands are plain programs.

use crate::StoreError;

/// Where accounts are kept.
pub trait Users: Send + Sync + 'static {
    /// The password hash (a PHC string) of `name`, if there is such a user.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// The SCRAM-SHA-256 keys of `name` (RFC 5803's text form), if there
    /// is such a user and its password was set with them.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Adds a user or replaces its hash and SCRAM keys (None: it has none,
    /// and any it had are dropped with the old password). Returns true if
    /// and only if the user is new.
    ///
    /// # Errors
    /// When the accounts cannot be written.
    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError>;

    /// Removes a user. Returns true if and only if it existed.
    ///
    /// # Errors
    /// When the accounts cannot be written.
    fn remove_user(&self, name: &str) -> Result<bool, StoreError>;

    /// Every user name with its creation time (Unix seconds), by name.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn users(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// The sender addresses `name` may use (`alice@example.test`, or
    /// `*@example.test` for a whole domain), lowercase, sorted.
    ///
    /// # Errors
    /// When the accounts cannot be read.
    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError>;

    /// Replaces the sender addresses of `name`.
    ///
    /// # Errors
    /// When the accounts cannot be written.
    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError>;
}
