//! The session's milters (`[[milter]]`), in order, as Postfix's
//! `smtpd_milters` runs them: connected at CONNECT, told HELO, MAIL and
//! each RCPT as they come, and the message at the end of data (DATA,
//! the header fields, the body), each filter seeing what the ones before
//! it changed. A filter that cannot be reached or breaks the protocol gets
//! its `default_action`: `tempfail` (the default: every later command gets
//! `451 4.7.1`), `reject` (`550 5.7.1`), `accept` (as if it were not
//! there) or `quarantine` (as accept, and the message is held).
//!
//! HELO is sent just before MAIL (the hook for HELO cannot wait), and the
//! queue id macro `i` exists from DATA on, since Postel names a message at
//! the end of data; DATA itself is sent then too, with the rest.

use std::net::SocketAddr;
use std::time::Duration;

use postel_milter::{Address, Edit, MessageMacros, Milter, Verdict};
use postel_proto::{EnhancedCode, Reply};
use tracing::{info, warn};

/// What to do when a filter fails (Postfix's `milter_default_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    /// Refuse every later command of the session, temporarily.
    Tempfail,
    /// Refuse every later command of the session.
    Reject,
    /// Go on as if the filter were not there.
    Accept,
    /// Go on, and hold the message.
    Quarantine,
}

impl DefaultAction {
    /// The config name.
    pub(crate) fn parse(s: &str) -> Option<DefaultAction> {
        Some(match s {
            "tempfail" => DefaultAction::Tempfail,
            "reject" => DefaultAction::Reject,
            "accept" => DefaultAction::Accept,
            "quarantine" => DefaultAction::Quarantine,
            _ => return None,
        })
    }

    /// The config name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DefaultAction::Tempfail => "tempfail",
            DefaultAction::Reject => "reject",
            DefaultAction::Accept => "accept",
            DefaultAction::Quarantine => "quarantine",
        }
    }
}

/// One `[[milter]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MilterConfig {
    pub(crate) address: Address,
    pub(crate) timeout: Duration,
    pub(crate) default_action: DefaultAction,
}

/// Where one filter stands in a session.
enum State {
    /// Told every event.
    Active(Milter),
    /// Accepted this message: nothing more until the next MAIL.
    DoneForMessage(Milter),
    /// Accepted the connection, or failed with `accept`: never asked
    /// again in this session.
    Off,
}

/// An event of the envelope, with its macros.
enum Event<'a> {
    Helo(&'a [(&'a str, String)], &'a str),
    Mail(&'a [(&'a str, String)], &'a [String]),
    Rcpt(&'a [(&'a str, String)], &'a [String]),
}

/// What the session knows when it asks the filters.
pub(crate) struct SessionFacts<'a> {
    pub(crate) id: u64,
    pub(crate) hostname: &'a str,
    pub(crate) version: &'a str,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: Option<&'a str>,
    pub(crate) user: Option<&'a str>,
    /// The SASL mechanism the user logged in with.
    pub(crate) mechanism: Option<&'a str>,
    /// The client's forward-confirmed name and its PTR name, or `unknown`.
    pub(crate) client_name: &'a str,
    pub(crate) client_ptr: &'a str,
}

/// What the filters decided about a message at its end.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Thrown away (the client is told it was taken).
    pub(crate) discard: bool,
    /// Hold it, with the reasons.
    pub(crate) quarantine: Vec<String>,
    /// The envelope changes: sender, added and removed recipients.
    pub(crate) envelope: Vec<Edit>,
}

/// The session's filters.
#[derive(Default)]
pub(crate) struct Filters {
    configs: Vec<MilterConfig>,
    states: Vec<State>,
    /// A filter failed with `tempfail` or `reject`: every command gets
    /// this.
    blocked: Option<Reply>,
    /// A filter failed with `quarantine`: every message is held.
    quarantine_all: bool,
    /// The last HELO name, not yet told.
    helo: Option<String>,
    /// The filters were told MAIL and not yet the end of that message: if
    /// another MAIL comes first (after RSET, a refusal), they are told to
    /// abort it.
    in_message: bool,
    /// A filter discarded the message at MAIL or RCPT.
    discard: bool,
}

