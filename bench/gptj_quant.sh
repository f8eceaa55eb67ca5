#!/usr/bin/env bash
# GPT-J 6B quantised: weights.bin of the int8 and q4 stores (against f32, parameters x 4, and the
# fp16 checkpoint), then greedy generation from a 32-token prompt with the q4 store loaded whole
# (O_DIRECT, 2 threads) inside a cgroup v1 memory group of 4 GiB: cold runs of 1 and 17 new
# tokens, so (wall(17) - wall(1)) / 16 is the time per generated token; VmHWM and the group's
# failcnt beside. Needs root and ~22 GB under $MODELS (the fp16 checkpoint is synthesized if
# missing). Usage: bench/gptj_quant.sh [RUNS]
set -euo pipefail
runs=${1:-2}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
E="$here/../target/release/edgerun"
(cd "$here/.." && cargo build --release -q -p edgerun-cli)
src="$models/gpt-j-6b"
[ -f "$src/config.json" ] || "$E" synth --arch gpt-j-6b --dtype f16 --out "$src"
mkdir -p "$here/results"
out="$here/results/gptj-quant-$(date +%Y%m%d-%H%M%S).jsonl"
parameters=$("$E" inspect "$src" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['parameters'])")
checkpoint=$(du -cb "$src"/*.safetensors | tail -n 1 | cut -f1)
echo "{\"label\": \"size\", \"dtype\": \"f32 (parameters x 4)\", \"weights_bytes\": $((parameters * 4))}" | tee -a "$out"
echo "{\"label\": \"size\", \"dtype\": \"f16 checkpoint\", \"weights_bytes\": $checkpoint}" | tee -a "$out"
for dtype in int8 q4; do
  S="$src-packed-$dtype"
  [ -f "$S/manifest.json" ] || "$E" pack "$src" "$S" --dtype "$dtype"
  echo "{\"label\": \"size\", \"dtype\": \"$dtype\", \"weights_bytes\": $(stat -c %s "$S/weights.bin")}" | tee -a "$out"
done
python3 "$here/make_ids.py" "$models/ids-32.safetensors" 32
S="$src-packed-q4"
group=/sys/fs/cgroup/memory/edgerun-gptj-$$
mkdir -p "$group"
echo $((4 << 30)) > "$group/memory.limit_in_bytes"
trap 'rmdir "$group" 2>/dev/null || true' EXIT
for run in $(seq "$runs"); do
  for tokens in 1 17; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    echo 0 > "$group/memory.failcnt"
    set +e
    sh -c "echo \$\$ > $group/cgroup.procs; exec $E --threads 2 generate $S --input $models/ids-32.safetensors --max-new-tokens $tokens --strategy full --io direct --output /tmp/edgerun-gptj-seq.safetensors --report /tmp/edgerun-gptj-q4.json" 2> /tmp/edgerun-gptj-q4.log
    status=$?
    set -e
    new=$(grep -o "([0-9]* new)" /tmp/edgerun-gptj-q4.log | tr -dc 0-9)
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])) if sys.argv[4] == '0' else {}; r.update(label='generate', dtype='q4', cap_bytes=4 << 30, requested=int(sys.argv[2]), new_tokens=int(sys.argv[3] or 0), status=int(sys.argv[4]), failcnt=int(sys.argv[5]), run=int(sys.argv[6])); print(json.dumps(r))" \
      /tmp/edgerun-gptj-q4.json "$tokens" "$new" "$status" "$(cat "$group/memory.failcnt")" "$run" | tee -a "$out"
  done
done
echo "wrote $out"
