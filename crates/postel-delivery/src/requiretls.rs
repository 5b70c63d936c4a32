//! RFC 8689's two requests of a sender about TLS on the way out:
//! `REQUIRETLS` on MAIL (only over TLS that is authenticated all the way,
//! else return the message with `5.7.30`) and the `TLS-Required: No`
//! header field (deliver even where the destination's MTA-STS policy
//! would defer). The first wins where a message carries both.

/// Whether MAIL carried `REQUIRETLS`.
pub(crate) fn requested(mail_params: &[String]) -> bool {
    mail_params
        .iter()
        .any(|p| p.eq_ignore_ascii_case("REQUIRETLS"))
}

/// Whether the sender waived the destination's TLS policy: a
/// `TLS-Required: No` field in the header section (RFC 8689 section 5),
/// and no REQUIRETLS.
pub(crate) fn waived(mail_params: &[String], content: &[u8]) -> bool {
    if requested(mail_params) {
        return false;
    }
    // The header section: up to the first empty line (none at all when
    // the content starts with one).
    if content.starts_with(b"\r\n") {
        return false;
    }
    let end = memchr::memmem::find(content, b"\r\n\r\n").map_or(content.len(), |i| i + 2);
    let header = &content[..end];
    let mut lines = header.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A continuation line is part of the field before it.
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(b"TLS-Required")
        {
            continue;
        }
        // The value, with any folded continuation lines.
        let mut value = line[colon + 1..].to_vec();
        while let Some(next) = lines
            .peek()
            .filter(|l| l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
        {
            value.extend_from_slice(next.strip_suffix(b"\r").unwrap_or(next));
            lines.next();
        }
        return value.trim_ascii().eq_ignore_ascii_case(b"No");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_field_waives_unless_requiretls() {
        let none: Vec<String> = Vec::new();
        let msg = b"From: a@b.test\r\nTLS-Required: No\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(waived(&none, msg));
        assert!(waived(&none, b"tls-required:   no  \r\n\r\n"));
        assert!(waived(&none, b"TLS-Required:\r\n No\r\n\r\n"), "folded");
        assert!(!waived(&["REQUIRETLS".into()], msg), "REQUIRETLS wins");
        assert!(!waived(&none, b"TLS-Required: Yes\r\n\r\n"));
        assert!(!waived(&none, b"X-TLS-Required: No\r\n\r\n"));
        // In the body, or folded into another field, it is not a field.
        assert!(!waived(&none, b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!waived(&none, b"\r\nTLS-Required: No\r\n"));
        assert!(!waived(&none, b"Subject: x\r\n TLS-Required: No\r\n\r\n"));
    }

    #[test]
    fn requested_is_the_bare_parameter() {
        assert!(requested(&["SIZE=10".into(), "requiretls".into()]));
        assert!(!requested(&["REQUIRETLS=1".into()]));
    }
}
