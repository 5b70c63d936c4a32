#!/usr/bin/env python3
"""Password guessing memory: what a burst of failing AUTH attempts costs the server.

Starts its own Postel (`--postel`, default target/release/postel) in a fresh
temporary data folder, with a submission listener on a free loopback port and
`require_tls = false`, so that AUTH PLAIN works in plaintext (loopback only).
Then runs W waves (default 2). In each wave, 240 clients connect at once, 8
from each of 30 distinct loopback source addresses (wave k binds its sockets
to 127.0.(k+10).1 .. 127.0.(k+10).30, so no address reaches the per-address
lockout of 10 failures), say EHLO, wait until all are connected, then each
sends one `AUTH PLAIN` with a wrong password for an unknown user, reads the
reply (up to 120 s) and says QUIT.

The server's VmRSS (and thread count) is sampled from /proc every 50 ms
during each wave and for 5 s after it; VmHWM is reset before each wave
(`clear_refs` 5) and read after it, which catches peaks between samples.
Printed as a Markdown table: RSS at rest, then per wave the peak RSS, the
RSS 5 s after the wave, and the count of replies to AUTH by code (535, 454,
421, other, and timeouts or connection errors).

Run on Linux (it reads /proc/PID of the server), as root or as the user
that runs the server:

    cargo build --release -p postel
    python3 bench/auth_flood.py [--postel PATH] [--waves 2] [--out FILE.md]

Loopback only, bounded in count and time (each wave ends within about 130 s).
Nothing is written outside a temporary folder unless --out is given.
"""

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "postel")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CONFIG = """\
hostname = "mx.test"
data_dir = "{data_dir}"

[smtp]
listen = ["127.0.0.1:0"]

[submission]
listen = ["127.0.0.1:0"]
require_tls = false
"""


class Server:
    """A postel process with its own config, ports parsed from its log."""

    def __init__(self, binary, config_text, workdir):
        self.workdir = workdir
        cfg = os.path.join(workdir, "postel.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        self.smtp = {}  # kind -> port
        self.web = None
        self.log = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", cfg],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self.ready.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postel did not start:\n" + "".join(self.log[-20:]))
            self.ready.wait(0.1)

    def _drain(self):
        for line in self.proc.stderr:
            line = ANSI.sub("", line)
            if len(self.log) < 2000:
                self.log.append(line)
            m = re.search(r'listening for SMTP addr=\S+:(\d+) kind="?(\w+)', line)
            if m:
                self.smtp[m.group(2)] = int(m.group(1))
            m = re.search(r"listening for HTTP addr=\S+:(\d+)", line)
            if m:
                self.web = int(m.group(1))
            if " ready" in line:
                self.ready.set()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def status(self):
        """VmRSS, VmHWM (KiB) and Threads from /proc/PID/status."""
        with open(f"/proc/{self.pid}/status") as f:
            s = f.read()
        get = lambda k: int(re.search(k + r":\s+(\d+)", s).group(1))
        return get("VmRSS"), get("VmHWM"), get("Threads")

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Sampler(threading.Thread):
    """Samples (time, VmRSS KiB, threads) every `interval` s while running."""

    def __init__(self, srv, interval=0.05):
        super().__init__(daemon=True)
        self.srv, self.interval = srv, interval
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                rss, _, threads = self.srv.status()
                self.samples.append((time.monotonic(), rss, threads))
            except (OSError, AttributeError):
                pass
            self.halt.wait(self.interval)

    def between(self, t0, t1):
        return [s for s in self.samples if t0 <= s[0] <= t1]


def read_reply(sock, buf):
    """One whole SMTP reply; returns (text, rest of buffer)."""
    lines = []
    while True:
        while b"\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                raise EOFError("connection closed" + (f" after {lines!r}" if lines else ""))
            buf += d
        line, buf = buf.split(b"\r\n", 1)
        lines.append(line.decode("latin-1"))
        if len(line) < 4 or line[3:4] != b"-":
            return "\n".join(lines), buf


