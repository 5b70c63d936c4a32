"""A test milter on Sendmail's own libmilter (Debian's python3-milter,
run with Debian's /usr/bin/python3): it writes what it was told to a JSON
file per message, and acts on the message's Subject at its end.

Subjects: "reject" (a 550 reply of its own), "tempfail", "discard",
"quarantine", "edit" (every header, body and envelope change), anything
else: continue. HELO refused.test is refused.

Usage: /usr/bin/python3 testmilter.py --port PORT --dir DIR
"""

import argparse
import json
import os

import Milter

SEEN = {"dir": "."}


class TestMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.log = {"headers": [], "body": b"", "macros": {}}

    def macros(self, stage, names):
        self.log["macros"][stage] = {n: self.getsymval(n) for n in names}

    def connect(self, hostname, family, hostaddr):
        self.log["connect"] = {"hostname": hostname, "addr": hostaddr[0]}
        self.macros("connect", ["j", "{client_addr}", "{daemon_name}", "v"])
        return Milter.CONTINUE

    def hello(self, name):
        self.log["helo"] = name
        if name == "refused.test":
            self.setreply("550", "5.7.1", "Not this HELO")
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        self.log = {"headers": [], "body": b"", "macros": self.log["macros"], "helo": self.log.get("helo"), "connect": self.log.get("connect")}
        self.log["from"] = f
        self.log["mail_args"] = list(args)
        self.macros("mail", ["{mail_addr}", "{auth_authen}", "i"])
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        self.log.setdefault("rcpts", []).append(to)
        self.macros("rcpt", ["{rcpt_addr}"])
        return Milter.CONTINUE

    def data(self):
        self.macros("data", ["i"])
        return Milter.CONTINUE

    def header(self, name, value):
        self.log["headers"].append([name, value])
        return Milter.CONTINUE

    def eoh(self):
        return Milter.CONTINUE

    def body(self, chunk):
        self.log["body"] += chunk
        return Milter.CONTINUE

    def eom(self):
        self.macros("eom", ["i"])
        subject = next((v for n, v in self.log["headers"] if n.lower() == "subject"), "")
        verdict = Milter.CONTINUE
        if subject == "reject":
            self.setreply("550", "5.7.1", "Rejected by the test milter")
            verdict = Milter.REJECT
        elif subject == "tempfail":
            verdict = Milter.TEMPFAIL
        elif subject == "discard":
            verdict = Milter.DISCARD
        elif subject == "quarantine":
            self.quarantine("held by the test milter")
            verdict = Milter.ACCEPT
        elif subject == "edit":
            self.addheader("X-Test-Milter", "added")
            self.addheader("X-Inserted", "at the top", 0)
            self.chgheader("Subject", 1, "edited")
            self.chgheader("X-Remove-Me", 1, "")
            self.replacebody(b"A new body.\r\n")
            self.chgfrom("<changed@here.test>")
            self.addrcpt("<added@here.test>")
            self.delrcpt("<gone@here.test>")
        self.log["body"] = self.log["body"].decode("utf-8", "replace")
        self.log["verdict"] = subject
        path = os.path.join(SEEN["dir"], "%s.json" % self.log["macros"]["eom"]["i"])
        with open(path + ".tmp", "w") as f:
            json.dump(self.log, f)
        os.rename(path + ".tmp", path)
        return verdict


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    SEEN["dir"] = a.dir
    Milter.factory = TestMilter
    Milter.set_flags(
        Milter.ADDHDRS | Milter.CHGBODY | Milter.ADDRCPT | Milter.DELRCPT
        | Milter.CHGHDRS | Milter.QUARANTINE | Milter.CHGFROM
    )
    Milter.runmilter("postel-test", "inet:%d@127.0.0.1" % a.port, 30)


if __name__ == "__main__":
    main()
