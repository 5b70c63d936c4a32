//! The effective configuration, written back as a config file that would
//! produce it (`postel config check` prints it).

use postel_proto::BareLinePolicy;
use postel_server::{ListenerKind, ListenerSettings};

use super::*;

impl Config {
    /// The listeners of one kind, as a config section.
    fn section(&self, kind: ListenerKind) -> ListenSection {
        let mine: Vec<_> = self
            .listeners
            .iter()
            .filter(|(_, s)| s.kind == kind)
            .collect();
        let first = mine
            .first()
            .map_or(ListenerSettings::for_kind(kind), |(_, s)| *s);
        ListenSection {
            listen: Some(mine.iter().map(|(a, _)| a.to_string()).collect()),
            auth: Some(first.auth),
            require_tls: Some(first.auth_requires_tls),
        }
    }

    /// The effective configuration, as a config file that would produce it.
    pub(crate) fn to_file(&self) -> FileConfig {
        let l = &self.limits;
        FileConfig {
            hostname: Some(l.hostname.clone()),
            data_dir: Some(self.data_dir.clone()),
            smtp: self.section(ListenerKind::Smtp),
            submission: self.section(ListenerKind::Submission),
            smtps: self.section(ListenerKind::Smtps),
            tls: match &self.tls {
                TlsMode::Off => TlsSection {
                    self_signed: Some(false),
                    ..TlsSection::default()
                },
                TlsMode::SelfSigned => TlsSection {
                    self_signed: Some(true),
                    ..TlsSection::default()
                },
                TlsMode::Files(f) => TlsSection {
                    cert: Some(f.cert.clone()),
                    key: Some(f.key.clone()),
                    self_signed: None,
                    ca_file: None,
                },
            },
            limits: LimitsSection {
                max_message_size: Some(l.max_message_size),
                max_recipients: Some(l.max_recipients),
                max_errors: Some(l.max_errors),
                max_connections: Some(self.max_connections),
                max_connections_per_ip: Some(self.max_connections_per_ip),
                exempt_loopback: Some(self.exempt_loopback),
                command_timeout: Some(l.command_timeout.as_secs()),
                data_timeout: Some(l.data_timeout.as_secs()),
                greet_wait_ms: Some(self.greet_wait.as_millis() as u64),
                min_data_rate: Some(l.min_data_rate),
                max_mime_depth: Some(l.mime.max_depth),
                max_header_lines: Some(l.mime.max_header_lines),
                max_header_bytes: Some(l.mime.max_header_bytes),
                soft_refused_recipients: Some(l.soft_refused_recipients),
                max_refused_recipients: Some(l.max_refused_recipients),
                refused_recipient_delay_ms: Some(l.refused_recipient_delay.as_millis() as u64),
                min_free_disk_mb: Some(self.min_free_disk >> 20),
                rate: screening::effective_rate(&self.rate_limits),
            },
            policy: PolicySection {
                domains: Some(self.domains.iter().cloned().collect()),
                mailboxes: Some(
                    self.mailboxes
                        .iter()
                        .map(|(d, m)| (d.clone(), m.iter().cloned().collect()))
                        .collect(),
                ),
                dnsbl_threshold: Some(self.dnsbl_threshold),
                policy_services: None,
                policy_timeout: None,
                bare_line_endings: Some(
                    match l.bare_line_endings {
                        BareLinePolicy::Reject => "reject",
                        BareLinePolicy::Normalize => "normalize",
                    }
                    .to_owned(),
                ),
            },
            web: WebSection {
                listen: self.web.as_ref().map(|w| w.addr.to_string()),
                // Never print the secret.
                token: self
                    .web
                    .as_ref()
                    .and_then(|w| w.token.as_ref())
                    .map(|_| "(set)".to_owned()),
                max_connections: self.web.as_ref().map(|w| w.limits.max_connections),
                max_connections_per_ip: self.web.as_ref().map(|w| w.limits.max_connections_per_ip),
                header_timeout: self.web.as_ref().map(|w| w.limits.header_timeout.as_secs()),
                max_streams: self.web.as_ref().map(|w| w.limits.max_streams),
                release_targets: self.web.as_ref().map(|w| w.release_targets.clone()),
                tls: self.web.as_ref().map(|w| w.tls),
            },
            store: super::store::effective(self.store.as_ref()),
            retention: RetentionSection {
                max_messages: self.max_messages,
                max_age_days: self.max_age.map(|d| d.as_secs() / 86_400),
            },
            delivery: delivery::DeliverySection {
                forward: (!self.forward.is_empty()).then(|| self.forward.clone()),
                ..delivery::effective(self.delivery.as_ref())
            },
            dns: delivery::DnsSection {
                nameservers: Some(self.nameservers.iter().map(ToString::to_string).collect()),
                trust_anchor: self.delivery.as_ref().and_then(|d| d.trust_anchor.clone()),
            },
            local_delivery: self
                .delivery
                .as_ref()
                .map(|d| integrations::effective_local_delivery(&d.local_routes))
                .unwrap_or_default(),
            policy_service: integrations::effective_policy_services(&self.policy_services),
            dnsbl: screening::effective_dnsbl(&self.dnsbl),
            milter: integrations::effective_milters(&self.milters),
            webhook: integrations::effective_webhooks(&self.webhooks),
            verify: authentication::effective_verify(&self.verify),
            dkim: self.dkim.clone(),
            arc: self.arc.clone(),
        }
    }
}
