#!/usr/bin/env python3
"""Sends two transactions to a consort node over TLS with a client
certificate, waits for their commits and reads them back:

1. a Put (a record in the account's namespace), submitted in ACCEPTED mode;
   its commit is awaited on TxService.StreamTxResults;
2. a Transfer to a new account, submitted in COMMITTED mode (the call returns
   once it is in a committed block).

Each is then read back with TxService.GetTx, and the state it made with
QueryService.GetRecord / GetAccount.

Against `consort devnet --tls --dir DIR`:
    python3 example.py --devnet DIR
Against any network:
    python3 example.py --target HOST:PORT --ca CA.pem --cert ME.pem --key ME.key \\
        --account ACCOUNT.json
"""

import argparse
import sys
import time
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import consort_api
import consort_tx
from consort_tx import Put, Transfer

#: Longest wait for a transaction's commit.
COMMIT_TIMEOUT = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devnet", metavar="DIR", help="directory of `consort devnet --tls --dir DIR`: "
                   "takes node0's address, the CA bundle, client0's certificate and funded account")
    p.add_argument("--target", help="gRPC address of a node (host:port)")
    p.add_argument("--ca", help="CA bundle (PEM) the node's certificate is checked by")
    p.add_argument("--cert", help="client certificate (PEM), role client (or member/admin)")
    p.add_argument("--key", help="its private key (PEM)")
    p.add_argument("--server-name", help="name to check the node's certificate against "
                   "(default: the host of --target)")
    p.add_argument("--account", help="the account's key file (JSON: public_key, secret_seed)")
    p.add_argument("--record", default="greeting", help="name of the record to set")
    a = p.parse_args(argv)
    if a.devnet:
        d = consort_api.Devnet(Path(a.devnet))
        t = d.client_tls(0)
        a.target = a.target or d.grpc_target(0)
        a.ca, a.cert, a.key = a.ca or t.ca, a.cert or t.cert, a.key or t.key
        a.account = a.account or d.account_key(0)
    missing = [n for n in ("target", "ca", "cert", "key", "account") if not getattr(a, n)]
    if missing:
        p.error("give --devnet DIR, or " + ", ".join("--" + n for n in missing))
    return a


def wait_for_commit(tx_api, pb, tx_hash: bytes, sender: bytes, from_height: int):
    """Follows StreamTxResults (the sender's transactions from `from_height`
    on: history first, then live) until `tx_hash` shows up; returns its
    TxResultEvent. Raises on timeout."""
    stream = tx_api.StreamTxResults(
        pb.tx_pb2.StreamTxResultsRequest(from_height=from_height, sender=sender),
        timeout=COMMIT_TIMEOUT,
    )
    try:
        for ev in stream:
            if ev.hash == tx_hash:
                return ev
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise TimeoutError(f"{tx_hash.hex()} not committed within {COMMIT_TIMEOUT}s") from e
        raise
    finally:
        stream.cancel()
    raise RuntimeError("StreamTxResults ended before the transaction was committed")


