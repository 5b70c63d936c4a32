//! Replies as a client reads them: lines of `ddd-text` ending in one
//! `ddd text`, decoded incrementally from whatever the socket gave, with
//! bounds on a line and on a reply, since a server can be hostile too.

/// The longest reply line accepted with its CRLF (RFC 5321 4.5.3.1.5
/// allows 512; some servers send longer EHLO lines).
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have.
pub const MAX_REPLY_LINES: usize = 1000;

/// The most octets of one reply, all its lines together: a server cannot
/// make a client hold megabytes for one reply.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One reply from a server: its code and the text of each line (what
/// follows `250-` or `250 `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, in order; never empty.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// Returns true if and only if the code is 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The enhanced status code (RFC 3463) at the start of the first
    /// line, if there is one.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
}

/// Why the server's bytes are not replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    #[error("a reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    /// A reply of more than [`MAX_REPLY_LINES`] lines, or
    /// [`MAX_REPLY_BYTES`] octets.
    #[error("a reply of more than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} octets")]
    TooManyLines,
    /// A line that is not `ddd-text` or `ddd text`, or whose code differs
    /// from the reply's first line.
    #[error("not a reply line: {0:?}")]
    Malformed(String),
}

/// Decodes replies from a stream of bytes.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    line: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
    /// Octets of the reply being read, its lines so far.
    bytes: usize,
}

impl ReplyDecoder {
    /// Returns true if and only if no reply is half read: what came so far
    /// was whole replies. (A client checks it before a TLS handshake: bytes
    /// after the `220` to STARTTLS would be an injection.)
    pub fn is_idle(&self) -> bool {
        self.line.is_empty() && self.lines.is_empty()
    }

    /// Reads `input`, appending each reply it completes to `out`.
    ///
    /// # Errors
    /// When the bytes break the grammar or the bounds: the stream can no
    /// longer be trusted, and the connection should be closed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<ServerReply>) -> Result<(), ReplyError> {
        let mut rest = input;
        while !rest.is_empty() {
            let (part, done) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.line.len() + part.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            self.line.extend_from_slice(part);
            rest = &rest[part.len() + usize::from(done)..];
            if done {
                let line = std::mem::take(&mut self.line);
                if let Some(reply) = self.line_done(&line)? {
                    out.push(reply);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<ServerReply>, ReplyError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        let malformed = || ReplyError::Malformed(text.chars().take(80).collect());
        if line.len() < 3
            || !line[..3].iter().all(u8::is_ascii_digit)
            || !(b'2'..=b'5').contains(&line[0])
        {
            return Err(malformed());
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(malformed()),
        };
        if self.code.is_some_and(|c| c != code) {
            return Err(malformed());
        }
        self.bytes += line.len();
        if self.lines.len() >= MAX_REPLY_LINES || self.bytes > MAX_REPLY_BYTES {
            return Err(ReplyError::TooManyLines);
        }
        self.code = Some(code);
        self.lines
            .push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
        if !last {
            return Ok(None);
        }
        self.code = None;
        self.bytes = 0;
        Ok(Some(ServerReply {
            code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<ServerReply>, ReplyError> {
        let mut d = ReplyDecoder::default();
        let mut out = Vec::new();
        d.decode(input, &mut out)?;
        Ok(out)
    }

    #[test]
    fn multi_line_replies_at_any_split() {
        let input = b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n354 go\r\n";
        let whole = all(input).expect("replies");
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].lines, ["mx", "PIPELINING", "SIZE 10"]);
        let mut d = ReplyDecoder::default();
        let mut bytewise = Vec::new();
        for b in input {
            d.decode(&[*b], &mut bytewise).expect("byte");
        }
        assert_eq!(bytewise, whole);
        assert_eq!(
            all(b"550 5.1.1 No such user\r\n").expect("reply")[0].enhanced(),
            Some("5.1.1")
        );
        assert_eq!(all(b"250 ok\r\n").expect("reply")[0].enhanced(), None);
    }

    #[test]
    fn hostile_replies_are_errors() {
        assert_eq!(all(&[b'2'; 5000]), Err(ReplyError::LineTooLong));
        assert!(matches!(
            all(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(all(b"hello\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(all(b"250x\r\n"), Err(ReplyError::Malformed(_))));
        assert_eq!(
            all(&b"250-x\r\n".repeat(1001)),
            Err(ReplyError::TooManyLines)
        );
        // Under the line count, over the octets: 100 lines of 1000.
        let line = format!("250-{}\r\n", "y".repeat(996));
        assert_eq!(
            all(line.repeat(100).as_bytes()),
            Err(ReplyError::TooManyLines)
        );
        // The count starts again with each reply.
        let mut d = ReplyDecoder::default();
        let mut out = Vec::new();
        for _ in 0..200 {
            d.decode(format!("250 {}\r\n", "z".repeat(1000)).as_bytes(), &mut out)
                .expect("whole replies of 1000 octets");
        }
        assert_eq!(out.len(), 200);
    }
}
