#!/usr/bin/env bash
# Generates the keys, one genesis, the PKI and the configs of the compose
# network: validators org1..org4, the member node "joiner" that state-syncs from
# them, and four funded client keys with their API certificates, into deploy/net/
# (or $OUT). Each node listens on the standard ports inside its own container
# and dials the others by their compose service names.
#
# The API runs on TLS 1.3 with client certificates. Each node is an
# organization of its own name with its own CA (orgs/<org>/ca.pem, ca.key, and
# an admin certificate admin.pem/.key); ca.pem is the bundle of every
# organization's CA. A node's server certificate (<home>/tls/node.pem, role
# node) names its compose service, localhost and 127.0.0.1, so that clients
# check it by the name they dial. The joiner also holds a member certificate
# (joiner/tls/member.pem), which it presents to the validators when it
# state-syncs from them. clients/clientN.{json,pem,key}: the account key that
# signs transactions, and an API certificate of role client (issued by org1).
# client.env exports CONSORT_CA, CONSORT_CERT and CONSORT_KEY for client0.
#
# Usage: deploy/gen.sh [path/to/consort]      (default: deploy/bin/consort)
#   OUT=dir   write there instead (then run compose with CONSORT_NET=dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/net}"
consort="${1:-$here/bin/consort}"
[ -x "$consort" ] || { echo "error: no consort binary at $consort (run deploy/build-image.sh)" >&2; exit 1; }
# The CLI's TLS settings of the caller's shell have no business here.
unset CONSORT_CA CONSORT_CERT CONSORT_KEY

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
  --fast >/dev/null

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

# What the network relies on, checked here rather than found out in a
# container: TLS on every node, the joiner syncing as a member, and server
# certificates that name the service they are dialed at and the loopback
# address of the health checks.
for n in org1 org2 org3 org4 joiner; do
  cfg="$out/$n/config.toml"
  grep -q '^tls_cert = "tls/node.pem"$' "$cfg" && grep -q '^insecure = false$' "$cfg" ||
    { echo "error: $cfg does not serve the API over TLS" >&2; exit 1; }
  names="$("$consort" certs show "$out/$n/tls/node.pem" | awk '$1 == "role" || $1 == "names"' | tr ',' ' ')"
  for want in node "$n" 127.0.0.1; do
    grep -qwF -- "$want" <<<"$names" ||
      { echo "error: $out/$n/tls/node.pem (role and names: $names) lacks $want" >&2; exit 1; }
  done
done
grep -q '^tls_cert = "tls/member.pem"$' "$out/joiner/config.toml" &&
  grep -q '^tls_ca = "tls/ca.pem"$' "$out/joiner/config.toml" ||
  { echo "error: the joiner does not state-sync over TLS with its member certificate" >&2; exit 1; }
# (Read whole, then matched: `grep -q` in a pipe may close it before consort
# has written, and pipefail would count that as a failure.)
member_cert="$("$consort" certs show "$out/joiner/tls/member.pem")"
grep -qE '^role +member$' <<<"$member_cert" ||
  { echo "error: $out/joiner/tls/member.pem is not a member certificate" >&2; exit 1; }
for i in 0 1 2 3; do
  [ -f "$out/clients/client$i.pem" ] && [ -f "$out/clients/client$i.key" ] ||
    { echo "error: no API certificate for client$i in $out/clients" >&2; exit 1; }
done

# For a shell on the host: `. deploy/net/client.env`, then the consort CLI
# reaches the published ports over TLS as client0.
abs="$(cd "$out" && pwd)"
cat >"$out/client.env" <<ENV
# The consort CLI as client0 (role client of org1) against this network.
export CONSORT_CA='$abs/ca.pem'
export CONSORT_CERT='$abs/clients/client0.pem'
export CONSORT_KEY='$abs/clients/client0.key'
ENV

# The containers run as uid 10001; the node homes (and only they: not orgs/,
# where the CA keys are) must be theirs.
homes=("$out"/org1 "$out"/org2 "$out"/org3 "$out"/org4 "$out"/joiner)
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "${homes[@]}"
else
  chmod -R a+rwX "${homes[@]}"
fi
echo "generated $out (validators org1..org4, member joiner, clients in $out/clients, CA bundle $out/ca.pem; TLS: . $out/client.env)"
