#!/usr/bin/env bash
# Per-model swap overhead: each model of the self-driving scenario alone, swapped under the
# quota the mix gave it plus the mix's shared scratch (from the newest
# results/mix-self-driving-swap-<stamp>-r1.json), against the same
# model all-resident and warm (`--strategy full`, compute time of the pass). Median of RUNS.
# Usage: bench/swap_vs_resident.sh [RUNS]. Writes results/swap-vs-resident-<date>.jsonl.
set -euo pipefail
runs=${1:-5}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
edgerun="$here/../target/release/edgerun"
mix=$(ls -t "$here"/results/mix-self-driving-swap-2*-r1.json | head -n 1)
out="$here/results/swap-vs-resident-$(date +%Y%m%d-%H%M%S).jsonl"
python3 "$here/make_pixels.py" "$models/pixels-224.safetensors" 224
python3 "$here/make_pixels.py" "$models/pixels-416.safetensors" 416
declare -A store=([yolov3]=yolov3 [fcn-resnet101]=fcn-resnet101 [vgg19]=vgg19 [resnet101]=resnet-101)
for name in "${!store[@]}"; do
  packed="$models/${store[$name]}.packed"
  pixels="$models/pixels-224.safetensors"
  [ "$name" = yolov3 ] && pixels="$models/pixels-416.safetensors"
  quota=$(python3 -c "import json; r=json.load(open('$mix')); print(r['scratch_bytes'] + next(m['quota_bytes'] for m in r['models'] if m['name']=='$name'))")
  for _ in $(seq "$runs"); do
    "$edgerun" --threads 2 run "$packed" --input "$pixels" --output /tmp/swap-vs-resident.safetensors \
        --strategy full --report /tmp/full.json 2>/dev/null
    "$edgerun" --threads 2 run "$packed" --input "$pixels" --output /tmp/swap-vs-resident.safetensors \
        --strategy swap --io direct --budget "$quota" --profile "$packed.profile.json" --report /tmp/swap.json 2>/dev/null
    python3 -c "import json; f=json.load(open('/tmp/full.json')); s=json.load(open('/tmp/swap.json')); print(json.dumps({'model': '$name', 'quota_bytes': $quota, 'resident_compute_s': f['compute_s'], 'swap_wall_s': s['wall_s'], 'swap_peak_bytes': s['peak_bytes'], 'copied_bytes': s['copied_bytes']}))" | tee -a "$out"
  done
done
echo "wrote $out"
