//! A real PostgreSQL server for tests: made in a temp folder, on a
//! loopback port, once per test binary ([`shared`]) or on its own for a
//! test that stops it ([`PgServer::start`]). PostgreSQL refuses to run as
//! root, so as root it runs as the `postgres` user.
//!
//! A watchdog process stops the server when the test binary exits, however
//! it exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A PostgreSQL server of the tests'.
#[derive(Debug)]
pub struct PgServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();
static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The test binary's server, started at the first call.
///
/// # Panics
/// When PostgreSQL cannot be started.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(PgServer::start)
}

/// Where PostgreSQL's programs are: Debian keeps them out of PATH.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args...`, as the `postgres` user when we are root.
fn run_as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir("/tmp")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PgServer {
    /// Makes and starts a new server.
    ///
    /// # Panics
    /// When it cannot be made or started.
    pub fn start() -> PgServer {
        let bin = bindir();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("postel-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give {} to postgres", dir.display());
        }
        let data = dir.join("data");
        let out = run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            port: free_port(),
            dir,
            bin,
        };
        server.resume();
        // Stops the server when this process is gone, however it ends.
        let pg_ctl = server.bin.join("pg_ctl");
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {run}{ctl} -D {data} -m immediate stop; rm -rf {dir}",
            pid = std::process::id(),
            run = if is_root() {
                "runuser -u postgres -- "
            } else {
                ""
            },
            ctl = pg_ctl.display(),
            data = data.display(),
            dir = server.dir.display(),
        );
        // Never waited for: it outlives this process on purpose.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("watchdog");
        server
    }

    /// Starts the server (again), and waits until it takes connections.
    ///
    /// # Panics
    /// When it does not start.
    pub fn resume(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c max_connections=300 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let log = log.to_str().expect("path");
        self.pg_ctl(&["-o", &opts, "-l", log, "-w", "-t", "60", "start"]);
    }

    /// `pg_ctl -D <data> args...`, which must succeed.
    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().expect("path")];
        all.extend_from_slice(args);
        let out = run_as_postgres(&self.bin.join("pg_ctl"), &all);
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (`-m immediate`: as if it crashed; what was
    /// committed survives, as after a power cut).
    pub fn halt(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// A new, empty database on this server; its URL.
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn database(&self, name: &str) -> String {
        let out = self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        assert!(out.is_ok(), "cannot create {name}: {out:?}");
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with psql on database `db`; its output (unaligned, tuples
    /// only).
    ///
    /// # Errors
    /// psql's error output, when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
