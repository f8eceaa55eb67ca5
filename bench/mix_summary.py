#!/usr/bin/env python3
"""Summarise bench/mix.sh results: python3 bench/mix_summary.py STAMP [--throttled].

Prints two markdown tables: per scenario the wall time of each variant (median over the
repetitions, with the range), and per model of the `swap` variant its plan and latencies.
"""
import glob
import json
import os
import re
import statistics
import sys

here = os.path.dirname(os.path.abspath(__file__))
stamp = sys.argv[1]
tag = "-throttled" if "--throttled" in sys.argv else ""
MiB = 1 << 20

runs = {}
pattern = re.compile(r"mix-(.+)-(swap|swapnet|plenty|mmap)" + tag + "-" + stamp + r"-r(\d+)\.json$")
for path in sorted(glob.glob(os.path.join(here, "results", f"mix-*{stamp}-r*.json"))):
    m = pattern.search(os.path.basename(path))
    if not m:
        continue
    with open(path) as f:
        runs.setdefault((m.group(1), m.group(2)), []).append(json.load(f))


def median_range(values):
    return statistics.median(values), min(values), max(values)


def fmt(values):
    med, lo, hi = median_range(values)
    return f"{med:.2f} ({lo:.2f}-{hi:.2f})"


scenarios = sorted({s for s, _ in runs})
print("| scenario | overcommit | peak (swap) | swap | SwapNet as published | plenty (4x) | mmap in cgroup | swap vs plenty |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for s in scenarios:
    swap = runs.get((s, "swap"), [])
    if not swap:
        continue
    walls = {v: [r["wall_s"] for r in runs.get((s, v), [])] for v in ["swap", "swapnet", "plenty", "mmap"]}
    peak = max(r["peak_bytes"] for r in swap) / MiB
    cells = [fmt(walls[v]) if walls[v] else "-" for v in ["swap", "swapnet", "plenty", "mmap"]]
    ratio = ""
    if walls["plenty"]:
        ratio = f"{statistics.median(walls['swap']) / statistics.median(walls['plenty']) - 1:+.0%}"
    print(f"| {s} | {swap[0]['overcommit']:.2f}x | {peak:.0f} MiB | " + " | ".join(cells) + f" | {ratio} |")

print()
def steady_service(run, i):
    """Mean own service time of model i over its passes after the first (the first is cold
    in every variant)."""
    service = run["models"][i].get("service_s", [])[1:]
    return statistics.mean(service) if service else float("nan")


print("| scenario | model | quota | kept | streamed per pass | steps | latency | predicted | SwapNet as published | own time per pass | all kept | overhead |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in scenarios:
    swap = runs.get((s, "swap"), [])
    published = runs.get((s, "swapnet"), [])
    plenty = runs.get((s, "plenty"), [])
    for i, m in enumerate(swap[0]["models"] if swap else []):
        mean = lambda r: statistics.mean(r["models"][i]["latencies_s"])
        latency = statistics.median(mean(r) for r in swap)
        predicted = statistics.median(r["models"][i]["predicted_latency_s"] for r in swap)
        before = f"{statistics.median(mean(r) for r in published):.2f}" if published else "-"
        own = statistics.median(steady_service(r, i) for r in swap)
        kept = statistics.median(steady_service(r, i) for r in plenty) if plenty else float("nan")
        print(
            f"| {s} | {m['name']} | {m['quota_bytes'] / MiB:.0f} MiB | {m['kept_bytes'] / MiB:.0f} MiB | "
            f"{m['streamed_bytes'] / MiB:.0f} MiB | {m['blocks']} | {latency:.2f} | {predicted:.2f} | {before} | "
            f"{own:.3f} | {kept:.3f} | {1000 * (own - kept):+.0f} ms |"
        )
