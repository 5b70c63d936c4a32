//! The greeting commands and the service around them: EHLO/HELO and the
//! capabilities, HELP, and STARTTLS (RFC 5321 4.1.1.1, RFC 3207).

use super::*;

impl Session {
    pub(super) fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.limits.max_message_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.conn.starttls_available && !self.conn.tls_active {
            caps.push("STARTTLS".to_owned());
        }
        if self.auth_advertised() {
            caps.push(format!("AUTH PLAIN LOGIN {}", crate::scram::NAME));
        }
        caps.push("DSN".to_owned());
        // RFC 8689: only over TLS (a message that asks for it must have come
        // over TLS itself).
        if self.conn.tls_active {
            caps.push("REQUIRETLS".to_owned());
        }
        caps.push("HELP".to_owned());
        caps
    }

    pub(super) fn handle_helo(&mut self, verb: Verb, args: &[u8]) {
        let extended = verb == Verb::Ehlo;
        let Some(name) = command::parse_helo(args, extended) else {
            return self.error(reply::helo_syntax(verb.name()));
        };
        // RFC 5321 4.1.4: a second EHLO/HELO resets the transaction.
        self.reset_transaction();
        self.helo = Some(name);
        self.extended = extended;
        self.events.push_back(Event::Helo);
        let r = if extended {
            reply::ehlo(&self.limits.hostname, &self.capabilities())
        } else {
            reply::helo(&self.limits.hostname)
        };
        self.send(r);
    }

    pub(super) fn handle_help(&mut self, args: &[u8]) {
        if args.eq_ignore_ascii_case(b"STATUS")
            && (self.conn.trusted || self.authenticated.is_some())
        {
            self.pending = Some(Pending::Status);
            self.events.push_back(Event::Status);
            return;
        }
        let (verb, _) = Verb::split(args);
        let usage = match verb {
            Verb::Ehlo => "EHLO <hostname>: greet the server and list its extensions",
            Verb::Helo => "HELO <hostname>: greet the server (no extensions)",
            Verb::Mail => {
                "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]: start a message"
            }
            Verb::Rcpt => "RCPT TO:<address>: add a recipient (up to the recipient limit)",
            Verb::Data => "DATA: send the message, ended by a line with a single dot",
            Verb::Bdat => "BDAT <size> [LAST]: send the next <size> octets of the message",
            Verb::Rset => "RSET: abandon the current message",
            Verb::Noop => "NOOP: do nothing",
            Verb::Quit => "QUIT: end the session",
            Verb::Vrfy => "VRFY <address>: not answered; mail is accepted and delivery attempted",
            Verb::Help => "HELP [command]: this help",
            _ => "",
        };
        let mut lines = vec![format!(
            "Postel {} on {}",
            self.limits.version, self.limits.hostname
        )];
        if usage.is_empty() {
            lines.push(
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP".to_owned(),
            );
            lines.push("HELP <command> describes one command".to_owned());
        } else {
            lines.push(usage.to_owned());
        }
        lines.push("End of HELP info".to_owned());
        self.send(reply::help(lines));
    }

    pub(super) fn handle_starttls(&mut self, args: &[u8]) {
        if self.conn.tls_active {
            return self.error(reply::tls_already_active());
        }
        if !self.conn.starttls_available {
            return self.error(reply::starttls_unavailable());
        }
        if !args.is_empty() {
            return self.error(reply::syntax("STARTTLS"));
        }
        self.send(reply::ready_for_tls());
        self.line.clear();
        self.input = Input::TlsPending;
        self.events.push_back(Event::StartTls);
    }
}
