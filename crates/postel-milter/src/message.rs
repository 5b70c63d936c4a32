//! A message as filters see it and change it: its header fields as
//! `(name, value)` (the value is what follows the colon, folds kept as
//! CRLF), and its body; and the filters' header and body changes applied
//! to it.
//!
//! What a filter writes is made safe before it goes in: a header name is
//! printable ASCII without a colon, a value's line breaks become CRLF
//! followed by a tab when the filter gave none (a new field or the end of
//! the header can never be made from a value), and a new body has CRLF line
//! ends.

use crate::client::Edit;

/// One header field: its name and value as filters read them, and its
/// bytes as received while no filter changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name (empty for lines before the first field, kept as they are).
    pub name: String,
    /// The value after the colon, folds as CRLF (decoded lossily).
    pub value: String,
    /// The field's own bytes, CRLF included; None once made or changed by
    /// a filter.
    raw: Option<Vec<u8>>,
}

/// A message split into header fields and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The header fields in order.
    pub fields: Vec<Field>,
    /// The body, after the empty line (CRLF line ends).
    pub body: Vec<u8>,
}

impl Parsed {
    /// Splits `content` (CRLF line ends). Filters read the header fields as
    /// text, decoded lossily; the bytes of the fields they leave alone go
    /// back as they came.
    pub fn parse(content: &[u8]) -> Parsed {
        let (head, body) = if content.starts_with(b"\r\n") {
            (&content[..0], &content[2..])
        } else {
            match content.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => (&content[..i + 2], &content[i + 4..]),
                None => (content, &content[content.len()..]),
            }
        };
        let mut fields: Vec<Field> = Vec::new();
        for line in head.split_inclusive(|b| *b == b'\n') {
            let text_end = line.strip_suffix(b"\n").unwrap_or(line);
            let text_end = text_end.strip_suffix(b"\r").unwrap_or(text_end);
            let text = String::from_utf8_lossy(text_end);
            let folded = matches!(line.first(), Some(b' ' | b'\t'));
            if folded && let Some(f) = fields.last_mut() {
                f.value.push_str("\r\n");
                f.value.push_str(&text);
                if let Some(raw) = f.raw.as_mut() {
                    raw.extend_from_slice(line);
                }
                continue;
            }
            let (name, value) = match text.split_once(':') {
                Some((n, v)) if !folded => (n.trim_end().to_owned(), v.to_owned()),
                _ => (String::new(), String::new()),
            };
            fields.push(Field {
                name,
                value,
                raw: Some(line.to_vec()),
            });
        }
        Parsed {
            fields,
            body: body.to_vec(),
        }
    }

    /// The header fields as filters are told them: `(name, value)`.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|f| !f.name.is_empty())
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect()
    }

    /// The message again, as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64 * self.fields.len() + 2);
        for f in &self.fields {
            match &f.raw {
                Some(raw) => {
                    out.extend_from_slice(raw);
                    if !raw.ends_with(b"\n") {
                        out.extend_from_slice(b"\r\n");
                    }
                }
                None => {
                    out.extend_from_slice(f.name.as_bytes());
                    out.push(b':');
                    out.extend_from_slice(f.value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Applies the header and body changes of `edits` (the envelope ones
    /// are the caller's). Returns the changes refused as unsafe, for the
    /// log.
    pub fn apply(&mut self, edits: &[Edit]) -> usize {
        let mut refused = 0;
        for e in edits {
            match e {
                Edit::AddHeader(n, v) => match field(n, v) {
                    Some(f) => self.fields.push(f),
                    None => refused += 1,
                },
                Edit::InsertHeader(i, n, v) => match field(n, v) {
                    // Index 0 is above Postel's own Received: field, which
                    // filters do not see (as Postfix): both go at the top.
                    Some(f) => {
                        let at = (*i as usize).saturating_sub(1).min(self.fields.len());
                        self.fields.insert(at, f);
                    }
                    None => refused += 1,
                },
                Edit::ChangeHeader(i, n, v) => {
                    let nth = (*i).max(1) as usize;
                    let found = self
                        .fields
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| !f.name.is_empty() && f.name.eq_ignore_ascii_case(n))
                        .nth(nth - 1)
                        .map(|(at, _)| at);
                    match (found, v.is_empty()) {
                        (Some(at), true) => {
                            self.fields.remove(at);
                        }
                        (Some(at), false) => match field(n, v) {
                            Some(f) => self.fields[at] = f,
                            None => refused += 1,
                        },
                        // Sendmail adds a field it is asked to change and
                        // does not have.
                        (None, false) => match field(n, v) {
                            Some(f) => self.fields.push(f),
                            None => refused += 1,
                        },
                        (None, true) => {}
                    }
                }
                Edit::ReplaceBody(b) => self.body = crlf(b),
                _ => {}
            }
        }
        refused
    }
}

/// A header field from a filter, made safe; None if its name is unusable.
fn field(name: &str, value: &str) -> Option<Field> {
    let ok_name = !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !ok_name || value.len() > 64 * 1024 {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, line) in value
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty() || l.is_empty())
        .enumerate()
    {
        let line: String = line
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .collect();
        if i == 0 {
            out.push_str(&line);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        out.push_str("\r\n");
        if !line.starts_with([' ', '\t']) {
            out.push('\t');
        }
        out.push_str(&line);
    }
    Some(Field {
        name: name.to_owned(),
        value: out,
        raw: None,
    })
}

/// `body` with every line end CRLF, and ending with one.
fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 2);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_a_filter_leaves_alone_keep_their_bytes() {
        let msg = b"Subject: caf\xe9\r\nOdd line\r\nName : v\r\n\r\nb\r\n";
        let mut p = Parsed::parse(msg);
        assert_eq!(p.headers()[0].0, "Subject");
        p.apply(&[Edit::AddHeader("X-New".into(), " 1".into())]);
        let out = p.to_bytes();
        assert!(
            out.starts_with(b"Subject: caf\xe9\r\nOdd line\r\nName : v\r\nX-New: 1\r\n\r\nb\r\n"),
            "{out:?}"
        );
    }

    const MSG: &[u8] =
        b"From: a@b.test\r\nSubject: one\r\n two\r\nX-Tag: 1\r\nX-Tag: 2\r\n\r\nbody\r\n";

    #[test]
    fn a_message_splits_and_joins_back_byte_for_byte() {
        let p = Parsed::parse(MSG);
        assert_eq!(p.headers()[1], ("Subject".into(), " one\r\n two".into()));
        assert_eq!(p.body, b"body\r\n");
        assert_eq!(p.to_bytes(), MSG);
    }

    #[test]
    fn changes_follow_sendmail_semantics() {
        let mut p = Parsed::parse(MSG);
        let refused = p.apply(&[
            Edit::ChangeHeader(2, "x-tag".into(), " two".into()),
            Edit::ChangeHeader(1, "X-Tag".into(), String::new()),
            Edit::InsertHeader(0, "DKIM-Signature".into(), " v=1".into()),
            Edit::AddHeader("X-Spam".into(), " no".into()),
            Edit::ChangeHeader(1, "X-Missing".into(), " added".into()),
            Edit::ReplaceBody(b"new\nbody".to_vec()),
        ]);
        assert_eq!(refused, 0);
        assert_eq!(
            String::from_utf8(p.to_bytes()).expect("utf-8"),
            "DKIM-Signature: v=1\r\nFrom: a@b.test\r\nSubject: one\r\n two\r\nx-tag: two\r\nX-Spam: no\r\nX-Missing: added\r\n\r\nnew\r\nbody\r\n"
        );
    }

    #[test]
    fn a_filter_cannot_smuggle_fields_or_end_the_header() {
        let mut p = Parsed::parse(MSG);
        let refused = p.apply(&[
            Edit::AddHeader(
                "X-A".into(),
                " x\r\n\r\nInjected: yes\nBcc: victim@x.test".into(),
            ),
            Edit::AddHeader("Bad Name".into(), " v".into()),
            Edit::AddHeader("X-B".into(), " a\0b".into()),
        ]);
        assert_eq!(refused, 1, "the name with a space");
        let out = String::from_utf8(p.to_bytes()).expect("utf-8");
        assert!(
            out.contains("X-A: x\r\n\tInjected: yes\r\n\tBcc: victim@x.test\r\n"),
            "{out}"
        );
        assert!(out.contains("X-B: ab\r\n"), "{out}");
        let again = Parsed::parse(out.as_bytes());
        assert_eq!(again.headers().len(), 6, "no new field was made: {out}");
        assert_eq!(again.body, b"body\r\n");
    }

    proptest::proptest! {
        /// Whatever a filter writes into a header value, the message keeps
        /// its fields and its body: exactly one field more, and the rest
        /// as they were.
        #[test]
        fn no_value_makes_a_field_or_ends_the_header(
            value in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("\r\n".to_owned()),
                    proptest::strategy::Just("\n".to_owned()),
                    proptest::strategy::Just("\r".to_owned()),
                    proptest::strategy::Just("\r\n\r\n".to_owned()),
                    proptest::strategy::Just("Bcc: x@y.test".to_owned()),
                    proptest::strategy::Just(" ".to_owned()),
                    proptest::strategy::Just("\t".to_owned()),
                    "[ -~]{0,8}",
                    "\\PC{0,4}",
                ],
                0..12,
            )
        ) {
            let value = value.concat();
            let before = Parsed::parse(MSG);
            let mut p = before.clone();
            p.apply(&[
                Edit::AddHeader("X-A".into(), value.clone()),
                Edit::InsertHeader(1, "X-B".into(), value.clone()),
                Edit::ChangeHeader(1, "Subject".into(), format!(" {value}")),
            ]);
            let again = Parsed::parse(&p.to_bytes());
            proptest::prop_assert_eq!(&again.body, &before.body);
            proptest::prop_assert_eq!(again.headers().len(), before.headers().len() + 2);
            let names: Vec<String> = again.headers().into_iter().map(|(n, _)| n).collect();
            proptest::prop_assert_eq!(names.iter().filter(|n| *n == "Bcc").count(), 0);
        }
    }
}
