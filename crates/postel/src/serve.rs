//! `postel serve`: the store, policy, server, web side and delivery wired
//! together, with retention, and the shutdown on a signal.

use std::sync::Arc;

use anyhow::Context;
use postel_server::ServerConfig;
use postel_store::{AnyStore, SqliteStore, Users as _};
use tracing::info;

use crate::backend::{self, Inner, PostelBackend};
use crate::config::{Config, TlsMode, WebSettings};
use crate::tls::{self, Tls};
use postel_policy::recipients::Policy;
use postel_web::{Login, SessionCounts, Web};
use prometheus_client::registry::Registry;

pub(crate) fn serve(cfg: Config) -> anyhow::Result<()> {
    // Many idle sessions need many descriptors: take what the hard limit allows.
    let mut cfg = cfg;
    if let Ok(n) = rlimit::increase_nofile_limit(u64::MAX) {
        // Keep descriptors for the store, listeners and logs: a session
        // refused with 421 is better than a failed accept().
        let room = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(64)
            .max(1);
        // The web side's connections come out of the same budget, so a
        // flood of one cannot starve the other of descriptors. It gets at
        // most half of it.
        if let Some(w) = cfg.web.as_mut()
            && w.limits.max_connections > room / 2
        {
            tracing::warn!(
                configured = w.limits.max_connections,
                allowed = room / 2,
                "web max_connections lowered to fit the open-file limit"
            );
            w.limits.max_connections = (room / 2).max(1);
        }
        let room = room
            .saturating_sub(cfg.web.as_ref().map_or(0, |w| w.limits.max_connections))
            .max(1);
        if cfg.max_connections > room {
            tracing::warn!(
                configured = cfg.max_connections,
                allowed = room,
                "max_connections lowered to fit the open-file limit"
            );
            cfg.max_connections = room;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let store = runtime.block_on(open_store(&cfg))?;
    let result = runtime.block_on(async {
        let mut listeners = Vec::new();
        for (addr, settings) in &cfg.listeners {
            let tcp = bind(*addr).with_context(|| {
                format!("cannot listen on {addr}: is another server using it? (ports under 1024 need root or CAP_NET_BIND_SERVICE)")
            })?;
            info!(addr = %tcp.local_addr()?, kind = settings.kind.name(), "listening for SMTP");
            listeners.push(postel_server::Listener { tcp, settings: *settings });
        }
        let tls = match &cfg.tls {
            TlsMode::Off => None,
            TlsMode::Files(files) => Some(Tls::new(files.clone())?),
            TlsMode::SelfSigned => Some(Tls::new(tls::self_signed(&cfg.data_dir, &cfg.limits.hostname)?)?),
        }
        .map(Arc::new);
        if let Some(t) = &tls {
            t.clone().watch(std::time::Duration::from_secs(5));
        }
        let mut registry = Registry::default();
        let server_metrics = Arc::new(postel_server::Metrics::register(&mut registry));
        // One pool of password checks and one lockout, for SMTP AUTH and
        // the web login alike.
        let auth = Arc::new(
            postel_policy::Authenticator::new(
                Arc::new(backend::StoreUsers(store.clone())),
                postel_policy::PasswordPool::for_this_machine(),
            )
            .map_err(|e| anyhow::anyhow!("cannot prepare password checks: {e}"))?
            .with_decoy_secret(match &store {
                // The same on every node, so that an unknown user's decoy
                // salt does not differ from node to node.
                AnyStore::Postgres(pg) => pg
                    .shared_secret("scram-decoy")
                    .await
                    .context("cannot read the SCRAM decoy secret")?,
                AnyStore::Sqlite(_) => backend::decoy_secret(&cfg.data_dir)?,
            }),
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        let webhook_wake = Arc::new(tokio::sync::Notify::new());
        // One resolver for what the intake side asks of DNS: block lists,
        // and clients' names for milters and policy servers.
        let dns = if cfg.dnsbl.is_empty() && cfg.milters.is_empty() && cfg.policy_services.is_empty() {
            None
        } else {
            Some(Arc::new(
                postel_delivery::mx::Dns::new(&cfg.nameservers)
                    .map_err(|e| anyhow::anyhow!("cannot set up DNS: {e}"))?,
            ))
        };
        let handoff = Arc::new(postel_delivery::Handoff::default());
        let stored_keys = match &store {
            AnyStore::Postgres(pg) => pg.dkim_keys().await.context("cannot read the DKIM keys")?,
            AnyStore::Sqlite(_) => Vec::new(),
        };
        let authentication_signer = Arc::new(crate::config::signer(&cfg.dkim, &stored_keys)?);
        let authentication = backend::Authentication {
            verifier: verifier(&cfg),
            settings: cfg.verify.clone(),
            signer: authentication_signer.clone(),
            whole: backend::Authentication::whole_budget(),
            sealer: crate::config::sealer(cfg.arc.as_ref())?.map(Arc::new),
        };
        let inner = Arc::new(Inner {
            store: store.clone(),
            policy: Policy { domains: cfg.domains.clone(), mailboxes: cfg.mailboxes.clone() },
            hostname: cfg.limits.hostname.clone(),
            version: cfg.limits.version.clone(),
            auth: auth.clone(),
            metrics: backend::BackendMetrics::register(&mut registry),
            users: Arc::new(store.clone()),
            relay: cfg.delivery.as_ref().map(|d| backend::Relay {
                policy: postel_policy::RelayPolicy { networks: d.relay_networks.clone() },
                wake: wake.clone(),
                handoff: handoff.clone(),
                local_routes: d.local_routes.clone(),
                forward: Arc::new(cfg.forward.clone()),
            }),
            disk: (cfg.min_free_disk > 0).then(|| (cfg.data_dir.clone(), cfg.min_free_disk)),
            policy_services: cfg.policy_services.clone(),
            milters: cfg.milters.clone(),
            webhooks: cfg.webhooks.iter().map(|h| h.url.clone()).collect(),
            webhook_wake: webhook_wake.clone(),
            dns: dns.clone(),
            authentication,
            screening: backend::Screening {
                rate: Arc::new(postel_policy::rate::RateLimiter::new(cfg.rate_limits)),
                lists: cfg.dnsbl.clone(),
                threshold: cfg.dnsbl_threshold,
                dns: (!cfg.dnsbl.is_empty()).then(|| dns.clone()).flatten(),
                trusted: cfg.delivery.as_ref().map(|d| d.relay_networks.clone()).unwrap_or_default(),
            },
        });
        let (stop_delivery, mut stop_delivery_rx) = tokio::sync::watch::channel(false);
        // Claims of an earlier run are this run's to make again: released
        // before intake starts, since rows committed claimed from now on
        // belong to this run's worker.
        if let AnyStore::Postgres(pg) = &store {
            // Mail queued by any node, or an operator's action anywhere,
            // wakes this node's worker (which polls besides); failed logins
            // on any node count toward this node's lockout.
            crate::cluster::start(pg, wake.clone(), auth.clone(), inner.screening.rate.clone());
        }
        if cfg.delivery.is_some() {
            use postel_store::Store as _;
            store
                .queue_release_claims()
                .await
                .context("cannot release the delivery queue's claims")?;
        }
        let delivery_task = match &cfg.delivery {
            Some(settings) => {
                let mut settings = settings.clone();
                settings.signer = authentication_signer.clone();
                settings.state_dir = Some(cfg.data_dir.clone());
                // The listeners as bound (a port 0 in the config is now known).
                settings.own_addresses = listeners.iter().filter_map(|l| l.tcp.local_addr().ok()).collect();
                let metrics = postel_delivery::DeliveryMetrics::register(&mut registry);
                let worker = postel_delivery::Worker::new(store.clone(), settings, wake.clone(), metrics, handoff.clone())
                    .map_err(|e| anyhow::anyhow!("cannot start delivery: {e}"))?;
                info!(
                    relay_networks = %cfg.delivery.as_ref().map(|d| d.relay_networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                    "delivery is on: mail for other domains is sent on"
                );
                Some(tokio::spawn(worker.run(async move {
                    let _ = stop_delivery_rx.wait_for(|s| *s).await;
                })))
            }
            None => {
                info!("delivery is off: Postel is a mail catcher, and keeps every message it accepts; nothing is sent on");
                None
            }
        };
        let webhook_task = (!cfg.webhooks.is_empty()).then(|| {
            let settings = postel_webhook::Settings {
                hooks: cfg.webhooks.clone(),
                timeout: std::time::Duration::from_secs(30),
                lifetime: std::time::Duration::from_secs(3 * 86_400),
                extra_roots: cfg.delivery.as_ref().map(|d| d.extra_roots.clone()).unwrap_or_default(),
                version: cfg.limits.version.clone(),
            };
            info!(webhooks = cfg.webhooks.len(), "webhooks are on: each kept message is posted");
            let worker = postel_webhook::Worker::new(store.clone(), settings, webhook_wake.clone());
            let mut stop = stop_delivery.subscribe();
            tokio::spawn(worker.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        });
        let (stop_web, stop_rx) = tokio::sync::watch::channel(false);
        let web_task = match &cfg.web {
            Some(w) => {
                // HTTPS with the SMTP listeners' certificate: one reload for both.
                let acceptor = if w.tls { tls.as_ref().map(|t| t.acceptor.clone()) } else { None };
                Some(start_web(w, &cfg, &store, &inner, (&server_metrics, Arc::new(registry)), acceptor, stop_rx)?)
            }
            None => None,
        };
        if cfg.max_messages.is_some() || cfg.max_age.is_some() {
            tokio::spawn(retention(store.clone(), cfg.max_messages, cfg.max_age));
        }
        let server = ServerConfig {
            limits: Arc::new(cfg.limits.clone()),
            max_connections: cfg.max_connections,
            max_connections_per_ip: cfg.max_connections_per_ip,
            exempt_loopback: cfg.exempt_loopback,
            shutdown_grace: cfg.limits.data_timeout + std::time::Duration::from_secs(10),
            metrics: server_metrics,
            greet_wait: cfg.greet_wait,
        };
        info!(
            hostname = %cfg.limits.hostname,
            data_dir = %cfg.data_dir.display(),
            domains = if cfg.domains.is_empty() { "any".to_owned() } else { cfg.domains.iter().cloned().collect::<Vec<_>>().join(",") },
            "Postel {} ready", cfg.limits.version
        );
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let backend = Arc::new(PostelBackend::new(inner));
        postel_server::serve(listeners, server, backend, acceptor, shutdown_signal()).await;
        let _ = stop_web.send(true);
        let _ = stop_delivery.send(true);
        if let Some(t) = delivery_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        if let Some(t) = webhook_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        if let Some(t) = web_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        anyhow::Ok(())
    });
    // Every session has ended: commit what the writer holds, then exit.
    runtime.block_on(store.close());
    info!("stopped");
    result
}

/// Opens the store the config names: SQLite in the data folder, or
/// PostgreSQL (connected, its schema brought up to date).
async fn open_store(cfg: &Config) -> anyhow::Result<AnyStore> {
    let Some(pg) = &cfg.store else {
        let store = SqliteStore::open(&cfg.data_dir).with_context(|| {
            format!(
                "cannot open the message store in {}: check that the folder is writable",
                cfg.data_dir.display()
            )
        })?;
        return Ok(AnyStore::Sqlite(Arc::new(store)));
    };
    // What stays per node (the spool, a self-signed certificate, keys).
    postel_store::private_folder(&cfg.data_dir)
        .with_context(|| format!("cannot prepare {}", cfg.data_dir.display()))?;
    let opts = postel_store::PgOptions {
        url: pg.url.clone(),
        node: pg.node.clone(),
        pool_size: pg.connections,
        spool_dir: cfg.data_dir.join("spool"),
        lease: i64::try_from(pg.lease).unwrap_or(60),
        migrate: true,
    };
    let store = postel_store::PgStore::connect(opts)
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                crate::config::masked_url(&pg.url)
            )
        })?;
    info!(node = %pg.node, "the store is PostgreSQL, shared with every node that names it");
    Ok(AnyStore::Postgres(Arc::new(store)))
}

/// Binds the web side and starts serving it. A listener off loopback needs
/// a login (a token, or at least one user): without one, `serve` refuses to
/// start rather than show everyone's mail to the network.
fn start_web(
    w: &WebSettings,
    cfg: &Config,
    store: &AnyStore,
    inner: &Arc<Inner<AnyStore>>,
    (server_metrics, registry): (&Arc<postel_server::Metrics>, Arc<Registry>),
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let login = if w.needs_login() {
        let users = store.users().context("cannot read the users")?;
        if w.token.is_none() && users.is_empty() {
            // Only reached off loopback: a token alone also turns login on.
            anyhow::bail!(
                "the web inbox on {} is not on loopback, so it needs a login: set [web] token in the config, or add a user with `postel users add NAME`",
                w.addr
            );
        }
        Some(Login {
            token: w.token.clone(),
            auth: inner.auth.clone(),
        })
    } else {
        None
    };
    let tcp = bind(w.addr).with_context(|| {
        format!("cannot listen on {} for the web inbox: is another server (Mailpit, MailHog?) using it? Pick another with --web IP:PORT, or turn it off with --no-web", w.addr)
    })?;
    info!(addr = %tcp.local_addr()?, login = login.is_some(), tls = tls.is_some(), "listening for HTTP");
    let m = server_metrics.clone();
    let mut web = Web::new(
        store.clone(),
        cfg.limits.version.clone(),
        Arc::new(move || SessionCounts {
            open: u64::try_from(m.sessions_open.get()).unwrap_or(0),
            total: m.sessions_total(),
        }),
        registry,
        login,
        w.limits,
        stop.clone(),
    );
    if !w.release_targets.is_empty() {
        web = web.with_release(Arc::new(crate::release::WebReleaser {
            targets: w.release_targets.clone(),
            hostname: cfg.limits.hostname.clone(),
        }));
    }
    let web = Arc::new(web);
    let mut stop = stop;
    Ok(tokio::spawn(postel_web::serve(tcp, web, tls, async move {
        let _ = stop.wait_for(|s| *s).await;
    })))
}

/// Keeps the store within `[retention]`: after new mail (at most once a
/// second) and every minute, the oldest messages over the limits are
/// deleted, a small batch per transaction, off the async threads.
async fn retention(store: AnyStore, keep: Option<u64>, max_age: Option<std::time::Duration>) {
    use postel_store::Store as _;
    let mut changes = keep.map(|_| store.subscribe());
    loop {
        let before = max_age.map(|age| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            i64::try_from(now.saturating_sub(age.as_secs())).unwrap_or(0)
        });
        match store.prune(keep, before).await {
            Ok(gone) if !gone.is_empty() => {
                info!(deleted = gone.len(), "retention: old messages deleted");
            }
            Err(e) => tracing::warn!(error = %e, "retention: cannot delete old messages"),
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match &mut changes {
            Some(rx) => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv()).await;
                // Everything that arrived meanwhile is covered by one prune.
                while !matches!(
                    rx.try_recv(),
                    Err(tokio::sync::broadcast::error::TryRecvError::Empty
                        | tokio::sync::broadcast::error::TryRecvError::Closed)
                ) {}
            }
            None => tokio::time::sleep(std::time::Duration::from_secs(60)).await,
        }
    }
}

/// Binds with SO_REUSEADDR, so a restart does not wait for TIME_WAIT, and a
/// backlog deep enough for bursts of new connections.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("signal received: shutting down");
}

/// The verifier for mail from outside, when `[verify]` is on: it asks the
/// `[dns]` nameservers (or the system's). A resolver that cannot be set
/// up turns checking off, with a warning, rather than stop the server.
fn verifier(cfg: &Config) -> Option<Arc<postel_auth::Verifier>> {
    let v = &cfg.verify;
    if !v.enabled {
        return None;
    }
    match postel_delivery::mx::Dns::new(&cfg.nameservers) {
        Ok(dns) => Some(postel_auth::Verifier::new(
            dns.resolver(),
            &v.authserv_id,
            v.timeout,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up DNS: mail authentication checks are off");
            None
        }
    }
}
