#!/usr/bin/env bash
# Simulator speed: simulated PE-cycles per second on one core (taskset -c 0), median of N runs
# of `edgerun sim gemm` per shape and dataflow, plus the wall time of `sim samm` on ViT-B/16.
# Usage: ./sim_speed.sh [runs]. Writes results/sim-speed-<date>.jsonl.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-5}
MODELS=${MODELS:-/tmp/bench-models}
EDGERUN=$(realpath ../target/release/edgerun)
OUT=results/sim-speed-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p results
shapes=(
    "17x32 197 768 768"     # ViT-B/16 projection on the SAMM's 17x32 array
    "16x32 64 64 197"       # one head's K^T V on the 16x32 array (M N K)
    "128x128 512 512 512"   # a TPU-like array
)
for shape in "${shapes[@]}"; do
    read -r array m n k <<<"$shape"
    for dataflow in os ws is; do
        for _ in $(seq "$RUNS"); do
            taskset -c 0 "$EDGERUN" --threads 1 sim gemm --array "$array" --dataflow "$dataflow" \
                --m "$m" --n "$n" --k "$k" --json |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("array","dataflow","m","n","k","cycles","utilization","pe_cycles_per_second","simulated_seconds","matches_kernel")}))' |
                tee -a "$OUT"
        done
    done
done
[ -f "$MODELS/vit-base-16/config.json" ] || "$EDGERUN" synth --arch vit-base-16 --out "$MODELS/vit-base-16" >/dev/null
for _ in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    taskset -c 0 "$EDGERUN" --threads 1 sim samm --model "$MODELS/vit-base-16" --json >/dev/null
    end=$(date +%s.%N)
    python3 -c "print('{\"sim_samm_vit_base_s\": %.3f}' % ($end - $start))" | tee -a "$OUT"
done
echo "wrote $OUT"
