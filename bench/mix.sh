#!/usr/bin/env bash
# SwapNet scenarios (scenarios/*.toml): each model profiled once (STORE.profile.json, which
# `edgerun mix` picks up), then per scenario a cold run under the scenario's cap (as root:
# drop_caches first; O_DIRECT reads) and a run with plenty of memory (a cap of 4x the weights,
# every model one block) for the round-latency comparison. Usage: bench/mix.sh
# Writes results/mix-<scenario>-<cap|plenty>-<date>.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
edgerun="$here/../target/release/edgerun"
(cd "$here/.." && cargo build --release -q -p edgerun-cli)
for arch in resnet-152 resnet-101 fcn-resnet101 vgg19; do
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch" >/dev/null
  [ -f "$models/$arch.packed/manifest.json" ] || "$edgerun" pack "$models/$arch" "$models/$arch.packed"
  [ -f "$models/$arch.packed.profile.json" ] || "$edgerun" --threads 2 profile "$models/$arch.packed" \
      --runs 3 --output "$models/$arch.packed.profile.json"
done
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$here/results"
for scenario in self-driving road-side-unit uav; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  "$edgerun" --threads 2 mix "$here/../scenarios/$scenario.toml" --models "$models" \
      --report "$here/results/mix-$scenario-cap-$stamp.json" 2>/dev/null
  weights=$(python3 -c "import json; print(json.load(open('$here/results/mix-$scenario-cap-$stamp.json'))['weight_bytes'])")
  sync; echo 3 > /proc/sys/vm/drop_caches
  "$edgerun" --threads 2 mix "$here/../scenarios/$scenario.toml" --models "$models" --budget $((weights * 4)) \
      --report "$here/results/mix-$scenario-plenty-$stamp.json" 2>/dev/null
done
echo "wrote $here/results/mix-*-$stamp.json"
