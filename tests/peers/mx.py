#!/usr/bin/env python3
"""A receiving MX for Postel's delivery tests: aiosmtpd, with behaviours
chosen by the recipient's local part, so that one server plays many roles.

  reject...@   550 5.1.1 at RCPT (permanent)
  defer...@    451 4.7.1 at RCPT (temporary, every time)
  grey...@     451 4.7.1 the first time per (client, sender, recipient),
               then accepted: greylisting
  anything else accepted

Every accepted message is written to DIR as one JSON file: envelope, EHLO
name, whether TLS was on, and the content (latin-1, byte for byte).

Options shape the server: --cert FILE --key FILE offers STARTTLS with that
certificate; --hide KEYWORD drops an EHLO keyword (8BITMIME,
SMTPUTF8, PIPELINING, SIZE...); --size N advertises SIZE N; --max-rcpt N
answers 452 4.5.3 past N recipients in one transaction; --mode selects a
broken server instead: refuse (421 greeting), silent (accepts TCP, never
speaks), badtls (offers STARTTLS, then breaks the handshake), inject (sends
a second reply right after its 220 to STARTTLS), drop (closes the
connection at DATA).

Usage: mx.py --listen IP:PORT --dir DIR [options]. Runs until killed.
"""
import argparse
import asyncio
import json
import os
import time

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, args):
        self.args = args
        self.seen = set()
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        keep = []
        for line in responses:
            text = line[4:]
            keyword = text.split(" ")[0].upper()
            if keyword in self.args.hide:
                continue
            if keyword == "SIZE" and self.args.size:
                text = f"SIZE {self.args.size}"
            keep.append(text)
        if self.args.mode in ("badtls", "inject") and "STARTTLS" not in keep:
            keep.append("STARTTLS")
        return [f"250-{t}" for t in keep[:-1]] + [f"250 {keep[-1]}"]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if self.args.max_rcpt and len(envelope.rcpt_tos) >= self.args.max_rcpt:
            return "452 4.5.3 Too many recipients"
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if local.startswith("defer"):
            return "451 4.7.1 Try again later"
        if local.startswith("grey"):
            key = (session.peer[0], envelope.mail_from, address)
            if key not in self.seen:
                self.seen.add(key)
                return "451 4.7.1 Greylisted, come back later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.mode == "drop":
            server.transport.close()
            return "421 4.3.0 going away"
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "helo": session.host_name,
            "tls": session.ssl is not None,
            "peer": session.peer[0],
            "content": envelope.original_content.decode("latin-1"),
        }
        name = os.path.join(self.args.dir, f"{time.time_ns()}-{self.count}.json")
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        # Stored, not yet acknowledged: a sender that dies now has sent it
        # without knowing (it sends it again: a duplicate, never a loss).
        if self.args.delay:
            await asyncio.sleep(self.args.delay)
        return "250 2.0.0 Ok: stored"


class Inject(SMTP):
    async def smtp_STARTTLS(self, arg):
        # A reply and, in the same packet, a second one: whatever follows
        # the 220 must not be read as if it came over TLS.
        self.transport.write(b"220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected\r\n")
        await asyncio.sleep(1)
        self.transport.close()


class BadTls(SMTP):
    async def smtp_STARTTLS(self, arg):
        await self.push("220 2.0.0 Ready to start TLS")
        # A TLS alert instead of a ServerHello: the handshake fails.
        self.transport.write(b"\x15\x03\x01\x00\x02\x02\x28")
        self.transport.close()


async def broken(reader, writer, mode):
    if mode == "refuse":
        writer.write(b"421 4.3.2 Service not available, closing\r\n")
        await writer.drain()
        writer.close()
        return
    # silent: say nothing, read until the client gives up.
    try:
        while await reader.read(4096):
            pass
    finally:
        writer.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--hide", action="append", default=[], type=str.upper)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--max-rcpt", type=int, default=0)
    p.add_argument("--smtputf8", action="store_true")
    # Seconds between storing a message and acknowledging it.
    p.add_argument("--delay", type=float, default=0)
    # STARTTLS with this certificate and key (PEM).
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--mode", default="normal",
                   choices=["normal", "refuse", "silent", "badtls", "inject", "drop"])
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    os.makedirs(args.dir, exist_ok=True)
    loop = asyncio.new_event_loop()
    if args.mode in ("refuse", "silent"):
        server = loop.run_until_complete(asyncio.start_server(
            lambda r, w: broken(r, w, args.mode), host, int(port)))
    else:
        handler = Handler(args)
        cls = {"badtls": BadTls, "inject": Inject}.get(args.mode, SMTP)
        extra = {}
        if args.cert:
            import ssl
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.cert, args.key)
            extra = {"tls_context": ctx}
        server = loop.run_until_complete(loop.create_server(
            lambda: cls(handler, hostname=f"mx-{host}", enable_SMTPUTF8=args.smtputf8,
                        data_size_limit=args.size or 33554432, **extra),
            host, int(port)))
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
