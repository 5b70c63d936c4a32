#!/usr/bin/env python3
"""Draws messages/s against sessions, one line per server, as SVG.

    python3 bench/chart.py RAW.CSV > docs/throughput.svg

RAW.CSV is what bench/compare.sh writes (bench.sh's rows: label, load, ...,
msgs/s). Medians over the repetitions. Two panels: a new connection per
message (loads s1, s20, s100) and connections reused (s1d, s20d). No
plotting library: plain SVG that any browser and GitHub show.
"""
import csv
import statistics
import sys
from collections import defaultdict

COLORS = {"postel": "#1f6feb", "smtp-sink": "#8b949e", "postfix": "#d1242f",
          "aiosmtpd": "#9a6700", "haraka": "#8250df"}


def load_rows(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    head = rows[0]
    i_label, i_load = head.index("label"), head.index("load")
    i_rate = head.index("msgs_per_s")
    data = defaultdict(list)
    for r in rows[1:]:
        try:
            data[(r[i_label], r[i_load])].append(float(r[i_rate]))
        except (ValueError, IndexError):
            pass
    return {k: statistics.median(v) for k, v in data.items()}


def panel(x0, title, loads, med, servers, w=420, h=300):
    xs = {l: i for i, l in enumerate(loads)}
    top = max([med.get((s, l), 0) for s in servers for l in loads] + [1]) * 1.1
    px = lambda l: x0 + 60 + xs[l] * (w - 90) / max(1, len(loads) - 1)
    py = lambda v: 40 + (h - 80) * (1 - v / top)
    out = [f'<text x="{x0 + w / 2}" y="22" text-anchor="middle" font-weight="bold">{title}</text>']
    for k in range(6):
        v = top * k / 5
        out.append(f'<line x1="{x0 + 55}" x2="{x0 + w - 25}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + 50}" y="{py(v) + 4:.1f}" text-anchor="end" font-size="11">{v:,.0f}</text>')
    for l in loads:
        sessions = l.rstrip("d")[1:]
        out.append(f'<text x="{px(l):.1f}" y="{h - 22}" text-anchor="middle" font-size="11">{sessions}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{h - 5}" text-anchor="middle" font-size="11">sessions</text>')
    for s in servers:
        pts = [(px(l), py(med[(s, l)])) for l in loads if (s, l) in med]
        if not pts:
            continue
        c = COLORS.get(s, "#000")
        out.append('<polyline fill="none" stroke-width="2.5" stroke="%s" points="%s"/>'
                   % (c, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}"/>')
    return out


def main():
    med = load_rows(sys.argv[1])
    servers = sorted({s for s, _ in med}, key=lambda s: list(COLORS).index(s) if s in COLORS else 99)
    body = []
    body += panel(0, "new connection per message", ["s1", "s20", "s100"], med, servers)
    body += panel(440, "connections reused (-d)", ["s1d", "s20d"], med, servers)
    y = 320
    for i, s in enumerate(servers):
        body.append(f'<rect x="{60 + i * 150}" y="{y}" width="14" height="14" fill="{COLORS.get(s, "#000")}"/>')
        body.append(f'<text x="{80 + i * 150}" y="{y + 12}" font-size="12">{s}</text>')
    body.append('<text x="5" y="180" font-size="11" transform="rotate(-90 12 180)">messages/s (median)</text>')
    print('<svg xmlns="http://www.w3.org/2000/svg" width="880" height="345" '
          'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>')
    print("\n".join(body))
    print("</svg>")


main()
