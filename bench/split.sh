#!/usr/bin/env bash
# Split inference over a shaped link: for each model and rate, edge only, cloud only and the
# split Neurosurgeon's rule picks for each compression (warm, median of REPS), an uncompressed
# sweep of every split beside its prediction at the fastest rate, and the server's throughput
# and p50/p99 under 1, 4 and 16 clients on loopback. Root: the link is two network namespaces
# joined by a veth pair shaped with tc tbf (bench/netns.sh); without them the client models the
# rate itself (--emulate-link) and every row says which ran.
#
# EDGE_THREADS (default: all cores) gives the edge fewer threads than the server (which uses
# every core): the server's speed-up for the prediction is then the ratio of two profiles'
# compute, at EDGE_THREADS and at all cores.
#
# usage: MODELS=/tmp/bench-models RATES="0.5 2 8 100" REPS=5 [EDGE_THREADS=1] bench/split.sh
# then:  python3 bench/split_summary.py bench/results/split-STAMP.jsonl
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
MODELS=${MODELS:-/tmp/bench-models}
RATES=${RATES:-0.5 2 8 100}
REPS=${REPS:-5}
stamp=$(date -u +%Y%m%d-%H%M%S)
out="$root/bench/results/split-$stamp.jsonl"
mkdir -p "$root/bench/results"
(cd "$root" && cargo build --release -q -p edgerun-cli)
(cd "$root/bench" && cargo build --release -q --bin split)
E="$root/target/release/edgerun"
SPLIT="$root/bench/target/release/split"

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
  "bert-base:$MODELS/bert-base-packed-f32:$MODELS/ids-128.safetensors"
  "vit-base-16:$MODELS/vit-base-16-packed-f32:$MODELS/pixels-224.safetensors"
  "resnet-50:$MODELS/resnet-50-packed-f32:$MODELS/pixels-224.safetensors"
  "minilm:$MODELS/minilm-packed:$root/../shared/fixtures/minilm-real/inputs.safetensors"
)
specs=()
declare -A speedup
edge=${EDGE_THREADS:-$(nproc)}
for m in "${models[@]}"; do
  IFS=: read -r name store input <<<"$m"
  if [ ! -f "$store.split-profile.json" ]; then
    "$E" profile "$store" --input "$input" --runs 3 --output "$store.split-profile.json" >&2
  fi
  if [ ! -f "$store.split-profile-${edge}t.json" ]; then
    "$E" --threads "$edge" profile "$store" --input "$input" --runs 3 \
      --output "$store.split-profile-${edge}t.json" >&2
  fi
  speedup[$name]=$(python3 -c "import json,sys; c=lambda p: sum(u['compute_s'] for u in json.load(open(p))['units']); print(c(sys.argv[1]) / c(sys.argv[2]))" "$store.split-profile-${edge}t.json" "$store.split-profile.json")
  specs+=("$store=$name")
done

cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "${loopback:-}" ] && kill "$loopback" 2>/dev/null && wait "$loopback" 2>/dev/null
  [ "${namespaces:-0}" = 1 ] && "$root/bench/netns.sh" down
  true
}
trap cleanup EXIT

lscpu | sed -n 's/^Model name: *//p' | head -1 | sed 's/^/{"cpu": "/; s/$/"}/' >"$out"
if [ "$(id -u)" = 0 ] && "$root/bench/netns.sh" check; then
  namespaces=1
  "$root/bench/netns.sh" up 100mbit
  ip netns exec er-server "$E" serve "${specs[@]}" --listen 10.77.0.1:8000 >/dev/null &
  server=$!
  url=http://10.77.0.1:8000
  in_client=(ip netns exec er-client)
  emulate=()
else
  echo "split.sh: no network namespaces: the client models each rate" >&2
  "$E" serve "${specs[@]}" --listen 127.0.0.1:8000 >/dev/null &
  server=$!
  url=http://127.0.0.1:8000
  in_client=()
  emulate=(--emulate-link)
fi
for _ in $(seq 300); do
  "${in_client[@]}" python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/v2/health/ready', timeout=1)" "$url" 2>/dev/null && break
  sleep 0.5
done

for rate in $RATES; do
  [ "${namespaces:-0}" = 1 ] && "$root/bench/netns.sh" rate "${rate}mbit"
  for m in "${models[@]}"; do
    IFS=: read -r name store input <<<"$m"
    sweep=()
    [ "$rate" = "$(echo $RATES | awk '{print $NF}')" ] && sweep=(--sweep)
    echo "split.sh: $name at $rate Mbit/s" >&2
    "${in_client[@]}" "$SPLIT" --store "$store" --input "$input" --name "$name" --url "$url" \
      --profile "$store.split-profile-${edge}t.json" --rate-mbit "$rate" --reps "$REPS" \
      --threads "$edge" --server-speedup "${speedup[$name]}" \
      "${emulate[@]}" "${sweep[@]}" >>"$out"
  done
done

# The server alone: loopback, no shaping, whole-model requests from concurrent clients.
"$E" serve "${specs[@]}" --listen 127.0.0.1:8001 --queue 256 >/dev/null &
loopback=$!
for _ in $(seq 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=1)" 2>/dev/null && break
  sleep 0.5
done
for m in "${models[@]}"; do
  IFS=: read -r name store input <<<"$m"
  "$SPLIT" --store "$store" --input "$input" --name "$name" --url http://127.0.0.1:8001 \
    --rate-mbit 0 --load 1,4,16 --load-requests 48 >>"$out"
done
echo "wrote $out" >&2
