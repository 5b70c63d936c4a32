//! The [`Store`] trait over SQLite: insert through the writer, reads,
//! queries, deletes and pruning, each a blocking method of
//! [`SqliteStore`] (for the CLI) that the trait, on `Arc<SqliteStore>`,
//! runs off the async threads.

use super::*;

impl SqliteStore {
    /// As [`Store::next_id`].
    pub fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = lock(&self.last_id);
        // Strictly increasing even if the clock steps back.
        *last = now.max(*last + 1);
        format!("{:014X}", *last)
    }

    /// As [`Store::insert`].
    pub async fn insert(&self, mut msg: NewMessage) -> Result<(), StoreError> {
        // Content kept apart is durable in its place before the commit
        // that records it; sessions do this side by side, and the
        // writer thread only commits the row.
        let mut apart = 0;
        let blob = match msg.spooled.take() {
            None => None,
            Some(spool) => {
                apart = spool.len();
                let path = self.blob_path(&msg.id);
                let to = path.clone();
                tokio::task::spawn_blocking(move || spool.persist(&to))
                    .await
                    .map_err(std::io::Error::other)??;
                Some(path)
            }
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = lock(&self.jobs).as_ref().is_some_and(|tx| {
            tx.send(Job::Insert {
                msg: Box::new(msg),
                apart,
                done,
            })
            .is_ok()
        });
        let (result, recorded) = if sent {
            match wait.await {
                // This message's own insert failed, rolled back to its
                // savepoint: no row can name the file.
                Ok(Err(e @ StoreError::Sqlite(_))) => (Err(e), false),
                // The batch's commit failed, or the writer went away:
                // recovery may yet complete the commit, and the row
                // would need its file. The next sweep decides.
                Ok(r) => (r, true),
                Err(_) => (Err(StoreError::Closed), true),
            }
        } else {
            (Err(StoreError::Closed), false)
        };
        if let (Err(_), false, Some(path)) = (&result, recorded, &blob) {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// [`Store::list`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn list(&self) -> Result<Vec<Summary>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages WHERE local = 1 ORDER BY seq"
        ))?;
        let rows = stmt
            .query_map([], |row| read_summary(&conn, row))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// [`Store::open_raw`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw, apart FROM messages WHERE id = ?1"
        ))?;
        let found = stmt
            .query_row([id], |row| {
                Ok((
                    read_summary(&conn, row)?,
                    row.get::<_, Vec<u8>>(RAW_COLUMN)?,
                    row.get::<_, i64>(RAW_COLUMN + 1)? as u64,
                ))
            })
            .optional()?;
        drop(stmt);
        drop(conn);
        let Some((summary, head, apart)) = found else {
            return Ok(None);
        };
        let rest = if apart > 0 {
            match std::fs::File::open(self.blob_path(id)) {
                Ok(f) => Some((f, apart)),
                // Deleted since the row was read: as if it never was found.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.exists(id)? => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(Some(RawMessage {
            summary,
            head,
            rest,
        }))
    }

    /// [`Store::get`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw, apart FROM messages WHERE id = ?1"
        ))?;
        let found = stmt
            .query_row([id], |row| {
                let msg = Message {
                    summary: read_summary(&conn, row)?,
                    raw: row.get(RAW_COLUMN)?,
                };
                Ok((msg, row.get::<_, i64>(RAW_COLUMN + 1)? as u64))
            })
            .optional()?;
        drop(stmt);
        drop(conn);
        let Some((mut msg, apart)) = found else {
            return Ok(None);
        };
        if apart > 0 {
            let content = match std::fs::read(self.blob_path(id)) {
                Ok(c) => c,
                // Deleted since the row was read: as if it never was found.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.exists(id)? => {
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::ContentLost {
                        id: id.to_owned(),
                        why: format!("its file is missing: {e}"),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if content.len() as u64 != apart {
                return Err(StoreError::ContentLost {
                    id: id.to_owned(),
                    why: format!("its file has {} octets, not {apart}", content.len()),
                });
            }
            msg.raw.extend_from_slice(&content);
        }
        Ok(Some(msg))
    }

    /// [`Store::delete`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seq: Option<i64> = tx
            .query_row(
                "SELECT seq FROM messages WHERE id = ?1 AND local = 1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let mut gone = false;
        if let Some(seq) = seq {
            gone = delete_seqs(&tx, &[seq])?[0];
        }
        tx.commit()?;
        drop(conn);
        if seq.is_some() {
            if gone {
                self.remove_blobs([id]);
            }
            let _ = self.changes.send(Change::Deleted(id.to_owned()));
        }
        Ok(seq.is_some())
    }

    /// [`Store::query`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let mut clauses = vec!["m.local = 1".to_owned()];
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let rcpt_match = "EXISTS (SELECT 1 FROM recipients r WHERE r.message_seq = m.seq AND r.address LIKE ? ESCAPE '\\')";
        // SQLite's LIKE reads a pattern only up to a NUL: `%\0%` would
        // match everything. Stored text holds no NUL, so such a search
        // matches nothing.
        let searches = [&q.text, &q.from, &q.to, &q.subject];
        if searches
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            clauses.push("0".to_owned());
        }
        if let Some(t) = q.text.as_deref().filter(|t| !t.is_empty()) {
            clauses.push(format!(
                "(m.mail_from LIKE ? ESCAPE '\\' OR m.subject LIKE ? ESCAPE '\\' OR {rcpt_match})"
            ));
            let p = contains_pattern(t);
            args.extend([p.clone().into(), p.clone().into(), p.into()]);
        }
        if let Some(f) = q.from.as_deref().filter(|t| !t.is_empty()) {
            clauses.push("m.mail_from LIKE ? ESCAPE '\\'".to_owned());
            args.push(contains_pattern(f).into());
        }
        if let Some(t) = q.to.as_deref().filter(|t| !t.is_empty()) {
            clauses.push(rcpt_match.to_owned());
            args.push(contains_pattern(t).into());
        }
        if let Some(s) = q.subject.as_deref().filter(|t| !t.is_empty()) {
            clauses.push("m.subject LIKE ? ESCAPE '\\'".to_owned());
            args.push(contains_pattern(s).into());
        }
        if let Some(t) = q.since {
            clauses.push("m.received_at >= ?".to_owned());
            args.push(t.into());
        }
        if let Some(t) = q.until {
            clauses.push("m.received_at < ?".to_owned());
            args.push(t.into());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let conn = lock(&self.reader);
        let total: i64 = conn.query_row(
            &format!("SELECT count(*) FROM messages m {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let columns = SUMMARY_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {columns} FROM messages m {filter} ORDER BY m.seq DESC LIMIT ? OFFSET ?"
        ))?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        args.push(limit.into());
        args.push(offset.into());
        let messages = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |row| {
                read_summary(&conn, row)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            total: total as u64,
            messages,
        })
    }

    /// [`Store::delete_all`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn delete_all(&self) -> Result<u64, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Only the files of the rows deleted here: a message being stored
        // meanwhile has its file in place already, and must keep it.
        let rows: Vec<(i64, String)> = tx
            .prepare("SELECT seq, id FROM messages WHERE local = 1")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
        let gone = delete_seqs(&tx, &seqs)?;
        tx.commit()?;
        drop(conn);
        let n = rows.len();
        self.remove_blobs(
            rows.iter()
                .zip(gone)
                .filter(|(_, g)| *g)
                .map(|((_, id), _)| id.as_str()),
        );
        let _ = self.changes.send(Change::DeletedAll);
        Ok(n as u64)
    }

    /// [`Store::prune`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn prune(&self, keep: Option<u64>, before: Option<i64>) -> Result<Vec<String>, StoreError> {
        let mut deleted = Vec::new();
        loop {
            // One short transaction per batch: the writer thread and the
            // readers get the database between batches.
            let mut conn = lock(&self.reader);
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let excess = match keep {
                Some(keep) => {
                    let n: i64 =
                        tx.query_row("SELECT count(*) FROM messages WHERE local = 1", [], |r| {
                            r.get(0)
                        })?;
                    (n as u64).saturating_sub(keep)
                }
                None => 0,
            };
            let cut = before.unwrap_or(i64::MIN);
            let batch = PRUNE_BATCH as i64;
            let rows: Vec<(i64, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, id FROM messages WHERE received_at < ?1 AND local = 1
                     UNION
                     SELECT seq, id FROM (SELECT seq, id FROM messages WHERE local = 1 ORDER BY seq LIMIT ?2)
                     ORDER BY seq LIMIT ?3",
                )?;
                stmt.query_map(
                    params![
                        cut,
                        i64::try_from(excess).unwrap_or(i64::MAX).min(batch),
                        batch
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?
            };
            if rows.is_empty() {
                tx.commit()?;
                break;
            }
            let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
            let gone = delete_seqs(&tx, &seqs)?;
            tx.commit()?;
            drop(conn);
            self.remove_blobs(
                rows.iter()
                    .zip(gone)
                    .filter(|(_, g)| *g)
                    .map(|((_, id), _)| id.as_str()),
            );
            for (_, id) in rows {
                let _ = self.changes.send(Change::Deleted(id.clone()));
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    /// As [`Store::subscribe`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// [`Store::stats`], blocking: the trait runs it off the async
    /// threads; the CLI calls it as it is.
    ///
    /// # Errors
    /// As the trait's.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let conn = lock(&self.reader);
        let (messages, bytes): (i64, i64) = conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE local = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Stats {
            messages: messages as u64,
            bytes: bytes as u64,
        })
    }
}

