//! `postel`: the SMTP server, and the commands to look after it.
//!
//! `postel serve` with no configuration runs a useful local server: it
//! listens on 127.0.0.1:2525, accepts mail for any address and stores it in
//! `./postel-data`. A TOML file (`--config`) makes it a production MX.
//! Errors end here as `anyhow` messages that say what to do.

mod backend;
mod config;
mod messages;
mod tls;
mod trace;
mod users;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use postel_server::ServerConfig;
use postel_store::SqliteStore;
use tracing::info;

use crate::backend::{Inner, Policy, PostelBackend};
use crate::config::{Config, FileConfig, Overrides, TlsMode};
use crate::tls::Tls;

#[derive(Parser)]
#[command(
    name = "postel",
    version,
    about = "Postel: an SMTP server that is correct, durable and fast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SMTP server (zero-config: 127.0.0.1:2525, any recipient, ./postel-data).
    Serve {
        /// A TOML config file (see postel.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The name in the greeting and trace headers.
        #[arg(long)]
        hostname: Option<String>,
        /// Where messages are stored.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen for SMTP on IP:PORT (repeatable; replaces the config's list).
        #[arg(long = "smtp", value_name = "ADDR")]
        smtp: Vec<String>,
        /// Listen for submission (STARTTLS, then AUTH) on IP:PORT (repeatable).
        #[arg(long = "submission", value_name = "ADDR")]
        submission: Vec<String>,
        /// Listen for submission over implicit TLS on IP:PORT (repeatable).
        #[arg(long = "smtps", value_name = "ADDR")]
        smtps: Vec<String>,
        /// Accept mail for this domain only (repeatable); others get 554 5.7.1.
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        /// Log the whole protocol transcript.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Read or delete stored messages.
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
    },
    /// Check a config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage the users who may AUTH on submission listeners.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user, or set a new password (asked for, or one line on stdin).
    Add {
        /// The user name, as given to AUTH.
        name: String,
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// List the users.
    List {
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum MessagesCommand {
    /// List every stored message.
    List {
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one message with its envelope.
    Show {
        /// The message id (from `list`).
        id: String,
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Print the stored bytes exactly, nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Delete one message.
    Delete {
        /// The message id.
        id: String,
        /// The data folder.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print the effective configuration.
    Check {
        /// The config file (none: the zero-config defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            hostname,
            data_dir,
            smtp,
            submission,
            smtps,
            domains,
            verbose,
        } => {
            init_logging(verbose);
            let zero_config = config.is_none();
            let file = config
                .as_deref()
                .map(FileConfig::load)
                .transpose()?
                .unwrap_or_default();
            let over = Overrides {
                hostname,
                data_dir,
                smtp,
                submission,
                smtps,
                domains,
                zero_config,
            };
            serve(Config::build(file, over)?)
        }
        Command::Messages { command } => match command {
            MessagesCommand::List { data_dir, json } => messages::list(&data_dir, json),
            MessagesCommand::Show { id, data_dir, raw } => messages::show(&data_dir, &id, raw),
            MessagesCommand::Delete { id, data_dir } => messages::delete(&data_dir, &id),
        },
        Command::Users { command } => match command {
            UsersCommand::Add { name, data_dir } => users::add(&data_dir, &name),
            UsersCommand::List { data_dir } => users::list(&data_dir),
            UsersCommand::Remove { name, data_dir } => users::remove(&data_dir, &name),
        },
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let zero_config = config.is_none();
            let file = config
                .as_deref()
                .map(FileConfig::load)
                .transpose()?
                .unwrap_or_default();
            let cfg = Config::build(
                file,
                Overrides {
                    zero_config,
                    ..Overrides::default()
                },
            )?;
            println!("# configuration is valid; effective settings:");
            print!("{}", toml::to_string(&cfg.to_file())?);
            Ok(())
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose {
        "info,postel_server=debug"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    // Many idle sessions need many descriptors: take what the hard limit allows.
    let mut cfg = cfg;
    if let Ok(n) = rlimit::increase_nofile_limit(u64::MAX) {
        // Keep descriptors for the store, listeners and logs: a session
        // refused with 421 is better than a failed accept().
        let room = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(64)
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
    let store = SqliteStore::open(&cfg.data_dir).with_context(|| {
        format!(
            "cannot open the message store in {}: check that the folder is writable",
            cfg.data_dir.display()
        )
    })?;
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
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
        info!(
            hostname = %cfg.limits.hostname,
            data_dir = %cfg.data_dir.display(),
            domains = if cfg.domains.is_empty() { "any".to_owned() } else { cfg.domains.iter().cloned().collect::<Vec<_>>().join(",") },
            "Postel {} ready", cfg.limits.version
        );
        let backend = PostelBackend::new(Inner {
            store: store.clone(),
            policy: Policy { domains: cfg.domains.clone(), mailboxes: cfg.mailboxes.clone() },
            hostname: cfg.limits.hostname.clone(),
            version: cfg.limits.version.clone(),
            dummy_hash: backend::hash_password("postel-dummy-password-for-unknown-users")?,
            auth_failures: std::sync::Mutex::default(),
        });
        let server = ServerConfig {
            limits: Arc::new(cfg.limits.clone()),
            max_connections: cfg.max_connections,
            max_connections_per_ip: cfg.max_connections_per_ip,
            exempt_loopback: cfg.exempt_loopback,
            shutdown_grace: cfg.limits.data_timeout + std::time::Duration::from_secs(10),
        };
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        postel_server::serve(listeners, server, Arc::new(backend), acceptor, shutdown_signal()).await;
        anyhow::Ok(())
    });
    // Every session has ended: commit what the writer holds, then exit.
    store.close();
    info!("stopped");
    result
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
