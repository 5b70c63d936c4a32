#!/usr/bin/env python3
"""Large messages: smtp-source sends SIZE-octet messages over SESSIONS
connections, and this measures MB/s and the server's peak memory.

    python3 bench/large.py 127.0.0.1:2600 --pid PID [--label postel]
        [--sessions 4] [--messages 40] [--size 26214400] [--csv FILE]
    python3 bench/large.py --summary FILE.csv      (medians, as Markdown)

Runs Postfix's smtp-source (`-s SESSIONS -m MESSAGES -l SIZE -d`: each
session reuses its connection), loopback only. While it runs, the summed RSS
and PSS of the server's process tree (PID and its descendants: Postfix's
smtpd and cleanup processes count) are read every 0.1 s; the peaks are
reported. Prints one line:

    label sessions messages size elapsed_s MB_per_s server_cpu_s peak_rss_kib peak_pss_kib rc

MB/s counts payload octets (10^6 per MB) accepted over the whole run. rc is
smtp-source's exit status: 0 only if every reply was the expected one, so a
refused message cannot pass as throughput.
"""
import argparse
import csv
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time


def tree(root):
    """PIDs of root and all its descendants."""
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    keep, changed = {root}, True
    while changed:
        changed = False
        for p, pp in parent.items():
            if p not in keep and pp in keep:
                keep.add(p)
                changed = True
    return keep


def memory(pids):
    """Summed RSS and PSS in KiB."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    k, v = line.split(":", 1)
                    if k == "Rss":
                        rss += int(v.split()[0])
                    elif k == "Pss":
                        pss += int(v.split()[0])
        except (OSError, ValueError):
            pass
    return rss, pss


def cpu_seconds(pids):
    """utime + stime + children's, over the tree, in seconds."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def summary(path):
    """Medians per server of the rows in a --csv file, as a Markdown table,
    with each server's MB/s as a ratio of Postfix's when Postfix ran."""
    runs = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["label"], []).append(row)

    def median(rows, key):
        vals = [float(r[key]) for r in rows if r["rc"] == "0"]
        return statistics.median(vals) if vals else None

    base = median(runs.get("postfix", []), "mb_per_s")
    print("| server | runs ok | MB/s | vs Postfix | server CPU s | peak RSS MiB | peak PSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in runs.items():
        ok = sum(r["rc"] == "0" for r in rows)
        rate = median(rows, "mb_per_s")
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        cells = [median(rows, k) for k in ("server_cpu_s", "peak_rss_kib", "peak_pss_kib")]
        print(f"| {label} | {ok}/{len(rows)} | {rate if rate is None else round(rate)} | {ratio} | "
              + " | ".join("-" if c is None else (f"{c:.2f}" if i == 0 else f"{c / 1024:.1f}")
                           for i, c in enumerate(cells)) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", nargs="?")
    ap.add_argument("--summary", metavar="CSV")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--label", default="server")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--size", type=int, default=25 * 1024 * 1024)
    ap.add_argument("--csv")
    a = ap.parse_args()
    if a.summary:
        summary(a.summary)
        return 0
    if not a.target or a.pid is None:
        ap.error("a target and --pid are needed")
    host, _, port = a.target.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        sys.exit(f"large.py: refusing non-loopback target {host}")
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"

    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, pss = memory(tree(a.pid))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            done.wait(0.1)

    sampler = threading.Thread(target=sample)
    cpu0 = cpu_seconds(tree(a.pid))
    sampler.start()
    t0 = time.perf_counter()
    run = subprocess.run(
        [source, "-s", str(a.sessions), "-m", str(a.messages), "-l", str(a.size), "-d",
         "-M", "client.example.test", "-f", "a@example.test", "-t", "b@example.test",
         f"{host}:{port}"],
        capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    cpu = cpu_seconds(tree(a.pid)) - cpu0
    rate = a.messages * a.size / 1e6 / elapsed
    if run.returncode != 0:
        print(f"large.py: smtp-source exit {run.returncode}: {run.stdout[-300:]} {run.stderr[-300:]}",
              file=sys.stderr)
    row = [a.label, a.sessions, a.messages, a.size, f"{elapsed:.3f}",
           f"{rate:.1f}" if run.returncode == 0 else "FAIL", f"{cpu:.2f}",
           peak[0], peak[1], run.returncode]
    print(" ".join(str(x) for x in row))
    if a.csv:
        new = not os.path.exists(a.csv) or os.path.getsize(a.csv) == 0
        with open(a.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["label", "sessions", "messages", "size", "elapsed_s", "mb_per_s",
                            "server_cpu_s", "peak_rss_kib", "peak_pss_kib", "rc"])
            w.writerow(row)
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
