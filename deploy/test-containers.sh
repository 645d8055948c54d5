#!/usr/bin/env bash
# Fault tests of a four-organization consort network in real containers.
#
# Builds the static binary and the FROM scratch image, generates a network with
# gen.sh, starts it with compose.yaml and checks, each step bounded in time:
#   start       the four validators become healthy (compose health checks:
#               `consort health` over TLS with the node's certificate) and
#               produce blocks
#   txs         transactions sent to org1 are committed, with proofs, on all four
#   tls         the nodes serve nothing without a valid certificate: plaintext
#               fails, TLS without a client certificate or with one of a CA
#               outside the consortium is UNAUTHENTICATED, a client certificate
#               listing snapshots is PERMISSION_DENIED (a member's may), a
#               client checks the node's certificate against the CAs and the
#               name it dials
#   metrics     every metric the Grafana dashboard plots is served by a node
#   kill        docker kill org4: the others go on; restarted, it catches up
#   split-2-2   org3 and org4 moved off the shared network onto one of their
#               own (two halves of two): nothing commits on either side, no
#               fork; reconnected, commits resume within seconds
#   cut-one     org2 cut off: the other three go on; reconnected, it catches up
#   joiner      a new member restores a snapshot over gRPC, presenting its
#               member certificate, and reaches the tip
#   agreement   every node has the same block at the common tip
# The consort CLI on the host talks to the nodes through their published ports,
# over TLS, as client0 (a certificate of role client issued by org1).
#
# It always removes its containers, networks and volumes, prints the logs of a
# failed step, ends with one summary line and exits non-zero on any failure.
#
# Usage: deploy/test-containers.sh
#   CONSORT_SKIP_BUILD=1   reuse deploy/bin/consort and the image consort:test
#   CONSORT_KEEP=1         leave the network running at the end (for a look)
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="${CONSORT_TEST_PROJECT:-consorttest}"
image="${CONSORT_TEST_IMAGE:-consort:test}"
consort="$here/bin/consort"
start_all=$EPOCHREALTIME
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "error: neither 'docker compose' nor docker-compose is installed" >&2
  echo "containers: 0 passed, 1 failed (0 s)"
  exit 1
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/consort-containers.XXXXXX")"
net="$work/net"
# Which certificate each call presents is decided below, call by call; none
# comes from the caller's environment.
unset CONSORT_CA CONSORT_CERT CONSORT_KEY
export CONSORT_NET="$net" CONSORT_IMAGE="$image" COMPOSE_PROJECT_NAME="$project"
dc() { timeout 120 "${compose[@]}" -p "$project" -f "$here/compose.yaml" "$@"; }

declare -A grpc_port=([org1]=21657 [org2]=22657 [org3]=23657 [org4]=24657 [joiner]=25657)
declare -A metrics_port=([org1]=21660 [org2]=22660 [org3]=23660 [org4]=24660 [joiner]=25660)
validators=(org1 org2 org3 org4)
shared_net="${project}_consortium"

# ---- helpers ---------------------------------------------------------------

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '    %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*"; return 1; }

# The container of a compose service (running or not).
cid() {
  docker ps -aq --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -n1
}

# consort CLI against a node's published gRPC port, over TLS as client0;
# every call is bounded.
client_tls=(--ca "$net/ca.pem" --cert "$net/clients/client0.pem" --key "$net/clients/client0.key")
cli() { timeout 10 "$consort" "${client_tls[@]}" "$@"; }
# The CLI without any TLS setting: plaintext.
cli_plain() { timeout 10 "$consort" "$@"; }
status() { cli status --node "127.0.0.1:${grpc_port[$1]}" --json 2>/dev/null; }
# Latest height, or -1 when the node does not answer.
height() {
  local h
  h="$(status "$1" | jq -r '.height // empty' 2>/dev/null)"
  echo "${h:--1}"
}
heights() {
  local n out=""
  for n in "$@"; do out="$out $n=$(height "$n")"; done
  echo "${out# }"
}
# Id of the block at a height, or "-" when the node does not have it.
block_hash() {
  local h
  h="$(cli query block --height "$2" --node "127.0.0.1:${grpc_port[$1]}" --json 2>/dev/null |
    jq -r '.hash // empty' 2>/dev/null)"
  echo "${h:--}"
}

