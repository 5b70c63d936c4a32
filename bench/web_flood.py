#!/usr/bin/env python3
"""Web connection flood: can unfinished HTTP requests starve the whole server?

Starts its own Postel (`--postel`, default target/release/postel) under
`prlimit --nofile=N:N` (--nofile, default 20000) in a fresh temporary data
folder, with an SMTP listener and the web listener on free loopback ports.
Then opens up to M TCP connections (--conns, default 21000) to the web port
as fast as it can, each sending the start of an HTTP request that never
ends (`GET / HTTP/1.1`, `Host: 127.0.0.1`, then `X-A: ` and nothing more).
Client sockets come from 127.0.1.1 .. 127.0.1.<--sources> so that ephemeral
ports do not run out, and are held by worker processes, each with its
RLIMIT_NOFILE raised to its hard limit (more workers when one is not
enough). Opening stops at M, or once connects fail or time out
(--connect-timeout, default 3 s) --max-fail times in a row.

Then, with every partial request still open, it reports:
  - the server's open file descriptors (/proc/PID/fd) and its RSS;
  - whether a fresh SMTP connection gets its `220` greeting within 5 s;
  - what a normal `GET /api/v1/status` gets, and how fast (5 s limit).
Then it keeps the partial requests open and counts how many the server has
closed (EOF or reset) 10, 30, 60 and 120 s after the last one was opened
(--max-wait, default 120 s), repeating the SMTP and HTTP checks at each
point. Everything is closed at the end.

Run on Linux as root or as the user that runs the server (it reads
/proc/PID), with prlimit (util-linux) installed:

    cargo build --release -p postel
    python3 bench/web_flood.py [--postel PATH] [--nofile 20000] [--conns 21000] [--out FILE.md]

Loopback only; bounded in count (M) and time (opening stops on repeated
failures; the wait is --max-wait). Nothing is written outside a temporary
folder unless --out is given.
"""

import argparse
import multiprocessing as mp
import os
import queue
import re
import resource
import select
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
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PARTIAL = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: "

CONFIG = """\
hostname = "mx.test"
data_dir = "{data_dir}"

[smtp]
listen = ["127.0.0.1:0"]

[web]
listen = "127.0.0.1:0"
"""


