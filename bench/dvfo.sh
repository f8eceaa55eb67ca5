#!/usr/bin/env bash
# DVFO's controller against the baselines and the oracle: for each model, a calibration on
# this machine (per-stage compute, every split and compression's bytes and cosine), then per
# board a DQN trained over a random-walk trace and evaluated with every baseline on three
# traces (constant 8 Mbit/s, steps 20/2/0.5/8, a random walk of another seed). Power is the
# board file's model; board stage times are predicted from this machine's; the server is this
# machine (--server-speedup SPEEDUP).
#
# Then the co-optimiser: models held to a memory budget below their weights (BUDGETS, each
# MODEL=SIZE), the head streamed from the board's microSD with PipeLoad, the DQN trained and
# evaluated over levels, offloads and PipeLoad shapes together, beside the oracle held to
# one knob at a time.
#
# usage: MODELS=/tmp/bench-models [STEPS=20000 LEN=200 ETA=0.5 SPEEDUP=1] bench/dvfo.sh
# then:  python3 bench/dvfo_summary.py bench/results/dvfo-STAMP.jsonl
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
MODELS=${MODELS:-/tmp/bench-models}
STEPS=${STEPS:-20000}
LEN=${LEN:-200}
ETA=${ETA:-0.5}
SPEEDUP=${SPEEDUP:-1}
BUDGETS=${BUDGETS:-"resnet-50=64MiB resnet-50=96MiB bert-base=128MiB"}
stamp=$(date -u +%Y%m%d-%H%M%S)
out="$root/bench/results/dvfo-$stamp.jsonl"
mkdir -p "$root/bench/results"
(cd "$root" && cargo build --release -q -p edgerun-cli)
E="$root/target/release/edgerun"

mkdir -p "$MODELS"
for arch in bert-base vit-base-16 resnet-50; do
  [ -f "$MODELS/$arch/config.json" ] || "$E" synth --arch "$arch" --out "$MODELS/$arch" >&2
  [ -f "$MODELS/$arch-packed-f32/manifest.json" ] ||
    "$E" pack "$MODELS/$arch" "$MODELS/$arch-packed-f32" >&2
done
python3 "$root/bench/make_ids.py" "$MODELS/ids-128.safetensors" 128
python3 "$root/bench/make_pixels.py" "$MODELS/pixels-224.safetensors" 224
if [ ! -f "$MODELS/minilm-packed/manifest.json" ]; then
  "$root/scripts/fetch-minilm.sh" >&2
  "$E" pack "$root/models/all-MiniLM-L6-v2" "$MODELS/minilm-packed" >&2
fi
models=(
  "minilm:$MODELS/minilm-packed:$root/../shared/fixtures/minilm-real/inputs.safetensors"
  "bert-base:$MODELS/bert-base-packed-f32:$MODELS/ids-128.safetensors"
  "vit-base-16:$MODELS/vit-base-16-packed-f32:$MODELS/pixels-224.safetensors"
  "resnet-50:$MODELS/resnet-50-packed-f32:$MODELS/pixels-224.safetensors"
)
boards=(jetson-nano jetson-xavier-nx)
traces=(--trace constant:8 --trace "steps:20,2,0.5,8@50" --trace walk:2)

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "{\"cpu\": \"$cpu\", \"steps\": $STEPS, \"len\": $LEN, \"eta\": $ETA, \"server_speedup\": $SPEEDUP}" >"$out"
# train_and_eval NAME STORE BOARD BUDGET(or -) : one policy, one evaluation, appended to $out.
train_and_eval() {
  local name=$1 store=$2 board=$3 budget=$4
  local cal="$store.dvfo-calibration.json" tag="" extra=()
  if [ "$budget" != - ]; then
    tag="-$budget"
    extra=(--budget "$budget")
  fi
  local policy="$store.dvfo-$board$tag.safetensors"
  local common=(--board "$root/boards/$board.toml" --calibration "$cal" --eta "$ETA"
    --server-speedup "$SPEEDUP" "${extra[@]}")
  echo "dvfo.sh: $name on $board${tag:+ under $budget}: training" >&2
  local started ended
  started=$(date +%s.%N)
  "$E" dvfo train "${common[@]}" --steps "$STEPS" --trace walk:1 --output "$policy" >&2
  ended=$(date +%s.%N)
  echo "{\"model\": \"$name\", \"board\": \"$board\", \"budget\": \"$budget\", \"train_s\": $(echo "$ended - $started" | bc)}" >>"$out"
  "$E" dvfo eval "${common[@]}" --policy "$policy" "${traces[@]}" --len "$LEN" \
    --json "/tmp/dvfo-eval-$$.jsonl" >&2
  sed "s/^{/{\"model\": \"$name\", \"budget\": \"$budget\", /" "/tmp/dvfo-eval-$$.jsonl" >>"$out"
}

declare -A stores
for m in "${models[@]}"; do
  IFS=: read -r name store input <<<"$m"
  stores[$name]=$store
  cal="$store.dvfo-calibration.json"
  # Calibrations of version 1 lack the unit sizes a budget needs: measure again.
  if [ -f "$cal" ] && ! grep -q '"version": 2' "$cal"; then rm -f "$cal"; fi
  [ -f "$cal" ] || "$E" dvfo calibrate --model "$store" --input "$input" --runs 5 --output "$cal" >&2
  for board in "${boards[@]}"; do
    train_and_eval "$name" "$store" "$board" -
  done
done
for scenario in $BUDGETS; do
  name=${scenario%%=*}
  budget=${scenario#*=}
  for board in "${boards[@]}"; do
    train_and_eval "$name" "${stores[$name]}" "$board" "$budget"
  done
done
rm -f "/tmp/dvfo-eval-$$.jsonl"
echo "wrote $out" >&2
