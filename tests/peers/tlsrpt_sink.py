#!/usr/bin/env python3
"""An HTTPS receiver of TLS reports (RFC 8460 3) for the tests: every POST
is checked (Content-Type application/tlsrpt+gzip), gunzipped, parsed as
JSON and written to DIR as one file; 201 when it reads, 400 when not.

Usage: tlsrpt_sink.py --listen IP:PORT --cert CERT.pem --key KEY.pem --dir DIR
Prints "ready" once listening; runs until killed.
"""
import argparse
import gzip
import http.server
import json
import os
import ssl
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    os.makedirs(args.dir, exist_ok=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                assert self.headers["Content-Type"] == "application/tlsrpt+gzip", self.headers
                body = self.rfile.read(int(self.headers["Content-Length"]))
                report = json.loads(gzip.decompress(body))
                name = os.path.join(args.dir, f"{time.time_ns()}.json")
                with open(name + ".tmp", "w") as f:
                    json.dump({"path": self.path, "report": report}, f)
                os.rename(name + ".tmp", name)
                self.send_response(201)
            except Exception as e:  # anything malformed is the sender's bug
                print(f"bad report: {e}", flush=True)
                self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer((host, int(port)), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