/// The store as the server and the web side use it: shared, and every
/// call that reads or writes SQLite run off the async threads.
impl Store for Arc<SqliteStore> {
    fn next_id(&self) -> String {
        SqliteStore::next_id(self)
    }

    fn receive(&self) -> Incoming {
        SqliteStore::receive(self)
    }

    fn insert(&self, msg: NewMessage) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::insert(self, msg)
    }

    async fn list(&self) -> Result<Vec<Summary>, StoreError> {
        off(self, |s| s.list()).await
    }

    async fn get(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let id = id.to_owned();
        off(self, move |s| s.get(&id)).await
    }

    async fn open_raw(&self, id: &str) -> Result<Option<RawMessage>, StoreError> {
        let id = id.to_owned();
        off(self, move |s| s.open_raw(&id)).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        off(self, move |s| s.delete(&id)).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        off(self, |s| s.stats()).await
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let q = q.clone();
        off(self, move |s| s.query(&q)).await
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        off(self, |s| s.delete_all()).await
    }

    async fn prune(
        &self,
        keep: Option<u64>,
        before: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        off(self, move |s| s.prune(keep, before)).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        SqliteStore::subscribe(self)
    }

    async fn queue_claim(&self, c: &QueueClaim) -> Result<Vec<QueueEntry>, StoreError> {
        let c = c.clone();
        off(self, move |s| s.queue_claim(&c)).await
    }

    async fn queue_release_claims(&self) -> Result<(), StoreError> {
        off(self, |s| s.queue_release_claims()).await
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        off(self, |s| s.queue_counts()).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueEntry>, StoreError> {
        off(self, |s| s.queue_list()).await
    }

    fn queue_record(
        &self,
        updates: Vec<QueueUpdate>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::queue_record(self, updates)
    }

    async fn queue_act(
        &self,
        id: Option<&str>,
        action: QueueAction,
        now: i64,
    ) -> Result<u64, StoreError> {
        let id = id.map(str::to_owned);
        off(self, move |s| s.queue_act(id.as_deref(), action, now)).await
    }

    async fn webhook_claim(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        off(self, move |s| s.webhook_claim(now, until, limit)).await
    }

    async fn webhook_record(&self, updates: Vec<crate::WebhookUpdate>) -> Result<(), StoreError> {
        off(self, move |s| s.webhook_record(&updates)).await
    }

    async fn webhook_list(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::WebhookEntry>, StoreError> {
        let id = id.map(str::to_owned);
        off(self, move |s| s.webhook_list(id.as_deref(), limit)).await
    }
}

/// Runs a blocking call on the store on tokio's blocking threads.
async fn off<T: Send + 'static>(
    store: &Arc<SqliteStore>,
    f: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
