#!/usr/bin/env bash
# PipeLoad vs the planner (128 token ids, or a 224x224 image for vit/resnet): for each model, profile the packed store, plan at a budget, then run
# pipeload with 1..4 loaders, each at the read-ahead depth the planner chose for that count
# (cold: drop_caches before each run) and record predicted and
# measured latency, plus full and stream for reference. With THROTTLE_BPS set (e.g. 100000000)
# everything runs inside a cgroup v1 blkio group whose read_bps_device caps the model's disk:
# an SD-card-class device. Needs root. Usage: bench/pipeload.sh [RUNS]
#   MODELS=/tmp/bench-models BUDGETS="bert-large=320MiB gpt2-medium=500MiB" THROTTLE_BPS=...
#   DTYPE=int8|q4 runs stores packed with that --dtype (NAME-packed-DTYPE), tagged in the file
#   name and each record.
set -euo pipefail
runs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
budgets=${BUDGETS:-"bert-large=320MiB gpt2-medium=500MiB"}
# EDGERUN=/path/to/edgerun measures that binary (not rebuilt); TAG names its results.
# BINARIES="before=/path after=/path" runs every configuration with each in turn (the first
# profiles and plans), which goes first alternating from run to run, each row's label ending
# in the binary's name.
edgerun=${EDGERUN:-"$here/../target/release/edgerun"}
[ -n "${EDGERUN:-}${BINARIES:-}" ] || (cd "$here/.." && cargo build --release -q -p edgerun-cli)
binaries=${BINARIES:-"=$edgerun"}
edgerun=${binaries%% *}; edgerun=${edgerun#*=}
python3 "$here/make_ids.py" "$models/ids-128.safetensors" 128
python3 "$here/make_pixels.py" "$models/pixels-224.safetensors" 224
input_for() { case "$1" in vit*|resnet*) echo "$models/pixels-224.safetensors" ;; *) echo "$models/ids-128.safetensors" ;; esac; }
mkdir -p "$here/results"
tag=${THROTTLE_BPS:+throttled-$THROTTLE_BPS}
out="$here/results/pipeload-${tag:-unthrottled}${DTYPE:+-$DTYPE}${TAG:+-$TAG}-$(date +%Y%m%d-%H%M%S).jsonl"

# shellcheck source=bench/throttle.sh
. "$here/throttle.sh"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
record() { # model label predicted report
  python3 -c "import json,sys; r=json.load(open(sys.argv[4])); r.update(model=sys.argv[1], label=sys.argv[2], predicted_s=float(sys.argv[3]) if sys.argv[3] else None, throttle_bps='${THROTTLE_BPS:-}' or None, dtype='${DTYPE:-f32}'); print(json.dumps(r))" "$@" | tee -a "$out"
}
for pair in $budgets; do
  arch=${pair%%=*}; budget=${pair##*=}
  store="$models/$arch-packed${DTYPE:+-$DTYPE}"
  input=$(input_for "$arch")
  [ -f "$store/manifest.json" ] || { [ -f "$models/$arch/config.json" ] || "$edgerun" synth --arch "$arch" --out "$models/$arch"; "$edgerun" pack "$models/$arch" "$store" ${DTYPE:+--dtype "$DTYPE"}; }
  "$edgerun" --threads 2 profile "$store" --input "$input" --runs 3 --output "$store.profile.json"
  plan=$("$edgerun" plan "$store" --budget "$budget" --profile "$store.profile.json" --json)
  for run in $(seq "$runs"); do
    # Alternate which binary goes first (the second reads a disk the first has just read).
    order=$binaries; [ $((run % 2)) = 0 ] && order=$(echo "$binaries" | tr ' ' '\n' | tac | tr '\n' ' ')
    for loaders in 1 2 3 4; do
      # The planner's prediction for this loader count, at the depth it chose for it.
      read -r predicted depth < <(echo "$plan" | python3 -c "import json,sys; p=json.load(sys.stdin); c=next(c for c in p['candidates'] if c['loaders']==$loaders); print(c['predicted_latency_s'], c.get('depth') or '')")
      for named in $order; do
        suffix=${named%%=*}; binary=${named#*=}
        cold
        "$binary" --threads 2 run "$store" --input "$input" --output /tmp/edgerun-pl.safetensors \
          --strategy pipeload --io direct --loaders "$loaders" ${depth:+--depth "$depth"} --budget "$budget" --report /tmp/edgerun-pl.json 2>/dev/null
        record "$arch" "pipeload x$loaders${suffix:+ $suffix}" "$predicted" /tmp/edgerun-pl.json
      done
    done
    for mode in "full" "stream"; do
      for named in $order; do
        suffix=${named%%=*}; binary=${named#*=}
        cold
        "$binary" --threads 2 run "$store" --input "$input" --output /tmp/edgerun-pl.safetensors \
          --strategy $mode --io direct --report /tmp/edgerun-pl.json 2>/dev/null
        record "$arch" "$mode${suffix:+ $suffix}" "" /tmp/edgerun-pl.json
      done
    done
  done
  echo "$plan" > "$out.$arch.plan.json"
done
echo "wrote $out"
