#!/usr/bin/env bash
# Cross-builds for aarch64 and runs the kernel tests (SIMD dispatch falls back to the portable
# paths there) and the golden tests under qemu-user. Needs the rustup target, Debian's
# gcc-aarch64-linux-gnu and qemu-user; installs them when run as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
rustup target add "$target" >/dev/null
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc-aarch64-linux-gnu qemu-user >/dev/null
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --release --target "$target" -p edgerun-tensor "$@"
cargo test --release --target "$target" -p edgerun-runtime --test golden "$@"
