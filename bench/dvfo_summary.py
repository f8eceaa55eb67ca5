"""Tables from bench/dvfo.sh's JSON lines: per model, board and trace, every controller's
latency, energy, cost, regret to the oracle and change against edge-only; training time.

python3 bench/dvfo_summary.py bench/results/dvfo-STAMP.jsonl"""
import json
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
head = rows[0]
print(f"CPU: {head['cpu']}; {head['steps']} training inferences; traces of {head['len']}; "
      f"eta {head['eta']}; server = this machine / {head['server_speedup']}. "
      "Power modelled from the board files; board stage times predicted from this machine's.\n")
train = {(r["model"], r["board"]): r["train_s"] for r in rows if "train_s" in r}
groups = defaultdict(list)
for r in rows:
    if "summary" in r:
        groups[(r["model"], r["board"], r["summary"]["trace"])].append(r["summary"])

print("| model | board | trace | controller | latency ms | energy mJ | cost | regret | energy vs edge | latency vs edge | cosine | offloaded |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, board, trace), summaries in groups.items():
    oracle = next(s for s in summaries if s["policy"] == "oracle")["cost"]
    edge = next(s for s in summaries if s["policy"] == "edge-only")
    for s in summaries:
        print(f"| {model} | {board} | {trace} | {s['policy']} | {s['latency_ms']:.1f} | {s['energy_mj']:.1f} | "
              f"{s['cost']:.3f} | {100 * (s['cost'] / oracle - 1):+.1f}% | "
              f"{100 * (s['energy_mj'] / edge['energy_mj'] - 1):+.1f}% | "
              f"{100 * (s['latency_ms'] / edge['latency_ms'] - 1):+.1f}% | {s['cosine']:.5f} | {100 * s['offloaded']:.0f}% |")

print("\nDQN regret to the oracle (mean cost over the oracle's, minus 1), and training time:\n")
print("| model | board | " + " | ".join(sorted({t for (_, _, t) in groups})) + " | training s |")
print("|---|---|" + "---:|" * (len({t for (_, _, t) in groups}) + 1))
for (model, board), seconds in train.items():
    cells = []
    for trace in sorted({t for (_, _, t) in groups}):
        summaries = groups.get((model, board, trace), [])
        dqn = next((s for s in summaries if s["policy"] == "dqn"), None)
        oracle = next((s for s in summaries if s["policy"] == "oracle"), None)
        cells.append(f"{100 * (dqn['cost'] / oracle['cost'] - 1):+.1f}%" if dqn and oracle else "-")
    print(f"| {model} | {board} | " + " | ".join(cells) + f" | {seconds:.0f} |")
