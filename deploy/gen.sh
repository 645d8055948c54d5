#!/usr/bin/env bash
# Generates keys, one genesis and configs for the compose network: validators
# org1..org4 and a member node "joiner" that state-syncs from them, into
# deploy/net/ (or $OUT). Each node listens on the standard ports inside its own
# container and reaches the others by container name.
# Usage: deploy/gen.sh [path/to/consort]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/net}"
consort="${1:-$here/bin/consort}"
[ -x "$consort" ] || { echo "error: no consort binary at $consort (run deploy/build-image.sh)" >&2; exit 1; }

rm -rf "$out"
"$consort" testnet --validators 4 --members 1 --clients 4 \
  --out "$out" --base-port 26656 --chain-id consort-compose \
  --names org1,org2,org3,org4,joiner \
  --hosts org1,org2,org3,org4,joiner \
  --fast >/dev/null

# Snapshots every 100 blocks; the joiner restores one from the validators' gRPC.
for n in org1 org2 org3 org4 joiner; do
  cfg="$out/$n/config.toml"
  sed -i 's/^snapshot_interval = .*/snapshot_interval = 100/' "$cfg"
  sed -i 's/^chunk_bytes = .*/chunk_bytes = 1048576/' "$cfg"
  sed -i 's/^commit_delay_ms = .*/commit_delay_ms = 100/' "$cfg"
done
sed -i 's/^state_sync = .*/state_sync = true/' "$out/joiner/config.toml"
sed -i 's/^rpc_servers = .*/rpc_servers = ["org1:26657", "org2:26657", "org3:26657", "org4:26657"]/' "$out/joiner/config.toml"

# The containers run as uid 10001.
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$out"
else
  chmod -R a+rwX "$out"
fi
echo "generated $out"
