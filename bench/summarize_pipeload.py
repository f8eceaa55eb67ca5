"""Predicted vs measured latency per loader count from a pipeload-*.jsonl file (medians).
python3 bench/summarize_pipeload.py bench/results/pipeload-....jsonl"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
groups = collections.defaultdict(list)
for r in rows:
    groups[(r["model"], r["label"])].append(r)
print("| model | run | budget MiB | predicted s | measured s | error | governor peak MiB | VmHWM MiB | n |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for (model, label), v in groups.items():
    wall = statistics.median(x["wall_s"] for x in v)
    predicted = v[0]["predicted_s"]
    error = f"{(wall - predicted) / predicted * 100:+.0f}%" if predicted else ""
    budget = v[0]["budget_bytes"]
    budget = f"{budget / 2**20:.0f}" if budget else "none"
    pred = f"{predicted:.2f}" if predicted else ""
    peak = statistics.median(x["peak_bytes"] for x in v) / 2**20
    hwm = statistics.median(x["vm_hwm_bytes"] for x in v) / 2**20
    print(f"| {model} | {label} | {budget} | {pred} | {wall:.2f} | {error} | {peak:.0f} | {hwm:.0f} | {len(v)} |")
