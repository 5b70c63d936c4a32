//! `postel users ...`: the accounts that may AUTH on submission listeners.
//! Passwords are stored only as Argon2id hashes and SCRAM-SHA-256 keys
//! (RFC 5803), both made when the password is set.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use postel_store::Users as _;

use crate::admin::Admin;
use crate::cli::StoreArgs;

use crate::backend::{hash_password, scram_keys_for};

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

/// Whether `a` is a usable sender address for a user: `local@domain`, or
/// `*@domain` for a whole domain.
fn valid_address(a: &str) -> bool {
    let domain_only = a.strip_prefix("*@");
    match domain_only {
        Some(d) => postel_proto::address::is_domain(d.as_bytes(), true),
        None => postel_proto::address::parse_mailbox(a.as_bytes(), true).is_ok(),
    }
}

/// `postel users add NAME [--address ADDR]...`
pub(crate) fn add(
    args: &StoreArgs,
    name: &str,
    addresses: &[String],
    keep_password: bool,
) -> anyhow::Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("{name:?} is not a usable user name: no spaces or control characters");
    }
    if let Some(bad) = addresses.iter().find(|a| !valid_address(a)) {
        bail!("{bad:?} is not an address such as alice@example.test or *@example.test");
    }
    // Beside a running server: no lock, no writer thread of its own.
    let admin = Admin::open(args, true)?;
    let store = &admin.store;
    if keep_password {
        if store.user_hash(name)?.is_none() {
            bail!(
                "no user {name} {}: add it with a password first",
                admin.place
            );
        }
    } else {
        let password = read_password(name)?;
        let hash = hash_password(&password)?;
        let scram = scram_keys_for(&password)?;
        let new = store.set_user(name, &hash, scram.as_deref())?;
        println!(
            "{} {name}",
            if new {
                "added"
            } else {
                "changed the password of"
            }
        );
        if scram.is_none() {
            println!(
                "{name} can log in with PLAIN and LOGIN, not SCRAM-SHA-256: SASLprep (RFC 4013) forbids a character of this password"
            );
        }
    }
    if !addresses.is_empty() {
        store.set_user_addresses(name, addresses)?;
        println!("{name} may send as: {}", addresses.join(", "));
    }
    Ok(())
}

/// `postel users list`
pub(crate) fn list(args: &StoreArgs) -> anyhow::Result<()> {
    if args.config.is_none() || args.data_dir.is_some() {
        let dir = args.dir()?;
        if !dir.join("messages.db").exists() {
            println!("no users in {}", dir.display());
            return Ok(());
        }
    }
    let admin = Admin::open(args, false)?;
    let store = &admin.store;
    for (name, created) in store.users()? {
        let addresses = store.user_addresses(&name)?;
        // Keys are made when a password is set: users whose password
        // predates them (or cannot be SASLprepped) have none.
        let mechanisms = if store.user_scram(&name)?.is_some() {
            "PLAIN LOGIN SCRAM-SHA-256"
        } else {
            "PLAIN LOGIN (no SCRAM-SHA-256 until the password is set again)"
        };
        println!(
            "{name}\tadded {}\t{mechanisms}\t{}",
            postel_store::time::rfc3339(created),
            if addresses.is_empty() {
                "(no sender addresses)".to_owned()
            } else {
                addresses.join(", ")
            }
        );
    }
    Ok(())
}

/// `postel users remove NAME`
pub(crate) fn remove(args: &StoreArgs, name: &str) -> anyhow::Result<()> {
    let admin = Admin::open(args, false)?;
    if !admin.store.remove_user(name)? {
        bail!("no user {name} {}", admin.place);
    }
    println!("removed {name}");
    Ok(())
}
