#!/usr/bin/env bash
# A Python for the tests that use real clients: target/pyenv with tritonclient[http] and numpy
# from PyPI. Prints the interpreter's path; skips the install when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
env="$PWD/target/pyenv"
if ! "$env/bin/python" -c "import tritonclient.http, numpy" 2>/dev/null; then
  rm -rf "$env"
  if ! python3 -m venv "$env" >&2 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
    python3 -m venv "$env" >&2
  fi
  "$env/bin/pip" install -q --disable-pip-version-check "tritonclient[http]" numpy >&2
fi
echo "$env/bin/python"
