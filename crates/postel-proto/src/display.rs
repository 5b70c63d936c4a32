//! Client-given text made safe to show: in trace headers, logs, and
//! anywhere a person reads it.
//!
//! SMTPUTF8 lets an address hold any Unicode, including the controls that
//! reorder text (U+202E RIGHT-TO-LEFT OVERRIDE and its kin). Shown as they
//! are, they make `moc.knab@evil` read as something else in a log or a
//! mail client (CVE-2021-42574 is the same trick in source code). So they
//! are written as `\u{202E}`: visible, and still exact for whoever reads
//! closely. The stored envelope keeps the address as sent.

use std::borrow::Cow;

/// Returns true if and only if `c` is an invisible formatting character
/// that can change how the text around it reads: the bidirectional
/// controls (Unicode's `Bidi_Control` set) and the zero-width ones.
fn is_hidden_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// `s` with each hidden control written as `\u{XXXX}`; borrowed when there
/// is none.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_hidden_control(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_are_escaped_and_the_rest_kept() {
        assert!(matches!(visible("ann@example.test"), Cow::Borrowed(_)));
        assert_eq!(visible("\u{202E}moc.knab@x"), "\\u{202E}moc.knab@x");
        assert_eq!(
            visible("a\u{2066}b\u{200F}c\u{061C}"),
            "a\\u{2066}b\\u{200F}c\\u{061C}"
        );
        assert_eq!(visible("josé@例え.jp"), "josé@例え.jp");
    }
}
