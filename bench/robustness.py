#!/usr/bin/env python3
"""Postel under hostile load, with the server's memory measured in each case.

Starts target/release/postel on loopback with a fresh data folder and runs
each case below against it, printing a Markdown table: what was sent, the
limit that must hold, what happened, and the server's RSS (VmRSS now and
VmHWM, the peak since start, from /proc/PID/status). Bounded in count and
time; loopback only. Run as root (it raises its open-file limit for the
10,000-connection cases):

    cargo build --release && python3 bench/robustness.py [--only NAME]

The smaller versions that run in CI are in crates/postel/tests/it/robustness.rs.
"""

import argparse
import base64
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "postel")
HOST = "127.0.0.1"

CONFIG = """
hostname = "mx.test"
[smtp]
listen = ["127.0.0.1:0"]
auth = true
require_tls = false
[limits]
max_message_size = 10485760
max_connections = {max_connections}
command_timeout = {command_timeout}
data_timeout = 20
"""


class Server:
    def __init__(self, command_timeout=300, max_connections=20000):
        self.dir = tempfile.mkdtemp(prefix="postel-robust-")
        cfg = os.path.join(self.dir, "postel.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(command_timeout=command_timeout, max_connections=max_connections))
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", cfg, "--data-dir", os.path.join(self.dir, "data")],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.port = None
        for line in self.proc.stderr:
            m = re.search(r"listening for SMTP addr=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if "ready" in line and self.port:
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        assert self.port, "postel did not start"

    def reset_peak(self):
        """Starts VmHWM over from the current RSS (Linux: clear_refs 5), so
        the peak is the case's, not start-up's (the Argon2 dummy hash)."""
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def mem(self):
        """(VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            s = f.read()
        rss = int(re.search(r"VmRSS:\s+(\d+)", s).group(1))
        hwm = int(re.search(r"VmHWM:\s+(\d+)", s).group(1))
        return rss, hwm

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Conn:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def reply(self):
        """One whole reply (all its lines), as text."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("closed; got " + repr(lines))
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("latin-1"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.s.close()


def ehlo(port):
    c = Conn(port)
    assert c.reply().startswith("220")
    assert c.cmd("EHLO load.test").startswith("250")
    return c


def kib(n):
    return f"{n / 1024:.1f} MiB"


def transaction_latency(port):
    """Seconds for a whole transaction on a new connection."""
    t = time.monotonic()
    c = ehlo(port)
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<c@d.test>")
    c.cmd("DATA")
    c.s.sendall(b"Subject: probe\r\n\r\nx\r\n.\r\n")
    r = c.reply()
    c.cmd("QUIT")
    c.close()
    assert r.startswith("250"), r
    return time.monotonic() - t


# ---------------------------------------------------------------- cases ---

def big_message(srv):
    c = ehlo(srv.port)
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<c@d.test>")
    assert c.cmd("DATA").startswith("354")
    chunk = (b"y" * 1022 + b"\r\n") * 1024  # 1 MiB of 1 KiB lines
    for _ in range(100):
        c.s.sendall(chunk)
    c.s.sendall(b".\r\n")
    r = c.reply()
    after = c.cmd("NOOP")
    return "100 MiB message, 10 MiB limit", "552 after the end of data, session goes on", \
        r.startswith("552 5.3.4") and after.startswith("250"), f"{r.splitlines()[0]}; then NOOP {after[:3]}"


def long_line(srv):
    c = Conn(srv.port, timeout=120)
    c.reply()
    chunk = b"A" * (1 << 20)
    for _ in range(1024):
        c.s.sendall(chunk)
    c.s.sendall(b"\r\n")
    r = c.reply()
    after = c.cmd("NOOP")
    return "1 GiB command line, no CRLF until the end", "500 Line too long, nothing buffered", \
        r.startswith("500 5.5.2") and after.startswith("250"), f"{r}; then NOOP {after[:3]}"


def many_recipients(srv):
    c = ehlo(srv.port)
    c.cmd("MAIL FROM:<a@b.test>")
    c.s.sendall(b"".join(b"RCPT TO:<r%d@d.test>\r\n" % i for i in range(10000)))
    codes = {}
    for _ in range(10000):
        code = c.reply()[:3]
        codes[code] = codes.get(code, 0) + 1
    ok = codes.get("250") == 100 and codes.get("452") == 9900
    return "10,000 RCPT in one write", "100 accepted, the rest 452 4.5.3", ok, \
        ", ".join(f"{n}x {k}" for k, n in sorted(codes.items()))


def pipelined(srv):
    c = ehlo(srv.port)
    c.s.sendall(b"NOOP\r\n" * 5000)
    n = sum(1 for _ in range(5000) if c.reply().startswith("250"))
    return "5,000 pipelined NOOPs in one write", "every one answered, in order", n == 5000, f"{n} x 250"


def auth_blob(srv):
    c = ehlo(srv.port)
    blob = base64.b64encode(os.urandom(768 * 1024)).decode()  # 1 MiB of base64
    r = c.cmd("AUTH PLAIN " + blob)
    after = c.cmd("NOOP")
    return "AUTH PLAIN with a 1 MiB blob", "500 Line too long (12,288-octet SASL limit)", \
        r.startswith("500 5.5.2") and after.startswith("250"), f"{r}; then NOOP {after[:3]}"


def idle_connections(srv, n=10000):
    before, _ = srv.mem()
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, srv.port))
        socks.append(s)
    # Every one greeted: the server holds them all.
    got = 0
    for s in socks:
        s.settimeout(30)
        if s.recv(64).startswith(b"220"):
            got += 1
    time.sleep(1)
    rss, _ = srv.mem()
    lat = transaction_latency(srv.port)
    per = (rss - before) * 1024 / n
    for s in socks:
        s.close()
    return f"{n:,} idle connections", "all greeted; a normal client served in < 1 s", \
        got == n and lat < 1, f"RSS +{kib(rss - before)}, {per / 1024:.1f} KiB per connection; transaction {lat * 1000:.0f} ms"


def slowloris(srv, n=1000, seconds=20):
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, srv.port))
        s.settimeout(10)
        s.recv(64)  # the greeting: a client that talks first is dropped at once
        s.setblocking(False)
        socks.append(s)
    worst = 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for s in socks:
            try:
                s.send(b"N")
                s.recv(4096)
            except (BlockingIOError, OSError):
                pass
        worst = max(worst, transaction_latency(srv.port))
        time.sleep(2)
    # command_timeout is 10 s here: every crawler is closed by now.
    closed = 0
    deadline = time.monotonic() + 15
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select(pending, [], [], 1)
        for s in r:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                closed += 1
                pending.remove(s)
    for s in socks:
        s.close()
    return f"slowloris: {n:,} connections, a byte every 2 s for {seconds} s", \
        "normal client < 1 s throughout; all closed by the timeout", \
        worst < 1 and closed == n, f"worst transaction {worst * 1000:.0f} ms; {closed} of {n} closed"


