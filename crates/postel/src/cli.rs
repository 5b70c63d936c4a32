//! The command line: every command and its arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Overrides};
use crate::{explain, send};

#[derive(Parser)]
#[command(
    name = "postel",
    version,
    about = "Postel: an SMTP server that is correct, durable and fast"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the SMTP server (zero-config: 127.0.0.1:2525, any recipient, ./postel-data).
    Serve {
        /// A TOML config file (see postel.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        over: Overrides,
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
    /// Look after the delivery queue: list, show, retry, hold, release,
    /// delete.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The store itself: move an SQLite data folder into PostgreSQL.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Manage the users who may AUTH on submission listeners.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Explain an SMTP reply code (550), an enhanced code (5.1.1), or a
    /// whole reply line pasted from a log ("550 5.1.1 User unknown").
    Explain {
        /// The code or reply line (several words are joined).
        #[arg(required = true, num_args = 1..)]
        code: Vec<String>,
        /// Set another code beside it, with the key differences.
        #[arg(long, value_name = "CODE")]
        vs: Option<String>,
        /// The language of the texts.
        #[arg(long, value_enum, default_value = "en")]
        lang: explain::Lang,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send one message, printing the conversation with each reply explained.
    /// Exit status: 0 accepted, 1 refused, 2 could not talk to the server.
    Send(send::SendArgs),
    /// Connect to a server and report what it offers and what is wrong or
    /// risky. Sends no mail. Exit status: 0 fine, 1 problems or risks.
    Probe {
        /// HOST[:PORT], or a domain (its MX is looked up).
        target: String,
        /// Implicit TLS from the first byte (port 465).
        #[arg(long)]
        tls: bool,
        /// The language of the explanations.
        #[arg(long, value_enum, default_value = "en")]
        lang: explain::Lang,
    },
}

#[derive(Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy every message, queue row, webhook row and user of an SQLite
    /// data folder into the PostgreSQL store that a config file names, then
    /// check the copy by count and digest. Run it with the servers stopped;
    /// a second run copies only what is missing.
    Migrate {
        /// The SQLite data folder to copy from.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The config file whose `[store] url` names the database.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum DkimCommand {
    /// Make an RSA-2048 and an Ed25519 key for DOMAIN; print the DNS TXT
    /// records to publish and the [[dkim]] tables to add.
    Generate {
        /// The domain that signs (the domain of the From: addresses).
        domain: String,
        /// The selectors' prefix: the RSA key gets PREFIXr, the Ed25519
        /// key PREFIXe. Default sYYYYMM (this month), so that the next
        /// rotation gets new names.
        #[arg(long)]
        selector: Option<String>,
        /// Where the keys go (in a folder named after the domain).
        #[arg(long, default_value = "postel-data/dkim")]
        dir: PathBuf,
        /// A config file whose `[store] url` names a PostgreSQL database:
        /// the keys go there instead, and every node signs with them.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user, or set a new password (asked for, or one line on stdin).
    Add {
        /// The user name, as given to AUTH.
        name: String,
        /// A sender address the user may use (repeatable; `*@domain` for a
        /// whole domain). Given, they replace the user's addresses.
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<String>,
        /// Keep the password; change only the addresses.
        #[arg(long)]
        keep_password: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the users.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum MessagesCommand {
    /// List every stored message.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one message with its envelope.
    Show {
        /// The message id (from `list`).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print the stored bytes exactly, nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Send a stored message on to an SMTP server, as it is stored
    /// (Mailpit's "release"). Exit status 1 if any recipient was refused.
    Release {
        /// The message id.
        id: String,
        /// HOST:PORT of the server.
        #[arg(long)]
        server: String,
        /// A recipient (repeatable); default: the message's own.
        #[arg(long = "to", value_name = "ADDR")]
        to: Vec<String>,
        /// The sender; default: the message's own.
        #[arg(long)]
        from: Option<String>,
        /// STARTTLS: none, may, encrypt or verify.
        #[arg(long, default_value = "may")]
        tls: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete one message.
    Delete {
        /// The message id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a config file and print the effective configuration.
    Check {
        /// The config file (none: the zero-config defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Which store an admin command works on: the one a config file names, or
/// a data folder.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StoreArgs {
    /// The data folder (default: the config's, or ./postel-data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// A config file: its data folder is used.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

impl StoreArgs {
    /// The data folder to open.
    ///
    /// # Errors
    /// When the config file cannot be read.
    pub(crate) fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        if let Some(path) = &self.config {
            let file = config::FileConfig::load(path)?;
            return Ok(file
                .data_dir
                .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR)));
        }
        Ok(PathBuf::from(config::DEFAULT_DATA_DIR))
    }
}

#[derive(Subcommand)]
pub(crate) enum QueueCommand {
    /// Every queued recipient: state, attempts, next attempt, last reply.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print one JSON array, one object per queued recipient.
        #[arg(long)]
        json: bool,
    },
    /// One message's queued recipients, in full.
    Show {
        /// The message id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Try now: one message, or every one with --all.
    Retry(QueueTarget),
    /// Stop trying until released.
    Hold(QueueTarget),
    /// Try held recipients again.
    Release(QueueTarget),
    /// Forget queued recipients: nothing more is tried, no notice is sent.
    Delete(QueueTarget),
    /// Give up on queued recipients and return the message to its sender
    /// with a failure notice (done by the running server's worker).
    Bounce(QueueTarget),
}

/// A message id, or `--all`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct QueueTarget {
    /// The message id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) id: Option<String>,
    /// Every queued message.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}
