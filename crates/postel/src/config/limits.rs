//! `[limits]`: protocol and resource limits, each checked with its key.

use std::time::Duration;

use postel_proto::Limits;

use super::{LimitsSection, MAX_MESSAGE_SIZE_CEILING};

/// The limits as validated (defaults where the file is silent): the
/// session's, with the identity and the bare-line policy left at their
/// defaults for the caller to set, and the server-wide ones.
pub(super) struct Values {
    pub(super) session: Limits,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_ip: usize,
    pub(super) greet_wait: Duration,
}

/// Checks `[limits]`, adding a line to `problems` for each bad key.
pub(super) fn validate(l: &LimitsSection, problems: &mut Vec<String>) -> Values {
    let defaults = Limits::default();
    let max_message_size = l.max_message_size.unwrap_or(defaults.max_message_size);
    if max_message_size == 0 || max_message_size > MAX_MESSAGE_SIZE_CEILING {
        problems.push(format!(
            "limits.max_message_size: must be from 1 to {MAX_MESSAGE_SIZE_CEILING} (512 MiB; the store keeps a message as one SQLite blob), got {max_message_size}"
        ));
    }
    let max_recipients = l.max_recipients.unwrap_or(defaults.max_recipients);
    if max_recipients < 100 {
        problems.push(format!(
            "limits.max_recipients: must be at least 100 (RFC 5321 4.5.3.1.8), got {max_recipients}"
        ));
    }
    let max_errors = l.max_errors.unwrap_or(defaults.max_errors);
    if max_errors == 0 {
        problems.push("limits.max_errors: must be at least 1".to_owned());
    }
    let max_connections = l.max_connections.unwrap_or(10_000);
    let max_connections_per_ip = l.max_connections_per_ip.unwrap_or(100);
    for (key, v) in [
        ("limits.max_connections", max_connections),
        ("limits.max_connections_per_ip", max_connections_per_ip),
    ] {
        if v == 0 {
            problems.push(format!("{key}: must be at least 1"));
        }
    }
    let secs = |key: &str, v: Option<u64>, default: Duration, problems: &mut Vec<String>| {
        let d = v.map_or(default, Duration::from_secs);
        if d.is_zero() {
            problems.push(format!("{key}: must be at least 1 second"));
        }
        d
    };
    let command_timeout = secs(
        "limits.command_timeout",
        l.command_timeout,
        defaults.command_timeout,
        problems,
    );
    let data_timeout = secs(
        "limits.data_timeout",
        l.data_timeout,
        defaults.data_timeout,
        problems,
    );

    let min_data_rate = l.min_data_rate.unwrap_or(defaults.min_data_rate);
    if min_data_rate == 0 {
        problems.push("limits.min_data_rate: must be at least 1 octet per second".to_owned());
    }
    let mut mime = defaults.mime;
    mime.max_depth = l.max_mime_depth.unwrap_or(mime.max_depth);
    mime.max_header_lines = l.max_header_lines.unwrap_or(mime.max_header_lines);
    mime.max_header_bytes = l.max_header_bytes.unwrap_or(mime.max_header_bytes);
    if mime.max_depth == 0 || mime.max_header_lines == 0 || mime.max_header_bytes == 0 {
        problems.push(
            "limits.max_mime_depth, max_header_lines, max_header_bytes: each must be at least 1"
                .to_owned(),
        );
    }
    let soft_refused = l
        .soft_refused_recipients
        .unwrap_or(defaults.soft_refused_recipients);
    let max_refused = l
        .max_refused_recipients
        .unwrap_or(defaults.max_refused_recipients);
    if max_refused == 0 || soft_refused > max_refused {
        problems.push(format!(
            "limits.max_refused_recipients: must be at least 1 and at least soft_refused_recipients ({soft_refused}), got {max_refused}"
        ));
    }
    let refused_delay = l
        .refused_recipient_delay_ms
        .map_or(defaults.refused_recipient_delay, Duration::from_millis);
    if refused_delay > Duration::from_secs(60) {
        problems.push("limits.refused_recipient_delay_ms: at most 60000".to_owned());
    }
    let greet_wait_ms = l.greet_wait_ms.unwrap_or(0);
    if greet_wait_ms > 30_000 {
        problems.push(format!(
            "limits.greet_wait_ms: at most 30000 (30 s; Postfix's postscreen waits 6 s), got {greet_wait_ms}"
        ));
    }
    Values {
        session: Limits {
            max_message_size,
            max_recipients,
            max_errors,
            command_timeout,
            data_timeout,
            min_data_rate,
            mime,
            soft_refused_recipients: soft_refused,
            max_refused_recipients: max_refused,
            refused_recipient_delay: refused_delay,
            ..defaults
        },
        max_connections,
        max_connections_per_ip,
        greet_wait: Duration::from_millis(greet_wait_ms),
    }
}
