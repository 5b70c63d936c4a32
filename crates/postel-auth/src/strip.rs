//! Forged results: RFC 8601 5 asks a receiver to remove, from mail that
//! comes from outside, every `Authentication-Results:` field that claims
//! its own authserv-id, so that a reader trusting that id trusts only
//! what this server wrote.

/// Removes the header fields named `Authentication-Results` whose
/// authserv-id is `authserv_id` (ASCII case-insensitively) from the
/// header section of `message`; returns how many went. Fields of other
/// ids, and the body, keep their exact bytes.
pub fn strip_forged(message: &mut Vec<u8>, authserv_id: &str) -> usize {
    let end = header_end(message);
    // The fields to remove, found first: most messages have none, and
    // then nothing is copied.
    let mut forged = Vec::new();
    let mut pos = 0;
    while pos < end {
        let field_end = field_end(message, pos, end);
        if claims(&message[pos..field_end], authserv_id) {
            forged.push(pos..field_end);
        }
        pos = field_end;
    }
    if forged.is_empty() {
        return 0;
    }
    // One pass over the rest, however many fields go.
    let mut kept = Vec::with_capacity(message.len());
    let mut from = 0;
    for range in &forged {
        kept.extend_from_slice(&message[from..range.start]);
        from = range.end;
    }
    kept.extend_from_slice(&message[from..]);
    *message = kept;
    forged.len()
}

/// Whether `head`, the first part of a message, may hold a field that
/// [`strip_forged`] would remove: one claiming `authserv_id` in its header
/// section, or a header section that does not end within `head` (then
/// the rest is unknown).
pub fn may_hold_forged(head: &[u8], authserv_id: &str) -> bool {
    let end = header_end(head);
    if end == head.len() {
        return true;
    }
    let mut pos = 0;
    while pos < end {
        let field_end = field_end(head, pos, end);
        if claims(&head[pos..field_end], authserv_id) {
            return true;
        }
        pos = field_end;
    }
    false
}

/// Where the header section ends: after the last field, before the blank
/// line (or the whole message, when it has no body).
fn header_end(m: &[u8]) -> usize {
    let mut pos = 0;
    while pos < m.len() {
        let line_end = memchr_nl(m, pos);
        let line = &m[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            return pos;
        }
        pos = line_end;
    }
    m.len()
}

/// The end of the field starting at `pos`: its first line and every
/// continuation line (starting with a space or a tab).
fn field_end(m: &[u8], pos: usize, end: usize) -> usize {
    let mut at = memchr_nl(m, pos).min(end);
    while at < end && matches!(m[at], b' ' | b'\t') {
        at = memchr_nl(m, at).min(end);
    }
    at
}

/// The position after the next LF at or after `pos` (or the end).
fn memchr_nl(m: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &m[pos..]).map_or(m.len(), |i| pos + i + 1)
}

/// Whether `field` is an `Authentication-Results:` field for `id`.
fn claims(field: &[u8], id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = field[..colon].trim_ascii();
    if !name.eq_ignore_ascii_case(b"Authentication-Results") {
        return false;
    }
    authserv_id(&field[colon + 1..]).is_some_and(|v| v.eq_ignore_ascii_case(id.as_bytes()))
}