# wait_for LIMIT DESCRIPTION COMMAND...: polls until COMMAND succeeds; logs how
# long it took, or fails after LIMIT seconds.
wait_for() {
  local limit="$1" what="$2" t0=$EPOCHREALTIME
  shift 2
  while true; do
    if "$@"; then
      log "$what: $(elapsed "$t0") s"
      return 0
    fi
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      fail "$what: not within $limit s"
      return 1
    fi
    sleep 0.5
  done
}

above() { [ "$(height "$1")" -gt "$2" ]; }
all_above() {
  local h="$1" n
  shift
  for n in "$@"; do above "$n" "$h" || return 1; done
}
healthy() {
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null)" = healthy ]
}
all_healthy() {
  local n
  for n in "$@"; do healthy "$n" || return 1; done
}
max_height() {
  local m=-1 n h
  for n in "$@"; do
    h="$(height "$n")"
    [ "$h" -gt "$m" ] && m="$h"
  done
  echo "$m"
}
min_height() {
  local m=-1 n h
  for n in "$@"; do
    h="$(height "$n")"
    if [ "$m" -lt 0 ] || [ "$h" -lt "$m" ]; then m="$h"; fi
  done
  echo "$m"
}

# same_block HEIGHT NODES...: every node has the same block at HEIGHT. Blocks
# are hash-chained (each header holds the previous block's id), so the same
# block at one height means the same chain below it.
same_block() {
  local h="$1" first="" n x
  shift
  for n in "$@"; do
    x="$(block_hash "$n" "$h")"
    [ "$x" = - ] && { fail "$n has no block $h"; return 1; }
    if [ -z "$first" ]; then
      first="$x"
    elif [ "$x" != "$first" ]; then
      fail "fork at height $h: $n has $x, ${1} has $first"
      return 1
    fi
  done
}

# no_fork LOW HIGH NODES...: at every height of LOW..HIGH, the nodes that have a
# block there all have the same one.
no_fork() {
  local lo="$1" hi="$2" h n x first
  shift 2
  for ((h = lo; h <= hi; h++)); do
    first=""
    for n in "$@"; do
      x="$(block_hash "$n" "$h")"
      [ "$x" = - ] && continue
      if [ -z "$first" ]; then
        first="$x"
      elif [ "$x" != "$first" ]; then
        fail "fork at height $h: $n has $x, another node has $first"
        return 1
      fi
    done
  done
  log "no fork at heights $lo..$hi"
}

client_key() { echo "$net/clients/client$1.json"; }

# send_tx NODE CLIENT NAME VALUE [--wait]: a record put signed with CLIENT's
# account key (--signer), sent over TLS with client0's certificate; prints the
# JSON.
send_tx() {
  cli tx put --name "$3" --value "$4" --signer "$(client_key "$2")" \
    --node "127.0.0.1:${grpc_port[$1]}" --json "${@:5}"
}

# committed_on NODE HASH: the node has the transaction, with a valid proof.
committed_on() {
  [ "$(cli query tx --hash "$2" --node "127.0.0.1:${grpc_port[$1]}" --prove --genesis "$net/org1/genesis.json" --json 2>/dev/null |
    jq -r '.verified' 2>/dev/null)" = true ]
}
committed_on_all() {
  local hash="$1" n
  shift
  for n in "$@"; do committed_on "$n" "$hash" || return 1; done
}

disconnect() {
  local n
  for n in "$@"; do
    timeout 30 docker network disconnect "$shared_net" "$(cid "$n")" || return 1
  done
}
reconnect() {
  local n
  for n in "$@"; do
    timeout 30 docker network connect --alias "$n" "$shared_net" "$(cid "$n")" || return 1
  done
}

# capture COMMAND...: runs it; sets rc, out (its stdout) and err (its stderr).
capture() {
  local f
  f="$(mktemp "$work/capture.XXXXXX")"
  "$@" >"$f.out" 2>"$f.err"
  rc=$?
  out="$(<"$f.out")"
  err="$(<"$f.err")"
  rm -f "$f" "$f.out" "$f.err"
}
first_line() { head -n1 <<<"$1" | cut -c1-220; }

