"""Postfix's spawn(8), for the tests: runs COMMAND once per connection on
a local socket, with the connection as its standard input and output, as
Postfix runs postfix-policyd-spf-python. Prints "ready" once listening.

Usage: python3 spawn.py SOCKET COMMAND [ARG...]
"""

import os
import socket
import subprocess
import sys
import threading


def main():
    path, command = sys.argv[1], sys.argv[2:]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        child = subprocess.Popen(command, stdin=conn.fileno(), stdout=conn.fileno())
        conn.close()
        threading.Thread(target=child.wait, daemon=True).start()


if __name__ == "__main__":
    main()
