#!/usr/bin/env bash
# Checks that two edgerun binaries give byte-identical output files on every fixture, with
# every strategy on a packed copy (and the HF folder under full), hidden states included, and
# the same greedy tokens for causal models. For refactors that must not change a bit.
# Usage: scripts/compare-outputs.sh BEFORE_BINARY AFTER_BINARY [FIXTURES_DIR]
set -euo pipefail
before=$1 after=$2
cd "$(dirname "$0")/.."
fixtures=${3:-../shared/fixtures}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
compared=0
for dir in "$fixtures"/*-tiny crates/runtime/tests/data/yolov3-tiny; do
  [ -f "$dir/inputs.safetensors" ] || continue
  name=$(basename "$dir")
  "$after" pack "$dir" "$work/$name.packed" >/dev/null 2>&1
  runs=("$dir full" "$work/$name.packed full" "$work/$name.packed mmap"
        "$work/$name.packed stream" "$work/$name.packed pipeload" "$work/$name.packed swap")
  for run in "${runs[@]}"; do
    read -r model strategy <<<"$run"
    for bin in before after; do
      "${!bin}" run "$model" --input "$dir/inputs.safetensors" --hidden-states \
        --strategy "$strategy" --output "$work/$bin.safetensors" 2>/dev/null
    done
    cmp -s "$work/before.safetensors" "$work/after.safetensors" \
      || { echo "DIFFERENT: $name $strategy ($model)"; exit 1; }
    compared=$((compared + 1))
  done
  if grep -q '"gpt' "$dir/config.json"; then
    for bin in before after; do
      "${!bin}" generate "$work/$name.packed" --input "$dir/inputs.safetensors" --strategy pipeload \
        --max-new-tokens 8 --output "$work/$bin.safetensors" 2>/dev/null
    done
    cmp -s "$work/before.safetensors" "$work/after.safetensors" \
      || { echo "DIFFERENT: $name generate"; exit 1; }
    compared=$((compared + 1))
  fi
done
echo "identical: $compared output files"