def never_read(srv, n=200, burst=2000):
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, srv.port))
        s.settimeout(10)
        s.recv(64)  # the greeting, the last thing this client reads
        s.setblocking(False)
        try:
            # Replies the client never reads (EHLO's is the longest).
            s.send(b"EHLO x\r\n" * burst)
        except BlockingIOError:
            pass
        socks.append(s)
    lat = transaction_latency(srv.port)
    time.sleep(14)  # the command timeout (10 s) covers a blocked write too
    closed = 0
    for s in socks:
        try:
            s.setblocking(True)
            s.settimeout(5)
            while s.recv(1 << 20):
                pass
            closed += 1
        except OSError:
            closed += 1
        s.close()
    return f"{n} clients that never read the replies to {burst:,} pipelined EHLOs", "normal client < 1 s; each dropped by the timeout", \
        lat < 1 and closed == n, f"transaction {lat * 1000:.0f} ms; {closed} of {n} dropped"


def over_limit(srv, n=1500):
    socks, refused = [], 0
    for _ in range(n):
        s = socket.create_connection((HOST, srv.port))
        s.settimeout(10)
        line = s.recv(256)
        if line.startswith(b"421 4.7.0"):
            refused += 1
            s.close()
        else:
            socks.append(s)
    held = len(socks)
    for s in socks:
        s.close()
    return f"{n:,} connections against max_connections = 1000", "1000 served, the rest 421 4.7.0", \
        held == 1000 and refused == n - 1000, f"{held} greeted, {refused} refused with 421"


CASES = [
    ("big_message", big_message, {}),
    ("long_line", long_line, {}),
    ("many_recipients", many_recipients, {}),
    ("pipelined", pipelined, {}),
    ("auth_blob", auth_blob, {}),
    ("idle_connections", idle_connections, {}),
    ("slowloris", slowloris, {"command_timeout": 10}),
    ("never_read", never_read, {"command_timeout": 10}),
    ("never_read_heavy", lambda srv: never_read(srv, 200, 20000), {"command_timeout": 10}),
    ("over_limit", over_limit, {"max_connections": 1000}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    args = ap.parse_args()
    # As many descriptors as allowed: the 10,000-connection cases need them.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("| case | limit that must hold | held | what happened | server RSS after / peak during the case |")
    print("|---|---|---|---|---|")
    failed = 0
    for name, fn, opts in CASES:
        if args.only and args.only != name:
            continue
        srv = Server(**opts)
        srv.reset_peak()
        try:
            case, limit, ok, what = fn(srv)
        except Exception as e:  # a case that breaks is a failure, shown
            case, limit, ok, what = name, "-", False, f"error: {e!r}"
        rss, hwm = srv.mem() if srv.proc.poll() is None else (0, 0)
        alive = srv.proc.poll() is None
        srv.stop()
        failed += not (ok and alive)
        print(f"| {case} | {limit} | {'yes' if ok and alive else 'NO'} | {what} | {kib(rss)} / {kib(hwm)} |", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
