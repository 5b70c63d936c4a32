//! The accounts that may AUTH, with their Argon2id hashes and SCRAM keys.

use super::*;
use crate::Users;

/// Submission users: names and password hashes (never passwords). Kept in
/// the same database, so `postel users` works while the server runs.
impl Users for SqliteStore {
    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        let conn = lock(&self.reader);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let existed: bool =
            conn.query_row("SELECT count(*) FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        conn.execute(
            "INSERT INTO users (name, hash, created_at, scram) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, scram = excluded.scram",
            params![name, hash, now, scram],
        )?;
        Ok(!existed)
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.reader);
        conn.execute("DELETE FROM user_addresses WHERE name = ?1", [name])?;
        Ok(conn.execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(
            "SELECT address FROM user_addresses WHERE name = ?1 ORDER BY address",
        )?;
        Ok(stmt
            .query_map([name], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM user_addresses WHERE name = ?1", [name])?;
        for a in addresses {
            tx.execute(
                "INSERT OR IGNORE INTO user_addresses (name, address) VALUES (?1, ?2)",
                params![name, a.to_lowercase()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name, created_at FROM users ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = lock(&self.reader);
        Ok(conn
            .query_row("SELECT hash FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = lock(&self.reader);
        Ok(conn
            .query_row("SELECT scram FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .flatten())
    }
}

/// A shared store keeps the same accounts.
impl Users for Arc<SqliteStore> {
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        SqliteStore::user_hash(self, name)
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        SqliteStore::user_scram(self, name)
    }

    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        SqliteStore::set_user(self, name, hash, scram)
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        SqliteStore::remove_user(self, name)
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        SqliteStore::users(self)
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        SqliteStore::user_addresses(self, name)
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        SqliteStore::set_user_addresses(self, name, addresses)
    }
}
