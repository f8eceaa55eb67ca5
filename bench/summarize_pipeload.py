"""Predicted vs measured latency per loader count from a pipeload-*.jsonl file (medians).
python3 bench/summarize_pipeload.py bench/results/pipeload-....jsonl [MODELS_DIR [DISK_GBPS]]

With MODELS_DIR (where pipeload.sh left STORE.profile.json), a second table gives the issue's
floor per model: T_floor = max(bytes / best O_DIRECT throughput of the profile, warm compute
= the profile's summed unit compute), and each pipeload run's wall time over it. With
DISK_GBPS (the disk's O_DIRECT rate as dd or `edgerun bench-io` reads it), a second floor
from that rate and the same warm compute."""
import collections
import json
import os
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

if len(sys.argv) > 2:
    print()
    disk = float(sys.argv[3]) * 1e9 if len(sys.argv) > 3 else None
    extra = " disk T_floor s | / disk |" if disk else ""
    print("| model | run | bytes GB | read GB/s | warm compute s | T_floor s | measured s | / T_floor |" + extra)
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if disk else ""))
    for (model, label), v in groups.items():
        if not label.startswith("pipeload"):
            continue
        # The store pipeload.sh ran: NAME-packed, or NAME-packed-DTYPE for a quantised one.
        dtype = v[0].get("dtype", "f32")
        suffix = "" if dtype == "f32" else f"-{dtype}"
        path = os.path.join(sys.argv[2], f"{model}-packed{suffix}.profile.json")
        if not os.path.exists(path):
            continue
        profile = json.load(open(path))
        size = sum(u["read_bytes"] for u in profile["units"])
        rate = max(t["bytes_per_s"] for t in profile["throughput"])
        compute = sum(u["compute_s"] for u in profile["units"])
        floor = max(size / rate, compute)
        wall = statistics.median(x["wall_s"] for x in v)
        row = f"| {model} | {label} | {size / 1e9:.2f} | {rate / 1e9:.2f} | {compute:.2f} | {floor:.2f} | {wall:.2f} | {wall / floor:.2f}x |"
        if disk:
            disk_floor = max(size / disk, compute)
            row += f" {disk_floor:.2f} | {wall / disk_floor:.2f}x |"
        print(row)

