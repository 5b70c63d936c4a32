//! The envelope: MAIL and RCPT (RFC 5321 4.1.1.2, 4.1.1.3), their
//! parameters, and the tarpit for refused recipients.

use super::*;

impl Session {
    pub(super) fn handle_mail(&mut self, args: &[u8]) {
        if self.helo.is_none() {
            return self.error(reply::send_helo_first());
        }
        if self.tx.is_some() {
            return self.error(reply::nested_mail());
        }
        if self.conn.auth_required && self.authenticated.is_none() {
            return self.error(reply::auth_required());
        }
        match command::parse_mail(args) {
            Ok((from, params)) => {
                if params.auth && !self.auth_advertised() {
                    // RFC 4954 section 5: AUTH= only where AUTH was offered.
                    return self.error(reply::unsupported_parameter("AUTH"));
                }
                if params.requiretls && !self.conn.tls_active {
                    // RFC 8689 section 4: REQUIRETLS is offered only over
                    // TLS, and a message cannot ask for it without.
                    return self.error(reply::unsupported_parameter("REQUIRETLS"));
                }
                if params
                    .size
                    .is_some_and(|n| n > self.limits.max_message_size)
                {
                    return self.error(reply::too_big());
                }
                self.pending_utf8 = params.smtputf8;
                self.pending = Some(Pending::Mail);
                self.events.push_back(Event::Mail { from, params });
            }
            Err(e) => self.error(path_error(e, reply::mail_syntax, reply::bad_sender_syntax)),
        }
    }

    pub(super) fn handle_rcpt(&mut self, args: &[u8]) {
        let Some(tx) = self.tx.as_ref() else {
            return self.error(reply::need_mail());
        };
        if tx.bdat.is_some() {
            // RFC 3030: recipients come before the first BDAT.
            return self.error(reply::rcpt_after_bdat());
        }
        let (utf8, count) = (tx.smtputf8, tx.recipients);
        match command::parse_rcpt(args, utf8) {
            Ok(_) if count >= self.limits.max_recipients => {
                // A 4xx the client is expected to act on (RFC 5321 4.5.3.1.10),
                // not a mistake: not counted as an error.
                self.send(reply::too_many_recipients());
            }
            Ok((to, params)) => {
                self.pending = Some(Pending::Rcpt);
                self.events.push_back(Event::Rcpt { to, params });
            }
            Err(e) => self.error(path_error(
                e,
                reply::rcpt_syntax,
                reply::bad_recipient_syntax,
            )),
        }
    }

    /// A recipient refused by policy: not a client mistake (it does not
    /// count toward `max_errors`), but guessing mailboxes is slowed past the
    /// soft limit and cut off at the hard one.
    pub(super) fn refuse_recipient(&mut self, r: Reply) {
        self.send(r);
        self.refused_recipients = self.refused_recipients.saturating_add(1);
        if self.refused_recipients >= self.limits.max_refused_recipients {
            self.close_with(reply::too_many_refused_recipients(&self.limits.hostname));
        } else if self.refused_recipients > self.limits.soft_refused_recipients {
            self.delay += self.limits.refused_recipient_delay;
        }
    }
}