def client(port, src, barrier, auth_line, reply_timeout, result, idx):
    """One guesser: connect from src, EHLO, wait for all, AUTH, QUIT."""
    sock = None
    buf = b""
    try:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((src, 0))
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            greet, buf = read_reply(sock, buf)
            if not greet.startswith("220"):
                raise RuntimeError("greeting " + greet[:40])
            sock.sendall(b"EHLO guesser.test\r\n")
            ehlo, buf = read_reply(sock, buf)
            if not ehlo.startswith("250"):
                raise RuntimeError("EHLO " + ehlo[:40])
        finally:
            try:
                barrier.wait(60)
            except threading.BrokenBarrierError:
                pass
        t = time.monotonic()
        sock.settimeout(reply_timeout)
        sock.sendall(auth_line)
        r, buf = read_reply(sock, buf)
        result[idx] = (r[:3], time.monotonic() - t, r.splitlines()[0][:80])
        try:
            sock.settimeout(5)
            sock.sendall(b"QUIT\r\n")
            read_reply(sock, buf)
        except (OSError, EOFError):
            pass
    except socket.timeout:
        result[idx] = ("timeout", None, "timeout")
    except (OSError, EOFError, RuntimeError) as e:
        result[idx] = ("error", None, repr(e)[:80])
    finally:
        if sock is not None:
            sock.close()


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def run_wave(srv, sampler, port, k, per_ip, ips, reply_timeout, after):
    n = per_ip * ips
    sources = [f"127.0.{k + 10}.{i}" for i in range(1, ips + 1)]
    auth = b"AUTH PLAIN " + base64.b64encode(b"\0nobody\0wrongpassword") + b"\r\n"
    barrier = threading.Barrier(n)
    result = [None] * n
    srv.reset_peak()
    t0 = time.monotonic()
    threads = []
    for i in range(n):
        th = threading.Thread(target=client, daemon=True,
                              args=(port, sources[i % ips], barrier, auth, reply_timeout, result, i))
        th.start()
        threads.append(th)
    # connect (30 s) + barrier (60 s) + reply + QUIT: bounded
    deadline = t0 + 30 + 60 + reply_timeout + 10
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    t1 = time.monotonic()
    time.sleep(after)
    t2 = time.monotonic()
    hwm = srv.status()[1] if srv.alive() else None
    during = sampler.between(t0, t2)
    last = sampler.between(t2 - 0.2, t2 + 1) or during[-1:]
    codes = {"535": 0, "454": 0, "421": 0, "other": 0, "timeout/error": 0}
    others = {}
    lat = []
    for r in result:
        if r is None:
            codes["timeout/error"] += 1
            continue
        code, dt, text = r
        if code in ("timeout", "error"):
            codes["timeout/error"] += 1
            others[text] = others.get(text, 0) + 1
        elif code in codes:
            codes[code] += 1
        else:
            codes["other"] += 1
            others[text] = others.get(text, 0) + 1
        if dt is not None:
            lat.append(dt)
    lat.sort()
    return {
        "wave": k, "sources": f"{sources[0]}..{sources[-1]}", "clients": n,
        "peak": max((s[1] for s in during), default=0), "hwm": hwm,
        "after": last[-1][1] if last else 0,
        "threads": max((s[2] for s in during), default=0),
        "codes": codes, "others": others,
        "lat_med": lat[len(lat) // 2] if lat else None, "lat_max": lat[-1] if lat else None,
        "duration": t1 - t0, "alive": srv.alive(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postel", default=DEFAULT_BIN, help="path to the postel binary")
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--per-ip", type=int, default=8, help="connections per source address (keep < 10)")
    ap.add_argument("--ips", type=int, default=30, help="source addresses per wave (at most 254)")
    ap.add_argument("--reply-timeout", type=float, default=120.0)
    ap.add_argument("--after", type=float, default=5.0, help="seconds to sample after each wave")
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()
    if not (1 <= args.ips <= 254 and 1 <= args.waves <= 200 and 1 <= args.per_ip <= 100):
        ap.error("--ips 1..254, --waves 1..200, --per-ip 1..100")
    binary = os.path.abspath(args.postel)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no postel binary at {binary}: build it, or pass --postel")

    work = tempfile.mkdtemp(prefix="postel-authflood-")
    srv = sampler = None
    out = []
    try:
        srv = Server(binary, CONFIG.format(data_dir=os.path.join(work, "data")), work)
        port = srv.smtp.get("submission")
        if not port:
            raise RuntimeError("no submission listener in the log: " + "".join(srv.log[-10:]))
        sampler = Sampler(srv)
        sampler.start()
        time.sleep(1)
        rest, _, rest_threads = srv.status()
        rows = []
        for k in range(1, args.waves + 1):
            if not srv.alive():
                break
            rows.append(run_wave(srv, sampler, port, k, args.per_ip, args.ips, args.reply_timeout, args.after))
        out.append(f"### auth_flood: {args.per_ip * args.ips} simultaneous failing AUTH PLAIN per wave "
                   f"({args.per_ip} from each of {args.ips} loopback addresses)\n")
        out.append(f"Binary: `{binary}`. RSS at rest before wave 1: **{mib(rest)}** ({rest_threads} threads).\n")
        out.append(f"| wave | sources | clients | peak RSS (50 ms samples) | VmHWM in wave | RSS {args.after:g} s after | peak threads "
                   "| 535 | 454 | 421 | other | timeout/error | AUTH reply median / max | wave time | server alive |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            c = r["codes"]
            lat = (f"{r['lat_med']:.2f} s / {r['lat_max']:.2f} s" if r["lat_med"] is not None else "-")
            out.append(f"| {r['wave']} | {r['sources']} | {r['clients']} | {mib(r['peak'])} | "
                       f"{mib(r['hwm']) if r['hwm'] else 'n/a'} | {mib(r['after'])} | {r['threads']} | "
                       f"{c['535']} | {c['454']} | {c['421']} | {c['other']} | {c['timeout/error']} | {lat} | "
                       f"{r['duration']:.1f} s | {'yes' if r['alive'] else 'NO'} |")
        notes = [f"wave {r['wave']}: {n}x {t}" for r in rows for t, n in r["others"].items()]
        if notes:
            out.append("\nOther replies and errors: " + "; ".join(notes))
        if not srv.alive():
            out.append(f"\n**The server exited** (code {srv.proc.returncode}). Last log lines:\n```\n"
                       + "".join(srv.log[-10:]) + "```")
    finally:
        if sampler:
            sampler.halt.set()
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
