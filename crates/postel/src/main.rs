//! `postel`: the SMTP server, and the commands to look after it.
//!
//! `postel serve` with no configuration runs a useful local server: it
//! listens on 127.0.0.1:2525, accepts mail for any address and stores it in
//! `./postel-data`. A TOML file (`--config`) makes it a production MX.
//! Errors end here as `anyhow` messages that say what to do.
//!
//! # Layout
//! - this file: `main`, and each command sent to its module;
//! - `cli`: the command line;
//! - `serve`: `postel serve` (wiring store, policy, server, web, delivery);
//! - `cluster`: what a node on PostgreSQL shares beyond the store;
//! - `admin`: the store an admin command works on (SQLite or PostgreSQL),
//!   and `postel store migrate`;
//! - `config`: the TOML file, overrides, validation;
//! - `backend`: the Backend that joins policy to the store;
//! - `tls`: certificates (files, self-signed, reload);
//! - `users`, `messages`, `queue`, `dkim`: the admin commands;
//! - `client`, `send`, `probe`, `explain`: the client-side tools;
//! - `release`: a stored message sent on (CLI, and the web's targets).

mod admin;
mod backend;
mod cli;
mod client;
mod cluster;
mod config;
mod dkim;
mod explain;
mod messages;
mod probe;
mod queue;
mod release;
mod send;
mod serve;
mod tls;
mod users;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, DkimCommand, MessagesCommand, UsersCommand};
use crate::config::{Config, FileConfig, Overrides};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // send and probe say "could not talk to the server" with 2, keeping 1
    // for what the server refused or what was found wrong.
    let failure = match &cli.command {
        Command::Send(_) | Command::Probe { .. } => 2,
        _ => 1,
    };
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`postel messages list | head`): what it
        // wanted was written; nothing to report.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postel: {e:#}");
            std::process::ExitCode::from(failure)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let status = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match cli.command {
        Command::Explain {
            code,
            vs,
            lang,
            json,
        } => explain::run(&code, vs.as_deref(), lang, json).map(status),
        Command::Send(args) => {
            send::run(&args).map(|o| status(matches!(o, send::Outcome::Accepted)))
        }
        Command::Probe { target, tls, lang } => {
            probe::run(&target, tls, lang).map(|worst| status(worst < probe::Level::Risk))
        }
        Command::Serve {
            config,
            mut over,
            verbose,
        } => {
            init_logging(verbose);
            let (file, zero_config) = load_config(config.as_deref())?;
            over.zero_config = zero_config;
            serve::serve(Config::build(file, over)?).map(|()| ExitCode::SUCCESS)
        }
        Command::Messages { command } => match command {
            MessagesCommand::List { store, json } => {
                messages::list(&store, json).map(|()| ExitCode::SUCCESS)
            }
            MessagesCommand::Show { id, store, raw } => {
                messages::show(&store, &id, raw).map(|()| ExitCode::SUCCESS)
            }
            MessagesCommand::Delete { id, store } => {
                messages::delete(&store, &id).map(|()| ExitCode::SUCCESS)
            }
            MessagesCommand::Release {
                id,
                server,
                to,
                from,
                tls,
                store,
            } => release::cli(&store, &id, &server, &to, from.as_deref(), &tls).map(status),
        },
        Command::Users { command } => match command {
            UsersCommand::Add {
                name,
                store,
                addresses,
                keep_password,
            } => users::add(&store, &name, &addresses, keep_password),
            UsersCommand::List { store } => users::list(&store),
            UsersCommand::Remove { name, store } => users::remove(&store, &name),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Queue { command } => queue::run(command).map(|()| ExitCode::SUCCESS),
        Command::Store {
            command: cli::StoreCommand::Migrate { from, config },
        } => admin::migrate(&from, &config).map(|()| ExitCode::SUCCESS),
        Command::Dkim {
            command:
                DkimCommand::Generate {
                    domain,
                    selector,
                    dir,
                    config,
                },
        } => match config {
            Some(config) => dkim::generate_into_store(&domain, selector.as_deref(), &config),
            None => dkim::generate(&domain, selector.as_deref(), &dir),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let (file, zero_config) = load_config(config.as_deref())?;
            let cfg = Config::build(
                file,
                Overrides {
                    zero_config,
                    ..Overrides::default()
                },
            )?;
            println!("# configuration is valid; effective settings:");
            print!("{}", toml::to_string(&cfg.to_file())?);
            match &cfg.store {
                Some(pg) => check_store(pg),
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// `config check` with `[store] url`: connects (changing nothing) and
/// says what the database is, and whether this postel can use it.
fn check_store(pg: &config::PgSettings) -> anyhow::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shown = config::masked_url(&pg.url);
    match rt.block_on(postel_store::inspect_pg(&pg.url)) {
        Err(e) => {
            println!("# store: cannot reach {shown}: {e}");
            Ok(std::process::ExitCode::FAILURE)
        }
        Ok((version, schema)) => {
            let known = postel_store::PG_SCHEMA_VERSION;
            println!("# store: PostgreSQL {version} at {shown}");
            match schema {
                None => println!(
                    "# schema: none yet (made at the first `postel serve`, version {known})"
                ),
                Some((v, c)) if c > known => {
                    println!(
                        "# schema: version {v}, which needs a postel that knows version {c}; this one knows {known}: upgrade postel"
                    );
                    return Ok(std::process::ExitCode::FAILURE);
                }
                Some((v, _)) if v < known => println!(
                    "# schema: version {v} (migrated to {known} at the next `postel serve`)"
                ),
                Some((v, _)) => println!("# schema: version {v} (this postel knows {known})"),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// The config file, if one is given, and whether this is the zero-config
/// mode (no file at all).
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<(FileConfig, bool)> {
    let file = path.map(FileConfig::load).transpose()?.unwrap_or_default();
    Ok((file, path.is_none()))
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
