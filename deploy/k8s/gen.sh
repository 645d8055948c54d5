#!/usr/bin/env bash
# Generates the keys, genesis, PKI and configs of a 4-validator network whose
# pods reach each other as validator-N.validator.consort.svc.cluster.local, and
# writes them as Secrets and a ConfigMap into deploy/k8s/generated/ (or $OUT):
#   secret.yaml      Secret validator-keys: each pod's node key (validator-N.json)
#   tls-secret.yaml  Secret validator-tls: each pod's API certificate and key
#                    (validator-N.pem, validator-N.key: role node, issued by the
#                    CA of its organization validator-N) and ca.pem, the bundle
#                    of every organization's CA
#   configmap.yaml   ConfigMap validator-config: genesis.json, validator-N.toml
#   pki/             what stays out of the cluster: each organization's CA
#                    (orgs/<org>/ca.pem, ca.key) and admin certificate, ca.pem,
#                    and a funded client (clients/client0.json, the account key,
#                    with client0.pem/.key, an API certificate of role client
#                    issued by validator-0)
# A pod's certificate names localhost, 127.0.0.1 (its probes), the pod's DNS
# names under the headless Service validator, and the Service consort-api.
# Usage: deploy/k8s/gen.sh [path/to/consort]
#   then: kubectl apply -k deploy/k8s
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
consort="${1:-$here/../bin/consort}"
[ -x "$consort" ] || consort="$(command -v consort || true)"
[ -n "$consort" ] || { echo "error: no consort binary (give its path)" >&2; exit 1; }
# The CLI's TLS settings of the caller's shell have no business here.
unset CONSORT_CA CONSORT_CERT CONSORT_KEY
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ns=consort
svc=validator
api=consort-api
hosts=""
names=""
for i in 0 1 2 3; do
  hosts="$hosts${hosts:+,}validator-$i.$svc.$ns.svc.cluster.local"
  names="$names${names:+,}validator-$i"
done
"$consort" testnet --validators 4 --clients 1 --out "$work" --base-port 26656 \
  --chain-id consort-k8s --hosts "$hosts" --names "$names" >/dev/null

# testnet's certificates name the pod's full DNS name, its short name and
# loopback. Reissued from the same organization's CA, they also carry every
# shorter form of the pod's name and the consort-api Service, so that a client
# in the cluster checks the node by whichever name it dialed.
for i in 0 1 2 3; do
  n="validator-$i"
  sans="localhost,127.0.0.1,$n"
  for d in "$svc" "$svc.$ns" "$svc.$ns.svc" "$svc.$ns.svc.cluster.local"; do sans="$sans,$n.$d"; done
  for d in "" ".$ns" ".$ns.svc" ".$ns.svc.cluster.local"; do sans="$sans,$api$d"; done
  rm -f "$work/$n/tls/node.pem" "$work/$n/tls/node.key"
  "$consort" certs issue --org "$n" --role node --name "$n" \
    --ca "$work/orgs/$n/ca.pem" --ca-key "$work/orgs/$n/ca.key" \
    --names "$sans" --out "$work/$n/tls/node" >/dev/null
  grep -q '^tls_cert = "tls/node.pem"$' "$work/$n/config.toml" && grep -q '^insecure = false$' "$work/$n/config.toml" ||
    { echo "error: $n's config does not serve the API over TLS with tls/node.pem" >&2; exit 1; }
done

out="${OUT:-$here/generated}"
mkdir -p "$out"
b64() { base64 -w0 < "$1"; }
indent() { sed 's/^/    /' "$1"; }
{
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: validator-keys"
  echo "  namespace: $ns"
  echo "type: Opaque"
  echo "data:"
  for i in 0 1 2 3; do
    echo "  validator-$i.json: $(b64 "$work/validator-$i/node_key.json")"
  done
} > "$out/secret.yaml"
{
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: validator-tls"
  echo "  namespace: $ns"
  echo "type: Opaque"
  echo "data:"
  echo "  ca.pem: $(b64 "$work/ca.pem")"
  for i in 0 1 2 3; do
    echo "  validator-$i.pem: $(b64 "$work/validator-$i/tls/node.pem")"
    echo "  validator-$i.key: $(b64 "$work/validator-$i/tls/node.key")"
  done
} > "$out/tls-secret.yaml"
{
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: validator-config"
  echo "  namespace: $ns"
  echo "data:"
  echo "  genesis.json: |"
  indent "$work/validator-0/genesis.json"
  for i in 0 1 2 3; do
    echo "  validator-$i.toml: |"
    indent "$work/validator-$i/config.toml"
  done
} > "$out/configmap.yaml"
rm -rf "$out/pki"
mkdir -p "$out/pki"
cp -r "$work/orgs" "$work/clients" "$work/ca.pem" "$out/pki/"
chmod -R go-rwx "$out/pki"
echo "wrote $out/secret.yaml, $out/tls-secret.yaml and $out/configmap.yaml;"
echo "the CAs' keys, admin and client certificates are in $out/pki (keep them out of the cluster)"
