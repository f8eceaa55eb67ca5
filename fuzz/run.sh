#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) on a copy of its committed corpus, so the
# seeds stay small; a crash leaves its input under fuzz/artifacts/TARGET and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
targets=(size scenario profile config_model input_file safetensors_model manifest_store)
cargo +nightly fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp corpus/"$t"/* "$work/$t/"
  echo "fuzz $t: ${seconds} s"
  cargo +nightly fuzz run "$t" "$work/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 2>&1 \
    | grep -E "^Done|ERROR|panicked|artifact" || true
  if [ -n "$(ls -A artifacts/"$t" 2>/dev/null)" ]; then
    echo "fuzz $t found a crash: $(ls artifacts/"$t")" >&2
    exit 1
  fi
done
