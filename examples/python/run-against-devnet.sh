#!/usr/bin/env bash
# Runs the Python example and its tests against a local `consort devnet --tls`:
#
#   examples/python/run-against-devnet.sh path/to/consort
#
# 1. installs requirements.txt into a venv (a fresh one in a temporary
#    directory, or $CONSORT_PY_VENV to keep one between runs);
# 2. test_tx_encoding.py: the Python transaction encoding against
#    testdata/tx_vectors.json and against transactions the binary signs now;
# 3. starts `consort devnet --tls --fast` in a temporary directory, on free
#    ports from $CONSORT_DEVNET_BASE_PORT (default: the first free block of
#    ports from 27600), and waits until it serves;
# 4. check_access.py: who is let in, and the exact status of each refusal;
# 5. example.py against node0 (client0), then node3 (client1, every file
#    named as for a real network).
#
# The devnet is stopped and the temporary directory removed however it ends;
# any failure exits non-zero (with the end of the devnet's log).
set -euo pipefail

die() { echo "run-against-devnet: $*" >&2; exit 1; }
step() { printf '\n--> %s\n' "$*"; }

[ $# -eq 1 ] || die "usage: $0 CONSORT_BINARY"
[ -x "$1" ] || die "$1: not an executable"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
# The binary's TLS settings would otherwise reach make_vectors.py's signing.
unset CONSORT_CA CONSORT_CERT CONSORT_KEY
# grpcio's own log lines (such as each failed handshake) only when asked.
export GRPC_VERBOSITY="${GRPC_VERBOSITY:-ERROR}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/consort-py.XXXXXX")"
devnet_pid=""
cleanup() {
    local rc=$?
    if [ -n "$devnet_pid" ] && kill -0 "$devnet_pid" 2>/dev/null; then
        # TERM, not INT: a background job of a script starts with SIGINT
        # ignored, so an INT before devnet's handler is set would be lost.
        kill -TERM "$devnet_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$devnet_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$devnet_pid" 2>/dev/null; then
            echo "run-against-devnet: devnet did not stop in 20 s; killing it" >&2
            kill -KILL "$devnet_pid" 2>/dev/null || true
        fi
        wait "$devnet_pid" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -s "$tmp/devnet.log" ]; then
        echo "--- last lines of the devnet's output:" >&2
        tail -n 30 "$tmp/devnet.log" >&2
    fi
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ]; then
        echo "run-against-devnet: FAILED (exit $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Python environment"
venv="${CONSORT_PY_VENV:-$tmp/venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$py" --version
"$py" -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(grpcio|protobuf|cryptography)'

cd "$here"

step "test_tx_encoding: the Python encoding against the Rust one ($bin)"
CONSORT_BIN="$bin" "$py" -m unittest -v test_tx_encoding

step "devnet --tls"
base="${CONSORT_DEVNET_BASE_PORT:-}"
if [ -z "$base" ]; then
    # Node i uses base + 10 i: +0 QUIC (UDP), +1 gRPC and +2 metrics (TCP).
    base="$("$py" - <<'EOF'
import socket
def free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True
for base in range(27600, 40000, 100):
    if all(free(base + 10 * i + o) for i in range(4) for o in range(3)):
        print(base)
        break
EOF
)"
    [ -n "$base" ] || die "no free ports for the devnet"
fi
devnet="$tmp/devnet"
"$bin" devnet --tls --fast --validators 4 --dir "$devnet" --base-port "$base" \
    >"$tmp/devnet.log" 2>&1 &
devnet_pid=$!
for _ in $(seq 1 300); do
    kill -0 "$devnet_pid" 2>/dev/null || die "devnet exited before serving"
    grep -q '^press Ctrl-C' "$tmp/devnet.log" && break
    sleep 0.2
done
grep -q '^press Ctrl-C' "$tmp/devnet.log" || die "devnet did not start in 60 s"
sed -n '1,/^press Ctrl-C/p' "$tmp/devnet.log"

step "check_access: certificates, roles and status codes"
"$py" check_access.py --devnet "$devnet" --verbose

step "example: node0, client0 (--devnet)"
"$py" example.py --devnet "$devnet"

step "example: node3, client1 (the files given one by one)"
"$py" example.py --target "127.0.0.1:$((base + 31))" --ca "$devnet/ca.pem" \
    --cert "$devnet/clients/client1.pem" --key "$devnet/clients/client1.key" \
    --account "$devnet/clients/client1.json" --record from-node3

kill -0 "$devnet_pid" 2>/dev/null || die "devnet died during the run"
step "run-against-devnet: all passed"
