//! The accounts that may AUTH, with their Argon2id hashes.

use super::*;

/// Submission users: names and password hashes (never passwords). Kept in
/// the same database, so `postel users` works while the server runs.
impl SqliteStore {
    /// Adds a user or replaces its hash. Returns true if and only if the
    /// user is new.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn set_user(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.reader);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let existed: bool =
            conn.query_row("SELECT count(*) FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        conn.execute(
            "INSERT INTO users (name, hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
            params![name, hash, now],
        )?;
        Ok(!existed)
    }

    /// Removes a user. Returns true if and only if it existed.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.reader).execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
    }

    /// Every user name with its creation time, by name.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name, created_at FROM users ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The password hash of a user, if the user exists.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = lock(&self.reader);
        Ok(conn
            .query_row("SELECT hash FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }
}
