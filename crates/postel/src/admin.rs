//! The store an admin command (`postel messages|users|queue ...`) works on:
//! the data folder's SQLite, or the PostgreSQL that a `--config` file's
//! `[store] url` names, from any machine that can reach it. Either runs
//! beside a running server.

use anyhow::{Context, bail};
use postel_store::{AnyStore, SqliteStore};

use crate::cli::StoreArgs;
use crate::config;

/// An open store, and a runtime to call it with.
pub(crate) struct Admin {
    rt: tokio::runtime::Runtime,
    /// The store.
    pub(crate) store: AnyStore,
    /// Where it is, for messages: `in DIR` or `in the database`.
    pub(crate) place: String,
}

impl Admin {
    /// Opens the store `args` names. With `create`, an SQLite store that
    /// does not exist yet is made (`postel users add` before the first
    /// `serve`); else its absence is an error.
    ///
    /// # Errors
    /// When the config cannot be read, or the store cannot be opened.
    pub(crate) fn open(args: &StoreArgs, create: bool) -> anyhow::Result<Admin> {
        Admin::open_with(args, create, false)
    }

    /// As [`Admin::open`]; with `migrate`, a PostgreSQL schema is brought
    /// up to date (`store migrate`), else only checked: a tool must not
    /// upgrade the servers' database.
    fn open_with(args: &StoreArgs, create: bool, migrate: bool) -> anyhow::Result<Admin> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        if let Some(pg) = postgres(args)? {
            let opts = postel_store::PgOptions {
                url: pg.url.clone(),
                node: format!("{} (admin)", pg.node),
                pool_size: 2,
                // A tool receives nothing: one shared, empty folder.
                spool_dir: std::env::temp_dir().join("postel-admin-spool"),
                lease: i64::try_from(pg.lease).unwrap_or(60),
                migrate,
            };
            let store = rt
                .block_on(postel_store::PgStore::connect(opts))
                .with_context(|| {
                    format!("cannot open the store at {}", config::masked_url(&pg.url))
                })?;
            return Ok(Admin {
                rt,
                store: AnyStore::Postgres(std::sync::Arc::new(store)),
                place: "in the database".to_owned(),
            });
        }
        let dir = args.dir()?;
        let store = if create {
            SqliteStore::open_beside(&dir)
                .with_context(|| format!("cannot open the store in {}", dir.display()))?
        } else {
            if !dir.join("messages.db").exists() {
                bail!(
                    "no message store in {}: start `postel serve` there first, or pass --data-dir",
                    dir.display()
                );
            }
            SqliteStore::open_existing(&dir)
                .with_context(|| format!("cannot open the message store in {}", dir.display()))?
        };
        Ok(Admin {
            rt,
            store: AnyStore::Sqlite(std::sync::Arc::new(store)),
            place: format!("in {}", dir.display()),
        })
    }

    /// Runs a store call to its end.
    pub(crate) fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let AnyStore::Postgres(s) = &self.store {
            let s = s.clone();
            self.rt.block_on(async move { s.close().await });
        }
    }
}

/// The PostgreSQL store the config file names, if any.
fn postgres(args: &StoreArgs) -> anyhow::Result<Option<config::PgSettings>> {
    let Some(path) = &args.config else {
        return Ok(None);
    };
    if args.data_dir.is_some() {
        return Ok(None);
    }
    let file = config::FileConfig::load(path)?;
    let hostname = file
        .hostname
        .clone()
        .unwrap_or_else(config::system_hostname);
    let mut problems = Vec::new();
    let pg = config::store_settings(&file, &hostname, &mut problems);
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(pg)
}

/// `postel store migrate --from DIR --config FILE`.
///
/// # Errors
/// When either store cannot be opened, the copy fails, or the check finds
/// a difference.
pub(crate) fn migrate(from: &std::path::Path, config: &std::path::Path) -> anyhow::Result<()> {
    let args = StoreArgs {
        data_dir: None,
        config: Some(config.to_owned()),
    };
    if postgres(&args)?.is_none() {
        bail!(
            "{} has no [store] url: name the PostgreSQL to copy into",
            config.display()
        );
    }
    if !from.join("messages.db").exists() {
        bail!("no message store in {}", from.display());
    }
    let src = std::sync::Arc::new(
        SqliteStore::open_existing(from)
            .with_context(|| format!("cannot open the store in {}", from.display()))?,
    );
    let admin = Admin::open_with(&args, false, true)?;
    let AnyStore::Postgres(dst) = &admin.store else {
        bail!("the config names no PostgreSQL store");
    };
    let started = std::time::Instant::now();
    let report = admin.run(postel_store::migrate::sqlite_to_pg(src, dst, |n| {
        if n % 1000 == 0 {
            eprintln!("{n} messages copied");
        }
    }))?;
    println!(
        "{} messages ({} copied now, {} there already), {} queue rows, {} webhook rows, {} users",
        report.messages,
        report.copied,
        report.messages - report.copied,
        report.queue_rows,
        report.webhook_rows,
        report.users
    );
    println!(
        "checked: the same counts and digest on both sides (SHA-256 {}), in {:.1} s",
        report.digest,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
