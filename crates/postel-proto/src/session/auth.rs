//! AUTH (RFC 4954) with PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC
//! 7677): the exchange of lines, and what is handed to the driver to
//! check. For SCRAM the driver makes the server's messages (it holds the
//! keys) and checks the proof; the session parses and sequences.

use super::*;

/// Where an AUTH exchange stands, between its lines.
#[derive(Debug)]
pub(super) enum SaslStep {
    /// PLAIN without an initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password.
    LoginPassword(String),
    /// SCRAM without an initial response: waiting for the client's first
    /// message.
    ScramFirst,
    /// SCRAM: the server's first message was sent; waiting for the
    /// client's final one.
    ScramFinal,
    /// SCRAM: the server's signature was sent; waiting for the client's
    /// empty answer before `235` (RFC 4954 has no data on success).
    ScramAck,
}

/// A SCRAM exchange between its messages: what the AuthMessage is made of.
#[derive(Debug)]
pub(super) struct ScramExchange {
    first: scram::ClientFirst,
    /// The server's first message, once the driver made it.
    server_first: Option<String>,
}

impl Session {
    /// AUTH is listed in EHLO: offered here, and TLS is up if it must be.
    pub(super) fn auth_advertised(&self) -> bool {
        self.conn.auth_offered && (self.conn.tls_active || !self.conn.auth_requires_tls)
    }

    pub(super) fn handle_auth(&mut self, args: &[u8]) {
        if !self.conn.auth_offered {
            return self.error(reply::not_implemented());
        }
        if self.helo.is_none() {
            return self.error(reply::send_helo_first());
        }
        if !self.auth_advertised() {
            return self.error(reply::tls_required_for_auth());
        }
        if self.authenticated.is_some() {
            return self.error(reply::already_authenticated());
        }
        if self.tx.is_some() {
            return self.error(reply::auth_in_transaction());
        }
        self.scram = None;
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(mech), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.error(reply::syntax("AUTH mechanism [initial-response]"));
        };
        let Some(mechanism) = Mechanism::parse(mech) else {
            return self.error(reply::unknown_mechanism());
        };
        let step = match mechanism {
            Mechanism::Plain => SaslStep::Plain,
            Mechanism::Login => SaslStep::LoginUser,
            Mechanism::ScramSha256 => SaslStep::ScramFirst,
        };
        match initial {
            None if mechanism == Mechanism::Login => self.challenge(step, "Username:"),
            None => self.challenge(step, ""),
            Some(line) => self.handle_sasl_line(step, line),
        }
    }

    pub(super) fn challenge(&mut self, step: SaslStep, text: &str) {
        self.sasl = Some(step);
        self.send(reply::sasl_challenge(&sasl::challenge(text)));
    }

    /// One client line of an AUTH exchange (RFC 4954 section 4).
    pub(super) fn handle_sasl_line(&mut self, step: SaslStep, line: &[u8]) {
        if line.len() + 2 > MAX_SASL_LINE {
            return self.error(reply::line_too_long());
        }
        let text = match sasl::decode_line(line) {
            Ok(t) => t,
            Err(e) => {
                self.scram = None;
                return self.error(match e {
                    SaslError::Cancelled => reply::auth_cancelled(),
                    SaslError::Decode => reply::cannot_decode(),
                });
            }
        };
        let (mechanism, authzid, username, password) = match step {
            SaslStep::Plain => match sasl::parse_plain(&text) {
                Ok((z, u, p)) => (Mechanism::Plain, z, u, p),
                Err(_) => return self.error(reply::cannot_decode()),
            },
            SaslStep::LoginUser => {
                return self.challenge(SaslStep::LoginPassword(text), "Password:");
            }
            SaslStep::LoginPassword(user) => (Mechanism::Login, String::new(), user, Secret(text)),
            SaslStep::ScramFirst => return self.scram_first(&text),
            SaslStep::ScramFinal => return self.scram_final(&text),
            SaslStep::ScramAck => return self.scram_ack(&text),
        };
        self.pending_user.clone_from(&username);
        self.pending = Some(Pending::Auth);
        self.events.push_back(Event::Auth {
            mechanism,
            authzid,
            username,
            password,
        });
    }

    fn scram_first(&mut self, text: &str) {
        let Ok(first) = scram::parse_client_first(text) else {
            return self.error(reply::cannot_decode());
        };
        self.pending_user.clone_from(&first.username);
        self.pending = Some(Pending::ScramFirst);
        self.events.push_back(Event::ScramFirst {
            authzid: first.authzid.clone(),
            username: first.username.clone(),
            nonce: first.nonce.clone(),
        });
        self.scram = Some(Box::new(ScramExchange {
            first,
            server_first: None,
        }));
    }

    fn scram_final(&mut self, text: &str) {
        let exchange = self.scram.as_ref().and_then(|x| {
            let server_first = x.server_first.as_deref()?;
            let last = scram::parse_client_final(text, &x.first.gs2_header, server_first).ok()?;
            Some((
                scram::auth_message(&x.first, server_first, &last),
                last.proof,
            ))
        });
        let Some((auth_message, proof)) = exchange else {
            self.scram = None;
            self.pending_user.clear();
            return self.error(reply::cannot_decode());
        };
        self.pending = Some(Pending::ScramFinal);
        self.events.push_back(Event::ScramFinal {
            auth_message,
            proof,
        });
    }

    /// The client's answer to the server's signature: empty, and then it
    /// is in.
    fn scram_ack(&mut self, text: &str) {
        self.scram = None;
        if !text.is_empty() {
            self.pending_user.clear();
            return self.error(reply::cannot_decode());
        }
        self.authenticated = Some(std::mem::take(&mut self.pending_user));
        self.events.push_back(Event::ScramDone);
        self.send(reply::auth_ok());
    }

    /// The driver's challenge for a SCRAM exchange: its first message
    /// (answering [`Event::ScramFirst`]), then its signature (answering
    /// [`Event::ScramFinal`]).
    pub(super) fn scram_challenge(&mut self, after_first: bool, text: String) {
        let Some(exchange) = self.scram.as_mut() else {
            return self.send(reply::local_error());
        };
        let step = if after_first {
            exchange.server_first = Some(text.clone());
            SaslStep::ScramFinal
        } else {
            SaslStep::ScramAck
        };
        self.challenge(step, &text);
    }
}
