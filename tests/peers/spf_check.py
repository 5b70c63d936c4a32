#!/usr/bin/python3
"""pyspf (Debian's python3-spf), as the tests use it: an independent SPF
implementation asking the loopback dnsmasq.

    spf_check.py DNSPORT IP HELO SENDER...  -> one result a line
"""
import sys

import DNS
import spf

port, ip, helo = int(sys.argv[1]), sys.argv[2], sys.argv[3]
DNS.defaults["server"] = ["127.0.0.1"]
DNS.defaults["port"] = port
for sender in sys.argv[4:]:
    result, _explanation = spf.check2(i=ip, s=sender, h=helo)
    print(result)
