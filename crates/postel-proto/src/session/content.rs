//! The content: DATA and BDAT (RFC 5321 4.1.1.4, RFC 3030), the end of
//! content and its checks (size, bare line endings, MIME structure).

use super::*;

impl Session {
    pub(super) fn ready_for_content(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.recipients > 0)
    }

    pub(super) fn handle_data(&mut self, args: &[u8]) {
        if !args.is_empty() {
            return self.error(reply::syntax("DATA"));
        }
        if self.tx.as_ref().is_some_and(|t| t.bdat.is_some()) {
            return self.error(reply::data_after_bdat());
        }
        if !self.ready_for_content() {
            return self.error(reply::need_rcpt());
        }
        self.input = Input::Data(DataDecoder::new(
            self.limits.max_message_size,
            self.limits.bare_line_endings,
        ));
        self.mime = Some(MimeScanner::new(self.limits.mime));
        self.send(reply::start_data());
    }

    pub(super) fn handle_bdat(&mut self, args: &[u8]) {
        let Some((size, last)) = command::parse_bdat(args) else {
            // The octet stream can no longer be framed: close (contract).
            self.send(reply::bdat_syntax());
            self.close();
            return;
        };
        let keep = self.ready_for_content();
        if keep && let Some(tx) = self.tx.as_mut() {
            tx.bdat.get_or_insert_with(|| {
                self.mime = Some(MimeScanner::new(self.limits.mime));
                BdatDecoder::new(self.limits.max_message_size, self.limits.bare_line_endings)
            });
        }
        if size == 0 {
            self.end_of_chunk(0, last, keep);
        } else {
            self.input = Input::Bdat {
                size,
                remaining: size,
                last,
                keep,
            };
        }
    }

    pub(super) fn end_of_chunk(&mut self, size: u64, last: bool, keep: bool) {
        if !keep {
            return self.error(reply::need_rcpt());
        }
        let Some(dec) = self.tx.as_mut().and_then(|t| t.bdat.as_mut()) else {
            return self.error(reply::need_rcpt());
        };
        if last {
            let before = self.body.len();
            let outcome = dec.finish(&mut self.body);
            if let Some(m) = self.mime.as_mut() {
                m.feed(&self.body[before..]);
            }
            return self.end_of_content(outcome);
        }
        if dec.too_big() {
            self.reset_transaction();
            return self.send(reply::too_big());
        }
        self.send(reply::chunk_received(size));
    }

    pub(super) fn end_of_content(&mut self, outcome: Outcome) {
        let structure = self.mime.take().and_then(|mut m| {
            m.finish();
            m.problem()
        });
        match outcome {
            // Size and line endings are checked first: they are the
            // framing; the structure is a check of what was framed.
            Outcome::Complete if structure.is_some() => {
                self.reset_transaction();
                self.send(match structure {
                    Some(MimeProblem::TooDeep) => reply::mime_too_deep(),
                    _ => reply::header_too_big(),
                });
            }
            Outcome::Complete => {
                if !self.body.is_empty() {
                    self.push_body_event();
                }
                self.pending = Some(Pending::DataEnd);
                self.events.push_back(Event::DataEnd);
                // The transaction is over whatever the verdict (RFC 5321 4.1.1.4).
                self.tx = None;
            }
            Outcome::TooBig => {
                self.reset_transaction();
                self.send(reply::too_big());
            }
            Outcome::BareLineEnding => {
                self.reset_transaction();
                self.send(reply::bare_line_ending());
            }
        }
    }
}
