#!/usr/bin/env python3
"""Reads a delivery status notification (one message, on stdin) with
Python's email package, checks it against RFC 3464, and prints what it
found as JSON: the headers, the parts, the per-message and per-recipient
fields, and a list of every rule it breaks ("errors", empty when it is
well formed). Postel's delivery tests assert on this output."""
import email
import email.policy
import json
import re
import sys

ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}
STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def main():
    raw = sys.stdin.buffer.read()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    errors = []
    out = {
        "from": msg.get("From"),
        "to": msg.get("To"),
        "subject": msg.get("Subject"),
        "auto_submitted": msg.get("Auto-Submitted"),
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
    if len(parts) < 2 or parts[1].get_content_type() != "message/delivery-status":
        errors.append("the second part is not message/delivery-status")
    else:
        blocks = parts[1].get_payload()
        if not blocks:
            errors.append("no per-message fields")
        else:
            out["per_message"] = dict(blocks[0].items())
            if not out["per_message"].get("Reporting-MTA", "").startswith("dns;"):
                errors.append("Reporting-MTA missing or not dns;")
            for b in blocks[1:]:
                r = dict(b.items())
                out["recipients"].append(r)
                if not r.get("Final-Recipient", "").lower().startswith("rfc822;"):
                    errors.append(f"Final-Recipient missing or not rfc822: {r}")
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
