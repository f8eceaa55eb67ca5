#!/usr/bin/env python3
"""Tables of bench/split.sh's results: latency and bytes per model and rate for edge only,
cloud only and the split chosen per compression; the sweep against its prediction; the server
under concurrent clients.

usage: split_summary.py bench/results/split-STAMP.jsonl
"""

import json
import sys
from collections import defaultdict


def main(path):
    rows = [json.loads(line) for line in open(path)]
    cpu = next((r["cpu"] for r in rows if "cpu" in r), "unknown CPU")
    link = next((r["link"] for r in rows if "link" in r), "?")
    print(f"CPU: {cpu}; link: {link} (tc-tbf: two network namespaces shaped by tc; client-model: the client sleeps to the rate)\n")
    split = [r for r in rows if r.get("mode") in ("edge-only", "cloud-only", "auto")]
    by = defaultdict(list)
    for r in split:
        by[(r["model"], r["rate_mbit"])].append(r)
    compressions = []
    for r in split:
        if r["mode"] == "auto" and r["compress"] not in compressions:
            compressions.append(r["compress"])
    head = "| model | Mbit/s | edge only ms | cloud only ms (bytes up/down) | " + " | ".join(
        f"auto {c}: split, ms (predicted), bytes up, cosine" for c in compressions) + " |"
    print(head)
    print("|" + "---|" * (4 + len(compressions)))
    for (model, rate), rs in by.items():
        edge = next(r for r in rs if r["mode"] == "edge-only")
        cloud = next(r for r in rs if r["mode"] == "cloud-only")
        cells = [model, f"{rate:g}", f"{edge['median_ms']:.1f}",
                 f"{cloud['median_ms']:.1f} ({cloud['sent_bytes']}/{cloud['received_bytes']})"]
        for c in compressions:
            a = next(r for r in rs if r["mode"] == "auto" and r["compress"] == c)
            cells.append(f"{a['split']}/{a['stages']}, {a['median_ms']:.1f} ({a['predicted_ms']:.1f}), "
                         f"{a['sent_bytes']}, {a['least_cosine']:.4f}")
        print("| " + " | ".join(cells) + " |")

    sweep = [r for r in rows if r.get("mode") == "sweep"]
    if sweep:
        print("\nEvery split uncompressed at", sweep[0]["rate_mbit"], "Mbit/s: measured median ms (predicted)\n")
        models = list(dict.fromkeys(r["model"] for r in sweep))
        for m in models:
            rs = [r for r in sweep if r["model"] == m]
            best = min(rs, key=lambda r: r["median_ms"])
            chosen = min(rs, key=lambda r: r["predicted_ms"])
            cells = " ".join(f"{r['split']}:{r['median_ms']:.0f}({r['predicted_ms']:.0f})" for r in rs)
            print(f"- {m}: {cells}; measured best split {best['split']} "
                  f"({best['median_ms']:.1f} ms), predicted best {chosen['split']} "
                  f"(measured {chosen['median_ms']:.1f} ms)")

    load = [r for r in rows if r.get("mode") == "load"]
    if load:
        print("\n| model | clients | requests | throughput /s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in load:
            print(f"| {r['model']} | {r['clients']} | {r['requests']} | {r['throughput_per_s']:.2f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
