#!/usr/bin/env python3
"""SVG charts from the JSON of scripts/bench-growth.sh and scripts/bench-connections.sh.

  scripts/charts.py [--markdown] docs/bench-results/<run>-growth.json docs/bench-results/<run>-connections.json

(also the -knowledge.json of scripts/bench-knowledge.sh). --markdown prints the tables too.

Writes <json name without .json>-<chart>.svg beside each JSON file. Standard library only:
the SVG is written by hand (line charts, log or linear axes, a legend).
"""
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

W, H = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = []
        for e in range(a, b + 1):
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo <= v <= hi:
                    ticks.append(v)
        return ticks
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9)))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 8:
            step *= m
            break
    t, out = math.floor(lo / step) * step, []
    while t <= hi + 1e-9:
        out.append(t)
        t += step
    return out


def fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def chart(path: Path, title: str, xlabel: str, ylabel: str, series: list[dict], xlog=True, ylog=True,
          hlines=(), note: str = "") -> None:
    """series: {label, xs, ys, color?, dash?}; hlines: {label, y, color?}."""
    pts = [(x, y) for s in series for x, y in zip(s["xs"], s["ys"]) if y is not None and y > 0]
    ys = [y for _, y in pts] + [h["y"] for h in hlines if h["y"]]
    xs = [x for x, _ in pts]
    if not pts:
        return
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if ylog:
        ylo, yhi = 10 ** math.floor(math.log10(ylo)), 10 ** math.ceil(math.log10(yhi))
    else:
        ylo, yhi = 0, yhi * 1.1
    if xlo == xhi:
        xhi = xlo * 10 if xlog else xlo + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x):
        f = (math.log10(x) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) if xlog else \
            (x - xlo) / (xhi - xlo)
        return LEFT + f * pw

    def sy(y):
        f = (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) if ylog else \
            (y - ylo) / (yhi - ylo)
        return TOP + ph - f * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    for t in nice_ticks(ylo, yhi, ylog):
        y = sy(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in sorted(set(xs)):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{fmt(t)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + ph / 2})">{escape(ylabel)}</text>')
    legend_y = TOP + 4
    for i, h in enumerate(hlines):
        if not h["y"]:
            continue
        color = h.get("color", "#444")
        y = sy(h["y"])
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="{color}" '
                   'stroke-width="1.5" stroke-dasharray="2,3"/>')
        out.append(f'<line x1="{LEFT + pw + 10}" y1="{legend_y:.1f}" x2="{LEFT + pw + 34}" y2="{legend_y:.1f}" '
                   f'stroke="{color}" stroke-width="1.5" stroke-dasharray="2,3"/>')
        out.append(f'<text x="{LEFT + pw + 40}" y="{legend_y + 4:.1f}">{escape(h["label"])}</text>')
        legend_y += 17
    for i, s in enumerate(series):
        color = s.get("color", COLORS[i % len(COLORS)])
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        p = [(sx(x), sy(y)) for x, y in zip(s["xs"], s["ys"]) if y is not None and y > 0]
        if not p:
            continue
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in p) + '"/>')
        for x, y in p:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        out.append(f'<line x1="{LEFT + pw + 10}" y1="{legend_y:.1f}" x2="{LEFT + pw + 34}" y2="{legend_y:.1f}" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{LEFT + pw + 40}" y="{legend_y + 4:.1f}">{escape(s["label"])}</text>')
        legend_y += 17
    if note:
        out.append(f'<text x="{LEFT}" y="{TOP - 6}" font-size="10" fill="#555">{escape(note)}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    print(path)


def growth(data: dict, stem: Path) -> None:
    levels = data["levels"]
    xs = [lv["sizes"]["msgs"] for lv in levels]
    note = f"{data['meta']['date']}, {data['meta']['cpus']} cores, one client; load avg at start " \
           f"{data['meta']['load_average_start'][0]:.2f}"
    cases = ["get_conversation", "list_first", "list_deep", "messages_first", "messages_deep", "post_message",
             "knowledge_rare"]
    services = sorted({s for lv in levels for s in lv["services"]}, key=lambda s: s != "dave")
    for metric in ("p99_ms", "p50_ms"):
        series = []
        for si, svc in enumerate(services):
            for ci, case in enumerate(cases):
                ys = [lv["services"].get(svc, {}).get(case, {}).get(metric) for lv in levels]
                if any(ys):
                    series.append({"label": f"{svc} {case}", "xs": xs, "ys": ys, "color": COLORS[ci],
                                   "dash": "6,4" if si else None})
        # The same SQL straight on the database, where the run measured it: the limit's line.
        for ci, case in enumerate(cases):
            ys = [lv.get("limits", {}).get(case, {}).get(metric) for lv in levels]
            if any(ys):
                series.append({"label": f"pgbench {case}", "xs": xs, "ys": ys, "color": COLORS[ci],
                               "dash": "2,3"})
        chart(stem.with_name(stem.name + f"-{metric[:3]}.svg"),
              f"{metric[:3]} latency as the data grows (dave solid, Python dashed, pgbench dotted)",
              "messages in the database (conversations and articles grow with them)",
              f"{metric[:3]} ms (log)", series, note=note)
    # req/s of one client (1 / mean latency) with the database's own rate for the same SQL.
    series = []
    for si, svc in enumerate(services):
        for ci, case in enumerate(("get_conversation", "list_first", "knowledge_common")):
            ys = [lv["services"].get(svc, {}).get(case, {}).get("rps") for lv in levels]
            series.append({"label": f"{svc} {case}", "xs": xs, "ys": ys, "color": COLORS[ci],
                           "dash": "6,4" if si else None})
    for ci, case in enumerate(("get_conversation", "list_first", "knowledge_common")):
        ys = [lv.get("limits", {}).get(case, {}).get("tps") for lv in levels]
        if any(ys):
            series.append({"label": f"pgbench {case}", "xs": xs, "ys": ys, "color": COLORS[ci], "dash": "2,3"})
    chart(stem.with_name(stem.name + "-rps.svg"),
          "req/s of one client as the data grows (dave solid, Python dashed, pgbench dotted)",
          "messages in the database", "requests/s (log)", series, note=note)
    series = []
    for si, svc in enumerate(services):
        for ci, case in enumerate(("knowledge_common", "knowledge_rare", "knowledge_two_common")):
            ys = [lv["services"].get(svc, {}).get(case, {}).get("p99_ms") for lv in levels]
            if not any(ys):
                continue
            series.append({"label": f"{svc} {case[10:].replace('_', ' ')} p99", "xs": [x // 10 for x in xs], "ys": ys,
                           "color": COLORS[ci], "dash": "6,4" if si else None})
    for ci, case in enumerate(("knowledge_common", "knowledge_rare", "knowledge_two_common")):
        ys = [lv.get("limits", {}).get(case, {}).get("p99_ms") for lv in levels]
        if any(ys):
            series.append({"label": f"pgbench {case[10:].replace('_', ' ')} p99", "xs": [x // 10 for x in xs],
                           "ys": ys, "color": COLORS[ci + 4], "dash": "2,3"})
    chart(stem.with_name(stem.name + "-knowledge.svg"), "Knowledge search p99 as articles grow",
          "knowledge articles", "p99 ms (log)", series,
          hlines=[{"label": "target 50 ms", "y": 50, "color": "#d62728"}], note=note)


def connections(data: dict, stem: Path) -> None:
    runs, limits = data["runs"], data.get("limits", {})
    note = f"{data['meta']['date']}, {data['meta']['cpus']} cores, wrk -t1; load avg at start " \
           f"{data['meta']['load_average_start'][0]:.2f}"
    for metric, ylabel, ylog in (("rps", "requests/s", False), ("p99_ms", "p99 ms (log)", True)):
        series, hl = [], []
        for si, (svc, r) in enumerate(sorted(runs.items(), key=lambda kv: kv[0] != "dave")):
            for ci, case in enumerate(("get_conversation", "health")):
                pts = sorted((int(c), v) for c, v in r.get(case, {}).items())
                series.append({"label": f"{svc} {case}", "xs": [c for c, _ in pts],
                               "ys": [v[metric] for _, v in pts], "color": COLORS[ci],
                               "dash": "6,4" if si else None})
                if metric == "p99_ms" and svc == "dave":
                    series.append({"label": f"{svc} {case} p50", "xs": [c for c, _ in pts],
                                   "ys": [v["p50_ms"] for _, v in pts], "color": COLORS[ci + 2], "dash": "1,3"})
        if metric == "rps":
            for ci, case in enumerate(("get_conversation", "health")):
                lim = limits.get(f"{case}_c32")
                if lim:
                    hl.append({"label": f"pgbench {case} (32 clients)", "y": lim["tps"], "color": COLORS[ci + 4]})
        chart(stem.with_name(stem.name + f"-{metric.split('_')[0]}.svg"),
              f"{ylabel.split(' (')[0]} as connections grow (dave solid, Python dashed)", "wrk connections",
              ylabel, series, ylog=ylog, hlines=hl, note=note)


def knowledge(data: dict, stem: Path) -> None:
    rows = data["rows"]
    arts = sorted({r["articles"] for r in rows})
    series = []
    terms = ("postgresql", "quasar", "postgresql guidance")
    for query in ("before", "after"):
        for ci, term in enumerate(terms):
            ys = [next((r["p99_ms"] for r in rows if r["articles"] == a and r["query"] == query
                        and r["term"] == term), None) for a in arts]
            if any(ys):
                series.append({"label": f"{query}, '{term}' p99", "xs": arts, "ys": ys, "color": COLORS[ci],
                               "dash": "6,4" if query == "before" else None})
    note = f"{data['meta']['date']}, pgbench -c1 -M prepared; load avg at start " \
           f"{data['meta']['load_average_start'][0]:.2f}"
    chart(stem.with_name(stem.name + "-p99.svg"), "Knowledge search SQL before/after issue 13 (database alone)",
          "knowledge articles", "p99 ms (log)", series,
          hlines=[{"label": "target 50 ms", "y": 50, "color": "#d62728"}], note=note)


def growth_rounds(data: dict) -> list[str]:
    """dave's p99 in every round (the cells above are each case's median round), and the
    p99 at the last level against the first, round by round and for the median cells."""
    cases = ["get_conversation", "list_first", "list_deep", "post_message"]
    levels = data["levels"]
    out = ["", "dave's p99 ms, round by round (levels interleaved within each round):", "",
           "| messages | " + " | ".join(cases) + " |", "|---|" + "---:|" * len(cases)]
    for lv in levels:
        d = lv["services"].get("dave", {})
        out.append(f"| {lv['sizes']['msgs']:,} | " + " | ".join(
            ", ".join(f"{x:.2f}" for x in d[c]["p99_rounds"]) if c in d else "-" for c in cases) + " |")
    first, last = levels[0]["services"].get("dave", {}), levels[-1]["services"].get("dave", {})
    ratio = lambda c, i=None: (last[c]["p99_rounds"][i] / first[c]["p99_rounds"][i] if i is not None  # noqa: E731
                               else last[c]["p99_ms"] / first[c]["p99_ms"])
    label = f"{levels[-1]['sizes']['msgs']:,} vs {levels[0]['sizes']['msgs']:,}"
    for i in range(data["rounds"]):
        out.append(f"| p99 {label}, round {i + 1} | " + " | ".join(
            f"{ratio(c, i):.2f}×" if c in first and c in last else "-" for c in cases) + " |")
    out.append(f"| p99 {label}, median cells | " + " | ".join(
        f"**{ratio(c):.2f}×**" if c in first and c in last else "-" for c in cases) + " |")
    return out


def tables(data: dict) -> str:
    """Markdown tables of a run, for docs/benchmarks.md."""
    out = []
    if data["kind"] == "growth":
        cases = ["get_conversation", "list_first", "list_deep", "messages_first", "messages_deep",
                 "post_message", "knowledge_common", "knowledge_rare", "knowledge_two_common"]
        services = sorted({s for lv in data["levels"] for s in lv["services"]}, key=lambda s: s != "dave")
        out += ["| messages | service | " + " | ".join(cases) + " |", "|---|---|" + "---:|" * len(cases)]
        for lv in data["levels"]:
            for svc in services:
                r = lv["services"].get(svc, {})
                cells = [("no answer in 5 s" if r[c]["requests"] == 0 else
                          f"{r[c]['p50_ms']:.2f} / {r[c]['p99_ms']:.2f}") if c in r else "-" for c in cases]
                out.append(f"| {lv['sizes']['msgs']:,} | {svc} | " + " | ".join(cells) + " |")
            lim = lv.get("limits", {})
            cells = [f"{lim[c]['p50_ms']:.2f} / {lim[c]['p99_ms']:.2f}" if c in lim else "-" for c in cases]
            out.append(f"| {lv['sizes']['msgs']:,} | pgbench | " + " | ".join(cells) + " |")
        out += ["", "| messages | deep page reached (list, messages) | load average during the level "
                "| CPU steal %, dave's cells (min–max) |", "|---|---|---|---|"]
        for lv in data["levels"]:
            d = lv["services"].get("dave", {})
            steal = [r["steal_pct"] for r in d.values() if isinstance(r, dict) and "steal_pct" in r]
            steal_cell = f"{min(steal):.0f}–{max(steal):.0f}" if steal else "not recorded"
            out.append(f"| {lv['sizes']['msgs']:,} | {d.get('list_deep', {}).get('depth_pages')}, "
                       f"{d.get('messages_deep', {}).get('depth_pages')} | {lv['load_average'][0]:.2f} "
                       f"| {steal_cell} |")
        if data.get("rounds", 1) > 1:
            out += growth_rounds(data)
    elif data["kind"] == "connections":
        out += ["| service | workload | connections | req/s | p50 ms | p99 ms | p99/p50 | errors | non-2xx "
                "| RSS peak MiB | svc CPU µs/req | host busy % | steal % |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for svc, runs in data["runs"].items():
            for case in ("get_conversation", "health", "knowledge_common"):
                for c, r in sorted(runs.get(case, {}).items(), key=lambda kv: int(kv[0])):
                    if r["requests"] == 0:
                        out.append(f"| {svc} | {case} | {c} | 0 | no answer within wrk's 5 s timeout "
                                   "| | | | | | | | |")
                        continue
                    ratio = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else 0
                    # With rounds: req/s of the median round (every round's in brackets), errors of
                    # all rounds, so an error in another round is not hidden by the median.
                    rps = f"{r['rps']:.0f}"
                    if "rps_rounds" in r:
                        rps += " (" + ", ".join(f"{x:.0f}" for x in r["rps_rounds"]) + ")"
                    out.append(f"| {svc} | {case} | {c} | {rps} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                               f"{ratio:.2f} | {r.get('errors_all_rounds', r['errors'])} | {r['non2xx']} | {r['rss_peak_kib'] / 1024:.1f} | "
                               f"{r['svc_cpu_us_per_req']:.0f} | {r['host_busy_pct']:.0f} | "
                               f"{r['steal_pct']:.0f} |" if "steal_pct" in r else
                               f"{r['svc_cpu_us_per_req']:.0f} | {r['host_busy_pct']:.0f} | - |")
        for k, lim in data.get("limits", {}).items():
            out.append(f"| pgbench | {k} | 32 | {lim['tps']:.0f} | {lim['p50_ms']:.2f} | {lim['p99_ms']:.2f} | | | | | | | |")
    else:
        out += ["| articles | query | term | p50 ms | p99 ms | transactions | load avg |", "|---:|---|---|---:|---:|---:|---:|"]
        for r in data["rows"]:
            out.append(f"| {r['articles']:,} | {r['query']} | {r['term']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                       f"{r['transactions']} | {r['load_average'][0]:.2f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    args = sys.argv[1:]
    markdown = "--markdown" in args
    for arg in [a for a in args if a != "--markdown"]:
        p = Path(arg)
        data = json.loads(p.read_text())
        stem = p.with_suffix("")
        {"growth": growth, "connections": connections, "knowledge": knowledge}[data["kind"]](data, stem)
        if markdown:
            print(f"\n<!-- {p.name} -->")
            print(tables(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
