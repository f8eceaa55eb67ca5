#!/usr/bin/env bash
# GPT-2 decode per token against llama.cpp in fp32, interleaved (edgerun, llama.cpp, edgerun,
# ...), on the same synthesized weights: 32 tokens after a 128-token prompt, both sides.
# llama.cpp is built from the source that PyPI's llama-cpp-python sdist vendors (CPU only,
# -DGGML_NATIVE=ON), the model converted by its own convert_hf_to_gguf.py (peers/gguf_gpt2.py
# supplies a synthetic vocabulary: the synthesized folder has no tokenizer).
# Usage: bench/llama_cpp.sh [THREADS] [ROUNDS]. Needs: a Python with torch and transformers
# (the converter's), network for PyPI; PY overrides python3. Writes results/llama-cpp-*.jsonl.
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-/tmp/bench-models}
py=${PY:-python3}
work=${LLAMA_WORK:-/tmp/edgerun-llama-cpp}
version=0.3.36
mkdir -p "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
if [ ! -x "$src/build/bin/llama-bench" ]; then
  "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$work"
  tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
  command -v cmake >/dev/null || "$py" -m pip install --quiet cmake
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF >/dev/null
  cmake --build "$src/build" --target llama-bench -j "$(nproc)" >/dev/null
fi
[ -f "$models/gpt2/config.json" ] || "$here/../target/release/edgerun" synth --arch gpt2 --out "$models/gpt2"
gguf="$work/gpt2-f32.gguf"
[ -f "$gguf" ] || "$py" "$here/peers/gguf_gpt2.py" "$src" "$models/gpt2" "$gguf" >/dev/null 2>&1
(cd "$here" && cargo build --release -q --bin forward)
mkdir -p "$here/results"
out="$here/results/llama-cpp-$(date +%Y%m%d-%H%M%S).jsonl"
for round in $(seq 1 "$rounds"); do
  for engine in edgerun llama.cpp; do
    if [ "$engine" = edgerun ]; then
      ms=$("$here/target/release/forward" --model "$models/gpt2" --task gpt2 --runs 5 \
        --threads "$threads" --decode 32 | "$py" -c "import json,sys; print(json.load(sys.stdin)['decode_ms_per_token'])")
    else
      # tg32 at depth 128: 32 tokens generated after 128 in the cache; avg_ns over 5 repetitions
      # is per 32 tokens.
      ms=$("$src/build/bin/llama-bench" -m "$gguf" -t "$threads" -p 0 -n 32 -d 128 -r 5 -o json \
        | "$py" -c "import json,sys; r=json.load(sys.stdin)[0]; print(r['avg_ns'] / 1e6 / r['n_gen'])")
    fi
    echo "{\"round\": $round, \"engine\": \"$engine\", \"threads\": $threads, \"decode_ms_per_token\": $ms}" | tee -a "$out"
  done
done
echo "wrote $out"
