//! Accounts for AUTH, DKIM signing keys and shared secrets, the same for
//! every node. The [`Users`] calls are
//! blocking (password checks run on a pool of threads of their own): each
//! runs on the store's runtime and waits for its answer.

use super::*;
use crate::Users;

impl PgStore {
    /// Runs `f` with a connection on the store's runtime, and waits. From
    /// one of a multi-threaded runtime's own threads, the wait tells the
    /// runtime first (`block_in_place`), so that the task can run; a
    /// current-thread runtime must not call this (it would wait forever).
    fn block<T, F>(
        &self,
        f: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send,
    {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let r = match get(&pool).await {
                Ok(c) => f(c).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(r);
        });
        let wait = || rx.recv().map_err(|_| StoreError::Closed);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait)?,
            _ => wait()?,
        }
    }
}

impl Users for PgStore {
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.block(move |c| async move {
            Ok(
                c.query_opt("SELECT hash FROM users WHERE name = $1", &[&name])
                    .await?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.block(move |c| async move {
            Ok(
                c.query_opt("SELECT scram FROM users WHERE name = $1", &[&name])
                    .await?
                    .and_then(|r| r.get(0)),
            )
        })
    }

    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        let (name, hash) = (text(name).into_owned(), hash.to_owned());
        let scram = scram.map(str::to_owned);
        self.block(move |c| async move {
            let row = c
                .query_one(
                    "INSERT INTO users (name, hash, created_at, scram) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, scram = excluded.scram
                     RETURNING (xmax = 0)",
                    &[&name, &hash, &unix_now(), &scram],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.block(move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM user_addresses WHERE name = $1", &[&name])
                .await?;
            let n = tx
                .execute("DELETE FROM users WHERE name = $1", &[&name])
                .await?;
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.block(move |c| async move {
            Ok(
                c.query("SELECT name, created_at FROM users ORDER BY name", &[])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect(),
            )
        })
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let name = name.to_owned();
        self.block(move |c| async move {
            Ok(c.query(
                "SELECT address FROM user_addresses WHERE name = $1 ORDER BY address",
                &[&name],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        let name = name.to_owned();
        let addresses: Vec<String> = addresses
            .iter()
            .map(|a| text(&a.to_lowercase()).into_owned())
            .collect();
        self.block(move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM user_addresses WHERE name = $1", &[&name])
                .await?;
            tx.execute(
                "INSERT INTO user_addresses (name, address)
                 SELECT $1, a FROM unnest($2::text[]) AS a ON CONFLICT DO NOTHING",
                &[&name, &addresses],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// A shared store keeps the same accounts.
impl Users for Arc<PgStore> {
    fn user_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        PgStore::user_hash(self, name)
    }

    fn user_scram(&self, name: &str) -> Result<Option<String>, StoreError> {
        PgStore::user_scram(self, name)
    }

    fn set_user(&self, name: &str, hash: &str, scram: Option<&str>) -> Result<bool, StoreError> {
        PgStore::set_user(self, name, hash, scram)
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        PgStore::remove_user(self, name)
    }

    fn users(&self) -> Result<Vec<(String, i64)>, StoreError> {
        PgStore::users(self)
    }

    fn user_addresses(&self, name: &str) -> Result<Vec<String>, StoreError> {
        PgStore::user_addresses(self, name)
    }

    fn set_user_addresses(&self, name: &str, addresses: &[String]) -> Result<(), StoreError> {
        PgStore::set_user_addresses(self, name, addresses)
    }
}

impl PgStore {
    /// Every DKIM key in the database: domain, selector, private key (PEM).
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn dkim_keys(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let client = get(&self.pool).await?;
        Ok(client
            .query(
                "SELECT domain, selector, pem FROM dkim_keys ORDER BY domain, selector",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Adds a DKIM key, never over one of the same domain and selector.
    /// Returns false if there is one.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn add_dkim_key(
        &self,
        domain: &str,
        selector: &str,
        pem: &str,
    ) -> Result<bool, StoreError> {
        let client = get(&self.pool).await?;
        Ok(client
            .execute(
                "INSERT INTO dkim_keys (domain, selector, pem, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&domain, &selector, &pem, &unix_now()],
            )
            .await?
            == 1)
    }
}

impl PgStore {
    /// The 32-byte secret `name` that every node shares: made (at random)
    /// by the first node that asks, read by the others.
    ///
    /// # Errors
    /// When the database cannot be reached, or no randomness is had.
    pub async fn shared_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .map_err(|_| StoreError::Unreachable("no randomness for a secret".into()))?;
        let client = get(&self.pool).await?;
        client
            .execute(
                "INSERT INTO postel_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &&fresh[..]],
            )
            .await?;
        let value: Vec<u8> = client
            .query_one("SELECT value FROM postel_secrets WHERE name = $1", &[&name])
            .await?
            .get(0);
        value
            .try_into()
            .map_err(|_| StoreError::Schema(format!("the secret {name} is not 32 octets")))
    }
}
