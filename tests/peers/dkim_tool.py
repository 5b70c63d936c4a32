#!/usr/bin/env python3
"""dkimpy, as the tests use it: an independent DKIM and ARC implementation.

    dkim_tool.py sign DOMAIN SELECTOR KEY.pem < message > signed
    dkim_tool.py verify DNSPORT < message       -> one line per signature: pass/fail
    dkim_tool.py arcsign DOMAIN SELECTOR KEY.pem SRV_ID < message > sealed
    dkim_tool.py arcverify DNSPORT < message    -> "CV SETS COMMENT" (pass/fail/none)

DNS questions (verify) go to the loopback dnsmasq on 127.0.0.1:DNSPORT.
"""
import sys

import dkim
import dns.resolver

HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def txt_via(port):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port

    def lookup(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except Exception:
            return None
        for rr in answer:
            return b"".join(rr.strings)
        return None

    return lookup


def main():
    cmd = sys.argv[1]
    message = sys.stdin.buffer.read()
    if cmd == "sign":
        domain, selector, key = sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
        sig = dkim.sign(message, selector.encode(), domain.encode(), key,
                        include_headers=HEADERS, canonicalize=(b"relaxed", b"relaxed"))
        sys.stdout.buffer.write(sig + message)
    elif cmd == "verify":
        lookup = txt_via(int(sys.argv[2]))
        d = dkim.DKIM(message)
        count = message.lower().count(b"\ndkim-signature:") + (1 if message.lower().startswith(b"dkim-signature:") else 0)
        for i in range(count):
            try:
                ok = d.verify(idx=i, dnsfunc=lookup)
            except Exception as e:  # a signature dkimpy cannot read fails
                print(f"error {e}", file=sys.stderr)
                ok = False
            print("pass" if ok else "fail")
    elif cmd == "arcsign":
        domain, selector, key, srv_id = sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read(), sys.argv[5]
        headers = dkim.arc_sign(message, selector.encode(), domain.encode(), key, srv_id.encode(),
                                include_headers=HEADERS)
        sys.stdout.buffer.write(b"".join(headers) + message)
    elif cmd == "arcverify":
        lookup = txt_via(int(sys.argv[2]))
        cv, results, comment = dkim.arc_verify(message, dnsfunc=lookup)
        print(cv.decode(), len(results), comment)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
