#!/usr/bin/env bash
# SwapNet scenarios (scenarios/*.toml), every variant, REPS times each, caches dropped before
# every run (needs root: drop_caches and cgroup v1).
#   swap     edgerun mix under the scenario's cap: units kept resident where the quota allows,
#            the rest streamed, the reader 2 steps ahead (the defaults)
#   swapnet  the same cap, SwapNet as published: everything streamed, read inline
#            (--no-keep --prefetch 0)
#   plenty   a cap of 4x the weights: everything kept after its first read
#   mmap     every model mapped whole inside a memory cgroup of the scenario's cap
# With THROTTLE_BPS set (e.g. 100000000), everything runs in a blkio group capping reads from
# the models' disk at that rate (an SD-card-class device) and files are tagged -throttled.
# Each model is profiled once first (STORE.profile.json, which `edgerun mix` picks up).
# Usage: [REPS=3] [SCENARIOS="..."] [THROTTLE_BPS=...] bench/mix.sh
# Writes results/mix-<scenario>-<variant>[-throttled]-<stamp>-r<k>.json; summarise with
# python3 bench/mix_summary.py <stamp>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
reps=${REPS:-3}
# EDGERUN=/path/to/edgerun measures that binary (not rebuilt).
edgerun=${EDGERUN:-"$here/../target/release/edgerun"}
[ -n "${EDGERUN:-}" ] || (cd "$here/.." && cargo build --release -q -p edgerun-cli)
python3 "$here/make_pixels.py" "$models/pixels-416.safetensors" 416
for arch in yolov3 resnet-101 fcn-resnet101 vgg19; do
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch" >/dev/null
  [ -f "$models/$arch.packed/manifest.json" ] || "$edgerun" pack "$models/$arch" "$models/$arch.packed"
  input=()
  [ "$arch" = yolov3 ] && input=(--input "$models/pixels-416.safetensors")
  [ -f "$models/$arch.packed.profile.json" ] || "$edgerun" --threads 2 profile "$models/$arch.packed" \
      "${input[@]}" --runs 3 --output "$models/$arch.packed.profile.json"
done
stamp=$(date +%Y%m%d-%H%M%S)
tag=${THROTTLE_BPS:+-throttled}
mkdir -p "$here/results"
# shellcheck source=bench/throttle.sh
. "$here/throttle.sh"
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for scenario in ${SCENARIOS:-self-driving road-side-unit uav}; do
  toml="$here/../scenarios/$scenario.toml"
  for rep in $(seq 1 "$reps"); do
    out() { echo "$here/results/mix-$scenario-$1$tag-$stamp-r$rep.json"; }
    cold; "$edgerun" --threads 2 mix "$toml" --models "$models" --report "$(out swap)" 2>/dev/null >/dev/null
    cold; "$edgerun" --threads 2 mix "$toml" --models "$models" --no-keep --prefetch 0 \
        --report "$(out swapnet)" 2>/dev/null >/dev/null
    weights=$(python3 -c "import json; print(json.load(open('$(out swap)'))['weight_bytes'])")
    cap=$(python3 -c "import json; print(json.load(open('$(out swap)'))['cap_bytes'])")
    cold; "$edgerun" --threads 2 mix "$toml" --models "$models" --budget $((weights * 4)) \
        --report "$(out plenty)" 2>/dev/null >/dev/null
    memory=/sys/fs/cgroup/memory/edgerun-mix-$$
    mkdir -p "$memory"
    echo "$cap" > "$memory/memory.limit_in_bytes"
    cold
    set +e
    sh -c "echo \$\$ > $memory/cgroup.procs; exec $edgerun --threads 2 mix $toml --models $models --strategy mmap --report $(out mmap)" 2>/dev/null >/dev/null
    status=$?
    set -e
    [ "$status" = 0 ] || echo "$scenario mmap r$rep: exit $status (failcnt $(cat "$memory/memory.failcnt"))"
    rmdir "$memory"
    echo "$scenario r$rep done"
  done
done
echo "python3 $here/mix_summary.py $stamp"