# refusals NODE REASON: how many API calls NODE refused for REASON
# (no_certificate, unknown_issuer, forbidden, ...), from its metrics.
refusals() {
  local body
  body="$(timeout 10 curl -sf "http://127.0.0.1:${metrics_port[$1]}/metrics")" || return 1
  awk -v s="consort_api_refused_total{reason=\"$2\"}" '$1 == s { n = $2 } END { print n + 0 }' <<<"$body"
}
# all_refusals NODE: the API calls NODE refused, for any reason.
all_refusals() {
  local body
  body="$(timeout 10 curl -sf "http://127.0.0.1:${metrics_port[$1]}/metrics")" || return 1
  awk '$1 ~ /^consort_api_refused_total[{]/ { n += $2 } END { print n + 0 }' <<<"$body"
}

# ---- the steps -------------------------------------------------------------

step_build() {
  local t
  for t in jq curl timeout; do
    command -v "$t" >/dev/null || { fail "$t is needed"; return 1; }
  done
  if [ -n "${CONSORT_SKIP_BUILD:-}" ]; then
    [ -x "$consort" ] || { fail "CONSORT_SKIP_BUILD set but no $consort"; return 1; }
    docker image inspect "$image" >/dev/null || { fail "CONSORT_SKIP_BUILD set but no image $image"; return 1; }
    log "reusing $consort and $image"
  else
    nice "$here/build-image.sh" "$image" || return 1
  fi
  log "binary: $(stat -c %s "$consort") bytes; image: $(docker image inspect -f '{{.Size}}' "$image") bytes"
}

step_start() {
  OUT="$net" "$here/gen.sh" "$consort" || return 1
  dc up -d org1 org2 org3 org4 || return 1
  log "health check: $(docker inspect -f '{{join .Config.Healthcheck.Test " "}}' "$(cid org1)")"
  wait_for 60 "all four healthy (gRPC health SERVING, asked over TLS)" all_healthy "${validators[@]}" || return 1
  wait_for 60 "all four past height 2" all_above 2 "${validators[@]}" || return 1
  log "heights: $(heights "${validators[@]}")"
}

step_txs() {
  local h i out hash txh t0 pub
  h="$(max_height "${validators[@]}")"
  wait_for 30 "all four advance 5 blocks past $h" all_above "$((h + 5))" "${validators[@]}" || return 1
  local hashes=()
  t0=$EPOCHREALTIME
  for i in 1 2 3 4 5; do
    out="$(send_tx org1 0 "key$i" "value$i" --wait)" || { fail "tx $i to org1: $out"; return 1; }
    hash="$(jq -r .hash <<<"$out")"
    txh="$(jq -r .height <<<"$out")"
    [ "$(jq -r .code <<<"$out")" = 0 ] || { fail "tx $i rejected: $out"; return 1; }
    hashes+=("$hash")
    log "tx $i $hash committed at height $txh"
  done
  log "5 transactions sent to org1 and committed: $(elapsed "$t0") s"
  for hash in "${hashes[@]}"; do
    wait_for 20 "tx ${hash:0:12} on all four with a valid proof" \
      committed_on_all "$hash" "${validators[@]}" || return 1
  done
  pub="$(cli_plain keys show --file "$(client_key 0)" --json | jq -r .public_key)"
  out="$(cli query record --owner "$pub" --name key5 --node "127.0.0.1:${grpc_port[org4]}" --prove --genesis "$net/org1/genesis.json" --json)" ||
    { fail "record query on org4: $out"; return 1; }
  [ "$(jq -r '.value + " " + (.verified | tostring)' <<<"$out")" = "value5 true" ] ||
    { fail "org4 record key5: $out"; return 1; }
  log "org4 serves record key5 = value5 with a valid proof"
}

# The error texts are tonic's descriptions of the gRPC codes:
unauthenticated='The request does not have valid authentication credentials'  # UNAUTHENTICATED
permission_denied='The caller does not have permission to execute the specified operation'  # PERMISSION_DENIED

# expect_refusal REASON TEXT WHAT CMD...: CMD fails with no output and TEXT in
# its error, and org1 counts one more API refusal for REASON.
expect_refusal() {
  local reason="$1" text="$2" what="$3" before after
  shift 3
  before="$(refusals org1 "$reason")" || { fail "no metrics from org1"; return 1; }
  capture "$@"
  if [ "$rc" = 0 ] || [ -n "$out" ] || ! grep -qF "$text" <<<"$err"; then
    fail "$what: exit $rc, output '$(first_line "$out")', error '$(first_line "$err")'"
    return 1
  fi
  after="$(refusals org1 "$reason")"
  [ "$after" -gt "$before" ] || { fail "org1 counted no refusal for $reason ($before, then $after)"; return 1; }
  log "$what: refused ('$(first_line "$err")'); org1 $reason refusals $before -> $after"
}

