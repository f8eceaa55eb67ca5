#!/usr/bin/env bash
# The test command of README: fetches the real MiniLM (skipped if already there), then runs
# every test of the workspace. Golden tests read ../shared/fixtures and skip with a message when
# it is absent; set EDGERUN_REQUIRE_FIXTURES=1 / EDGERUN_REQUIRE_MINILM=1 to make absence fail.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ./scripts/fetch-minilm.sh; then
  if [ -n "${EDGERUN_REQUIRE_MINILM:-}" ]; then exit 1; fi
  echo "warning: could not fetch all-MiniLM-L6-v2; its tests will skip" >&2
fi
# tritonclient for the serve tests (set EDGERUN_REQUIRE_TRITON=1 to make its absence fail).
if python=$(./scripts/python-env.sh); then
  export EDGERUN_PYTHON="$python"
elif [ -n "${EDGERUN_REQUIRE_TRITON:-}" ]; then
  exit 1
else
  echo "warning: could not install tritonclient; its test will skip" >&2
fi
cargo test --workspace --release "$@"
