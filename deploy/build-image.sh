#!/usr/bin/env bash
# Builds the consort image (consort:latest by default) from a static binary.
# Usage: deploy/build-image.sh [TAG]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tag="${1:-consort:latest}"
target=x86_64-unknown-linux-gnu

echo "==> building a static consort binary"
(cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$target")
mkdir -p "$here/bin"
cp "$root/target/$target/release/consort" "$here/bin/consort"
if ldd "$here/bin/consort" 2>&1 | grep -q "=>"; then
  echo "error: the binary is dynamically linked" >&2
  exit 1
fi

echo "==> building image $tag"
docker build -t "$tag" -f "$here/Dockerfile" "$here"
echo "built $tag"
