#!/usr/bin/env python3
"""Checks from grpcio who a consort node lets in, and with which gRPC status
it refuses the others:

- no client certificate: UNAUTHENTICATED;
- a certificate of a CA no organization of the consortium has: UNAUTHENTICATED;
- an expired certificate of the organization's CA: UNAUTHENTICATED (needs
  the CA's key: devnet only);
- role `client` calling SyncService: PERMISSION_DENIED;
- role `client` calling NodeService/QueryService: allowed;
- role `admin` calling SyncService: allowed;
- health and reflection (v1alpha, as Python's reflection client speaks, and
  v1) without a client certificate: allowed.

    python3 check_access.py --devnet DIR                 # consort devnet --tls --dir DIR
    python3 check_access.py --target HOST:PORT --ca CA.pem --cert CLIENT.pem --key CLIENT.key \\
        [--sync-cert MEMBER.pem --sync-key MEMBER.key]
"""

import argparse
import datetime
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Optional

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import consort_api

# Set by main().
CFG: argparse.Namespace = None


def make_cert(path: Path, org: str, role: str, issuer_cert: Optional[x509.Certificate] = None,
              issuer_key=None, expired: bool = False) -> consort_api.Tls:
    """Writes an ECDSA P-256 certificate of `org` and `role` (O and OU) and
    its key under `path`, issued by `issuer_*` or, without them, by a new CA
    no one trusts. Returns its Tls (with CFG.ca as the CA bundle)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    if issuer_key is None:
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{org} stranger CA")])
        issuer_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(issuer_key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(hours=1))
                       .not_valid_after(now + datetime.timedelta(days=1))
                       .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                       .sign(issuer_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    if expired:
        start, end = now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)
    else:
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "check-access")]))
            .issuer_name(issuer_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    path.mkdir(parents=True, exist_ok=True)
    (path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return consort_api.Tls(CFG.ca, str(path / "cert.pem"), str(path / "key.pem"))


class AccessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pb = consort_api.stubs()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.channels = []
        cls.client = cls.open(consort_api.Tls(CFG.ca, CFG.cert, CFG.key))
        consort_api.wait_until_serving(cls.client, timeout=60)
        cls.anonymous = cls.open(consort_api.Tls(CFG.ca))

    @classmethod
    def tearDownClass(cls):
        for ch in cls.channels:
            ch.close()
        cls.tmp.cleanup()

    @classmethod
    def open(cls, tls: consort_api.Tls) -> grpc.Channel:
        ch = consort_api.channel(CFG.target, tls, CFG.server_name)
        cls.channels.append(ch)
        return ch

    def client_org(self) -> str:
        cert = x509.load_pem_x509_certificate(Path(CFG.cert).read_bytes())
        return cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value

    def get_status(self, ch):
        return self.pb.node_pb2_grpc.NodeServiceStub(ch).GetStatus(
            self.pb.node_pb2.GetStatusRequest(), timeout=10)

    def list_snapshots(self, ch):
        return self.pb.sync_pb2_grpc.SyncServiceStub(ch).ListSnapshots(
            self.pb.sync_pb2.ListSnapshotsRequest(), timeout=10)

    def assert_refused(self, call, code: grpc.StatusCode):
        with self.assertRaises(grpc.RpcError) as cm:
            call()
        e = cm.exception
        self.assertEqual(e.code(), code, f"{e.code().name}: {e.details()}")
        return e.details()

    # --- refusals ---

    def test_no_certificate_is_unauthenticated(self):
        for name, call in [
            ("NodeService.GetStatus", lambda: self.get_status(self.anonymous)),
            ("QueryService.GetAccount", lambda: self.pb.tx_pb2_grpc.QueryServiceStub(self.anonymous)
             .GetAccount(self.pb.tx_pb2.GetAccountRequest(address=b"\x01" * 32), timeout=10)),
            ("SyncService.ListSnapshots", lambda: self.list_snapshots(self.anonymous)),
        ]:
            with self.subTest(name):
                self.assert_refused(call, grpc.StatusCode.UNAUTHENTICATED)

    def test_unknown_ca_is_unauthenticated(self):
        tls = make_cert(Path(self.tmp.name) / "stranger", self.client_org(), "client")
        self.assert_refused(lambda: self.get_status(self.open(tls)), grpc.StatusCode.UNAUTHENTICATED)

    def test_expired_certificate_is_unauthenticated(self):
        if not CFG.org_ca_key:
            self.skipTest("no organization CA key (--devnet gives it)")
        ca = x509.load_pem_x509_certificate(Path(CFG.org_ca).read_bytes())
        key = serialization.load_pem_private_key(Path(CFG.org_ca_key).read_bytes(), None)
        org = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        tls = make_cert(Path(self.tmp.name) / "expired", org, "client", ca, key, expired=True)
        self.assert_refused(lambda: self.get_status(self.open(tls)), grpc.StatusCode.UNAUTHENTICATED)
        # The same CA's certificate in its validity is let in.
        tls = make_cert(Path(self.tmp.name) / "valid", org, "client", ca, key)
        self.assertTrue(self.get_status(self.open(tls)).chain_id)

    def test_client_role_may_not_sync(self):
        details = self.assert_refused(lambda: self.list_snapshots(self.client),
                                      grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("client", details)

    # --- what is allowed ---

    def test_client_role_may_read(self):
        s = self.get_status(self.client)
        self.assertTrue(s.chain_id)
        acct = self.pb.tx_pb2_grpc.QueryServiceStub(self.client).GetAccount(
            self.pb.tx_pb2.GetAccountRequest(address=b"\x01" * 32), timeout=10)
        self.assertFalse(acct.found)

    def test_sync_role_may_sync(self):
        if not CFG.sync_cert:
            self.skipTest("no member/node/admin certificate given")
        ch = self.open(consort_api.Tls(CFG.ca, CFG.sync_cert, CFG.sync_key))
        self.list_snapshots(ch)  # OK, whatever snapshots there are

    def test_health_is_open(self):
        check = self.anonymous.unary_unary("/grpc.health.v1.Health/Check",
                                           request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
        # HealthCheckRequest{} -> HealthCheckResponse{status: SERVING (1)}
        self.assertEqual(check(b"", timeout=10), b"\x08\x01")

    def test_reflection_v1alpha_lists_services(self):
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(self.anonymous)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        (resp,) = list(stub.ServerReflectionInfo(iter([req]), timeout=10))
        names = {s.name for s in resp.list_services_response.service}
        for want in ("consort.v1.TxService", "consort.v1.QueryService", "consort.v1.NodeService",
                     "consort.v1.SyncService", "grpc.health.v1.Health"):
            self.assertIn(want, names)

    def test_reflection_v1alpha_describes_services(self):
        """Python's reflection client (v1alpha only) resolves the services."""
        from google.protobuf.descriptor_pool import DescriptorPool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase,
        )

        db = ProtoReflectionDescriptorDatabase(self.anonymous)
        self.assertIn("consort.v1.TxService", db.get_services())
        svc = DescriptorPool(db).FindServiceByName("consort.v1.TxService")
        self.assertIn("Submit", svc.methods_by_name)
        self.assertEqual(svc.methods_by_name["Submit"].input_type.full_name,
                         "consort.v1.SubmitRequest")

    def test_reflection_v1_lists_services(self):
        # grpcio-reflection's client speaks v1alpha; v1 has the same messages
        # in package grpc.reflection.v1, so the v1alpha classes encode them.
        from grpc_reflection.v1alpha import reflection_pb2

        call = self.anonymous.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        (resp,) = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                            timeout=10))
        self.assertIn("consort.v1.TxService", {s.name for s in resp.list_services_response.service})


