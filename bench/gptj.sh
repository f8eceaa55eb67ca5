#!/usr/bin/env bash
# GPT-J 6B (fp16 weights, 12.1 GB packed) on a budget of 25% of its packed bytes: pipeload with
# 1, 2 and 3 loaders and stream, cold (drop_caches before every run), O_DIRECT, 128 tokens,
# 2 threads. `full` is not run: widened to f32 it needs ~24 GB, the whole machine. First a
# one-pass profile (STORE.profile.json), from which `edgerun plan` predicts each pipeload run
# and summarize_pipeload.py takes T_floor. With THROTTLE_BPS set (e.g. 100000000) everything,
# the profile included, runs in a blkio group capping the models' disk (see throttle.sh).
# Needs root and ~25 GB of disk under $MODELS. Usage: bench/gptj.sh [RUNS]
set -euo pipefail
runs=${1:-2}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
E="$here/../target/release/edgerun"
(cd "$here/.." && cargo build --release -q -p edgerun-cli)
S="$models/gpt-j-6b-packed"
[ -f "$S/manifest.json" ] || { [ -f "$models/gpt-j-6b/config.json" ] || "$E" synth --arch gpt-j-6b --dtype f16 --out "$models/gpt-j-6b"; "$E" pack "$models/gpt-j-6b" "$S"; }
python3 "$here/make_ids.py" "$models/ids-128.safetensors" 128
# shellcheck source=bench/throttle.sh
. "$here/throttle.sh"
"$E" --threads 2 profile "$S" --input "$models/ids-128.safetensors" --runs 1 --output "$S.profile.json"
mkdir -p "$here/results"
tag=${THROTTLE_BPS:+-throttled-$THROTTLE_BPS}
out="$here/results/gptj$tag-$(date +%Y%m%d-%H%M%S).jsonl"
quarter=$(( $(stat -c %s "$S/weights.bin") / 4 ))
plan=$("$E" plan "$S" --budget "$quarter" --profile "$S.profile.json" --json)
echo "$plan" > "$out.plan.json"
for run in $(seq "$runs"); do
  for loaders in 3 2 1 stream; do
    mode=(--strategy stream)
    predicted=""
    if [ "$loaders" != stream ]; then
      read -r predicted depth < <(echo "$plan" | python3 -c "import json,sys; p=json.load(sys.stdin); c=next(c for c in p['candidates'] if c['loaders']==$loaders); print(c['predicted_latency_s'], c.get('depth') or '')")
      mode=(--strategy pipeload --loaders "$loaders" ${depth:+--depth "$depth"})
    fi
    sync; echo 3 > /proc/sys/vm/drop_caches
    "$E" --threads 2 run "$S" --input "$models/ids-128.safetensors" --output /tmp/edgerun-gptj.safetensors \
      "${mode[@]}" --io direct --budget "$quarter" --report /tmp/edgerun-gptj.json 2>/dev/null
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r.update(model='gpt-j-6b', label=r['strategy'] + (f\" x{r['loaders']}\" if r.get('loaders') else ''), predicted_s=float(sys.argv[3]) if sys.argv[3] else None, throttle_bps='${THROTTLE_BPS:-}' or None, run=int(sys.argv[2])); print(json.dumps(r))" /tmp/edgerun-gptj.json "$run" "$predicted" | tee -a "$out"
  done
done
echo "wrote $out"
