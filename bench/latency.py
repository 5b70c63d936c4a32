#!/usr/bin/env python3
"""Time from the final "." of DATA to the server's 250, under concurrent load.

    python3 bench/latency.py 127.0.0.1:2600 [--sessions 20] [--messages 250] [--size 4096]

Opens SESSIONS connections (loopback only), each sending MESSAGES messages of
SIZE octets to one recipient @example.test, one after the other over its
connection, and measures for every message the time between writing the
end-of-data line and reading the complete reply. Prints one line: the server,
count, median, p90, p99 and max in milliseconds. Every reply must be 250, or
the run fails (a refused message must not pass as fast).
"""
import argparse
import asyncio
import ipaddress
import statistics
import sys
import time


async def session(host, port, n, body, out):
    r, w = await asyncio.open_connection(host, port)

    async def reply():
        while True:
            line = await r.readline()
            if not line:
                raise EOFError("connection closed")
            if line[3:4] != b"-":
                return line

    assert (await reply()).startswith(b"220")
    w.write(b"EHLO latency.test\r\n")
    await w.drain()
    assert (await reply()).startswith(b"250")
    for _ in range(n):
        w.write(b"MAIL FROM:<load@latency.test>\r\n")
        await w.drain()
        assert (await reply()).startswith(b"250")
        w.write(b"RCPT TO:<sink@example.test>\r\n")
        await w.drain()
        assert (await reply()).startswith(b"250")
        w.write(b"DATA\r\n")
        await w.drain()
        assert (await reply()).startswith(b"354")
        w.write(body)
        await w.drain()
        t = time.perf_counter()
        w.write(b".\r\n")
        await w.drain()
        line = await reply()
        out.append(time.perf_counter() - t)
        if not line.startswith(b"250"):
            raise RuntimeError(f"refused: {line!r}")
    w.write(b"QUIT\r\n")
    await w.drain()
    w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=250)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    host, port = a.server.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("latency.py: loopback addresses only")
    line = b"x" * 74 + b"\r\n"
    body = b"Subject: latency\r\n\r\n" + line * max(1, a.size // len(line))
    out = []
    await asyncio.gather(*(session(host, int(port), a.messages, body, out) for _ in range(a.sessions)))
    out.sort()
    q = lambda p: out[min(len(out) - 1, int(p * len(out)))] * 1000
    print(f"{a.label or a.server}: {len(out)} messages, {a.sessions} sessions: "
          f"median {statistics.median(out) * 1000:.2f} ms, p90 {q(0.90):.2f} ms, "
          f"p99 {q(0.99):.2f} ms, max {out[-1] * 1000:.2f} ms")


asyncio.run(main())