step_tls() {
  local n node before after hash txh trusted out2 ip plain_err="" foreign="$work/foreign"
  # Control: over TLS with client0's certificate, org1 answers.
  capture cli status --node "127.0.0.1:${grpc_port[org1]}" --json
  [ "$rc" = 0 ] && [ "$(jq -r .height <<<"$out")" -gt 0 ] ||
    { fail "org1 does not answer client0 over TLS: $(first_line "$err")"; return 1; }
  log "control: org1 answers client0 (role client of org1) over TLS at height $(jq -r .height <<<"$out")"

  # A plaintext client gets nothing: the node speaks only TLS, so the call
  # dies in the transport (HTTP/2 cannot read the TLS alert it gets back, or
  # the client is cut off while it writes: SIGPIPE), never with an answer.
  for n in "${validators[@]}"; do
    node="127.0.0.1:${grpc_port[$n]}"
    capture cli_plain status --node "$node" --json
    if [ -n "$out" ] || ! { [ "$rc" = 141 ] || { [ "$rc" = 1 ] && grep -qE 'h2 protocol error|transport error' <<<"$err" &&
      ! grep -qiE 'connection refused|tcp connect' <<<"$err"; }; }; then
      fail "plaintext status on $n: exit $rc, output '$(first_line "$out")', error '$(first_line "$err")'"
      return 1
    fi
    [ -n "$plain_err" ] || plain_err="$(first_line "$err")"
    capture cli_plain health --node "$node"
    if [ -n "$out" ] || [ "$rc" = 0 ]; then
      fail "plaintext health on $n: exit $rc, output '$(first_line "$out")'"
      return 1
    fi
  done
  log "plaintext: status and health fail in the transport on all four (e.g. '${plain_err:-killed by SIGPIPE}')"

  node="127.0.0.1:${grpc_port[org1]}"
  # TLS without a client certificate: health is open (the handshake works),
  # everything else is UNAUTHENTICATED.
  capture timeout 10 "$consort" --ca "$net/ca.pem" health --node "$node"
  [ "$rc" = 0 ] && [ "$out" = serving ] ||
    { fail "health over TLS without a client certificate: exit $rc, '$out' $(first_line "$err")"; return 1; }
  log "TLS without a client certificate: health serving"
  expect_refusal no_certificate "error: $unauthenticated: no client certificate" \
    "status over TLS without a client certificate (UNAUTHENTICATED)" \
    timeout 10 "$consort" --ca "$net/ca.pem" status --node "$node" --json || return 1

  # A certificate of a CA outside the consortium: UNAUTHENTICATED. And the
  # other way round, the client does not trust a node whose CA is not in its
  # bundle.
  timeout 30 "$consort" testnet --validators 1 --clients 1 --tls --chain-id foreign --out "$foreign" >/dev/null ||
    { fail "consort testnet for a foreign PKI"; return 1; }
  expect_refusal unknown_issuer \
    "error: $unauthenticated: the client certificate was not issued by the CA of any organization of the consortium" \
    "status with a client certificate of a foreign CA (UNAUTHENTICATED)" \
    timeout 10 "$consort" --ca "$net/ca.pem" --cert "$foreign/clients/client0.pem" --key "$foreign/clients/client0.key" \
    status --node "$node" --json || return 1
  capture timeout 10 "$consort" --ca "$foreign/ca.pem" --cert "$net/clients/client0.pem" --key "$net/clients/client0.key" \
    status --node "$node" --json
  if [ "$rc" = 0 ] || ! grep -qF 'invalid peer certificate: UnknownIssuer' <<<"$err"; then
    fail "a client trusting only a foreign CA reached org1: exit $rc, error '$(first_line "$err")'"
    return 1
  fi
  log "a client trusting another CA refuses the node: '$(first_line "$err")'"

  # Inside the consortium network the nodes are dialed by service name, which
  # their certificates carry; by address (not in the certificate) the client
  # refuses the node.
  ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$shared_net\").IPAddress}}" "$(cid org2)")"
  [ -n "$ip" ] || { fail "no address of org2 on $shared_net"; return 1; }
  in_net() {
    timeout 60 docker run --rm --network "$shared_net" --user 0:0 --label "com.docker.compose.project=$project" \
      -v "$net:/net:ro" --entrypoint /consort "$image" \
      --ca /net/ca.pem --cert /net/clients/client0.pem --key /net/clients/client0.key "$@"
  }
  capture in_net status --node org2:26657 --json
  [ "$rc" = 0 ] && [ "$(jq -r .height <<<"$out")" -gt 0 ] ||
    { fail "org2:26657 from the consortium network: exit $rc, $(first_line "$err")"; return 1; }
  capture in_net status --node "$ip:26657" --json
  if [ "$rc" = 0 ] || ! grep -qF "invalid peer certificate: certificate not valid for name \"$ip\"" <<<"$err"; then
    fail "org2 dialed at $ip:26657, an address its certificate does not name: exit $rc, error '$(first_line "$err")'"
    return 1
  fi
  log "from the consortium network: org2:26657 answers; $ip:26657 is refused by the client ('$(first_line "$err")')"

  # A client certificate may not list the snapshots (SyncService serves
  # member nodes); the joiner's member certificate may. A client may fetch a
  # light block, and checks a proof against a header it trusts.
  expect_refusal forbidden \
    "$permission_denied: role client of organization org1 may not call consort.v1.SyncService/ListSnapshots" \
    "client0 listing snapshots (PERMISSION_DENIED)" \
    cli query snapshots --node "$node" --json || return 1
  capture timeout 10 "$consort" --ca "$net/ca.pem" --cert "$net/joiner/tls/member.pem" --key "$net/joiner/tls/member.key" \
    query snapshots --node "$node" --json
  # (The first snapshot is taken at height 100: the list may still be empty.)
  [ "$rc" = 0 ] && [ "$(jq -r 'type' <<<"$out")" = array ] ||
    { fail "the joiner's member certificate listing snapshots: exit $rc, '$out' $(first_line "$err")"; return 1; }
  log "the joiner's member certificate lists the snapshots of org1 ($(jq -r 'length' <<<"$out") so far)"
  out2="$(send_tx org1 3 tls-check sent-over-tls --wait)" || { fail "tx to org1: $out2"; return 1; }
  hash="$(jq -r .hash <<<"$out2")"
  txh="$(jq -r .height <<<"$out2")"
  [ "$(jq -r .code <<<"$out2")" = 0 ] || { fail "tx rejected: $out2"; return 1; }
  trusted="$(block_hash org1 2)"
  [ "$trusted" != - ] || { fail "org1 has no block 2"; return 1; }
  capture cli query tx --hash "$hash" --node "$node" --prove --trust-height 2 --trust-hash "$trusted" --json
  [ "$rc" = 0 ] && [ "$(jq -r '(.verified | tostring) + " " + (.height | tostring)' <<<"$out")" = "true $txh" ] ||
    { fail "client0 proving tx ${hash:0:12} against a trusted header: exit $rc, '$out' $(first_line "$err")"; return 1; }
  log "client0: tx ${hash:0:12} proven against the header of height 2 (GetLightBlock)"
}

