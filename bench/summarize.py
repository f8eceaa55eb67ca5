"""Medians per (model, strategy, io) of a strategies-*.jsonl file, as a Markdown table.
python3 bench/summarize.py bench/results/strategies-....jsonl"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
for r in rows:
    if "error" in r:
        print(f"- {r['model']} `{r['mode']}`: {r['error'].strip()}")
rows = [r for r in rows if "error" not in r]
groups = collections.defaultdict(list)
for r in rows:
    groups[(r["model"], r["strategy"], r["io"], r.get("loaders"), r.get("budget_bytes"), r.get("binary", "edgerun"))].append(r)
print("| model | strategy | reads | binary | wall s | load s | compute s | governor peak MiB | VmHWM MiB | anon MiB | file MiB | n |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, strategy, io, loaders, budget, binary), v in groups.items():
    med = lambda f: statistics.median(x[f] for x in v)  # noqa: E731
    mib = lambda f: med(f) / 2**20  # noqa: E731
    name = f"{strategy} x{loaders}" if loaders else strategy
    if budget:
        name += f", budget {budget / 2**20:.0f} MiB"
    print(f"| {model} | {name} | {io} | {binary} | {med('wall_s'):.2f} | {med('load_s'):.2f} | {med('compute_s'):.2f} | {mib('peak_bytes'):.0f} | {mib('vm_hwm_bytes'):.0f} | {mib('rss_anon_bytes'):.0f} | {mib('rss_file_bytes'):.0f} | {len(v)} |")
