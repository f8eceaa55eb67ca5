#!/usr/bin/env bash
# Warm forward latency of BERT-base and ViT-B/16 under each attention variant, and the
# attention FLOPs eval-attention counts. Usage: ./attention.sh [threads] [runs]
# Writes results/attention-<date>.jsonl.
set -euo pipefail
cd "$(dirname "$0")"
THREADS=${1:-2}
RUNS=${2:-10}
MODELS=${MODELS:-/tmp/bench-models}
EDGERUN=../target/release/edgerun
OUT=results/attention-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p results "$MODELS"
for arch in bert-base vit-base-16; do
    [ -f "$MODELS/$arch/config.json" ] || $EDGERUN synth --arch "$arch" --out "$MODELS/$arch" >/dev/null
done
cargo build --release --quiet --bin forward
run() { ./target/release/forward --runs "$RUNS" --threads "$THREADS" "$@" | tee -a "$OUT"; }
for variant in softmax taylor sima shift-softmax; do
    for seq in 128 512; do
        run --model "$MODELS/bert-base" --task bert --seq "$seq" --attention "$variant"
    done
    run --model "$MODELS/vit-base-16" --task vit --attention "$variant"
done
for variant in taylor shift-softmax; do
    run --model "$MODELS/bert-base" --task bert --seq 128 --attention "$variant" --fixed Q8.8
    run --model "$MODELS/vit-base-16" --task vit --attention "$variant" --fixed Q8.8
done
echo "wrote $OUT"
