"""A webhook receiver for the tests: it writes each request it gets
(headers and body) to DIR/NNN.json, and answers 500 to the first
--fail requests, 200 after. Prints "ready" once listening.

Usage: python3 webhook.py --port PORT --dir DIR [--fail N]
"""

import argparse
import http.server
import json
import os
import threading

COUNT = {"n": 0}
LOCK = threading.Lock()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--fail", type=int, default=0)
    a = p.parse_args()

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with LOCK:
                COUNT["n"] += 1
                n = COUNT["n"]
            status = 500 if n <= a.fail else 200
            record = {
                "n": n,
                "path": self.path,
                "status": status,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8"),
            }
            path = os.path.join(a.dir, "%03d.json" % n)
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(path + ".tmp", path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
