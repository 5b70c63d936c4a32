//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN: the exchange of
//! lines, and the credentials handed to the driver to check.

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
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(mech), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.error(reply::syntax("AUTH mechanism [initial-response]"));
        };
        let Some(mechanism) = Mechanism::parse(mech) else {
            return self.error(reply::unknown_mechanism());
        };
        match (mechanism, initial) {
            (Mechanism::Plain, None) => self.challenge(SaslStep::Plain, ""),
            (Mechanism::Login, None) => self.challenge(SaslStep::LoginUser, "Username:"),
            (_, Some(line)) => {
                let step = if mechanism == Mechanism::Plain {
                    SaslStep::Plain
                } else {
                    SaslStep::LoginUser
                };
                self.handle_sasl_line(step, line);
            }
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
            Err(SaslError::Cancelled) => return self.error(reply::auth_cancelled()),
            Err(SaslError::Decode) => return self.error(reply::cannot_decode()),
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
}
