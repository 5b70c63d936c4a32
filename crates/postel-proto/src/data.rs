//! Message content framers: [`DataDecoder`] for DATA and [`BdatDecoder`] for
//! BDAT chunks (RFC 3030).
//!
//! The invariant this module guards is SMTP smuggling's (2023): the content of
//! a DATA ends at `<CRLF>.<CRLF>` and nowhere else. `<LF>.<LF>`, `<CR>.<CR>`,
//! `<LF>.<CRLF>` and the like are content, and a bare CR or LF marks the
//! message for the bare-line-ending policy: refused whole (`reject`, the
//! default), or stored with CRLF in its place (`normalize`), which can never be
//! read as an end of data by a server we relay to.
//!
//! Both decoders count the decoded octets and stop keeping them past the size
//! limit, while still reading to the end, so that memory is bounded by the
//! limit and the session stays framed.

use memchr::memchr2;

/// What to do with a CR or LF that is not part of a CRLF pair in content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareLinePolicy {
    /// Refuse the message with `550 5.5.2` (default: the safe choice).
    #[default]
    Reject,
    /// Replace each bare CR or LF with CRLF.
    Normalize,
}

/// How a message's content ended, once its framing is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Within the limit and clean: store it.
    Complete,
    /// More octets than the limit: `552 5.3.4`.
    TooBig,
    /// A bare CR or LF under the `reject` policy: `550 5.5.2`.
    BareLineEnding,
}

/// Counts the octets of a message, keeps them while under the limit, and
/// tracks bare line endings. Shared by both decoders.
#[derive(Debug, Clone)]
struct Sink {
    size: u64,
    max: u64,
    policy: BareLinePolicy,
    bare: bool,
}

impl Sink {
    fn new(max: u64, policy: BareLinePolicy) -> Sink {
        Sink {
            size: 0,
            max,
            policy,
            bare: false,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let fits = self.size <= self.max;
        self.size = self.size.saturating_add(bytes.len() as u64);
        if fits && self.size <= self.max && !(self.bare && self.policy == BareLinePolicy::Reject) {
            out.extend_from_slice(bytes);
        }
    }

    /// A CR or LF that is not half of a CRLF.
    fn bare(&mut self, out: &mut Vec<u8>) {
        match self.policy {
            BareLinePolicy::Reject => self.bare = true,
            BareLinePolicy::Normalize => self.emit(out, b"\r\n"),
        }
    }

    fn outcome(&self) -> Outcome {
        if self.size > self.max {
            Outcome::TooBig
        } else if self.bare {
            Outcome::BareLineEnding
        } else {
            Outcome::Complete
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of the content).
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR inside a line (or an empty line's CR).
    Cr,
    /// A `.` at the start of a line.
    Dot,
    /// `.` then CR at the start of a line: an LF now ends the content.
    DotCr,
    /// After a bare CR or LF under the `normalize` policy: a line start
    /// for dot-unstuffing, but never the start of the end-of-data line,
    /// which must follow a real CRLF.
    BareLineStart,
    /// The end-of-data line was read.
    Done,
}

/// Decodes DATA content: removes dot-stuffing (RFC 5321 4.5.2) and finds the
/// end of data, `<CRLF>.<CRLF>`.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    sink: Sink,
}

impl DataDecoder {
    /// A decoder that keeps at most `max` octets.
    pub fn new(max: u64, policy: BareLinePolicy) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            sink: Sink::new(max, policy),
        }
    }

