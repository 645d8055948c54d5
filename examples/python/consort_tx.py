"""Building and signing consort ledger transactions in Python.

The Rust reference is `Tx::sign_bytes` in src/app/ledger/tx.rs (with the
`Canonical` builder of src/types/canonical.rs) and the protobuf message `Tx`
of proto/consort/v1/tx.proto; test_tx_encoding.py checks this module against
transactions the Rust CLI signed.
"""

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: Domain tag that starts every transaction's sign bytes.
TX_TAG = b"consort/tx/v1"


@dataclass(frozen=True)
class Transfer:
    """Moves `amount` (at least 1) to the account `to` (a 32-byte ed25519
    public key; the account is created if new)."""

    to: bytes
    amount: int


@dataclass(frozen=True)
class Put:
    """Sets the record `name` (1 to 256 bytes of UTF-8) to `value` (at most
    32 KiB) in the sender's namespace."""

    name: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    """Removes the record `name` from the sender's namespace."""

    name: str


Action = Union[Transfer, Put, Delete]


def public_key(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte public key of `key`: the account's address."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_account_key(path: str) -> Ed25519PrivateKey:
    """Reads a consort key file (JSON with `public_key` and `secret_seed`, both
    hex), as `consort testnet`/`devnet` write to clients/clientN.json."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["secret_seed"]))
    if public_key(key).hex() != doc["public_key"].lower():
        raise ValueError(f"{path}: public_key does not match secret_seed")
    return key


def tx_hash(tx: bytes) -> bytes:
    """A transaction's id: SHA-256 of its encoded bytes."""
    return hashlib.sha256(tx).digest()


def signed_tx(tx_pb2, key: Ed25519PrivateKey, chain_id: str, nonce: int, action: Action) -> bytes:
    """Signs `action` as the account of `key` and returns the encoded `Tx`, the
    bytes to put in `SubmitRequest.tx`.

    `nonce` must be the account's next nonce (`GetAccount().nonce`; one more
    for each transaction of the account still in the mempool). There are no
    fees.

    The signature (ed25519, 64 bytes) covers these sign bytes, where u32 and
    u64 are big-endian and bytes(x) / str(x) is u32 len(x) followed by x
    (UTF-8 for a string):

        str("consort/tx/v1") || str(chain_id) || bytes(sender) || u64(nonce) || action

    with `action` one of

        Transfer: 0x01 || bytes(to) || u64(amount)
        Put:      0x02 || str(name) || bytes(value)
        Delete:   0x03 || str(name)

    The result is the protobuf `consort.v1.Tx` {sender, nonce, transfer|put|
    delete, signature} in its canonical encoding (fields in number order,
    default values left out), which is what protobuf's serializer writes;
    nodes refuse any other encoding. `tx_pb2` is the module generated from
    proto/consort/v1/tx.proto.
    """

    def u32(n: int) -> bytes:
        return struct.pack(">I", n)

    def u64(n: int) -> bytes:
        return struct.pack(">Q", n)

    def blob(b: bytes) -> bytes:
        return u32(len(b)) + b

    sender = public_key(key)
    msg = blob(TX_TAG) + blob(chain_id.encode()) + blob(sender) + u64(nonce)
    if isinstance(action, Transfer):
        msg += b"\x01" + blob(action.to) + u64(action.amount)
        field = {"transfer": tx_pb2.Transfer(to=action.to, amount=action.amount)}
    elif isinstance(action, Put):
        msg += b"\x02" + blob(action.name.encode()) + blob(action.value)
        field = {"put": tx_pb2.Put(name=action.name, value=action.value)}
    elif isinstance(action, Delete):
        msg += b"\x03" + blob(action.name.encode())
        field = {"delete": tx_pb2.Delete(name=action.name)}
    else:
        raise TypeError(f"not an action: {action!r}")
    tx = tx_pb2.Tx(sender=sender, nonce=nonce, signature=key.sign(msg), **field)
    return tx.SerializeToString()
