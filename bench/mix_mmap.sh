#!/usr/bin/env bash
# The mmap baseline of each SwapNet scenario: every model mapped whole, one inference per
# turn, inside a cgroup v1 memory group capped at the scenario's budget (page cache counts),
# caches dropped first. What a user gets from the page cache instead of SwapNet's swapping.
# Needs root. Usage: bench/mix_mmap.sh. Writes results/mix-<scenario>-mmap-<date>.json
# (or a line saying the process was killed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
edgerun="$here/../target/release/edgerun"
stamp=$(date +%Y%m%d-%H%M%S)
for scenario in self-driving road-side-unit uav; do
  cap=$(python3 -c "
import re
t=open('$here/../scenarios/$scenario.toml').read()
v=re.search(r'budget\s*=\s*\"(\d+)MB\"', t).group(1)
print(int(v)*1000*1000)")
  group=/sys/fs/cgroup/memory/edgerun-mix-$$
  mkdir -p "$group"
  echo "$cap" > "$group/memory.limit_in_bytes"
  sync; echo 3 > /proc/sys/vm/drop_caches
  report="$here/results/mix-$scenario-mmap-$stamp.json"
  set +e
  sh -c "echo \$\$ > $group/cgroup.procs; exec $edgerun --threads 2 mix $here/../scenarios/$scenario.toml --models $models --strategy mmap --report $report" 2>/dev/null
  status=$?
  set -e
  echo "$scenario: exit $status, memory.max_usage_in_bytes $(cat $group/memory.max_usage_in_bytes), failcnt $(cat $group/memory.failcnt)"
  rmdir "$group"
done
