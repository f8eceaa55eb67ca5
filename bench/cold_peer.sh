#!/usr/bin/env bash
# PyTorch + transformers cold start (from_pretrained + one 128-token forward, or one 224x224
# image for ViT-Large) on the same HF folders edgerun's tables use, drop_caches before each
# run, as root. Usage: bench/cold_peer.sh [RUNS]
set -euo pipefail
runs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
py=${PY:-python3}
mkdir -p "$here/results"
out="$here/results/cold-peer-$(date +%Y%m%d-%H%M%S).jsonl"
for pair in bert-large:bert gpt2-medium:gpt2 vit-large-16:vit; do
  arch=${pair%%:*}; task=${pair##*:}
  for run in $(seq "$runs"); do
    sync; echo 3 > /proc/sys/vm/drop_caches
    "$py" "$here/peers/cold.py" --model "$models/$arch" --task "$task" 2>/dev/null | grep "^{" \
      | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(model='$arch', run=$run); print(json.dumps(r))" | tee -a "$out"
  done
done
echo "wrote $out"
