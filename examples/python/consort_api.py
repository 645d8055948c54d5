"""Reaching a consort node's gRPC API from Python: stubs generated from the
repository's .proto files at run time, TLS channels with a client
certificate, and the files `consort devnet --tls` writes."""

import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import grpc

HERE = Path(__file__).resolve().parent
#: The .proto files: the repository's proto/ (or $CONSORT_PROTO).
PROTO_DIR = Path(os.environ.get("CONSORT_PROTO", HERE.parent.parent / "proto"))

_stubs = None


def stubs() -> SimpleNamespace:
    """Generates the Python modules of proto/consort/v1/*.proto with
    grpc_tools.protoc into a temporary directory (removed at exit), once per
    process, and returns them: `.tx_pb2`, `.tx_pb2_grpc`, `.node_pb2`, ..."""
    global _stubs
    if _stubs is not None:
        return _stubs
    from grpc_tools import protoc  # imported here: only the generation needs it

    out = tempfile.mkdtemp(prefix="consort-pb-")
    atexit.register(shutil.rmtree, out, True)
    protos = sorted(str(p) for p in (PROTO_DIR / "consort" / "v1").glob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files under {PROTO_DIR}/consort/v1")
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + protos) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}")
    sys.path.insert(0, out)
    names = ["types", "tx", "node", "sync"]
    mods = {}
    for n in names:
        mods[f"{n}_pb2"] = importlib.import_module(f"consort.v1.{n}_pb2")
        mods[f"{n}_pb2_grpc"] = importlib.import_module(f"consort.v1.{n}_pb2_grpc")
    _stubs = SimpleNamespace(**mods)
    return _stubs


@dataclass
class Tls:
    """What a client needs for TLS: the CA bundle that issued the nodes'
    certificates and, to be let in, a certificate and its key issued by an
    organization's CA (PEM files)."""

    ca: str
    cert: Optional[str] = None
    key: Optional[str] = None


def channel(target: str, tls: Tls, server_name: Optional[str] = None) -> grpc.Channel:
    """A TLS channel to `target` (host:port). Without `tls.cert` no client
    certificate is presented. `server_name` checks the node's certificate
    against another name than the host of `target`."""

    def read(p: Optional[str]) -> Optional[bytes]:
        return Path(p).read_bytes() if p else None

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca),
        private_key=read(tls.key),
        certificate_chain=read(tls.cert),
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, creds, options=options)


@dataclass
class Devnet:
    """The files `consort devnet --tls --dir DIR` writes."""

    dir: Path

    @property
    def ca(self) -> str:
        """Bundle of every organization's CA certificate."""
        return str(self.dir / "ca.pem")

    def client_tls(self, i: int = 0) -> Tls:
        """Certificate of role `client` (organization of node0) for client i."""
        c = self.dir / "clients"
        return Tls(self.ca, str(c / f"client{i}.pem"), str(c / f"client{i}.key"))

    def admin_tls(self, org: str = "node0") -> Tls:
        """Certificate of role `admin` of organization `org`."""
        o = self.dir / "orgs" / org
        return Tls(self.ca, str(o / "admin.pem"), str(o / "admin.key"))

    def account_key(self, i: int = 0) -> str:
        """Key file of the funded account of client i."""
        return str(self.dir / "clients" / f"client{i}.json")

    def grpc_target(self, node: int = 0) -> str:
        """gRPC address of node i, from nodes.json."""
        nodes = json.loads((self.dir / "nodes.json").read_text())
        return nodes[node]["grpc"]


def wait_until_serving(ch: grpc.Channel, timeout: float = 60.0, min_height: int = 1):
    """Asks NodeService.GetStatus until the node has committed `min_height`
    blocks and is following the chain by consensus; returns the status.
    Raises TimeoutError with the last error after `timeout` seconds."""
    pb = stubs()
    node = pb.node_pb2_grpc.NodeServiceStub(ch)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            s = node.GetStatus(pb.node_pb2.GetStatusRequest(), timeout=5)
            if s.height >= min_height and s.sync_phase == "consensus":
                return s
            last = f"height {s.height}, sync phase {s.sync_phase!r}"
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            if "handshake failed" in (e.details() or "").lower():
                raise  # a node that is up, whose TLS this client cannot speak
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.5)
    raise TimeoutError(f"node not serving after {timeout}s ({last})")
