#!/usr/bin/env python3
"""summarize.py RAW.CSV: bench.sh rows reduced to one Markdown row per
(server, load), in the order they first appear.

Per group: runs that succeeded, the median and the range of msgs/s, the
median server CPU per message (microseconds), the median client CPU
seconds, the worst "other" CPU and steal seconds (high values flag a
disturbed run), the highest peak RSS and PSS (MiB), and how many runs failed.
A run fails when smtp-source's rc is not 0; failed runs are counted but stay
out of every other column.
"""
import csv
import statistics
import sys


def number(text):
    """A float, or None for '-', 'FAIL', an empty or a missing cell."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def column(rows, name):
    return [v for v in (number(r.get(name)) for r in rows) if v is not None]


def cell(value, fmt):
    return "-" if value is None else fmt % value


def summarize(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups = {}  # (label, load) -> {"ok": [...], "failed": n}, insertion-ordered
    servers, loads = [], []
    for r in rows:
        if r["label"] not in servers:
            servers.append(r["label"])
        if r["load"] not in loads:
            loads.append(r["load"])
        g = groups.setdefault((r["label"], r["load"]), {"ok": [], "failed": 0})
        if r["rc"] == "0":
            g["ok"].append(r)
        else:
            g["failed"] += 1

    out = [
        "| server | load | runs | median msgs/s | min-max msgs/s "
        "| median server CPU µs/msg | median client CPU s | max other CPU s "
        "| max steal s | peak RSS MiB | peak PSS MiB | failed runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server in servers:
        for load in loads:
            g = groups.get((server, load))
            if g is None:
                continue
            ok = g["ok"]
            rates = column(ok, "msgs_per_s")
            per_msg = [
                number(r["server_cpu_s"]) / number(r["msgs"]) * 1e6
                for r in ok
                if number(r["server_cpu_s"]) is not None and number(r["msgs"])
            ]
            client, other = column(ok, "client_cpu_s"), column(ok, "other_cpu_s")
            steal = column(ok, "steal_s")
            rss, pss = column(ok, "peak_rss_kb"), column(ok, "peak_pss_kb")
            median = lambda v: statistics.median(v) if v else None
            biggest = lambda v: max(v) if v else None
            out.append(
                "| " + " | ".join([
                    server,
                    load,
                    str(len(ok)),
                    cell(median(rates), "%.0f"),
                    cell(min(rates) if rates else None, "%.0f")
                    + "-" + cell(biggest(rates), "%.0f"),
                    cell(median(per_msg), "%.0f"),
                    cell(median(client), "%.2f"),
                    cell(biggest(other), "%.2f"),
                    cell(biggest(steal), "%.2f"),
                    cell(biggest(rss) / 1024 if rss else None, "%.1f"),
                    cell(biggest(pss) / 1024 if pss else None, "%.1f"),
                    str(g["failed"]),
                ]) + " |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py RAW.CSV")
    print(summarize(sys.argv[1]))
