#!/usr/bin/env python3
"""authheaders (with dkimpy), as the tests use it: an independent DMARC
implementation, in its DMARCbis mode (the tree walk), asking the loopback
dnsmasq only.

    dmarc_check.py DNSPORT SPF_RESULT MAIL_FROM < message  -> "RESULT POLICY"

SPF_RESULT is the MAIL FROM identity's result (pyspf and Postel agree on
those: tests/it/authentication.rs); DKIM is checked here, by dkimpy.
"""
import sys

import authheaders
import dns.resolver
from authres import SPFAuthenticationResult

port, spf_result, mail_from = int(sys.argv[1]), sys.argv[2], sys.argv[3]
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = port


def txt(name):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        for rr in resolver.resolve(name, "TXT", lifetime=5):
            return b"".join(rr.strings)
    except Exception:
        return None
    return None


def dkim_txt(name, timeout=5):
    return txt(name)


def dmarc_txt(name):
    found = txt(name)
    return found.decode() if found else None


# The PSD list is not shipped: authheaders would ask psddmarc.org's DNS.
# No public suffix here publishes DMARC, so none is a PSD.
authheaders.check_psddmarc_list = lambda *args, **kwargs: False

message = sys.stdin.buffer.read()
dkim_result = authheaders.check_dkim(message, dnsfunc=dkim_txt)
spf = SPFAuthenticationResult(result=spf_result, smtp_mailfrom=mail_from)
dmarc = authheaders.check_dmarc(message, spf_result=spf, dkim_result=dkim_result,
                                dnsfunc=dmarc_txt, dmarcbis=True)
print(dmarc.result, getattr(dmarc, "policy", None) or "none")