step_metrics() {
  local body names m missing=0
  body="$(timeout 10 curl -sf http://127.0.0.1:21660/metrics)" || { fail "no metrics from org1"; return 1; }
  # Every series a dashboard panel plots, without the histogram suffixes.
  names="$(jq -r '.panels[].targets[]?.expr' "$here/grafana/dashboards/consort.json" |
    grep -oE '\b(consort|process)_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u)"
  [ -n "$names" ] || { fail "no metric names in the dashboard"; return 1; }
  for m in $names; do
    if ! grep -qE "^$m(_bucket|_sum|_count)?[{ ]" <<<"$body"; then
      fail "the dashboard plots $m, which org1 does not serve"
      missing=1
    fi
  done
  [ "$missing" = 0 ] || return 1
  log "org1 serves all $(wc -w <<<"$names") metrics the dashboard plots"
}

step_kill() {
  local h target out
  timeout 30 docker kill "$(cid org4)" >/dev/null || { fail "docker kill org4"; return 1; }
  h="$(max_height org1 org2 org3)"
  log "killed org4; heights: $(heights org1 org2 org3)"
  wait_for 30 "org1..org3 advance 10 blocks past $h without org4" \
    all_above "$((h + 10))" org1 org2 org3 || return 1
  out="$(send_tx org2 1 killed org4-down --wait)" || { fail "tx to org2 while org4 is down: $out"; return 1; }
  log "tx sent to org2 while org4 is down committed at height $(jq -r .height <<<"$out")"
  timeout 30 docker start "$(cid org4)" >/dev/null || { fail "docker start org4"; return 1; }
  target="$(height org1)"
  log "restarted org4 at org1's height $target"
  wait_for 90 "org4 catches up to height $target" above org4 "$((target - 1))" || return 1
  same_block "$target" org1 org2 org3 org4 || return 1
  log "all four have the same block at height $target"
  wait_for 60 "all four advance 5 past $target" all_above "$((target + 5))" "${validators[@]}" || return 1
  wait_for 60 "org4 healthy again" healthy org4 || return 1
}

