#!/usr/bin/env python3
"""Cost of viewing a hostile message: server memory for each web API view.

Starts its own Postel (`--postel`, default target/release/postel) in a fresh
temporary data folder with an SMTP listener and the web listener on free
loopback ports (no token: loopback), sends each message below over SMTP, and
then fetches, one at a time,

    GET /api/v1/messages/{id}        (parsed: headers, bodies, attachments)
    GET /api/v1/messages/{id}/html
    GET /api/v1/messages/{id}/raw

Before each GET the server's VmHWM is reset (`echo 5 > /proc/PID/clear_refs`)
and its VmRSS read ("at rest"); after it VmHWM is read. The table gives the
peak minus the RSS at rest, the HTTP status, the size and time of the
answer, and whether the server is still alive. A server that dies is a
finding: it is reported (exit status and the last log lines) and restarted
on the same data folder for the next request.

Messages (`--only` picks some, comma-separated):

    plain      a small ordinary message, for comparison
    headers    ~8 MiB of header section made of short lines `X:a` (about
               1.7 million header fields), a blank line and a short body
    rfc822     `Content-Type: message/rfc822` nested N levels deep
               (--depth, default 50000: about 1.6 MB)
    multipart  multipart/mixed nested N levels deep, a distinct boundary per
               level (--multipart-depth, default 50000: about 3 MB; 0 skips)

If the server refuses a message over SMTP, the table says so with its reply.
Extra config (to raise limits a newer server may have) goes in with
`--config-extra 'TOML'`; its keys are merged into the generated file, table
by table (`[limits]\\nmax_header_lines = 3000000`).

    cargo build --release -p postel
    python3 bench/view_rss.py [--postel PATH] [--only headers,rfc822] [--out FILE.md]

Linux only (/proc), loopback only, bounded: each request waits at most
--timeout seconds (default 120). Nothing is written outside a temporary
folder unless --out is given.
"""

import argparse
import http.client
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

BASE_CONFIG = {
    "": {"hostname": '"mx.test"'},
    "smtp": {"listen": '["127.0.0.1:0"]'},
    "web": {"listen": '"127.0.0.1:0"'},
    "limits": {"max_message_size": "67108864", "data_timeout": "120"},
}


def merge_config(base, extra):
    """base: {table: {key: value text}}; extra: TOML text of `[table]` and
    `key = value` lines (one line per value). Returns the merged TOML."""
    conf = {t: dict(kv) for t, kv in base.items()}
    table = ""
    for raw in (extra or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([^\[\]]+)\]", line)
        if m:
            table = m.group(1).strip()
            conf.setdefault(table, {})
            continue
        if "=" not in line:
            raise ValueError(f"--config-extra: cannot read {raw!r} (one `key = value` a line)")
        k, v = line.split("=", 1)
        conf.setdefault(table, {})[k.strip()] = v.strip()
    out = [f"{k} = {v}" for k, v in conf.get("", {}).items()]
    for t, kv in conf.items():
        if t:
            out.append(f"\n[{t}]")
            out += [f"{k} = {v}" for k, v in kv.items()]
    return "\n".join(out) + "\n"


