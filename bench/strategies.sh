#!/usr/bin/env bash
# Cold-cache strategies table: full, mmap, stream and pipeload (pread and O_DIRECT) on synthesized
# BERT-large and GPT-2 medium (fp32), 128-token input, 2 threads; pipeload also at a budget of
# 25% of the packed weight bytes. Before every run:
# sync; echo 3 > /proc/sys/vm/drop_caches (needs root). Usage: bench/strategies.sh [RUNS]
# BINARIES="before=/path/to/edgerun after=target/release/edgerun" runs each mode with each
# binary in turn (side by side in one run, e.g. before and after a refactor), which goes
# first alternating from run to run; each record names its binary.
set -euo pipefail
runs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
edgerun="$here/../target/release/edgerun"
binaries=${BINARIES:-"edgerun=$edgerun"}
[ -n "${BINARIES:-}" ] || (cd "$here/.." && cargo build --release -q -p edgerun-cli)
mkdir -p "$here/results"
out="$here/results/strategies-$(date +%Y%m%d-%H%M%S).jsonl"
python3 "$here/make_ids.py" "$models/ids-128.safetensors" 128
for arch in bert-large gpt2-medium; do
  [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch"
  [ -f "$models/$arch-packed/manifest.json" ] || "$edgerun" pack "$models/$arch" "$models/$arch-packed"
  for run in $(seq "$runs"); do
    quarter=$(( $(stat -c %s "$models/$arch-packed/weights.bin") / 4 ))
    for mode in "full --io pread" "full --io direct" "mmap" "stream --io pread" "stream --io direct" \
                "pipeload --loaders 2 --io direct" "pipeload --loaders 4 --io direct" \
                "pipeload --loaders 2 --io direct --budget $quarter"; do
      # Alternate which binary goes first: the second of a pair reads a disk the first has
      # just read (the host caches what the guest's drop_caches cannot reach).
      order=$binaries; [ $((run % 2)) = 0 ] && order=$(echo "$binaries" | tr ' ' '\n' | tac | tr '\n' ' ')
      for named in $order; do
      label=${named%%=*}; binary=${named#*=}
      sync; echo 3 > /proc/sys/vm/drop_caches
      report=$(mktemp)
      # shellcheck disable=SC2086
      if ! "$binary" --threads 2 run "$models/$arch-packed" --input "$models/ids-128.safetensors" \
        --output /tmp/edgerun-strategies-out.safetensors --strategy $mode --report "$report" 2>"$report.err"; then
        echo "{\"model\": \"$arch\", \"binary\": \"$label\", \"mode\": \"$mode\", \"error\": \"$(tr -d '"' < "$report.err")\"}" | tee -a "$out"
        rm -f "$report" "$report.err"
        continue
      fi
      rm -f "$report.err"
      python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r.update(model=sys.argv[2], run=int(sys.argv[3]), binary=sys.argv[4]); print(json.dumps(r))" "$report" "$arch" "$run" "$label" | tee -a "$out"
      rm -f "$report"
      done
    done
  done
done
echo "wrote $out"
