#!/usr/bin/env bash
# Warm forward latency, batch 1, weights in memory: edgerun, ONNX Runtime and PyTorch eager on
# the same synthesized weights, interleaved: each round runs every engine once per model (the
# order rotating), so drift on the machine moves all engines alike and each round gives its own
# ratio. Usage: bench/forward.sh [THREADS] [RUNS] [ROUNDS]; then forward_summary.py on the file.
# Needs: a Python with torch, transformers, onnxruntime, onnx (see README); PY overrides python3.
set -euo pipefail
threads=${1:-2}
runs=${2:-20}
rounds=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
py=${PY:-python3}
edgerun="$here/../target/release/edgerun"
(cd "$here/.." && cargo build --release -q -p edgerun-cli)
(cd "$here" && cargo build --release -q --bin forward)
pairs=(bert-base:bert vit-base-16:vit gpt2:gpt2 resnet-50:resnet)
if [ -n "${TASKS:-}" ]; then
  wanted=" $TASKS "
  kept=()
  for pair in "${pairs[@]}"; do [[ $wanted == *" ${pair##*:} "* ]] && kept+=("$pair"); done
  pairs=("${kept[@]}")
fi
for pair in "${pairs[@]}"; do
  arch=${pair%%:*}; task=${pair##*:}
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch"
  # torch.onnx prints graphs on stdout: keep only the JSON line.
  "$py" "$here/peers/peers.py" --engine export --model "$models/$arch" --task "$task" 2>/dev/null | grep "^{" >&2
done
mkdir -p "$here/results"
out="$here/results/forward-$(date +%Y%m%d-%H%M%S).jsonl"
engines=(edgerun onnxruntime pytorch)
for round in $(seq 1 "$rounds"); do
  for pair in "${pairs[@]}"; do
    arch=${pair%%:*}; task=${pair##*:}
    for i in 0 1 2; do
      engine=${engines[$(( (i + round) % 3 ))]}
      if [ "$engine" = edgerun ]; then
        line=$("$here/target/release/forward" --model "$models/$arch" --task "$task" --runs "$runs" --threads "$threads")
      else
        line=$("$py" "$here/peers/peers.py" --engine "$engine" --model "$models/$arch" --task "$task" --runs "$runs" --threads "$threads" 2>/dev/null | grep "^{")
      fi
      echo "$line" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['round']=$round; print(json.dumps(r))" | tee -a "$out"
    done
  done
done
echo "wrote $out; summary: python3 $here/forward_summary.py $out"