class Server:
    """A postel process with its own config, ports parsed from its log."""

    def __init__(self, binary, config_text, workdir):
        cfg = os.path.join(workdir, "postel.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        self.smtp = {}
        self.web = None
        self.log = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", cfg],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        self.drainer = threading.Thread(target=self._drain, daemon=True)
        self.drainer.start()
        deadline = time.monotonic() + 30
        while not self.ready.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postel did not start:\n" + "".join(self.log[-20:]))
            self.ready.wait(0.1)

    def _drain(self):
        for line in self.proc.stderr:
            line = ANSI.sub("", line)
            self.log.append(line)
            del self.log[:-500]
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

    def mem(self):
        """(VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            s = f.read()
        return (int(re.search(r"VmRSS:\s+(\d+)", s).group(1)),
                int(re.search(r"VmHWM:\s+(\d+)", s).group(1)))

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def death(self):
        """Exit status and the telling log lines of a dead server."""
        self.proc.wait()
        self.drainer.join(2)
        rc = self.proc.returncode
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
        for pattern in (r"overflow", r"panicked|fatal|abort|memory", r"ERROR|error"):
            tell = [l.strip() for l in self.log if re.search(pattern, l, re.I)]
            if tell:
                return how, " / ".join(t[:160] for t in tell[-2:])
        return how, self.log[-1].strip()[:200] if self.log else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------- messages ---

def msg_plain():
    return (b"From: a@b.test\r\nTo: c@d.test\r\nSubject: plain\r\n"
            b"Content-Type: text/plain\r\n\r\nHello.\r\n")


def msg_headers(size):
    head = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: many header lines\r\n"
    line = b"X:a\r\n"
    n = max(0, (size - len(head)) // len(line))
    return head + line * n + b"\r\nBody.\r\n", n


def msg_rfc822(depth):
    head = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: nested message/rfc822\r\n"
    level = b"Content-Type: message/rfc822\r\n\r\n"
    return head + level * depth + b"Subject: innermost\r\n\r\nHello.\r\n"


def msg_multipart(depth):
    head = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: nested multipart\r\n"
    opens, closes = [], []
    for i in range(depth):
        b = b"b%x" % i
        opens.append(b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n")
        closes.append(b"\r\n--" + b + b"--\r\n")
    inner = b"Content-Type: text/plain\r\n\r\nHello."
    return head + b"".join(opens) + inner + b"".join(reversed(closes))


# ----------------------------------------------------------------- SMTP ---

def read_reply(sock, buf):
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


def send_message(port, data, timeout):
    """Sends one message; returns (True, id) or (False, what the server said)."""
    if any(l.startswith(b".") for l in data.split(b"\r\n")):
        data = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in data.split(b"\r\n"))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        r, buf = read_reply(s, buf)
        for cmd, want in ((b"EHLO view.test", "250"), (b"MAIL FROM:<a@b.test>", "250"),
                          (b"RCPT TO:<c@d.test>", "250"), (b"DATA", "354")):
            s.sendall(cmd + b"\r\n")
            r, buf = read_reply(s, buf)
            if not r.startswith(want):
                return False, f"{cmd.decode()} -> {r.splitlines()[-1]}"
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            s.sendall(view[i:i + (1 << 20)])
        s.sendall(b".\r\n")
        r, buf = read_reply(s, buf)
        m = re.search(r"queued as (\S+)", r)
        if r.startswith("250") and m:
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return True, m.group(1)
        return False, f"end of data -> {r.splitlines()[-1]}"
    except (OSError, EOFError) as e:
        return False, f"SMTP error: {e!r}"
    finally:
        s.close()


# ----------------------------------------------------------------- HTTP ---

def get(port, path, timeout):
    """(status or error text, bytes of body, seconds)."""
    t = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": "127.0.0.1"})
        r = c.getresponse()
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        return str(r.status), n, time.monotonic() - t
    except socket.timeout:
        return "timeout", 0, time.monotonic() - t
    except (OSError, http.client.HTTPException) as e:
        return f"no answer ({type(e).__name__})", 0, time.monotonic() - t
    finally:
        c.close()


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def size(n):
    return f"{n / 1048576:.2f} MiB" if n >= 1048576 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postel", default=DEFAULT_BIN, help="path to the postel binary")
    ap.add_argument("--header-bytes", type=int, default=8 << 20, help="size of the many-header message")
    ap.add_argument("--depth", type=int, default=50000, help="message/rfc822 nesting depth")
    ap.add_argument("--multipart-depth", type=int, default=50000, help="multipart nesting depth; 0 skips")
    ap.add_argument("--only", help="comma-separated: plain,headers,rfc822,multipart")
    ap.add_argument("--config-extra", default="", help="TOML lines merged into the config")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per SMTP send and per GET")
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()
    binary = os.path.abspath(args.postel)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no postel binary at {binary}: build it, or pass --postel")
    if not (0 < args.header_bytes <= 256 << 20 and 0 <= args.depth <= 10_000_000
            and 0 <= args.multipart_depth <= 10_000_000):
        ap.error("--header-bytes up to 256 MiB, depths up to 10,000,000")

    cases = [("plain", "small ordinary message", lambda: msg_plain())]
    hb, nlines = msg_headers(args.header_bytes)
    cases.append(("headers", f"{nlines:,} header lines `X:a` ({size(len(hb))})", lambda: hb))
    if args.depth:
        cases.append(("rfc822", f"message/rfc822 nested {args.depth:,} deep", lambda: msg_rfc822(args.depth)))
    if args.multipart_depth:
        cases.append(("multipart", f"multipart/mixed nested {args.multipart_depth:,} deep",
                      lambda: msg_multipart(args.multipart_depth)))
    if args.only:
        want = set(args.only.split(","))
        cases = [c for c in cases if c[0] in want]

    work = tempfile.mkdtemp(prefix="postel-view-")
    base = dict(BASE_CONFIG)
    base[""] = dict(base[""], data_dir=f'"{os.path.join(work, "data")}"')
    config = merge_config(base, args.config_extra)
    srv = None
    rows, findings = [], []
    try:
        srv = Server(binary, config, work)
        time.sleep(0.5)
        start_rss = srv.mem()[0]
        for name, what, make in cases:
            data = make()
            if not srv.alive():
                srv = Server(binary, config, work)
            ok, sent = send_message(srv.smtp["smtp"], data, args.timeout)
            if not srv.alive():
                how, line = srv.death()
                findings.append(f"{name}: the server died while receiving the message ({how}): `{line}`")
                rows.append((name, what, size(len(data)), "(SMTP)", "-", "-", "-", "-", "-", "-", f"NO ({how})"))
                continue
            if not ok:
                findings.append(f"{name}: the server REFUSED the message over SMTP: `{sent}`")
                rows.append((name, what, size(len(data)), "(SMTP)", f"refused: {sent}", "-", "-", "-", "-", "-", "yes"))
                continue
            mid = sent
            for suffix in ("", "/html", "/raw"):
                path = f"/api/v1/messages/{mid}{suffix}"
                if not srv.alive():
                    srv = Server(binary, config, work)
                    time.sleep(0.5)
                srv.reset_peak()
                rest = srv.mem()[0]
                status, nbytes, secs = get(srv.web, path, args.timeout)
                time.sleep(0.2)  # a dying server: let it finish dying
                if srv.alive():
                    hwm = srv.mem()[1]
                    rows.append((name, what, size(len(data)), f"GET {suffix or '/'}", status, size(nbytes),
                                 f"{secs:.2f} s", mib(rest), mib(hwm), mib(hwm - rest), "yes"))
                else:
                    how, line = srv.death()
                    findings.append(f"{name} GET {suffix or '/'}: the server DIED ({how}): `{line}`")
                    rows.append((name, what, size(len(data)), f"GET {suffix or '/'}", status, size(nbytes),
                                 f"{secs:.2f} s", mib(rest), "n/a", "n/a", f"NO ({how})"))
    finally:
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    out = [f"### view_rss: server memory to view hostile messages through the web API\n",
           f"Binary: `{binary}`. RSS at rest after start: {mib(start_rss)}."
           + (f" Extra config: `{args.config_extra!r}`." if args.config_extra else "") + "\n",
           "| message | what | size | request | HTTP status | answer size | time | RSS at rest | peak (VmHWM) | peak - rest | server alive after |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    if findings:
        out.append("\nFindings:\n")
        out += [f"- {f}" for f in findings]
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
