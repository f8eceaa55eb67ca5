"""The warm-forward table of a forward-*.jsonl file from forward.sh: per model and engine the
median over rounds of each round's median, and edgerun / ONNX Runtime as the median (and range)
of the per-round ratios, which drift on the machine cannot skew the way it skews two medians
taken minutes apart. python3 bench/forward_summary.py bench/results/forward-....jsonl"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
for r in rows:
    if "error" in r:
        print(f"- {r['task']} {r['engine']}: {r['error']}")
rows = [r for r in rows if "error" not in r]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["task"], r["engine"])][r["round"]] = r
tasks = list(dict.fromkeys(r["task"] for r in rows))
threads = sorted({r["threads"] for r in rows})


def med(task, engine, field):
    values = [r[field] for r in by[(task, engine)].values() if field in r]
    return statistics.median(values) if values else None


def cell(value, fmt="{:.1f}"):
    return "—" if value is None else fmt.format(value)


def ratios(task, field):
    ours, peer = by[(task, "edgerun")], by[(task, "onnxruntime")]
    return [ours[k][field] / peer[k][field] for k in ours if k in peer and field in peer[k]]


print(f"threads: {threads}; rounds: {max((len(v) for v in by.values()), default=0)}")
print("| model | edgerun ms | ONNX Runtime ms | PyTorch ms | edgerun / ORT (median, range) | peak RSS MiB edgerun / ORT / PyTorch |")
print("|---|---:|---:|---:|---|---|")
for task in tasks:
    rs = ratios(task, "forward_ms")
    ratio = f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})" if rs else "—"
    rss = " / ".join(cell(None if (v := med(task, e, "peak_rss_bytes")) is None else v / 2**20, "{:.0f}") for e in ("edgerun", "onnxruntime", "pytorch"))
    print(f"| {task} | {cell(med(task, 'edgerun', 'forward_ms'))} | {cell(med(task, 'onnxruntime', 'forward_ms'))} | {cell(med(task, 'pytorch', 'forward_ms'))} | {ratio} | {rss} |")
    if med(task, "edgerun", "decode_ms_per_token") is not None:
        print(f"| {task}, per decoded token | {cell(med(task, 'edgerun', 'decode_ms_per_token'))} | — | {cell(med(task, 'pytorch', 'decode_ms_per_token'))} | — | — |")
