#!/usr/bin/env bash
# Warm forward latency, batch 1, weights in memory: edgerun, PyTorch eager and ONNX Runtime on
# the same synthesized weights, interleaved in one run. Usage: bench/forward.sh [THREADS] [RUNS]
# Needs: a Python with torch, transformers, onnxruntime, onnx (see README); PY overrides python3.
set -euo pipefail
threads=${1:-2}
runs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
py=${PY:-python3}
edgerun="$here/../target/release/edgerun"
(cd "$here/.." && cargo build --release -q -p edgerun-cli)
(cd "$here" && cargo build --release -q --bin forward)
for arch in bert-base vit-base-16 gpt2 resnet-50; do
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch"
done
mkdir -p "$here/results"
out="$here/results/forward-$(date +%Y%m%d-%H%M%S).jsonl"
for pair in bert-base:bert vit-base-16:vit gpt2:gpt2 resnet-50:resnet; do
  arch=${pair%%:*}; task=${pair##*:}
  "$here/target/release/forward" --model "$models/$arch" --task "$task" --runs "$runs" --threads "$threads" | tee -a "$out"
  # torch.onnx prints graphs on stdout: keep only the JSON lines.
  "$py" "$here/peers/peers.py" --model "$models/$arch" --task "$task" --runs "$runs" --threads "$threads" 2>/dev/null | grep "^{" | tee -a "$out"
done
echo "wrote $out"
