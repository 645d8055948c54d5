#!/usr/bin/env bash
# Builds the consort image (consort:latest by default) around a statically
# linked binary. No base image is pulled: the image is FROM scratch.
#
# Usage: deploy/build-image.sh [TAG]
#   CONSORT_BIN=path   use this static binary instead of building one
#
# The binary is also copied to deploy/bin/consort, where gen.sh and the k8s
# gen.sh look for it (it runs on any x86_64 Linux host).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tag="${1:-consort:latest}"
target=x86_64-unknown-linux-gnu

if [ -n "${CONSORT_BIN:-}" ]; then
  bin="$CONSORT_BIN"
else
  echo "==> building a static consort binary (release, $target)"
  # --target keeps RUSTFLAGS off the build scripts and proc macros, which must
  # stay dynamic host binaries; crt-static gives a static-pie consort.
  (cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" --bin consort)
  bin="${CARGO_TARGET_DIR:-$root/target}/$target/release/consort"
fi
[ -x "$bin" ] || { echo "error: no binary at $bin" >&2; exit 1; }
# A FROM scratch image has no loader and no libc: refuse a dynamic binary.
if readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  echo "error: $bin is dynamically linked (needs a program interpreter)" >&2
  exit 1
fi
mkdir -p "$here/bin"
if [ "$(realpath "$bin")" != "$(realpath -m "$here/bin/consort")" ]; then
  cp "$bin" "$here/bin/consort"
fi
# The line tables of the release profile are most of the file; the symbols
# stay, so a backtrace still names the functions.
if command -v strip >/dev/null; then
  strip --strip-debug "$here/bin/consort"
fi

# The build context holds only what goes into the image (never deploy/net/,
# where the keys are): the binary and an empty home owned by the node's user.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/bin/consort" "$ctx/consort"
mkdir -p "$ctx/home"
echo "==> building image $tag"
docker build -q -t "$tag" -f "$here/Dockerfile" "$ctx" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