class Server:
    """postel under prlimit, ports parsed from its log."""

    def __init__(self, binary, config_text, workdir, nofile):
        cfg = os.path.join(workdir, "postel.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        self.smtp = {}
        self.web = None
        self.log = []
        self.emfile = 0  # log lines about running out of descriptors
        self.ready = threading.Event()
        # prlimit sets the limit on itself, then execs postel: same PID.
        self.proc = subprocess.Popen(
            ["prlimit", f"--nofile={nofile}:{nofile}", "--", binary, "serve", "--config", cfg],
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
            if re.search(r"Too many open files|os error 24", line):
                self.emfile += 1
            self.log.append(line)
            del self.log[:-300]
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

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def rss(self):
        with open(f"/proc/{self.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def nofile(self):
        with open(f"/proc/{self.pid}/limits") as f:
            m = re.search(r"Max open files\s+(\d+)\s+(\d+)", f.read())
        return m and int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -------------------------------------------------------------- workers ---

def worker(wid, port, sources, quota, connect_timeout, max_fail, stop_opening, stop_all, results):
    """Opens up to `quota` partial requests, reports, then watches them for
    EOF/reset until stop_all is set; reports the close times; closes all."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    socks = {}
    opened_at = {}
    fails = 0
    fail_total = 0
    last_error = ""
    i = 0
    t_last = None
    while len(socks) < quota and not stop_opening.is_set():
        src = sources[i % len(sources)]
        i += 1
        s = None
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
            s.settimeout(connect_timeout)
            s.connect(("127.0.0.1", port))
            s.sendall(PARTIAL)
            s.setblocking(False)
            socks[s.fileno()] = s
            t_last = time.monotonic()
            opened_at[s.fileno()] = t_last
            fails = 0
        except (OSError, socket.timeout) as e:
            if s is not None:
                s.close()
            fails += 1
            fail_total += 1
            last_error = f"{type(e).__name__}: {e}"[:100]
            if isinstance(e, OSError) and e.errno == 24:  # our own limit
                break
            if fails >= max_fail:
                stop_opening.set()
    results.put(("opened", wid, len(socks), fail_total, last_error, t_last))

    ep = select.epoll()
    for fd in socks:
        ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP)
    closed = []  # (time closed, time it had been open, "eof"/"reset")
    got_data = 0
    while socks and not stop_all.is_set():
        for fd, _ in ep.poll(0.2, maxevents=4096):
            s = socks.get(fd)
            if s is None:
                continue
            try:
                d = s.recv(65536)
                if d:
                    got_data += 1
                    continue
                how = "eof"
            except BlockingIOError:
                continue
            except OSError:
                how = "reset"
            now = time.monotonic()
            closed.append((now, now - opened_at[fd], how))
            ep.unregister(fd)
            s.close()
            del socks[fd]
    results.put(("closed", wid, closed, got_data))
    for s in socks.values():
        s.close()


# --------------------------------------------------------------- probes ---

def smtp_probe(port, limit=5.0):
    """(greeted within limit?, seconds, what happened)."""
    t = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    except (OSError, socket.timeout) as e:
        return False, time.monotonic() - t, f"connect: {type(e).__name__}"
    try:
        s.settimeout(max(0.1, limit - (time.monotonic() - t)))
        d = s.recv(512)
        dt = time.monotonic() - t
        if d.startswith(b"220"):
            s.sendall(b"QUIT\r\n")
            return True, dt, d.split(b"\r\n")[0].decode("latin-1")[:60]
        return False, dt, repr(d[:60]) if d else "closed without greeting"
    except socket.timeout:
        return False, time.monotonic() - t, "no greeting"
    except OSError as e:
        return False, time.monotonic() - t, f"{type(e).__name__}"
    finally:
        s.close()


def http_probe(port, limit=5.0):
    """(status or failure, seconds)."""
    t = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    except (OSError, socket.timeout) as e:
        return f"connect: {type(e).__name__}", time.monotonic() - t
    try:
        s.settimeout(max(0.1, limit - (time.monotonic() - t)))
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        d = s.recv(4096)
        m = re.match(rb"HTTP/1\.[01] (\d{3})", d)
        return (m.group(1).decode() if m else ("closed" if not d else repr(d[:30]))), time.monotonic() - t
    except socket.timeout:
        return "timeout", time.monotonic() - t
    except OSError as e:
        return type(e).__name__, time.monotonic() - t
    finally:
        s.close()


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postel", default=DEFAULT_BIN, help="path to the postel binary")
    ap.add_argument("--nofile", type=int, default=20000, help="the server's RLIMIT_NOFILE")
    ap.add_argument("--conns", type=int, default=21000, help="most partial requests to open")
    ap.add_argument("--sources", type=int, default=50, help="client addresses 127.0.1.1..N (at most 254)")
    ap.add_argument("--connect-timeout", type=float, default=3.0)
    ap.add_argument("--max-fail", type=int, default=5, help="consecutive connect failures that stop opening")
    ap.add_argument("--max-wait", type=float, default=120.0, help="seconds to watch for the server closing them")
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()
    binary = os.path.abspath(args.postel)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no postel binary at {binary}: build it, or pass --postel")
    if shutil.which("prlimit") is None:
        sys.exit("needs prlimit (util-linux)")
    if not (1 <= args.sources <= 254 and 1 <= args.conns <= 200000 and 0 < args.max_wait <= 3600
            and 64 <= args.nofile <= 1 << 20):
        ap.error("--sources 1..254, --conns up to 200000, --max-wait up to 3600, --nofile 64..1048576")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_worker = max(100, hard - 100)
    nworkers = -(-args.conns // per_worker)
    if nworkers > 16:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.conns} connections")
    sources = [f"127.0.1.{i}" for i in range(1, args.sources + 1)]
    checkpoints = [c for c in (10, 30, 60, 120) if c < args.max_wait] + [args.max_wait]

    work = tempfile.mkdtemp(prefix="postel-webflood-")
    srv = None
    procs = []
    out = []
    ctx = mp.get_context("fork")
    stop_opening, stop_all = ctx.Event(), ctx.Event()
    results = ctx.Queue()
    try:
        srv = Server(binary, CONFIG.format(data_dir=os.path.join(work, "data")), work, args.nofile)
        smtp_port, web_port = srv.smtp["smtp"], srv.web
        time.sleep(0.5)
        fds_rest, rss_rest = srv.fds(), srv.rss()
        ok0, t_ok0, _ = smtp_probe(smtp_port)
        st0, t_st0 = http_probe(web_port)

        t_open0 = time.monotonic()
        base, extra = divmod(args.conns, nworkers)
        for w in range(nworkers):
            quota = base + (1 if w < extra else 0)
            # each worker its own slice of the source addresses
            srcs = sources[w::nworkers] or sources
            p = ctx.Process(target=worker, daemon=True,
                            args=(w, web_port, srcs, quota, args.connect_timeout, args.max_fail,
                                  stop_opening, stop_all, results))
            p.start()
            procs.append(p)
        opened, fail_total, errors, t_last = 0, 0, set(), t_open0
        bound = time.monotonic() + args.conns * 0.05 + 120  # opening is bounded too
        for _ in procs:
            kind, wid, n, f, err, tl = results.get(timeout=max(1, bound - time.monotonic()))
            opened += n
            fail_total += f
            if err:
                errors.add(err)
            if tl:
                t_last = max(t_last, tl)
        t_open1 = time.monotonic()

        fds_full, rss_full = srv.fds(), srv.rss()
        ok1, t_ok1, what1 = smtp_probe(smtp_port)
        st1, t_st1 = http_probe(web_port)

        # Watch: the workers record when each socket is closed by the server.
        marks = []
        for c in checkpoints:
            while time.monotonic() < t_last + c:
                time.sleep(max(0.0, min(0.5, t_last + c - time.monotonic())))
                if not srv.alive():
                    break
            ok, t_ok, what = smtp_probe(smtp_port)
            st, t_st = http_probe(web_port)
            marks.append((c, time.monotonic() - t_last, srv.fds(), ok, t_ok, what, st, t_st))
            if not srv.alive():
                break
        stop_all.set()
        closed, got_data = [], 0
        for _ in procs:
            kind, wid, cl, gd = results.get(timeout=60)
            closed += cl
            got_data += gd
        for p in procs:
            p.join(30)

        lifetimes = sorted(c[1] for c in closed)
        resets = sum(1 for c in closed if c[2] == "reset")
        out.append("### web_flood: unfinished HTTP requests against the web listener\n")
        out.append(f"Binary: `{binary}`, under `prlimit --nofile={args.nofile}:{args.nofile}` "
                   f"(server's limit read back: {srv.nofile() if srv.alive() else 'n/a'}). "
                   f"{nworkers} client process(es), sources 127.0.1.1..{args.sources}, "
                   f"client RLIMIT_NOFILE {hard}.\n")
        out.append("| measure | value |")
        out.append("|---|---|")
        out.append(f"| at rest: server fds / RSS | {fds_rest} / {mib(rss_rest)} |")
        out.append(f"| at rest: SMTP 220 / GET /api/v1/status | {'yes' if ok0 else 'NO'} in {t_ok0:.3f} s / {st0} in {t_st0:.3f} s |")
        out.append(f"| partial requests opened (of {args.conns}) | {opened} in {t_open1 - t_open0:.1f} s |")
        out.append(f"| connect failures while opening | {fail_total}" + (f" (last: {'; '.join(sorted(errors))})" if errors else "") + " |")
        out.append(f"| server open fds after opening | {fds_full} (limit {args.nofile}) |")
        out.append(f"| server RSS after opening | {mib(rss_full)} |")
        out.append(f"| fresh SMTP connection: 220 within 5 s? | {'yes' if ok1 else 'NO'} ({t_ok1:.3f} s; {what1}) |")
        out.append(f"| GET /api/v1/status | {st1} in {t_st1:.3f} s |")
        out.append(f"| server log lines about too many open files | {srv.emfile} |")
        out.append("")
        out.append("| time after the last one opened | partial requests closed by the server (EOF / reset) | still open | server fds | SMTP 220 within 5 s | GET /api/v1/status |")
        out.append("|---|---|---|---|---|---|")
        for c, actual, fds, ok, t_ok, what, st, t_st in marks:
            n = sum(1 for x in closed if x[0] - t_last <= actual)
            e = sum(1 for x in closed if x[0] - t_last <= actual and x[2] == "eof")
            out.append(f"| {c:g} s | {n} ({e} / {n - e}) | {opened - n} | {fds} | "
                       f"{'yes' if ok else 'NO'} ({t_ok:.2f} s{'' if ok else '; ' + what}) | {st} ({t_st:.2f} s) |")
        if lifetimes:
            out.append(f"\nClosed by the server: {len(lifetimes)} of {opened} ({resets} by reset), "
                       f"after {lifetimes[0]:.1f} s (first) / {lifetimes[len(lifetimes) // 2]:.1f} s (median) / "
                       f"{lifetimes[-1]:.1f} s (last) open.")
        else:
            out.append(f"\nThe server closed none of the {opened} partial requests in {args.max_wait:g} s.")
        if got_data:
            out.append(f"{got_data} reads returned data (a response to a partial request, e.g. 408).")
        if not srv.alive():
            out.append(f"\n**The server exited** (code {srv.proc.returncode}). Last log lines:\n```\n"
                       + "".join(srv.log[-10:]) + "```")
    finally:
        stop_opening.set()
        stop_all.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
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