def main() -> int:
    global CFG
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devnet", metavar="DIR", help="directory of `consort devnet --tls --dir DIR`")
    p.add_argument("--target", help="gRPC address of a node (host:port)")
    p.add_argument("--server-name", help="name to check the node's certificate against")
    p.add_argument("--ca", help="CA bundle (PEM)")
    p.add_argument("--cert", help="certificate of role client (PEM)")
    p.add_argument("--key", help="its key (PEM)")
    p.add_argument("--sync-cert", help="certificate of role member, node or admin (PEM)")
    p.add_argument("--sync-key", help="its key (PEM)")
    p.add_argument("--org-ca", help="an organization's CA certificate (PEM), with --org-ca-key")
    p.add_argument("--org-ca-key", help="its key, to issue an expired certificate")
    p.add_argument("-v", "--verbose", action="store_true")
    CFG = p.parse_args()
    if CFG.devnet:
        d = consort_api.Devnet(Path(CFG.devnet))
        client, admin = d.client_tls(0), d.admin_tls("node0")
        CFG.target = CFG.target or d.grpc_target(0)
        CFG.ca = CFG.ca or client.ca
        CFG.cert, CFG.key = CFG.cert or client.cert, CFG.key or client.key
        CFG.sync_cert, CFG.sync_key = CFG.sync_cert or admin.cert, CFG.sync_key or admin.key
        CFG.org_ca = CFG.org_ca or str(d.dir / "orgs" / "node0" / "ca.pem")
        CFG.org_ca_key = CFG.org_ca_key or str(d.dir / "orgs" / "node0" / "ca.key")
    missing = [n for n in ("target", "ca", "cert", "key") if not getattr(CFG, n)]
    if missing:
        p.error("give --devnet DIR, or " + ", ".join("--" + n for n in missing))
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(AccessTest)
    result = unittest.TextTestRunner(verbosity=2 if CFG.verbose else 1).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