    /// Decodes as much of `input` as belongs to the content, appending the
    /// decoded octets to `out`. Returns the number of octets consumed and, once
    /// the end-of-data line has been read, the outcome; the octets after it
    /// are not consumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Outcome>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Mid => {
                    // The hot path: copy a run up to the next CR or LF at once.
                    let rest = &input[i..];
                    match memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.sink.emit(out, rest);
                            i = input.len();
                        }
                        Some(n) => {
                            self.sink.emit(out, &rest[..n]);
                            i += n + 1;
                            if rest[n] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                self.bare(out);
                            }
                        }
                    }
                }
                State::LineStart => {
                    match input[i] {
                        b'.' => self.state = State::Dot,
                        b'\r' => self.state = State::Cr,
                        b'\n' => self.bare(out),
                        _ => {
                            self.state = State::Mid;
                            continue;
                        }
                    }
                    i += 1;
                }
                State::BareLineStart => {
                    match input[i] {
                        // Stuffing, as after a CRLF; but this line can
                        // never end the data.
                        b'.' => self.state = State::Mid,
                        b'\r' => self.state = State::Cr,
                        b'\n' => self.bare(out),
                        _ => {
                            self.state = State::Mid;
                            continue;
                        }
                    }
                    i += 1;
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.sink.emit(out, b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // A bare CR; the byte after it is read again.
                        self.bare(out);
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // A stuffed dot: drop it, read the rest of the line.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        i += 1;
                    } else {
                        // `.` + bare CR: the dot was stuffing, the CR is bare.
                        self.bare(out);
                    }
                }
            }
        }
        let done = (self.state == State::Done).then(|| self.sink.outcome());
        (i, done)
    }

    /// Octets of content decoded so far (counting those past the limit).
    pub fn size(&self) -> u64 {
        self.sink.size
    }

    /// A CR or LF that is not half of a CRLF. Under `normalize` it ends a
    /// line, so a dot after it is unstuffed as after any line end (as
    /// Postfix does for a bare LF); under `reject` the message is refused.
    fn bare(&mut self, out: &mut Vec<u8>) {
        self.sink.bare(out);
        self.state = match self.sink.policy {
            BareLinePolicy::Normalize => State::BareLineStart,
            BareLinePolicy::Reject => State::Mid,
        };
    }
}

/// Applies the size limit and the bare-line-ending policy across the BDAT
/// chunks of one message. BDAT is framed by its octet count, so nothing in
/// the content can end it; the policy still applies, so that a message we
/// might relay with DATA later holds no line ending another server could
/// misread.
#[derive(Debug, Clone)]
pub struct BdatDecoder {
    /// The previous chunk ended with a CR whose LF may start the next one.
    pending_cr: bool,
    sink: Sink,
}

impl BdatDecoder {
    /// A decoder that keeps at most `max` octets.
    pub fn new(max: u64, policy: BareLinePolicy) -> BdatDecoder {
        BdatDecoder {
            pending_cr: false,
            sink: Sink::new(max, policy),
        }
    }