impl Filters {
    pub(crate) fn new(configs: Vec<MilterConfig>) -> Filters {
        Filters {
            configs,
            states: Vec::new(),
            blocked: None,
            quarantine_all: false,
            helo: None,
            in_message: false,
            discard: false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Whether the filters have anything to do with this message's
    /// content: one still wants it, or a decision is pending. When not, a
    /// large message stays in its spool file.
    pub(crate) fn want_content(&self) -> bool {
        self.blocked.is_some()
            || self.discard
            || self.quarantine_all
            || self.states.iter().any(|s| matches!(s, State::Active(_)))
    }

    /// Filter `i` failed: its default action.
    fn failed(&mut self, i: usize, session: u64, e: &postel_milter::Error) {
        let c = &self.configs[i];
        warn!(session, milter = %c.address, error = %e, action = c.default_action.name(), "milter failed: its default action applies");
        self.states[i] = State::Off;
        match c.default_action {
            DefaultAction::Tempfail => {
                self.blocked.get_or_insert_with(|| {
                    Reply::new(
                        451,
                        Some(EnhancedCode(4, 7, 1)),
                        "Service unavailable - try again later",
                    )
                });
            }
            DefaultAction::Reject => {
                self.blocked = Some(Reply::new(
                    550,
                    Some(EnhancedCode(5, 7, 1)),
                    "Command rejected",
                ));
            }
            DefaultAction::Accept => {}
            DefaultAction::Quarantine => self.quarantine_all = true,
        }
    }

    /// Opens every filter and tells it of the connection. A refusal
    /// refuses the client (as a greeting: `421` or `554`).
    pub(crate) async fn connect(&mut self, f: &SessionFacts<'_>) -> Result<(), Reply> {
        // An IPv4 client on a dual-stack listener is shown as IPv4.
        let plain = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
            _ => a,
        };
        let (peer, local) = (plain(f.peer), plain(f.local));
        let macros = vec![
            ("j", f.hostname.to_owned()),
            ("{daemon_name}", "postel".to_owned()),
            ("{daemon_addr}", local.ip().to_string()),
            ("v", format!("Postel {}", f.version)),
            ("_", format!("{} [{}]", f.client_name, peer.ip())),
            ("{client_addr}", peer.ip().to_string()),
            ("{client_port}", peer.port().to_string()),
            ("{client_name}", f.client_name.to_owned()),
            ("{client_ptr}", f.client_ptr.to_owned()),
        ];
        // The verified name; with none, the address in brackets, as
        // Sendmail and Postfix send it.
        let hostname = if f.client_name == "unknown" {
            format!("[{}]", peer.ip())
        } else {
            f.client_name.to_owned()
        };
        for i in 0..self.configs.len() {
            let c = self.configs[i].clone();
            self.states.push(State::Off);
            let opened = match Milter::open(&c.address, c.timeout).await {
                Ok(mut m) => match m.connect(&macros, &hostname, Some(peer)).await {
                    Ok(v) => Ok((m, v)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match opened {
                Ok((m, Verdict::Continue | Verdict::Discard)) => self.states[i] = State::Active(m),
                Ok((_, Verdict::Accept)) => {}
                Ok((_, Verdict::Reject(r))) => {
                    info!(session = f.id, milter = %c.address, code = r.code, "client refused by a milter");
                    let code = if r.code < 500 { 421 } else { 554 };
                    return Err(Reply::multi(code, r.enhanced, r.lines));
                }
                Err(e) => self.failed(i, f.id, &e),
            }
        }
        Ok(())
    }

    /// The client's HELO or EHLO name, told before the next MAIL.
    pub(crate) fn helo(&mut self, name: &str) {
        if !self.is_empty() {
            self.helo = Some(name.to_owned());
        }
    }

    /// Sends one event to every filter that wants it, in order: the first
    /// refusal wins.
    async fn each(&mut self, session: u64, event: Event<'_>) -> Result<(), Reply> {
        for i in 0..self.states.len() {
            let State::Active(m) = &mut self.states[i] else {
                continue;
            };
            let answer = match &event {
                Event::Helo(macros, name) => m.helo(macros, name).await,
                Event::Mail(macros, args) => m.mail(macros, args).await,
                Event::Rcpt(macros, args) => m.rcpt(macros, args).await,
            };
            let at_helo = matches!(event, Event::Helo(..));
            match answer {
                Ok(Verdict::Continue) => {}
                // At HELO, accept is for the whole connection, and discard
                // means nothing (as Postfix).
                Ok(Verdict::Accept) if at_helo => self.states[i] = State::Off,
                Ok(Verdict::Discard) if at_helo => {}
                Ok(Verdict::Accept) => {
                    let State::Active(m) = std::mem::replace(&mut self.states[i], State::Off)
                    else {
                        continue;
                    };
                    self.states[i] = State::DoneForMessage(m);
                }
                Ok(Verdict::Discard) => self.discard = true,
                Ok(Verdict::Reject(r)) => {
                    info!(session, milter = %self.configs[i].address, code = r.code, "refused by a milter");
                    return Err(r);
                }
                Err(e) => self.failed(i, session, &e),
            }
        }
        match &self.blocked {
            Some(r) => Err(r.clone()),
            None => Ok(()),
        }
    }

    /// MAIL: the pending abort and HELO first, then the sender.
    pub(crate) async fn mail(
        &mut self,
        f: &SessionFacts<'_>,
        from: &str,
        params: &[String],
    ) -> Result<(), Reply> {
        if self.is_empty() {
            return Ok(());
        }
        if let Some(r) = &self.blocked {
            return Err(r.clone());
        }
        self.discard = false;
        for i in 0..self.states.len() {
            let state = std::mem::replace(&mut self.states[i], State::Off);
            self.states[i] = match state {
                State::DoneForMessage(m) => State::Active(m),
                s => s,
            };
            if self.in_message
                && let State::Active(m) = &mut self.states[i]
                && let Err(e) = m.abort().await
            {
                self.failed(i, f.id, &e);
            }
        }
        self.in_message = false;
        if let Some(name) = self.helo.take() {
            let mut macros = Vec::new();
            if let Some((version, cipher)) = f.tls.and_then(|t| t.split_once(' ')) {
                macros.push(("{tls_version}", version.to_owned()));
                macros.push(("{cipher}", cipher.to_owned()));
            }
            // A refusal at HELO holds for the rest of the session.
            if let Err(r) = self.each(f.id, Event::Helo(&macros, &name)).await {
                self.blocked = Some(r.clone());
                return Err(r);
            }
        }
        let mut macros = vec![("{mail_addr}", from.to_owned())];
        if let Some(user) = f.user {
            if let Some(mechanism) = f.mechanism {
                macros.push(("{auth_type}", mechanism.to_owned()));
            }
            macros.push(("{auth_authen}", user.to_owned()));
        }
        let mut args = vec![format!("<{from}>")];
        args.extend(params.iter().cloned());
        self.in_message = true;
        self.each(f.id, Event::Mail(&macros, &args)).await
    }

    /// RCPT, for a recipient Postel accepted.
    pub(crate) async fn rcpt(
        &mut self,
        session: u64,
        to: &str,
        params: &[String],
    ) -> Result<(), Reply> {
        if self.is_empty() {
            return Ok(());
        }
        let macros = vec![
            ("{rcpt_addr}", to.to_owned()),
            (
                "{rcpt_host}",
                to.rsplit_once('@').map_or("", |(_, d)| d).to_owned(),
            ),
            ("{rcpt_mailer}", "smtp".to_owned()),
        ];
        let mut args = vec![format!("<{to}>")];
        args.extend(params.iter().cloned());
        self.each(session, Event::Rcpt(&macros, &args)).await
    }

    /// The message, named `id`: each filter in turn sees it as the ones
    /// before it left it. Returns the content as changed, and what else
    /// was decided; or the refusal.
    pub(crate) async fn message(
        &mut self,
        session: u64,
        id: &str,
        content: Vec<u8>,
    ) -> Result<(Vec<u8>, Outcome), Reply> {
        let mut out = Outcome {
            discard: self.discard,
            quarantine: if self.quarantine_all {
                vec!["a milter failed".to_owned()]
            } else {
                Vec::new()
            },
            envelope: Vec::new(),
        };
        if self.is_empty() {
            return Ok((content, out));
        }
        if let Some(r) = &self.blocked {
            return Err(r.clone());
        }
        let with_id = [("i", id.to_owned())];
        let macros = MessageMacros {
            data: &with_id,
            eoh: &with_id,
            eom: &with_id,
        };
        let mut parsed = postel_milter::Parsed::parse(&content);
        let mut changed = false;
        for i in 0..self.states.len() {
            let State::Active(m) = &mut self.states[i] else {
                continue;
            };
            match m.message(&macros, &parsed.headers(), &parsed.body).await {
                Ok((verdict, edits)) => {
                    let refused = parsed.apply(&edits);
                    if refused > 0 {
                        warn!(session, milter = %self.configs[i].address, refused, "unsafe header changes from a milter were ignored");
                    }
                    changed |= edits.iter().any(|e| {
                        matches!(
                            e,
                            Edit::AddHeader(..)
                                | Edit::InsertHeader(..)
                                | Edit::ChangeHeader(..)
                                | Edit::ReplaceBody(_)
                        )
                    });
                    for e in edits {
                        match e {
                            Edit::Quarantine(reason) => out.quarantine.push(reason),
                            e @ (Edit::ChangeFrom(..)
                            | Edit::AddRecipient(..)
                            | Edit::DeleteRecipient(_)) => out.envelope.push(e),
                            _ => {}
                        }
                    }
                    match verdict {
                        Verdict::Continue | Verdict::Accept => {}
                        Verdict::Discard => {
                            out.discard = true;
                            // The filters after it never see the message:
                            // they are told to abort it at the next MAIL.
                            return Ok((content, out));
                        }
                        Verdict::Reject(r) => {
                            info!(session, milter = %self.configs[i].address, code = r.code, "message refused by a milter");
                            return Err(r);
                        }
                    }
                }
                Err(e) => {
                    self.failed(i, session, &e);
                    if let Some(r) = &self.blocked {
                        return Err(r.clone());
                    }
                    if self.quarantine_all {
                        out.quarantine.push("a milter failed".to_owned());
                    }
                }
            }
        }
        // The message is over for the filters: the next MAIL starts anew.
        self.in_message = false;
        let content = if changed { parsed.to_bytes() } else { content };
        Ok((content, out))
    }
}
