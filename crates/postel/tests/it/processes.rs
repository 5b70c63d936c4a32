//! The peer programs the tests start: a child killed when dropped, a
//! server started once per test binary under a watchdog, and the JSON
//! files the peer scripts write.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// A child process, killed and reaped when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether something listens on `127.0.0.1:port`.
pub(crate) fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Starts `commands` (shell command lines, each started after the one
/// before it, which must make the path `ready` exist first if given)
/// under a watchdog that stops them all when this test binary is gone, or
/// when one of them ends. The watchdog is kept for the binary's life: the
/// servers of a test binary start once, not once per test.
pub(crate) fn watched(commands: &[(&str, Option<&str>)]) -> Mutex<Child> {
    let mut line = String::from("p=''; ");
    for (command, ready) in commands {
        line.push_str(&format!("{command} & p=\"$p $!\"; "));
        if let Some(path) = ready {
            line.push_str(&format!("while [ ! -e '{path}' ]; do sleep 0.2; done; "));
        }
    }
    line.push_str(&format!(
        "while kill -0 {} 2>/dev/null && kill -0 $p 2>/dev/null; do sleep 1; done; kill $p 2>/dev/null",
        std::process::id()
    ));
    Mutex::new(
        Command::new("sh")
            .args(["-c", &line])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh"),
    )
}

/// The `*.json` files of `dir`, by name, parsed.
pub(crate) fn json_files(dir: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
        .collect()
}

/// A network namespace with loopback up and its own resolv.conf; removed
/// when dropped.
pub(crate) struct Netns(pub(crate) String);

impl Netns {
    pub(crate) fn new(name: &str) -> Netns {
        let ok = Command::new("ip").args(["netns", "add", name]).status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "cannot make a network namespace (needs root and iproute2)"
        );
        let ns = Netns(name.to_owned());
        let up = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        let etc = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&etc).expect("/etc/netns");
        std::fs::write(format!("{etc}/resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("resolv.conf");
        ns
    }

    /// A dnsmasq on the namespace's port 53, answering for `.test` (and
    /// what `records`, dnsmasq options, add), once it answers.
    pub(crate) fn dnsmasq(&self, records: &[&str]) -> Killed {
        let child = self
            .command("/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--port=53",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local=/test/",
                "--user=root",
                "--pid-file=",
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq in the namespace");
        let dns = Killed(child);
        crate::rig::wait_for(10, "dnsmasq in the namespace", || {
            self.command("python3")
                .args([
                    "-c",
                    "import socket; socket.create_connection(('127.0.0.1', 53), 1)",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        dns
    }

    /// `command` inside the namespace.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.0])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").arg(pid).status();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}
