//! Config files good and bad, and the effective config round trip.

use super::*;
use postel_server::ListenerKind;

fn parse(text: &str) -> anyhow::Result<Config> {
    let file: FileConfig = toml::from_str(text)?;
    Config::build(file, Overrides::default())
}

#[test]
fn zero_config_is_loopback_any_domain() {
    let c = Config::build(FileConfig::default(), Overrides::default()).expect("valid");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(
        c.listeners[0].0,
        DEFAULT_SMTP.parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(c.listeners[0].1.kind, ListenerKind::Smtp);
    assert!(
        matches!(c.tls, TlsMode::Off),
        "a built config without zero_config has no TLS"
    );
    assert!(c.domains.is_empty());
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.limits.max_recipients, 100);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let err = parse(
        r#"
        hostname = "bad host"
        [smtp]
        listen = ["nope"]
        [limits]
        max_recipients = 5
        [policy]
        domains = ["-x-"]
        bare_line_endings = "fix"
        mailboxes = { "other.test" = ["a b"] }
        "#,
    )
    .expect_err("invalid")
    .to_string();
    for key in [
        "hostname:",
        "smtp.listen[0]:",
        "limits.max_recipients:",
        "policy.domains[0]:",
        "policy.bare_line_endings:",
        "policy.mailboxes.other.test:",
        "policy.mailboxes.other.test[0]:",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let err =
        toml::from_str::<FileConfig>("[limits]\nmax_recipient = 3\n").expect_err("unknown key");
    assert!(err.to_string().contains("max_recipient"), "{err}");
}

#[test]
fn overrides_win_over_the_file() {
    let file: FileConfig =
        toml::from_str("hostname = \"a.test\"\n[policy]\ndomains = [\"x.test\"]\n").expect("toml");
    let c = Config::build(
        file,
        Overrides {
            hostname: Some("b.test".into()),
            domains: vec!["Y.test".into()],
            smtp: vec!["127.0.0.1:0".into()],
            ..Overrides::default()
        },
    )
    .expect("valid");
    assert_eq!(c.limits.hostname, "b.test");
    assert_eq!(c.domains.iter().collect::<Vec<_>>(), vec!["y.test"]);
    assert_eq!(c.listeners.len(), 1);
}

#[test]
fn submission_needs_tls_and_always_auth() {
    let err = parse("[submission]\nlisten = [\"127.0.0.1:587\"]\nauth = false\n")
        .expect_err("invalid")
        .to_string();
    assert!(err.contains("submission.auth:"), "{err}");
    assert!(err.contains("submission: this listener needs TLS"), "{err}");
    let c = parse("[submission]\nlisten = [\"127.0.0.1:587\"]\n[smtps]\nlisten = [\"127.0.0.1:465\"]\n[tls]\nself_signed = true\n")
        .expect("valid");
    let kinds: Vec<_> = c
        .listeners
        .iter()
        .map(|(_, s)| (s.kind, s.implicit_tls, s.auth_required))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ListenerKind::Smtp, false, false),
            (ListenerKind::Submission, false, true),
            (ListenerKind::Smtps, true, true)
        ]
    );
    let err = parse("[tls]\ncert = \"/x.pem\"\n")
        .expect_err("half tls")
        .to_string();
    assert!(err.contains("tls: set both"), "{err}");
}

#[test]
fn zero_config_makes_tls_self_signed() {
    let c = Config::build(
        FileConfig::default(),
        Overrides {
            zero_config: true,
            ..Overrides::default()
        },
    )
    .expect("valid");
    assert!(matches!(c.tls, TlsMode::SelfSigned));
}

#[test]
fn effective_config_round_trips() {
    let c = parse("hostname = \"mx.test\"\n[policy]\ndomains = [\"a.test\"]\nmailboxes = { \"a.test\" = [\"Bob\"] }\n")
        .expect("valid");
    let text = toml::to_string(&c.to_file()).expect("serialize");
    let again = parse(&text).expect("reparse");
    assert_eq!(again.mailboxes, c.mailboxes);
    assert!(again.mailboxes["a.test"].contains("bob"));
    assert_eq!(again.limits.hostname, "mx.test");
}