# connected_peers NODE: the names of the peers NODE is connected to, sorted.
connected_peers() {
  status "$1" | jq -r '[.peer_list[] | select(.connected) | .name] | sort | join(",")'
}
sides_formed() {
  [ "$(connected_peers org1)" = org2 ] && [ "$(connected_peers org2)" = org1 ] &&
    [ "$(connected_peers org3)" = org4 ] && [ "$(connected_peers org4)" = org3 ]
}

step_split_2_2() {
  local before after lo hi n moved=0 t0 out hash split="${project}_split"
  declare -A at
  # org3 and org4 leave the shared network but keep a network of their own:
  # two halves of two validators each, each half connected inside.
  timeout 30 docker network create --label "com.docker.compose.project=$project" "$split" >/dev/null ||
    { fail "docker network create $split"; return 1; }
  for n in org3 org4; do
    timeout 30 docker network connect --alias "$n" "$split" "$(cid "$n")" || { fail "connect $n to $split"; return 1; }
  done
  disconnect org3 org4 || { fail "docker network disconnect"; return 1; }
  log "split: org1+org2 on $shared_net, org3+org4 on $split"
  # The connections across the cut end at the QUIC idle timeout.
  wait_for 40 "each half sees only its own other node" sides_formed || return 1
  out="$(send_tx org1 2 split sent-during-split)" || { fail "tx to org1 during the split: $out"; return 1; }
  hash="$(jq -r .hash <<<"$out")"
  log "tx ${hash:0:12} accepted by org1 during the split"
  for n in "${validators[@]}"; do at[$n]="$(height "$n")"; done
  before="$(heights "${validators[@]}")"
  sleep 10
  after="$(heights "${validators[@]}")"
  log "heights with the halves formed: $before"
  log "heights 10 s later:             $after"
  for n in "${validators[@]}"; do
    [ "${at[$n]}" -ge 0 ] || { fail "$n did not answer during the split"; return 1; }
    if [ "$(height "$n")" != "${at[$n]}" ]; then
      fail "$n committed during a 2-2 split"
      moved=1
    fi
  done
  [ "$moved" = 0 ] || return 1
  lo="$(min_height "${validators[@]}")"
  hi="$(max_height "${validators[@]}")"
  no_fork "$((lo > 5 ? lo - 5 : 1))" "$hi" "${validators[@]}" || return 1
  reconnect org3 org4 || { fail "docker network connect"; return 1; }
  t0=$EPOCHREALTIME
  log "reconnected org3 and org4 to $shared_net"
  wait_for 20 "commits resume on all four (past height $hi)" all_above "$hi" "${validators[@]}" || return 1
  wait_for 20 "the tx sent during the split is committed on all four" \
    committed_on_all "$hash" "${validators[@]}" || return 1
  log "from reconnect to the split's tx on all four: $(elapsed "$t0") s"
  for n in org3 org4; do
    timeout 30 docker network disconnect "$split" "$(cid "$n")" || { fail "disconnect $n from $split"; return 1; }
  done
  timeout 30 docker network rm "$split" >/dev/null || { fail "docker network rm $split"; return 1; }
  wait_for 20 "all four go on without $split" all_above "$(max_height "${validators[@]}")" "${validators[@]}" || return 1
  no_fork "$hi" "$(min_height "${validators[@]}")" "${validators[@]}" || return 1
}

