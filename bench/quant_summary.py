"""The tables of a quant-forward-*.jsonl file from quant_forward.sh: weights.bin per dtype, and
warm forward latency per model and engine (median over rounds of each round's median), with
edgerun int8 / ONNX Runtime int8 as the median (and range) of the per-round ratios.
python3 bench/quant_summary.py bench/results/quant-forward-....jsonl"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
for r in rows:
    if "error" in r:
        print(f"- {r['task']} {r['engine']}: {r['error']}")
rows = [r for r in rows if "error" not in r]
sizes = {(r["task"], r["dtype"]): r["weights_bytes"] for r in rows if r["engine"] == "size"}
runs = [r for r in rows if r["engine"] != "size"]
by = collections.defaultdict(dict)
for r in runs:
    by[(r["task"], r["engine"])][r["round"]] = r
tasks = list(dict.fromkeys(r["task"] for r in runs))
engines = ["edgerun-f32", "edgerun-int8", "edgerun-q4", "onnxruntime", "onnxruntime-int8"]


def med(task, engine, field="forward_ms"):
    values = [r[field] for r in by[(task, engine)].values() if field in r]
    return statistics.median(values) if values else None


def cell(value, fmt="{:.1f}"):
    return "—" if value is None else fmt.format(value)


def ratio(task, ours, peer, field="forward_ms"):
    a, b = by[(task, ours)], by[(task, peer)]
    rs = [a[k][field] / b[k][field] for k in a if k in b and field in a[k] and field in b[k]]
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})" if rs else "—"


print("| model | f32 MiB | int8 MiB | q4 MiB | int8 / f32 | q4 / f32 |")
print("|---|---:|---:|---:|---:|---:|")
for task in dict.fromkeys(t for t, _ in sizes):
    f, i, q = (sizes.get((task, d)) for d in ("f32", "int8", "q4"))
    print(f"| {task} | {f / 2**20:.1f} | {i / 2**20:.1f} | {q / 2**20:.1f} | {i / f:.3f} | {q / f:.3f} |")
threads = sorted({r["threads"] for r in runs})
print(f"\nthreads: {threads}; rounds: {max((len(v) for v in by.values()), default=0)}")
print("| model | " + " | ".join(f"{e} ms" for e in engines) + " | edgerun int8 / ORT int8 | edgerun int8 / edgerun f32 |")
print("|---|" + "---:|" * len(engines) + "---|---|")
for task in tasks:
    cells = " | ".join(cell(med(task, e)) for e in engines)
    print(f"| {task} | {cells} | {ratio(task, 'edgerun-int8', 'onnxruntime-int8')} | {ratio(task, 'edgerun-int8', 'edgerun-f32')} |")
    if med(task, "edgerun-f32", "decode_ms_per_token") is not None:
        cells = " | ".join(cell(med(task, e, "decode_ms_per_token")) for e in engines)
        print(f"| {task}, per decoded token | {cells} | — | {ratio(task, 'edgerun-int8', 'edgerun-f32', 'decode_ms_per_token')} |")
print("\npeak RSS MiB: | model | " + " | ".join(engines) + " |")
for task in tasks:
    print(f"| {task} | " + " | ".join(cell(None if (v := med(task, e, "peak_rss_bytes")) is None else v / 2**20, "{:.0f}") for e in engines) + " |")
