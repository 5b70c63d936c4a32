#!/usr/bin/env python3
"""An MTA-STS policy server for the tests: HTTPS on one loopback address,
serving /.well-known/mta-sts.txt by the Host header.

    mta_sts.py --listen IP:PORT --cert CERT --key KEY \
        --policy mta-sts.a.test=enforce:mx.a.test [--policy ...] [--html HOST]

Prints "ready" once it listens. Any other path or host: 404.
"""
import argparse
import http.server
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--policy", action="append", default=[])
    p.add_argument("--html", action="append", default=[],
                   help="a host whose policy is served as text/html")
    args = p.parse_args()
    policies = {}
    for item in args.policy:
        host, spec = item.split("=", 1)
        mode, mx = spec.split(":", 1)
        lines = ["version: STSv1", f"mode: {mode}"]
        lines += [f"mx: {m}" for m in mx.split(",") if m]
        lines.append("max_age: 86400")
        policies[host.lower()] = ("\r\n".join(lines) + "\r\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            body = policies.get(host)
            if self.path != "/.well-known/mta-sts.txt" or body is None:
                self.send_error(404)
                return
            self.send_response(200)
            kind = "text/html" if host in args.html else "text/plain; charset=utf-8"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ip, port = args.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((ip, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
