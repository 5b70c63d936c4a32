//! The structure check, on the audit's messages and their relatives.

use super::field::{boundary, media_type};
use super::*;

fn scan(m: &[u8]) -> MimeScanner {
    check(m, MimeLimits::default())
}

fn nested_messages(n: usize) -> Vec<u8> {
    let mut m = b"Subject: deep\r\n".to_vec();
    for _ in 0..n {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Subject: inner\r\n\r\nhello\r\n");
    m
}

fn nested_multiparts(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf\r\n");
    for i in (0..n).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

#[test]
fn plain_messages_are_depth_zero_and_fine() {
    let s = scan(b"Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n--not a boundary\r\n");
    assert_eq!((s.problem(), s.depth(), s.entities()), (None, 0, 1));
    assert_eq!(s.header_fields(), 2);
}

#[test]
fn message_rfc822_nesting_is_counted_without_recursion() {
    let s = scan(&nested_messages(100));
    assert_eq!((s.problem(), s.depth()), (None, 100));
    let s = scan(&nested_messages(101));
    assert_eq!(s.problem(), Some(MimeProblem::TooDeep));
    // The audit's message: 50,000 levels, 1.6 MB.
    let s = scan(&nested_messages(50_000));
    assert_eq!(s.problem(), Some(MimeProblem::TooDeep));
    assert_eq!(s.depth(), 101, "stops counting at the limit");
}

#[test]
fn multipart_nesting_is_counted_and_closed() {
    let s = scan(&nested_multiparts(100));
    assert_eq!((s.problem(), s.depth()), (None, 100));
    assert_eq!(
        scan(&nested_multiparts(101)).problem(),
        Some(MimeProblem::TooDeep)
    );
    // Siblings are not nesting: 300 parts side by side are depth 1.
    let mut m = b"Content-Type: multipart/mixed; boundary=x\r\n\r\npreamble\r\n".to_vec();
    for _ in 0..300 {
        m.extend_from_slice(b"--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: a\r\n\r\nb\r\n");
    }
    m.extend_from_slice(b"--x--\r\nepilogue\r\n");
    let s = scan(&m);
    assert_eq!((s.problem(), s.depth(), s.entities()), (None, 2, 601));
}

#[test]
fn digest_parts_default_to_messages() {
    let mut m = Vec::new();
    for _ in 0..101 {
        m.extend_from_slice(b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n");
    }
    let s = scan(&m);
    assert_eq!(s.problem(), Some(MimeProblem::TooDeep));
}

#[test]
fn content_type_is_read_leniently() {
    for ct in [
        "content-type: Message/RFC822",
        "Content-Type:message/global",
        "Content - Type : message / rfc822 (a comment)",
        "Content-Type:\r\n message/rfc822",
    ] {
        let mut m = Vec::new();
        for _ in 0..101 {
            m.extend_from_slice(ct.as_bytes());
            m.extend_from_slice(b"\r\n\r\n");
        }
        assert_eq!(scan(&m).problem(), Some(MimeProblem::TooDeep), "{ct}");
    }
    // A junk line does not end the section, nor does white space that
    // continues a field; white space after a junk line does.
    let mut m = Vec::new();
    for _ in 0..101 {
        m.extend_from_slice(b"junk\r\nContent-Type: message/rfc822\r\n \t\r\nX\r\n \t\r\n");
    }
    assert_eq!(scan(&m).problem(), Some(MimeProblem::TooDeep));
}

#[test]
fn the_last_content_type_decides() {
    // A review found intake read the first, the view's parser the last.
    let mut m = Vec::new();
    for i in 0..101 {
        m.extend_from_slice(
            format!("Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    assert_eq!(scan(&m).problem(), Some(MimeProblem::TooDeep));
}

#[test]
fn header_sections_are_bounded_by_lines_and_octets() {
    let limits = MimeLimits {
        max_header_lines: 10,
        max_header_bytes: 100,
        ..MimeLimits::default()
    };
    let ok = b"A: 1\r\nB: 2\r\n\r\nbody line\r\n".to_vec();
    assert_eq!(check(&ok, limits).problem(), None);
    let lines = b"X: y\r\n".repeat(11);
    assert_eq!(
        check(&lines, limits).problem(),
        Some(MimeProblem::HeaderTooBig)
    );
    let long = [b"X: ".as_slice(), &[b'a'; 200], b"\r\n\r\n"].concat();
    assert_eq!(
        check(&long, limits).problem(),
        Some(MimeProblem::HeaderTooBig)
    );
    // The body is not a header section, however many lines it has.
    let body = [b"A: 1\r\n\r\n".as_slice(), &b"X: y\r\n".repeat(1000)].concat();
    assert_eq!(check(&body, limits).problem(), None);
    // A part's header section is bounded too.
    let part = [
        b"Content-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\n".as_slice(),
        &b"X: y\r\n".repeat(11),
    ]
    .concat();
    assert_eq!(
        check(&part, limits).problem(),
        Some(MimeProblem::HeaderTooBig)
    );
}

#[test]
fn chunking_never_changes_the_verdict() {
    let inputs = [
        nested_messages(101),
        nested_messages(3),
        nested_multiparts(101),
        nested_multiparts(7),
        b"X: y\r\n".repeat(10_001),
    ];
    for input in inputs {
        let whole = scan(&input);
        for step in [1, 2, 3, 7, 64, 1000] {
            let mut s = MimeScanner::new(MimeLimits::default());
            for piece in input.chunks(step) {
                s.feed(piece);
            }
            s.finish();
            assert_eq!(
                (s.problem(), s.depth(), s.entities()),
                (whole.problem(), whole.depth(), whole.entities()),
                "step {step}"
            );
        }
    }
}

#[test]
fn boundaries_quoted_or_not() {
    assert_eq!(
        boundary(b"multipart/mixed; boundary=\"a b\\\"c\"; x=y").as_deref(),
        Some(&b"a b\"c"[..])
    );
    assert_eq!(
        boundary(b"multipart/mixed;charset=x; BOUNDARY = zz ").as_deref(),
        Some(&b"zz"[..])
    );
    assert_eq!(boundary(b"multipart/mixed"), None);
    assert_eq!(
        media_type(b" (c) text / plain ; x"),
        (&b"text"[..], &b"plain"[..])
    );
}