def get_tx(tx_api, pb, tx_hash: bytes):
    """GetTx, retried while the node answers NOT_FOUND (it reports a
    transaction once its block is durable) up to a deadline."""
    deadline = time.monotonic() + COMMIT_TIMEOUT
    while True:
        try:
            return tx_api.GetTx(pb.tx_pb2.GetTxRequest(hash=tx_hash), timeout=10)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv=None) -> int:
    a = parse_args(argv)
    pb = consort_api.stubs()
    ch = consort_api.channel(a.target, consort_api.Tls(a.ca, a.cert, a.key), a.server_name)
    tx_api = pb.tx_pb2_grpc.TxServiceStub(ch)
    query = pb.tx_pb2_grpc.QueryServiceStub(ch)

    status = consort_api.wait_until_serving(ch, timeout=60)
    print(f"connected to {status.moniker} at {a.target} over TLS: chain {status.chain_id!r}, "
          f"height {status.height}")

    key = consort_tx.load_account_key(a.account)
    me = consort_tx.public_key(key)
    acct = query.GetAccount(pb.tx_pb2.GetAccountRequest(address=me), timeout=10)
    if not acct.found:
        print(f"account {me.hex()} does not exist on this chain", file=sys.stderr)
        return 1
    print(f"account {me.hex()}: balance {acct.balance}, next nonce {acct.nonce}")
    nonce = acct.nonce

    # 1. Put, ACCEPTED mode, commit awaited on StreamTxResults.
    value = f"hello from python at {time.time():.3f}".encode()
    put = consort_tx.signed_tx(pb.tx_pb2, key, status.chain_id, nonce, Put(a.record, value))
    h1 = consort_tx.tx_hash(put)
    r = tx_api.Submit(pb.tx_pb2.SubmitRequest(tx=put, mode=pb.tx_pb2.SUBMIT_MODE_ACCEPTED), timeout=10)
    assert r.hash == h1, "the node hashed the transaction differently"
    print(f"put {a.record!r} (nonce {nonce}): accepted {h1.hex()}")
    ev = wait_for_commit(tx_api, pb, h1, me, from_height=status.height)
    if ev.result.code != 0:
        print(f"put failed: code {ev.result.code}: {ev.result.log}", file=sys.stderr)
        return 1
    print(f"  committed at height {ev.height} index {ev.index}: {ev.result.log}")

    # 2. Transfer to a new account, COMMITTED mode.
    to = consort_tx.public_key(Ed25519PrivateKey.generate())
    amount = 10
    transfer = consort_tx.signed_tx(pb.tx_pb2, key, status.chain_id, nonce + 1, Transfer(to, amount))
    h2 = consort_tx.tx_hash(transfer)
    r = tx_api.Submit(pb.tx_pb2.SubmitRequest(tx=transfer, mode=pb.tx_pb2.SUBMIT_MODE_COMMITTED),
                      timeout=COMMIT_TIMEOUT)
    assert r.hash == h2, "the node hashed the transaction differently"
    if r.result.code != 0:
        print(f"transfer failed: code {r.result.code}: {r.result.log}", file=sys.stderr)
        return 1
    print(f"transfer {amount} to {to.hex()} (nonce {nonce + 1}): committed {h2.hex()} "
          f"at height {r.height} index {r.index}: {r.result.log}")

    # Read both back.
    for name, h, sent in (("put", h1, put), ("transfer", h2, transfer)):
        got = get_tx(tx_api, pb, h)
        if got.tx != sent:
            print(f"GetTx({h.hex()}) returned other bytes", file=sys.stderr)
            return 1
        hdr = got.header.header
        print(f"GetTx {name}: height {got.height} index {got.index}, code {got.result.code}, "
              f"proof leaf {got.proof.index} of {got.proof.total}, "
              f"header {hdr.chain_id}/{hdr.height} signed by {len(got.header.commit.signatures)} validators")

    rec = query.GetRecord(pb.tx_pb2.GetRecordRequest(owner=me, name=a.record), timeout=10)
    dest = query.GetAccount(pb.tx_pb2.GetAccountRequest(address=to), timeout=10)
    after = query.GetAccount(pb.tx_pb2.GetAccountRequest(address=me), timeout=10)
    print(f"GetRecord {a.record!r}: found={rec.found} value={rec.value.decode(errors='replace')!r} "
          f"(at height {rec.header.header.height})")
    print(f"GetAccount recipient: found={dest.found} balance {dest.balance}")
    print(f"GetAccount sender: balance {after.balance}, next nonce {after.nonce}")
    checks = [
        (rec.found and rec.value == value, "the record holds the value put"),
        (dest.found and dest.balance == amount, "the recipient holds the amount sent"),
        (after.nonce >= nonce + 2, "the sender's nonce advanced by two"),
        (after.balance <= acct.balance - amount, "the sender paid the amount"),
    ]
    failed = [what for ok, what in checks if not ok]
    for what in failed:
        print(f"FAILED: {what}", file=sys.stderr)
    if failed:
        return 1
    print("ok: 2 transactions signed, submitted, committed and read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
