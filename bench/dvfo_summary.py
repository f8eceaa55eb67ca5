"""Tables from bench/dvfo.sh's JSON lines: per model, board, budget and trace, every
controller's latency, energy, cost, regret to the oracle and change against edge-only; then
the DQN's regret, the best single knob beside the joint oracle, and training time.

python3 bench/dvfo_summary.py bench/results/dvfo-STAMP.jsonl [--all]

Without --all the first table keeps edge-only, Neurosurgeon, the best single knob, the DQN
and the oracle."""
import json
import sys
from collections import defaultdict


def first_wins(pairs):
    """dvfo.sh puts the bench's model name in front of the one `dvfo eval` writes (the
    architecture, the same for MiniLM and BERT-base): the first is the one to group by."""
    out = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


rows = [json.loads(line, object_pairs_hook=first_wins) for line in open(sys.argv[1]) if line.strip()]
every = "--all" in sys.argv[2:]
head = rows[0]
print(f"CPU: {head['cpu']}; {head['steps']} training inferences; traces of {head['len']}; "
      f"eta {head['eta']}; server = this machine / {head['server_speedup']}. "
      "Power modelled from the board files; board stage times predicted from this machine's; "
      "streamed heads' times predicted by Hermes' planner from the board's storage.\n")
train = {(r["model"], r["board"], r.get("budget", "-")): r["train_s"] for r in rows if "train_s" in r}
groups = defaultdict(list)
for r in rows:
    if "summary" in r:
        groups[(r["model"], r["board"], r.get("budget", "-"), r["summary"]["trace"])].append(r["summary"])

ONE_KNOB = ("levels-only", "offload-only", "shape-only")


def best_knob(summaries):
    knobs = [s for s in summaries if s["policy"] in ONE_KNOB]
    return min(knobs, key=lambda s: s["cost"]) if knobs else None


print("| model | board | budget | trace | controller | latency ms | energy mJ | cost | regret | energy vs edge | latency vs edge | least cosine | offloaded | most chosen |")
print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for (model, board, budget, trace), summaries in groups.items():
    oracle = next(s for s in summaries if s["policy"] == "oracle")["cost"]
    edge = next(s for s in summaries if s["policy"] == "edge-only")
    knob = best_knob(summaries)
    for s in summaries:
        keep = every or s["policy"] in ("edge-only", "neurosurgeon", "dqn", "oracle") or s is knob
        if not keep:
            continue
        print(f"| {model} | {board} | {budget} | {trace} | {s['policy']} | {s['latency_ms']:.1f} | {s['energy_mj']:.1f} | "
              f"{s['cost']:.3f} | {100 * (s['cost'] / oracle - 1):+.1f}% | "
              f"{100 * (s['energy_mj'] / edge['energy_mj'] - 1):+.1f}% | "
              f"{100 * (s['latency_ms'] / edge['latency_ms'] - 1):+.1f}% | {s['least_cosine']:.5f} | "
              f"{100 * s['offloaded']:.0f}% | {s.get('most_chosen', '')} |")

traces = sorted({t for (_, _, _, t) in groups})
print("\nDQN regret to the oracle (mean cost over the oracle's, minus 1), and training time:\n")
print("| model | board | budget | " + " | ".join(traces) + " | training s |")
print("|---|---|---|" + "---:|" * (len(traces) + 1))
for (model, board, budget), seconds in train.items():
    cells = []
    for trace in traces:
        summaries = groups.get((model, board, budget, trace), [])
        dqn = next((s for s in summaries if s["policy"] == "dqn"), None)
        oracle = next((s for s in summaries if s["policy"] == "oracle"), None)
        cells.append(f"{100 * (dqn['cost'] / oracle['cost'] - 1):+.1f}%" if dqn and oracle else "-")
    print(f"| {model} | {board} | {budget} | " + " | ".join(cells) + f" | {seconds:.0f} |")

print("\nOne knob against all of them: the oracle held to one knob (its best knob named) and the "
      "joint oracle, cost relative to edge-only:\n")
print("| model | board | budget | trace | best single knob | its cost | joint oracle | joint's gain | DQN |")
print("|---|---|---|---|---|---:|---:|---:|---:|")
for (model, board, budget, trace), summaries in groups.items():
    knob = best_knob(summaries)
    oracle = next(s for s in summaries if s["policy"] == "oracle")
    dqn = next((s for s in summaries if s["policy"] == "dqn"), None)
    if knob is None:
        continue
    print(f"| {model} | {board} | {budget} | {trace} | {knob['policy']} | {knob['cost']:.3f} | {oracle['cost']:.3f} | "
          f"{100 * (1 - oracle['cost'] / knob['cost']):.1f}% | {dqn['cost']:.3f} |" if dqn else "-")

BASELINES = ("edge-only", "cloud-only", "neurosurgeon", "ondemand")
print("\nThe DQN against the best of the four baselines that see only the past (DVFO's own "
      "comparison; DVFO reports -33% energy and -28.6 to -59.1% latency at under 1% accuracy "
      "loss on its boards):\n")
print("| model | board | budget | trace | best baseline | DQN energy vs it | DQN latency vs it | DQN least cosine |")
print("|---|---|---|---|---|---:|---:|---:|")
for (model, board, budget, trace), summaries in groups.items():
    base = min((s for s in summaries if s["policy"] in BASELINES), key=lambda s: s["cost"])
    dqn = next((s for s in summaries if s["policy"] == "dqn"), None)
    if dqn is None:
        continue
    print(f"| {model} | {board} | {budget} | {trace} | {base['policy']} | "
          f"{100 * (dqn['energy_mj'] / base['energy_mj'] - 1):+.1f}% | "
          f"{100 * (dqn['latency_ms'] / base['latency_ms'] - 1):+.1f}% | {dqn['least_cosine']:.4f} |")