/// The authserv-id at the start of a field's value: after comments and
/// folding white space, a token or a quoted string.
fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    let mut depth = 0usize;
    // Comments (nested, RFC 5322 3.2.2) and white space before the id.
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = value.get(i..)?;
    if let Some(quoted) = rest.strip_prefix(b"\"") {
        let mut id = Vec::new();
        let mut j = 0;
        while j < quoted.len() {
            match quoted[j] {
                b'"' => return Some(id),
                b'\\' if j + 1 < quoted.len() => {
                    id.push(quoted[j + 1]);
                    j += 1;
                }
                b'\r' | b'\n' => {}
                b => id.push(b),
            }
            j += 1;
        }
        return None;
    }
    let id: Vec<u8> = rest
        .iter()
        .take_while(|&&b| !matches!(b, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n'))
        .copied()
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(m: &str) -> (String, usize) {
        let mut v = m.as_bytes().to_vec();
        let n = strip_forged(&mut v, "mx.example.org");
        (String::from_utf8(v).expect("utf-8"), n)
    }

    #[test]
    fn a_field_claiming_our_id_goes_and_others_stay() {
        let m = "Received: x\r\nAuthentication-Results: mx.example.org; spf=pass\r\n\
                 Authentication-Results: other.example; dkim=pass\r\nSubject: s\r\n\r\n\
                 Authentication-Results: mx.example.org; in the body\r\n";
        let (out, n) = strip(m);
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "Received: x\r\nAuthentication-Results: other.example; dkim=pass\r\nSubject: s\r\n\r\n\
             Authentication-Results: mx.example.org; in the body\r\n"
        );
    }

    #[test]
    fn case_folding_comments_and_quotes_do_not_hide_the_id() {
        for field in [
            "authentication-results: MX.Example.ORG; dkim=pass\r\n",
            "Authentication-Results : mx.example.org;\r\n\tdkim=pass\r\n",
            "Authentication-Results:\r\n mx.example.org 1; dkim=pass\r\n",
            "Authentication-Results: (a (nested) comment) mx.example.org; none\r\n",
            "Authentication-Results: \"mx.example.org\"; none\r\n",
            "Authentication-Results: mx.example.org(comment); none\r\n",
        ] {
            let (out, n) = strip(&format!("{field}From: a@b\r\n\r\nbody\r\n"));
            assert_eq!(n, 1, "{field:?}");
            assert_eq!(out, "From: a@b\r\n\r\nbody\r\n", "{field:?}");
        }
    }

    #[test]
    fn only_a_field_of_ours_or_an_unfinished_header_may_hold_one() {
        let id = "mx.example.org";
        assert!(!may_hold_forged(
            b"Authentication-Results: other.example; none\r\nSubject: s\r\n\r\nbody",
            id
        ));
        assert!(may_hold_forged(
            b"Subject: s\r\nAuthentication-Results: MX.example.org; none\r\n\r\n",
            id
        ));
        assert!(
            may_hold_forged(b"Subject: s\r\nX-Long: a", id),
            "the header goes on past the first part"
        );
    }

    #[test]
    fn lookalike_ids_and_names_stay() {
        let m = "Authentication-Results: mx.example.org.evil; none\r\n\
                 Authentication-Results: evil.mx.example.org; none\r\n\
                 ARC-Authentication-Results: i=1; mx.example.org; none\r\n\
                 X-Authentication-Results: mx.example.org; none\r\n\r\n";
        let (out, n) = strip(m);
        assert_eq!(n, 0);
        assert_eq!(out, m);
    }

    #[test]
    fn a_message_with_no_body_and_bare_lf_is_handled() {
        let (out, n) = strip("Authentication-Results: mx.example.org; none\nSubject: x\n");
        assert_eq!((out.as_str(), n), ("Subject: x\n", 1));
        let (out, n) = strip("Authentication-Results: mx.example.org");
        assert_eq!((out.as_str(), n), ("", 1));
    }

    proptest::proptest! {
        /// Whatever the bytes, stripping never panics, and what is left
        /// has no field that still claims the id.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut v = bytes.clone();
            // What the first-part check lets through has nothing to remove.
            if !may_hold_forged(&bytes, "mx.example.org") {
                let mut w = bytes.clone();
                proptest::prop_assert_eq!(strip_forged(&mut w, "mx.example.org"), 0);
            }
            strip_forged(&mut v, "mx.example.org");
            let again = v.clone();
            let mut w = v;
            proptest::prop_assert_eq!(strip_forged(&mut w, "mx.example.org"), 0);
            proptest::prop_assert_eq!(w, again);
        }
    }
}
