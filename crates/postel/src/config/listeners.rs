//! `[smtp]`, `[submission]`, `[smtps]` and `[tls]`: the listeners, and
//! where their certificate comes from.

use std::net::SocketAddr;

use postel_server::{ListenerKind, ListenerSettings};

use super::{DEFAULT_SMTP, FileConfig, TlsMode, TlsSection};
use crate::tls::TlsFiles;

/// Where TLS comes from. The zero-config mode makes a self-signed
/// certificate.
pub(super) fn tls(section: &TlsSection, zero_config: bool, problems: &mut Vec<String>) -> TlsMode {
    match (&section.cert, &section.key, section.self_signed) {
        (Some(cert), Some(key), _) => TlsMode::Files(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (Some(_), None, _) | (None, Some(_), _) => {
            problems.push("tls: set both cert and key (PEM files), or neither".to_owned());
            TlsMode::Off
        }
        (None, None, Some(true)) => TlsMode::SelfSigned,
        (None, None, Some(false)) => TlsMode::Off,
        (None, None, None) if zero_config => TlsMode::SelfSigned,
        (None, None, None) => TlsMode::Off,
    }
}

/// Every listener with its settings; `flags` are the command line's
/// addresses for smtp, submission and smtps, which replace the file's.
pub(super) fn listeners(
    file: &FileConfig,
    flags: [Vec<String>; 3],
    tls: &TlsMode,
    problems: &mut Vec<String>,
) -> Vec<(SocketAddr, ListenerSettings)> {
    let mut listeners = Vec::new();
    let [smtp, submission, smtps] = flags;
    let sections = [
        (ListenerKind::Smtp, &file.smtp, smtp),
        (ListenerKind::Submission, &file.submission, submission),
        (ListenerKind::Smtps, &file.smtps, smtps),
    ];
    for (kind, section, flags) in sections {
        let name = kind.name();
        let listen = if !flags.is_empty() {
            flags
        } else if let Some(l) = section.listen.clone() {
            l
        } else if kind == ListenerKind::Smtp {
            vec![DEFAULT_SMTP.to_owned()]
        } else {
            Vec::new()
        };
        let mut settings = ListenerSettings::for_kind(kind);
        if let Some(auth) = section.auth {
            if kind != ListenerKind::Smtp && !auth {
                problems.push(format!("{name}.auth: a {name} listener always requires AUTH (it would be an open relay)"));
            }
            settings.auth = auth || settings.auth;
        }
        settings.auth_requires_tls = section.require_tls.unwrap_or(true);
        let needs_tls =
            kind == ListenerKind::Smtps || (settings.auth && settings.auth_requires_tls);
        if !listen.is_empty() && needs_tls && matches!(tls, TlsMode::Off) {
            problems.push(format!(
                "{name}: this listener needs TLS: set [tls] cert and key (or self_signed = true){}",
                if kind == ListenerKind::Smtps {
                    ""
                } else {
                    ", or require_tls = false"
                }
            ));
        }
        for (i, a) in listen.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(addr) => listeners.push((addr, settings)),
                Err(_) => problems.push(format!("{name}.listen[{i}]: {a:?} is not IP:PORT (for example 127.0.0.1:2525 or [::]:25)")),
            }
        }
    }
    listeners
}