    /// Takes in octets of a chunk, appending what is kept to `out`.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if self.pending_cr && !input.is_empty() {
            self.pending_cr = false;
            if input[0] == b'\n' {
                self.sink.emit(out, b"\r\n");
                input = &input[1..];
            } else {
                self.sink.bare(out);
            }
        }
        while let Some(n) = memchr2(b'\r', b'\n', input) {
            self.sink.emit(out, &input[..n]);
            if input[n] == b'\n' {
                self.sink.bare(out);
                input = &input[n + 1..];
            } else if n + 1 == input.len() {
                self.pending_cr = true;
                return;
            } else if input[n + 1] == b'\n' {
                self.sink.emit(out, b"\r\n");
                input = &input[n + 2..];
            } else {
                self.sink.bare(out);
                input = &input[n + 1..];
            }
        }
        self.sink.emit(out, input);
    }

    /// Returns true if and only if the message is already over the limit.
    pub fn too_big(&self) -> bool {
        self.sink.size > self.sink.max
    }

    /// Ends the message: how it stands after the last chunk.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Outcome {
        if std::mem::take(&mut self.pending_cr) {
            self.sink.bare(out);
        }
        self.sink.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], policy: BareLinePolicy) -> (Vec<u8>, usize, Option<Outcome>) {
        let mut d = DataDecoder::new(1 << 20, policy);
        let mut out = Vec::new();
        let (n, done) = d.decode(input, &mut out);
        (out, n, done)
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let (out, n, done) = run(b"Hi\r\n.\r\nMAIL", BareLinePolicy::Reject);
        assert_eq!(out, b"Hi\r\n");
        assert_eq!(n, 7);
        assert_eq!(done, Some(Outcome::Complete));
    }

    #[test]
    fn empty_message() {
        let (out, n, done) = run(b".\r\n", BareLinePolicy::Reject);
        assert_eq!((out.len(), n, done), (0, 3, Some(Outcome::Complete)));
    }

    #[test]
    fn dot_unstuffing() {
        let (out, _, done) = run(b"..a\r\n...\r\n.\r\n", BareLinePolicy::Reject);
        assert_eq!(out, b".a\r\n..\r\n");
        assert_eq!(done, Some(Outcome::Complete));
    }

    #[test]
    fn smuggling_forms_do_not_end_data() {
        for form in [
            &b"a\n.\nb"[..],
            b"a\r.\rb",
            b"a\n.\r\nb",
            b"a\r.\nb",
            b"a\r\n.\rb",
            b"a\r\n.\nb",
            b"a\0.\0b",
        ] {
            for policy in [BareLinePolicy::Reject, BareLinePolicy::Normalize] {
                let mut input = form.to_vec();
                input.extend_from_slice(b"\r\n");
                let (_, n, done) = run(&input, policy);
                assert_eq!((n, done), (input.len(), None), "{form:?} must not end data");
            }
        }
    }

    #[test]
    fn bare_lf_rejected_or_normalized() {
        let (out, _, done) = run(b"a\nb\r\n.\r\n", BareLinePolicy::Reject);
        assert_eq!(done, Some(Outcome::BareLineEnding));
        assert_eq!(out, b"a", "nothing after a bare LF is kept under reject");
        let (out, _, done) = run(b"a\nb\rc\r\n.\r\n", BareLinePolicy::Normalize);
        assert_eq!(done, Some(Outcome::Complete));
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn normalize_unstuffs_after_a_bare_line_end_but_never_ends_there() {
        // Audit finding 10: `\n..x\n` is `.x`, as Postfix stores it.
        let (out, _, done) = run(b"a\n..x\n\r\n.\r\n", BareLinePolicy::Normalize);
        assert_eq!(done, Some(Outcome::Complete));
        assert_eq!(out, b"a\r\n.x\r\n\r\n");
        let (out, _, _) = run(b"a\r..y\r\n.\r\n", BareLinePolicy::Normalize);
        assert_eq!(out, b"a\r\n.y\r\n");
        // A dot line after a bare LF is content, not the end of data.
        for form in [
            &b"a\n.\r\nb\r\n.\r\n"[..],
            b"a\n.\nb\r\n.\r\n",
            b"\n.\r\nz\r\n.\r\n",
        ] {
            let (out, n, done) = run(form, BareLinePolicy::Normalize);
            assert_eq!((n, done), (form.len(), Some(Outcome::Complete)), "{form:?}");
            assert!(
                out.ends_with(b"b\r\n") || out.ends_with(b"z\r\n"),
                "{out:?}"
            );
        }
    }

    #[test]
    fn size_limit_is_exact() {
        let mut d = DataDecoder::new(6, BareLinePolicy::Reject);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"1234\r\n.\r\n", &mut out).1,
            Some(Outcome::Complete)
        );
        let mut d = DataDecoder::new(6, BareLinePolicy::Reject);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"12345\r\n.\r\n", &mut out).1,
            Some(Outcome::TooBig)
        );
        assert!(out.len() <= 6);
        assert_eq!(d.size(), 7);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"..x\r\nline\r\n\r\n.y\r\n..\r\n.\r\n";
        let (whole, _, done) = run(input, BareLinePolicy::Reject);
        let mut d = DataDecoder::new(1 << 20, BareLinePolicy::Reject);
        let mut out = Vec::new();
        let mut last = None;
        for b in input.chunks(1) {
            let (n, o) = d.decode(b, &mut out);
            assert_eq!(n, 1);
            last = o.or(last);
        }
        assert_eq!(out, whole);
        assert_eq!(last, done);
    }

    #[test]
    fn bdat_crlf_across_chunks() {
        let mut d = BdatDecoder::new(100, BareLinePolicy::Reject);
        let mut out = Vec::new();
        d.decode(b"a\r", &mut out);
        d.decode(b"\nb\r\n", &mut out);
        assert_eq!(d.finish(&mut out), Outcome::Complete);
        assert_eq!(out, b"a\r\nb\r\n");
        let mut d = BdatDecoder::new(100, BareLinePolicy::Reject);
        d.decode(b"a\nb", &mut out);
        assert_eq!(d.finish(&mut out), Outcome::BareLineEnding);
        let mut d = BdatDecoder::new(100, BareLinePolicy::Reject);
        d.decode(b"a\r", &mut out);
        assert_eq!(d.finish(&mut out), Outcome::BareLineEnding);
        let mut d = BdatDecoder::new(100, BareLinePolicy::Normalize);
        let mut out = Vec::new();
        d.decode(b"a\rb\n", &mut out);
        assert_eq!(d.finish(&mut out), Outcome::Complete);
        assert_eq!(out, b"a\r\nb\r\n");
    }

    #[test]
    fn bdat_size_limit() {
        let mut d = BdatDecoder::new(4, BareLinePolicy::Reject);
        let mut out = Vec::new();
        d.decode(b"1234", &mut out);
        assert!(!d.too_big());
        d.decode(b"5", &mut out);
        assert!(d.too_big());
        assert_eq!(d.finish(&mut out), Outcome::TooBig);
    }
}