step_cut_one() {
  local h h2 target
  disconnect org2 || { fail "docker network disconnect"; return 1; }
  log "cut org2 off $shared_net"
  sleep 2
  h2="$(height org2)"
  h="$(max_height org1 org3 org4)"
  wait_for 30 "org1, org3, org4 advance 10 blocks past $h without org2" \
    all_above "$((h + 10))" org1 org3 org4 || return 1
  [ "$(height org2)" = "$h2" ] || { fail "org2 went from $h2 to $(height org2) while cut off"; return 1; }
  log "org2 stayed at $h2 while cut off"
  reconnect org2 || { fail "docker network connect"; return 1; }
  target="$(height org1)"
  log "reconnected org2 at org1's height $target"
  wait_for 60 "org2 catches up to height $target" above org2 "$((target - 1))" || return 1
  same_block "$target" "${validators[@]}" || return 1
  log "all four have the same block at height $target"
}

step_joiner() {
  local target st cfg="$net/joiner/config.toml" n
  declare -A refused
  # It syncs over TLS as a member: its config presents tls/member.pem, a
  # member certificate the genesis trusts (SyncService refuses a client's).
  grep -qx 'tls_ca = "tls/ca.pem"' "$cfg" && grep -qx 'tls_cert = "tls/member.pem"' "$cfg" &&
    grep -qx 'tls_key = "tls/member.key"' "$cfg" ||
    { fail "$cfg does not sync with tls/member.pem: $(grep '^tls_' "$cfg" | tr '\n' ' ')"; return 1; }
  [ "$(cli_plain certs show "$net/joiner/tls/member.pem" --genesis "$net/org1/genesis.json" --json | jq -r .verdict)" = \
    "trusted: joiner of organization joiner, role member" ] ||
    { fail "the joiner's member certificate: $(cli_plain certs show "$net/joiner/tls/member.pem" --genesis "$net/org1/genesis.json")"; return 1; }
  log "the joiner syncs with tls/member.pem: trusted: joiner of organization joiner, role member"
  # The validators snapshot every 100 blocks: let there be one.
  wait_for 120 "chain past height 110 (a snapshot exists)" above org1 110 || return 1
  for n in "${validators[@]}"; do
    refused[$n]="$(all_refusals "$n")" || { fail "no metrics from $n"; return 1; }
  done
  target="$(height org1)"
  dc --profile joiner up -d --no-deps joiner || return 1
  log "started the joiner at org1's height $target"
  wait_for 120 "joiner synced to height $target" joiner_synced "$target" || return 1
  # None of its calls was refused: every validator's refusal count is as it
  # was before the joiner started.
  for n in "${validators[@]}"; do
    [ "$(all_refusals "$n")" = "${refused[$n]}" ] ||
      { fail "$n refused API calls while the joiner synced (${refused[$n]}, then $(all_refusals "$n"))"; return 1; }
  done
  log "no validator refused a call of the joiner (refusals: $(for n in "${validators[@]}"; do printf '%s=%s ' "$n" "${refused[$n]}"; done))"
  st="$(status joiner)"
  log "joiner: height $(jq -r .height <<<"$st"), lowest stored block $(jq -r .base_height <<<"$st"), phase $(jq -r .sync_phase <<<"$st")"
  [ "$(jq -r .base_height <<<"$st")" -gt 1 ] ||
    { fail "the joiner stores blocks from $(jq -r .base_height <<<"$st"): it replayed history instead of restoring a snapshot"; return 1; }
  # The snapshot restored may be newer than the height at the start.
  local base check
  base="$(jq -r .base_height <<<"$st")"
  check=$((base > target ? base : target))
  same_block "$check" org1 joiner || return 1
  log "the joiner has org1's block at height $check"
  local now
  now="$(height joiner)"
  wait_for 30 "the joiner follows the chain 5 blocks past $now" above joiner "$((now + 5))" || return 1
}

# joiner_synced HEIGHT: restored, following, and at HEIGHT or above.
joiner_synced() {
  local st
  st="$(status joiner)" || return 1
  [ "$(jq -r .sync_phase <<<"$st")" != state_sync ] &&
    [ "$(jq -r .catching_up <<<"$st")" = false ] &&
    [ "$(jq -r .height <<<"$st")" -ge "$1" ]
}

step_agreement() {
  local nodes=("${validators[@]}") h
  [ -n "$(cid joiner)" ] && nodes+=(joiner)
  h="$(min_height "${nodes[@]}")"
  [ "$h" -gt 0 ] || { fail "a node does not answer: $(heights "${nodes[@]}")"; return 1; }
  same_block "$h" "${nodes[@]}" || return 1
  log "same block at the common tip $h on ${nodes[*]} (and so below it)"
}

