//! Maildir delivery, as qmail's maildir(5) gives it and Dovecot reads it:
//! the message is written under `tmp/` with a name no other delivery can
//! have, flushed to disk, then renamed into `new/`, and `new/` is flushed
//! too; only then is the recipient delivered. Folders are made private
//! (0700, files 0600), owned by Postel's own user (the "virtual users
//! under one uid" set-up of Dovecot).
//!
//! A recipient's local part and domain become path components only after
//! [`safe_path_part`] took them; the rest is refused for good. Any other
//! failure (a full disk, a permission) is temporary: the queue retries.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::local::safe_path_part;
use crate::outcome::{Failure, Outcome};

/// Deliveries made by this process: part of every file name.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The Maildir of `recipient` under `template`, or why it has none.
///
/// # Errors
/// `5.1.3` when its local part or domain cannot be a path component.
pub fn folder(template: &str, recipient: &str) -> Result<PathBuf, Failure> {
    let (local, domain) = recipient.rsplit_once('@').unwrap_or((recipient, ""));
    let (local, domain) = (unquote(local).to_lowercase(), domain.to_lowercase());
    if !safe_path_part(&local) || (template.contains("{domain}") && !safe_path_part(&domain)) {
        return Err(Failure::local(
            "5.1.3",
            "this mailbox name cannot be a Maildir folder",
        ));
    }
    Ok(PathBuf::from(
        template
            .replace("{domain}", &domain)
            .replace("{local}", &local),
    ))
}

/// A local part as meant: a quoted string's content, its escapes undone
/// (`"a\ b"` is `a b`), so that quoting hides nothing from the check.
fn unquote(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return local.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// A file name no other delivery has (maildir(5): time, microseconds,
/// process, a counter, and the host with `/` and `:` escaped), with the
/// file's size as Dovecot reads it (`,S=`).
fn unique_name(hostname: &str, size: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{host},S={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        DELIVERIES.fetch_add(1, Ordering::Relaxed),
    )
}

/// The file's bytes: `Return-Path:` and `Delivered-To:` (as qmail and
/// Postfix's `virtual` write them), then the message with LF line ends,
/// as Maildir files have them.
fn file_bytes(sender: &str, recipient: &str, message: &[u8]) -> Vec<u8> {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let mut out = Vec::with_capacity(message.len() + 128);
    out.extend_from_slice(format!("Return-Path: <{}>\n", clean(sender)).as_bytes());
    out.extend_from_slice(format!("Delivered-To: {}\n", clean(recipient)).as_bytes());
    let mut rest = message;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\n');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// Writes one message into the Maildir at `dir` (made if missing) and
/// returns its path under `new/`. Blocking: run it off the runtime.
///
/// # Errors
/// Any IO error; nothing is left in `new/` then.
pub fn write(
    dir: &Path,
    hostname: &str,
    sender: &str,
    recipient: &str,
    message: &[u8],
) -> std::io::Result<PathBuf> {
    let fresh = !dir.join("new").is_dir();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["tmp", "new", "cur"] {
        builder.create(dir.join(sub))?;
    }
    if fresh {
        // A Maildir just made must survive a crash too: its entries, and
        // its own entry in its parent.
        std::fs::File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let bytes = file_bytes(sender, recipient, message);
    let name = unique_name(hostname, bytes.len());
    let tmp = dir.join("tmp").join(&name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let new = dir.join("new").join(&name);
    if let Err(e) = std::fs::rename(&tmp, &new) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The message is in new/ from here: a failed flush is reported, not
    // taken for a failed delivery (a retry would deliver it twice).
    if let Err(e) = std::fs::File::open(dir.join("new")).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot flush a Maildir's new/ folder");
    }
    Ok(new)
}

/// Delivers `message` to `recipient`'s Maildir under `template`: the
/// recipient's outcome.
pub async fn deliver(
    template: &str,
    hostname: &str,
    sender: &str,
    recipient: &str,
    message: std::sync::Arc<Vec<u8>>,
) -> Outcome {
    let dir = match folder(template, recipient) {
        Ok(d) => d,
        Err(f) => return Outcome::Failed(f),
    };
    let (host, from, to) = (hostname.to_owned(), sender.to_owned(), recipient.to_owned());
    let shown = dir.display().to_string();
    let done = tokio::task::spawn_blocking(move || write(&dir, &host, &from, &to, &message)).await;
    match done {
        Ok(Ok(path)) => Outcome::Delivered {
            remote: "maildir".to_owned(),
            reply: format!(
                "delivered to {}",
                path.file_name()
                    .map_or(shown, |n| n.to_string_lossy().into_owned())
            ),
            passed_dsn: false,
            tls: None,
        },
        Ok(Err(e)) => {
            let status = if e.raw_os_error() == Some(28) {
                "4.3.1"
            } else {
                "4.2.0"
            };
            Outcome::Deferred(Failure::local(
                status,
                format!("cannot write to the Maildir {shown}: {e}"),
            ))
        }
        Err(e) => Outcome::Deferred(Failure::local(
            "4.3.0",
            format!("the Maildir delivery stopped: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_message_lands_in_new_with_lf_line_ends_and_private_modes() {
        let root = std::env::temp_dir().join(format!("postel-maildir-{}", std::process::id()));
        let dir = folder(
            &format!("{}/{{domain}}/{{local}}", root.display()),
            "Alice@Here.test",
        )
        .expect("ok");
        assert!(dir.ends_with("here.test/alice"));
        let msg = b"Subject: hi\r\n\r\nline one\r\nline two\r\n";
        let a = write(&dir, "mx/one:two", "s@x.test", "alice@here.test", msg).expect("ok");
        let b = write(&dir, "mx/one:two", "s@x.test", "alice@here.test", msg).expect("ok");
        assert_ne!(a, b, "every delivery has its own name");
        let body = std::fs::read(&a).expect("ok");
        assert_eq!(
            body,
            b"Return-Path: <s@x.test>\nDelivered-To: alice@here.test\nSubject: hi\n\nline one\nline two\n"
        );
        let name = a.file_name().expect("ok").to_string_lossy().into_owned();
        assert!(name.contains("mx\\057one\\072two"), "{name}");
        assert!(name.ends_with(&format!(",S={}", body.len())), "{name}");
        assert_eq!(std::fs::read_dir(dir.join("tmp")).expect("ok").count(), 0);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&a), 0o600);
        assert_eq!(mode(&dir.join("new")), 0o700);
        std::fs::remove_dir_all(&root).expect("ok");
    }

    #[test]
    fn hostile_local_parts_never_become_paths() {
        for rcpt in [
            "../../etc@here.test",
            "a/b@here.test",
            ".x@here.test",
            "\"..\"@here.test",
            "\".\\.\"@here.test",
            "a@..",
            "a@x/y",
        ] {
            let e = folder("/m/{domain}/{local}", rcpt).expect_err("refused");
            assert_eq!(e.status, "5.1.3", "{rcpt}");
        }
        assert!(
            folder("/m/{local}", "ok@..").is_ok(),
            "the domain is not in this path"
        );
    }
}
