#!/usr/bin/env bash
# Generates the keys, one genesis and the configs of the compose network:
# validators org1..org4, the member node "joiner" that state-syncs from them,
# and four funded client keys, into deploy/net/ (or $OUT). Each node listens on
# the standard ports inside its own container and dials the others by their
# compose service names.
#
# Usage: deploy/gen.sh [path/to/consort]      (default: deploy/bin/consort)
#   OUT=dir   write there instead (then run compose with CONSORT_NET=dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/net}"
consort="${1:-$here/bin/consort}"
[ -x "$consort" ] || { echo "error: no consort binary at $consort (run deploy/build-image.sh)" >&2; exit 1; }

# Never wipe a directory this script did not write.
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/nodes.json" ]; then
  echo "error: $out is not empty and holds no nodes.json; refusing to overwrite it" >&2
  exit 1
fi
rm -rf "$out"
"$consort" testnet --validators 4 --members 1 --clients 4 \
  --out "$out" --base-port 26656 --chain-id consort-compose \
  --names org1,org2,org3,org4,joiner \
  --hosts org1,org2,org3,org4,joiner \
  --fast --insecure >/dev/null

# Short timeouts (--fast) and a 100 ms pause between heights: a few blocks a
# second. A snapshot every 100 blocks, in 1 MiB chunks, gives the joiner
# something to restore within a minute of the start.
for n in org1 org2 org3 org4 joiner; do
  cfg="$out/$n/config.toml"
  sed -i -e 's/^snapshot_interval = .*/snapshot_interval = 100/' \
    -e 's/^chunk_bytes = .*/chunk_bytes = 1048576/' \
    -e 's/^commit_delay_ms = .*/commit_delay_ms = 100/' "$cfg"
done
sed -i -e 's/^state_sync = .*/state_sync = true/' \
  -e 's/^rpc_servers = .*/rpc_servers = ["org1:26657", "org2:26657", "org3:26657", "org4:26657"]/' \
  "$out/joiner/config.toml"
for n in org1 org2 org3 org4 joiner; do
  grep -q '^commit_delay_ms = 100$' "$out/$n/config.toml" || { echo "error: editing $out/$n/config.toml failed" >&2; exit 1; }
done
grep -q '^state_sync = true$' "$out/joiner/config.toml" || { echo "error: editing $out/joiner/config.toml failed" >&2; exit 1; }

# The containers run as uid 10001; the node homes must be theirs.
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$out"/org* "$out/joiner"
else
  chmod -R a+rwX "$out"/org* "$out/joiner"
fi
echo "generated $out (validators org1..org4, member joiner, clients in $out/clients)"