# ---- running them ----------------------------------------------------------

# Containers (with their anonymous volumes) and networks of the project that
# compose did not remove: a run interrupted half-way, the split network.
remove_leftovers() {
  docker ps -aq --filter "label=com.docker.compose.project=$project" |
    xargs -r timeout 60 docker rm -f -v >/dev/null 2>&1
  docker network ls -q --filter "label=com.docker.compose.project=$project" |
    xargs -r timeout 60 docker network rm >/dev/null 2>&1
  return 0
}

# kill_tree PID: stops a step and what it started (cargo, compose, the CLI),
# children first.
kill_tree() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
  kill "$1" 2>/dev/null
}

step_pid=""
cleanup() {
  local rc=$?
  [ -n "$step_pid" ] && kill_tree "$step_pid"
  if [ -n "${CONSORT_KEEP:-}" ]; then
    echo "CONSORT_KEEP set: the network stays up (project $project, homes in $net)"
    return $rc
  fi
  dc --profile joiner --profile monitoring down -v --remove-orphans -t 5 >/dev/null 2>&1
  remove_leftovers
  rm -rf "$work"
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

container_logs() {
  local n id
  for n in "${validators[@]}" joiner; do
    id="$(cid "$n")"
    [ -n "$id" ] || continue
    echo "    ---- docker logs $n: last warnings and errors, then the last 25 lines ----"
    docker logs --tail 5000 "$id" 2>&1 | grep -E ' (WARN|ERROR) |panicked' | tail -n 15 | sed 's/^/    ! /'
    docker logs --tail 25 "$id" 2>&1 | sed 's/^/    | /'
  done
}

# After a failed step: undo whatever fault it left (a cut, a stopped node),
# so that the next steps test their own fault and not this one.
heal() {
  local n id
  for n in "${validators[@]}"; do
    id="$(cid "$n")"
    [ -n "$id" ] || continue
    timeout 30 docker start "$id" >/dev/null 2>&1
    timeout 30 docker network connect --alias "$n" "$shared_net" "$id" >/dev/null 2>&1
    timeout 30 docker network disconnect "${project}_split" "$id" >/dev/null 2>&1
  done
  timeout 30 docker network rm "${project}_split" >/dev/null 2>&1
  return 0
}

passed=0
failed=0
results=()
# run_step NAME LIMIT: runs step_NAME in a subshell, killed after LIMIT seconds.
run_step() {
  local name="$1" limit="$2" t0=$EPOCHREALTIME pid rc out
  out="$work/step-$name.log"
  printf '==> %s (limit %s s)\n' "$name" "$limit"
  ("step_${name//-/_}") >"$out" 2>&1 &
  pid=$!
  step_pid=$pid
  while kill -0 "$pid" 2>/dev/null; do
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      kill_tree "$pid"
      echo "    FAIL: step still running after $limit s; stopped" >>"$out"
      break
    fi
    sleep 0.2
  done
  wait "$pid"
  rc=$?
  step_pid=""
  cat "$out"
  local took
  took="$(elapsed "$t0")"
  if [ "$rc" = 0 ] && ! grep -q 'FAIL:' "$out"; then
    passed=$((passed + 1))
    results+=("$(printf '%-10s pass %7s s' "$name" "$took")")
    printf '    pass (%s s)\n' "$took"
  else
    failed=$((failed + 1))
    results+=("$(printf '%-10s FAIL %7s s' "$name" "$took")")
    printf '    FAIL (%s s)\n' "$took"
    container_logs
    heal
  fi
}

# A leftover network of an interrupted run would hold the ports.
remove_leftovers

run_step build 1500
if [ "$failed" = 0 ]; then
  run_step start 150
fi
if [ "$failed" = 0 ]; then
  run_step txs 120
  run_step tls 120
  run_step metrics 30
  run_step kill 240
  run_step split-2-2 120
  run_step cut-one 150
  run_step joiner 300
  run_step agreement 60
fi

echo "==> timings"
printf '    %s\n' "${results[@]}"
echo "containers: $passed passed, $failed failed ($(elapsed "$start_all") s)"
[ "$failed" = 0 ]
