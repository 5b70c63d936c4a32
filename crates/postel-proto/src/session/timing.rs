//! Timeouts, deadlines and the tarpit: what the session asks the driver to
//! wait for, computed from `now` as the driver passes it in. The session
//! reads no clock.

use super::*;

impl Session {
    /// The timeout that applies to the next read (RFC 5321 4.5.3.2).
    pub fn read_timeout(&self) -> Duration {
        match self.input {
            Input::Data(_) | Input::Bdat { .. } => self.limits.data_timeout,
            _ => self.limits.command_timeout,
        }
    }

    /// How long a write of replies may take before the client is given up:
    /// the command timeout (RFC 5321 4.5.3.2.7).
    pub fn command_timeout(&self) -> Duration {
        self.limits.command_timeout
    }

    /// The client was silent past [`Session::read_timeout`]: `421` and close.
    pub fn on_timeout(&mut self) {
        self.close_with(reply::timeout(&self.limits.hostname));
    }

    /// How long to wait before sending the replies queued now (a tarpit
    /// for refused recipients past the soft limit), and starts over.
    /// Zero: send at once.
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// Tells the session that `read` octets were read at `now` and fed.
    /// It keeps the deadline of what is being read: a command line must be
    /// complete within the command timeout of its first octet (RFC 5321
    /// 4.5.3.2 times each command, not each read), and content must keep
    /// up `min_data_rate` after a first `data_timeout`.
    pub fn after_read(&mut self, now: Instant, read: usize) {
        let in_content = matches!(self.input, Input::Data(_) | Input::Bdat { .. })
            || matches!(self.input, Input::Command)
                && self.tx.as_ref().is_some_and(|t| t.bdat.is_some());
        let in_command = matches!(self.input, Input::DiscardLine)
            || matches!(self.input, Input::Command) && !self.line.is_empty();
        // A line completed in this read: the line now in hand (if any) is
        // a new one, with a deadline of its own.
        let new_line = std::mem::take(&mut self.line_ended);
        self.deadline = match self.deadline {
            _ if self.pending.is_some() => None,
            Some((Phase::Content, at)) if in_content => {
                let rate = self.limits.min_data_rate.max(1);
                let earned = at + Duration::from_secs_f64(read as f64 / rate as f64);
                // Credit is not banked: fast octets now do not pay for a
                // crawl later, past one data timeout from now.
                Some((Phase::Content, earned.min(now + self.limits.data_timeout)))
            }
            _ if in_content => Some((Phase::Content, now + self.limits.data_timeout)),
            Some((Phase::Command, at)) if in_command && !new_line => Some((Phase::Command, at)),
            _ if in_command => Some((Phase::Command, now + self.limits.command_timeout)),
            _ => None,
        };
    }

    /// When what is being read must be complete, if anything is: past it,
    /// the driver calls [`Session::on_timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|(_, at)| at)
    }
}
