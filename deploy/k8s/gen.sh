#!/usr/bin/env bash
# Generates the keys, genesis and configs of a 4-validator network whose pods
# reach each other as validator-N.validator.consort.svc.cluster.local, and
# writes them as a Secret and a ConfigMap into deploy/k8s/generated/ (or $OUT).
# Usage: deploy/k8s/gen.sh [path/to/consort]
#   then: kubectl apply -k deploy/k8s
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
consort="${1:-$here/../bin/consort}"
[ -x "$consort" ] || consort="$(command -v consort || true)"
[ -n "$consort" ] || { echo "error: no consort binary (give its path)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

hosts=""
names=""
for i in 0 1 2 3; do
  hosts="$hosts${hosts:+,}validator-$i.validator.consort.svc.cluster.local"
  names="$names${names:+,}validator-$i"
done
"$consort" testnet --validators 4 --out "$work" --base-port 26656 \
  --chain-id consort-k8s --hosts "$hosts" --names "$names" --insecure >/dev/null

out="${OUT:-$here/generated}"
mkdir -p "$out"
b64() { base64 -w0 < "$1"; }
indent() { sed 's/^/    /' "$1"; }
{
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: validator-keys"
  echo "  namespace: consort"
  echo "type: Opaque"
  echo "data:"
  for i in 0 1 2 3; do
    echo "  validator-$i.json: $(b64 "$work/validator-$i/node_key.json")"
  done
} > "$out/secret.yaml"
{
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: validator-config"
  echo "  namespace: consort"
  echo "data:"
  echo "  genesis.json: |"
  indent "$work/validator-0/genesis.json"
  for i in 0 1 2 3; do
    echo "  validator-$i.toml: |"
    indent "$work/validator-$i/config.toml"
  done
} > "$out/configmap.yaml"
echo "wrote $out/secret.yaml and $out/configmap.yaml"
