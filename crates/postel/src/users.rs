//! `postel users ...`: the accounts that may AUTH on submission listeners.
//! Passwords are stored only as Argon2id hashes.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};
use postel_store::{SqliteStore, Users as _};

use crate::backend::hash_password;

/// Reads the new password: asked twice on a terminal, else one line of stdin
/// (for scripts: `echo pw | postel users add alice`).
fn read_password(name: &str) -> anyhow::Result<String> {
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("Password for {name}: "))?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the passwords differ; nothing changed");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        bail!("the password is empty; nothing changed");
    }
    Ok(pw)
}

/// `postel users add NAME`
pub(crate) fn add(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("{name:?} is not a usable user name: no spaces or control characters");
    }
    let password = read_password(name)?;
    let hash = hash_password(&password)?;
    // Beside a running server: no lock, no writer thread of its own.
    let store = SqliteStore::open_beside(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let new = store.set_user(name, &hash)?;
    println!(
        "{} {name}",
        if new {
            "added"
        } else {
            "changed the password of"
        }
    );
    Ok(())
}

/// `postel users list`
pub(crate) fn list(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.join("messages.db").exists() {
        println!("no users in {}", data_dir.display());
        return Ok(());
    }
    let store = SqliteStore::open_existing(data_dir)?;
    for (name, created) in store.users()? {
        println!("{name}\tadded {}", postel_store::time::rfc3339(created));
    }
    Ok(())
}

/// `postel users remove NAME`
pub(crate) fn remove(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let store = SqliteStore::open_existing(data_dir)
        .with_context(|| format!("no store in {}", data_dir.display()))?;
    if !store.remove_user(name)? {
        bail!("no user {name} in {}", data_dir.display());
    }
    println!("removed {name}");
    Ok(())
}
