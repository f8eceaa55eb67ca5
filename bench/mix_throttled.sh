#!/usr/bin/env bash
# The SwapNet scenarios on an SD-card-class disk: the process joins a cgroup v1 blkio group
# whose read_bps_device caps the models' disk at THROTTLE_BPS (default 100 MB/s); each
# scenario runs swapped under its cap, then mapped inside a memory cgroup of the same cap.
# Caches dropped before each run. Needs root. Usage: bench/mix_throttled.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
bps=${THROTTLE_BPS:-100000000}
edgerun="$here/../target/release/edgerun"
stamp=$(date +%Y%m%d-%H%M%S)
blkio=/sys/fs/cgroup/blkio/edgerun-mix-$$
mkdir -p "$blkio"
dev=$(lsblk -no MAJ:MIN "$(df --output=source "$models" | tail -n 1)" | head -n 1 | tr -d ' ')
echo "$dev $bps" > "$blkio/blkio.throttle.read_bps_device"
echo $$ > "$blkio/cgroup.procs"
trap 'echo $$ > /sys/fs/cgroup/blkio/cgroup.procs; rmdir "$blkio"' EXIT
for scenario in ${SCENARIOS:-self-driving road-side-unit uav}; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  "$edgerun" --threads 2 mix "$here/../scenarios/$scenario.toml" --models "$models" \
      --report "$here/results/mix-$scenario-swap-throttled-$stamp.json" 2>/dev/null | grep '^cap' 
  cap=$(python3 -c "import json; print(json.load(open('$here/results/mix-$scenario-swap-throttled-$stamp.json'))['cap_bytes'])")
  memory=/sys/fs/cgroup/memory/edgerun-mix-$$
  mkdir -p "$memory"
  echo "$cap" > "$memory/memory.limit_in_bytes"
  sync; echo 3 > /proc/sys/vm/drop_caches
  sh -c "echo \$\$ > $memory/cgroup.procs; exec $edgerun --threads 2 mix $here/../scenarios/$scenario.toml --models $models --strategy mmap --report $here/results/mix-$scenario-mmap-throttled-$stamp.json" 2>/dev/null | grep '^mmap' 
  rmdir "$memory"
done
echo "wrote $here/results/mix-*-throttled-$stamp.json"
