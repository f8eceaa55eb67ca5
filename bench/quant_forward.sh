#!/usr/bin/env bash
# Warm forward latency, batch 1, weights in memory, of quantised stores against f32 and against
# ONNX Runtime's dynamic int8 (quantize_dynamic, per-channel int8 weights) of the same weights:
# edgerun on packed stores in f32, int8 and q4, ONNX Runtime on the f32 export and its int8
# quantisation, interleaved round by round (the order rotating) so the machine's drift moves
# them alike. Also each store's weights.bin size.
# Usage: bench/quant_forward.sh [THREADS] [RUNS] [ROUNDS]; then quant_summary.py on the file.
# Needs the peers' Python (torch, transformers, onnxruntime, onnx); PY overrides python3.
set -euo pipefail
threads=${1:-2}
runs=${2:-20}
rounds=${3:-3}
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
mkdir -p "$here/results"
out="$here/results/quant-forward-$(date +%Y%m%d-%H%M%S).jsonl"
for pair in "${pairs[@]}"; do
  arch=${pair%%:*}; task=${pair##*:}
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch"
  for dtype in f32 int8 q4; do
    store="$models/$arch-packed-$dtype"
    [ -f "$store/manifest.json" ] || "$edgerun" pack "$models/$arch" "$store" --dtype "$dtype" >/dev/null
    bytes=$(stat -c %s "$store/weights.bin")
    echo "{\"engine\": \"size\", \"task\": \"$task\", \"dtype\": \"$dtype\", \"weights_bytes\": $bytes}" | tee -a "$out"
  done
  "$py" "$here/peers/peers.py" --engine export --model "$models/$arch" --task "$task" 2>/dev/null | grep "^{" >&2
done
engines=(edgerun-f32 edgerun-int8 edgerun-q4 onnxruntime onnxruntime-int8)
count=${#engines[@]}
for round in $(seq 1 "$rounds"); do
  for pair in "${pairs[@]}"; do
    arch=${pair%%:*}; task=${pair##*:}
    for i in $(seq 0 $((count - 1))); do
      engine=${engines[$(( (i + round) % count ))]}
      case $engine in
        edgerun-*)
          dtype=${engine#edgerun-}
          line=$("$here/target/release/forward" --model "$models/$arch-packed-$dtype" --task "$task" --runs "$runs" --threads "$threads")
          ;;
        *)
          line=$("$py" "$here/peers/peers.py" --engine "$engine" --model "$models/$arch" --task "$task" --runs "$runs" --threads "$threads" 2>/dev/null | grep "^{")
          ;;
      esac
      echo "$line" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['engine']='$engine'; r['round']=$round; print(json.dumps(r))" | tee -a "$out"
    done
  done
done
echo "wrote $out; summary: python3 $here/quant_summary.py $out"
