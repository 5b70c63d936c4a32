#!/usr/bin/env python3
"""Reads a delivery status notification (one message, on stdin) with
Python's email package, checks it against RFC 3464, and prints what it
found as JSON: the headers, the parts, the per-message and per-recipient
fields, and a list of every rule it breaks ("errors", empty when it is
well formed). Postel's delivery tests assert on this output."""
import email
import email.parser
import email.policy
import json
import re
import sys

ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}
STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def main():
    raw = sys.stdin.buffer.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    errors = []
    out = {
        "from": str(msg.get("From")),
        "to": str(msg.get("To")),
        "subject": str(msg.get("Subject")),
        "auto_submitted": str(msg.get("Auto-Submitted")),
        "content_type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "parts": [],
        "per_message": {},
        "recipients": [],
        "original": None,
        "errors": errors,
    }
    if out["content_type"] != "multipart/report":
        errors.append("not multipart/report")
    if out["report_type"] != "delivery-status":
        errors.append("report-type is not delivery-status")
    parts = msg.get_payload() if msg.is_multipart() else []
    out["parts"] = [p.get_content_type() for p in parts]
    # RFC 6533: message/global-delivery-status where addresses are UTF-8.
    status_types = ("message/delivery-status", "message/global-delivery-status")
    if len(parts) < 2 or parts[1].get_content_type() not in status_types:
        errors.append("the second part is not message/(global-)delivery-status")
    else:
        blocks = parts[1].get_payload()
        if parts[1].get_content_type() == "message/global-delivery-status":
            # Python reads message/global-delivery-status as one message:
            # the first group of fields as its header, the rest as its body,
            # split here on empty lines.
            first = blocks[0]
            rest = first.get_payload(decode=True) or b""
            rest = rest.decode("utf-8")
            groups = [g for g in str(rest).replace("\r\n", "\n").split("\n\n") if g.strip()]
            hp = email.parser.HeaderParser(policy=email.policy.default)
            blocks = [first] + [hp.parsestr(g) for g in groups]
        if not blocks:
            errors.append("no per-message fields")
        else:
            out["per_message"] = {k: str(v) for k, v in blocks[0].items()}
            if not out["per_message"].get("Reporting-MTA", "").startswith("dns;"):
                errors.append("Reporting-MTA missing or not dns;")
            for b in blocks[1:]:
                r = {k: str(v) for k, v in b.items()}
                out["recipients"].append(r)
                kind = r.get("Final-Recipient", "").split(";")[0].strip().lower()
                if kind not in ("rfc822", "utf-8"):
                    errors.append(f"Final-Recipient missing or not rfc822/utf-8: {r}")
                if kind == "utf-8" and parts[1].get_content_type() != status_types[1]:
                    errors.append("a utf-8 address outside message/global-delivery-status")
                if r.get("Action", "").lower() not in ACTIONS:
                    errors.append(f"bad Action: {r}")
                if not STATUS.match(r.get("Status", "")):
                    errors.append(f"bad Status: {r}")
            if not out["recipients"]:
                errors.append("no per-recipient fields")
    if len(parts) >= 3:
        kind = parts[2].get_content_type()
        out["original"] = kind
        if kind not in ("message/rfc822", "text/rfc822-headers"):
            errors.append(f"the third part is {kind}")
        if kind == "message/rfc822":
            inner = parts[2].get_payload()
            out["original_subject"] = inner[0].get("Subject") if inner else None
            out["original_body"] = inner[0].get_payload() if inner else None
        else:
            out["original_headers"] = parts[2].get_payload()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
