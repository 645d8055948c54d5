#!/usr/bin/env python3
"""Signs a fixed set of transactions with the Rust CLI (`consort tx ...
--sign-only`, keys from fixed seeds) and prints them as JSON: the test
vectors of test_tx_encoding.py.

    python3 make_vectors.py ../../target/debug/consort > testdata/tx_vectors.json

ed25519 signatures are deterministic, so the same consort signs the same
bytes every time; a change of the output is a change of the transaction
format.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import consort_tx

SEED_A = bytes([7]) * 32
SEED_B = bytes(range(1, 33))

# (seed, chain id, nonce, action) of each vector; actions as in the JSON.
CASES = [
    (SEED_A, "consort-devnet", 0, {"put": {"name": "color", "value": "blue"}}),
    (SEED_A, "c", 1, {"transfer": {"to_seed": SEED_B.hex(), "amount": 1}}),
    (SEED_B, "consort-1", 2**64 - 1, {"transfer": {"to_seed": SEED_A.hex(), "amount": 2**64 - 1}}),
    (SEED_B, "consort-devnet", 7, {"delete": {"name": "color"}}),
    (SEED_A, "chain with spaces and ünïcode", 300, {"put": {"name": "café ☕", "value": "värde"}}),
    (SEED_B, "consort-devnet", 128, {"put": {"name": "empty", "value": ""}}),
]


def pub_of_seed(seed_hex: str) -> bytes:
    return consort_tx.public_key(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)))


def action_of(spec: dict) -> consort_tx.Action:
    """The Python action of a vector's `action`."""
    (kind, a), = spec.items()
    if kind == "put":
        return consort_tx.Put(a["name"], a["value"].encode())
    if kind == "transfer":
        return consort_tx.Transfer(pub_of_seed(a["to_seed"]), a["amount"])
    if kind == "delete":
        return consort_tx.Delete(a["name"])
    raise ValueError(kind)


def cli_args(spec: dict) -> list:
    (kind, a), = spec.items()
    if kind == "put":
        return ["put", "--name", a["name"], "--value", a["value"]]
    if kind == "transfer":
        return ["transfer", "--to", pub_of_seed(a["to_seed"]).hex(), "--amount", str(a["amount"])]
    if kind == "delete":
        return ["delete", "--name", a["name"]]
    raise ValueError(kind)


def generate(binary: str) -> dict:
    """The vectors, signed by `binary`."""
    vectors = []
    with tempfile.TemporaryDirectory() as d:
        for i, (seed, chain_id, nonce, spec) in enumerate(CASES):
            key_file = Path(d) / f"key{i}.json"
            key = Ed25519PrivateKey.from_private_bytes(seed)
            key_file.write_text(json.dumps(
                {"public_key": consort_tx.public_key(key).hex(), "secret_seed": seed.hex()}))
            cmd = [binary, "tx", *cli_args(spec), "--signer", str(key_file),
                   "--chain-id", chain_id, "--nonce", str(nonce), "--sign-only"]
            # No TLS settings from the environment: signing reaches no node.
            env = {"PATH": "/usr/bin:/bin"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            vectors.append({"seed": seed.hex(), "chain_id": chain_id, "nonce": nonce,
                            "action": spec, "tx": out.strip()})
    return {"generated_by": "consort tx ... --sign-only (make_vectors.py)", "vectors": vectors}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} CONSORT_BINARY")
    json.dump(generate(sys.argv[1]), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