#[test]
fn local_delivery_and_policy_service_tables_are_checked() {
    let base = "hostname = \"mx.here.test\"\n[policy]\ndomains = [\"here.test\"]\n[delivery]\nenabled = true\n";
    let c = parse(&format!(
        "{base}[[local_delivery]]\ndomains = [\"here.test\"]\nto = \"lmtp:127.0.0.1:24\"\n\
         [[local_delivery]]\ndomains = [\"web@here.test\"]\nto = \"store\"\n\
         [[policy_service]]\naddress = \"unix:/run/policy\"\nstage = \"end_of_data\"\ntimeout = \"3s\"\n\
         [[milter]]\naddress = \"inet:127.0.0.1:11332\"\ntimeout = 60\ndefault_action = \"accept\"\n\
         [[milter]]\naddress = \"unix:/run/opendkim.sock\"\n"
    ))
    .expect("valid");
    assert_eq!(c.milters.len(), 2);
    assert_eq!(c.milters[0].timeout, Duration::from_secs(60));
    assert_eq!(
        c.milters[0].default_action,
        crate::backend::DefaultAction::Accept
    );
    assert_eq!(
        c.milters[1].default_action,
        crate::backend::DefaultAction::Tempfail
    );
    let routes = &c.delivery.as_ref().expect("delivery").local_routes;
    assert!(routes.queued("alice@here.test").is_some());
    assert!(routes.queued("web@here.test").is_none());
    assert_eq!(c.policy_services.len(), 1);
    assert_eq!(c.policy_services[0].timeout, Duration::from_secs(3));
    // The effective config says the same, and reads back.
    let text = toml::to_string(&c.to_file()).expect("toml");
    assert!(
        text.contains("[[local_delivery]]") && text.contains("[[policy_service]]"),
        "{text}"
    );
    parse(&text).expect("the effective config is valid");

    let err = parse(&format!(
        "{base}[[local_delivery]]\ndomains = [\"other.test\", \"bad domain\"]\nto = \"maildir:relative\"\n\
         [[policy_service]]\naddress = \"nowhere\"\nstage = \"connect\"\n\
         [[milter]]\naddress = \"somewhere\"\n[[milter]]\naddress = \"127.0.0.1:1\"\ndefault_action = \"ignore\"\n"
    ))
    .expect_err("invalid")
    .to_string();
    for key in [
        "local_delivery[0].to:",
        "local_delivery[0].domains[0]:",
        "local_delivery[0].domains[1]:",
        "policy_service[0].address:",
        "milter[0].address:",
        "milter[1].default_action:",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    let err = parse(
        "[policy]\ndomains = [\"here.test\"]\n[[local_delivery]]\ndomains = [\"here.test\"]\nto = \"lmtp:127.0.0.1:24\"\n",
    )
    .expect_err("LMTP needs delivery")
    .to_string();
    assert!(err.contains("needs [delivery] enabled = true"), "{err}");
    let err = parse("[policy]\npolicy_services = [\"127.0.0.1:10023\"]\n")
        .expect_err("the old key")
        .to_string();
    assert!(err.contains("[[policy_service]]"), "{err}");
}

#[test]
fn rate_limits_and_dns_lists_are_checked() {
    let c = parse(
        "[limits.rate.client]\nmessages = 5\nwindow = \"10m\"\n[[dnsbl]]\nzone = \"zen.example\"\nweight = 3\nanswers = [\"127.0.0.2/31\", \"127.0.0.9\"]\n",
    )
    .expect("valid");
    let client = c.rate_limits.client.expect("client limit");
    assert_eq!(client.messages, Some(5));
    assert_eq!(client.window, Duration::from_secs(600));
    assert_eq!(c.dnsbl.len(), 1);
    assert_eq!(c.dnsbl[0].answers.len(), 2);
    let text = toml::to_string(&c.to_file()).expect("toml");
    let again = parse(&text).expect("the effective config is valid");
    assert_eq!(again.rate_limits, c.rate_limits);
    assert_eq!(again.dnsbl, c.dnsbl);

    let err = parse(
        "[policy]\ndnsbl_threshold = 0\n[limits.rate.client]\nmessages = 0\n[limits.rate.user]\nwindow = \"soon\"\n[limits.rate.sender_domain]\nwindow = \"1h\"\n[[dnsbl]]\nzone = \"not a zone\"\n[[dnsbl]]\nzone = \"ok.example\"\nanswers = [\"x\"]\n",
    )
    .expect_err("invalid")
    .to_string();
    for key in [
        "policy.dnsbl_threshold:",
        "limits.rate.client:",
        "limits.rate.user.window:",
        "limits.rate.sender_domain:",
        "dnsbl[0].zone:",
        "dnsbl[1].answers[0]:",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

#[test]
fn verify_and_dkim_are_checked() {
    let c = parse("hostname = \"mx.example.org\"\n").expect("valid");
    assert!(c.verify.enabled, "checking is on by default");
    assert!(
        !c.verify.reject_dmarc && !c.verify.reject_spf,
        "refusing is off"
    );
    assert_eq!(c.verify.authserv_id, "mx.example.org");
    assert!(
        !c.verify.checks("127.0.0.1".parse().expect("ip")),
        "loopback is ignored"
    );
    assert!(!c.verify.checks("::ffff:127.0.0.1".parse().expect("ip")));
    assert!(c.verify.checks("192.0.2.1".parse().expect("ip")));
    let e = parse(
        "[verify]\ntimeout = \"2m\"\nauthserv_id = \"not a name\"\nignore_networks = [\"10.0.0.0/33\"]\n\
         [[dkim]]\ndomain = \"example.org\"\nselector = \"a b\"\nkey = \"/nonexistent\"\n\
         [[dkim]]\ndomain = \"example.org\"\nselector = \"s1\"\nkey = \"/nonexistent/key.pem\"\n",
    )
    .expect_err("invalid");
    let text = e.to_string();
    for key in [
        "verify.timeout",
        "verify.authserv_id",
        "verify.ignore_networks[0]",
        "dkim[0].selector",
        "dkim[1].key",
    ] {
        assert!(text.contains(key), "no {key} in {text}");
    }
    // A key file that is there and good loads, and the effective config
    // keeps the table.
    let dir = std::env::temp_dir().join(format!("postel-cfg-dkim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = postel_auth::keys::ed25519().expect("key");
    let path = dir.join("k.pem");
    std::fs::write(&path, key.private_pem).expect("write");
    let c = parse(&format!(
        "[verify]\nenabled = false\n[[dkim]]\ndomain = \"example.org\"\nselector = \"s1\"\nkey = \"{}\"\n",
        path.display()
    ))
    .expect("valid");
    assert!(!c.verify.enabled);
    assert_eq!(c.dkim.len(), 1);
    let again = Config::build(c.to_file(), Overrides::default()).expect("round trip");
    assert_eq!(again.dkim.len(), 1);
    assert_eq!(again.verify, c.verify);
}
