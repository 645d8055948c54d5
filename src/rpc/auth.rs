//! Who may call what: TLS 1.3 with optional client certificates, and a layer
//! in front of every service that judges the caller.
//!
//! The TLS layer asks every client for a certificate but requires none, and
//! accepts any certificate whose key signed the handshake: a refusal must be a
//! gRPC status with a message, which a failed handshake cannot carry. The
//! judgement is [`AuthPolicy::check`]: the certificate must be issued by the
//! CA of an organization of the consortium ([`crate::pki::TrustStore`]) and
//! be valid now (else `UNAUTHENTICATED`), and its role must allow the method
//! (else `PERMISSION_DENIED`):
//!
//! | role | may call |
//! |---|---|
//! | `client` | `TxService`, `QueryService`, `NodeService` (status, blocks, commits, validators, evidence), `SyncService.GetLightBlock` |
//! | `member`, `node` | what a client may, and the rest of `SyncService` (snapshots, manifests, chunks, block ranges) |
//! | `admin` | all of the above, and the operator methods of `NodeService` (`GetNodeInfo`) of its own organization's nodes |
//!
//! Health and reflection (v1 and v1alpha) stay open to anyone who completes
//! the handshake.
//! Without TLS (loopback, or `rpc.insecure`) nothing is checked.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::quota::Quotas;
use crate::metrics::NodeMetrics;
use crate::pki::{AuthError, Identity, Role, TrustStore};

/// What a method needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, reflection).
    Open,
    /// Any role of any organization.
    AnyRole,
    /// `member`, `node` or `admin`.
    Member,
    /// `admin` of the node's own organization.
    OwnAdmin,
}

/// The operator methods: `admin` of the node's own organization only.
pub const OPERATOR_METHODS: [&str; 1] = ["/consort.v1.NodeService/GetNodeInfo"];

/// The one method of `SyncService` open to every role.
pub const LIGHT_BLOCK_METHOD: &str = "/consort.v1.SyncService/GetLightBlock";

/// What the method at `path` (`/package.Service/Method`) needs.
pub fn access(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        Access::Open
    } else if OPERATOR_METHODS.contains(&path) {
        Access::OwnAdmin
    } else if path == LIGHT_BLOCK_METHOD {
        // A header, its commit and validators: what any client needs to
        // check a proof against a header it trusts.
        Access::AnyRole
    } else if path.starts_with("/consort.v1.SyncService/") {
        Access::Member
    } else {
        // TxService, QueryService, NodeService; an unknown method too (it is
        // then answered UNIMPLEMENTED, but only to a known caller).
        Access::AnyRole
    }
}

/// Whether `id` may call a method needing `access` on a node of organization
/// `node_org`.
pub fn allows(access: Access, id: &Identity, node_org: Option<&str>) -> bool {
    match access {
        Access::Open | Access::AnyRole => true,
        Access::Member => matches!(id.role, Role::Member | Role::Node | Role::Admin),
        Access::OwnAdmin => id.role == Role::Admin && node_org == Some(id.org.as_str()),
    }
}

/// The judge of every call on a TLS listener.
pub struct AuthPolicy {
    trust: TrustStore,
    node_org: Option<String>,
    metrics: Arc<NodeMetrics>,
    quotas: Option<Quotas>,
}

impl AuthPolicy {
    /// Judges callers against `trust`, for a node of organization `node_org`.
    pub fn new(
        trust: TrustStore,
        node_org: Option<String>,
        metrics: Arc<NodeMetrics>,
    ) -> AuthPolicy {
        AuthPolicy {
            trust,
            node_org,
            metrics,
            quotas: None,
        }
    }

    /// The same, counting each certificate's calls against `quotas`.
    pub fn with_quotas(self, quotas: Quotas) -> AuthPolicy {
        AuthPolicy {
            quotas: Some(quotas),
            ..self
        }
    }

    /// The quotas, for the services' streams and submitted bytes.
    pub fn quotas(&self) -> Option<&Quotas> {
        self.quotas.as_ref()
    }

    /// The caller of `path`, presenting `chain`, at `now`: its identity, or
    /// the status that refuses it (counted by reason).
    pub fn judge(
        &self,
        path: &str,
        chain: Option<&[CertificateDer<'static>]>,
        now: SystemTime,
    ) -> Result<Option<Identity>, Status> {
        let need = access(path);
        if need == Access::Open {
            return Ok(None);
        }
        let refused = |e: AuthError| {
            self.metrics.api_refused(e.reason());
            match e {
                AuthError::Forbidden { .. } => Status::permission_denied(e.to_string()),
                _ => Status::unauthenticated(e.to_string()),
            }
        };
        let id = self
            .trust
            .identify(chain.unwrap_or(&[]), now)
            .map_err(refused)?;
        if !allows(need, &id, self.node_org.as_deref()) {
            let method = path.trim_start_matches('/').to_string();
            let e = match need {
                Access::OwnAdmin if id.role == Role::Admin => AuthError::Forbidden {
                    role: id.role,
                    org: id.org.clone(),
                    method: format!(
                        "{method} (an operator method: only admins of this node's organization {})",
                        self.node_org.as_deref().unwrap_or("-")
                    ),
                },
                _ => AuthError::Forbidden {
                    role: id.role,
                    org: id.org.clone(),
                    method,
                },
            };
            return Err(refused(e));
        }
        if let Some(q) = &self.quotas {
            q.request(&id, std::time::Instant::now())?;
        }
        Ok(Some(id))
    }

    /// Judges a request as it arrives: the peer certificates come from the
    /// TLS connection.
    fn check<B>(&self, req: &http::Request<B>) -> Result<Option<Identity>, Status> {
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        self.judge(
            req.uri().path(),
            certs.as_deref().map(|v| v.as_slice()),
            SystemTime::now(),
        )
    }
}

/// The tower layer that puts [`AuthPolicy`] in front of the services.
#[derive(Clone)]
pub struct AuthLayer {
    policy: Option<Arc<AuthPolicy>>,
}

impl AuthLayer {
    /// Judges every call with `policy`; `None` lets every call through (a
    /// plaintext listener).
    pub fn new(policy: Option<Arc<AuthPolicy>>) -> AuthLayer {
        AuthLayer { policy }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    policy: Option<Arc<AuthPolicy>>,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(policy) = &self.policy {
            match policy.check(&req) {
                Ok(Some(id)) => {
                    req.extensions_mut().insert(id);
                }
                Ok(None) => {}
                Err(status) => {
                    let resp = status.into_http();
                    return Box::pin(async move { Ok(resp) });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// The caller's identity, as the layer found it (`None` on a plaintext
/// listener or an open method).
pub fn caller<T>(req: &tonic::Request<T>) -> Option<&Identity> {
    req.extensions().get::<Identity>()
}

/// Asks for a client certificate, requires none, and accepts any whose key
/// signed the handshake: [`AuthPolicy`] judges it, with a status to say why.
#[derive(Debug)]
struct AnyClientCertificate {
    hints: Vec<DistinguishedName>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only: a 1.2 handshake never gets here.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why the server's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate or key file is unusable.
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    /// The key does not parse.
    #[error("the TLS key: {0}")]
    Key(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The subjects of the consortium's CAs, which the server names when it asks
/// for a client certificate: each a DER `Name`, outer SEQUENCE included (as
/// TLS has it; webpki gives the contents only). A client that parses them,
/// as BoringSSL in grpcio does, fails the handshake on anything else.
fn root_hints(trust: &TrustStore) -> Vec<DistinguishedName> {
    trust
        .ca_ders()
        .filter_map(|(_, der)| webpki::anchor_from_trusted_cert(der).ok())
        .map(|anchor| DistinguishedName::in_sequence(anchor.subject.as_ref()))
        .collect()
}

/// The server's TLS 1.3 configuration: its certificate chain and key (PEM),
/// client certificates asked for (with the consortium's CAs as hints) and
/// judged later, ALPN `h2`.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    trust: &TrustStore,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    use rustls::pki_types::pem::PemObject as _;
    let chain = crate::pki::certs_from_pem(cert_pem, "the node's TLS certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyClientCertificate {
        hints: root_hints(trust),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{IssueOptions, OrgCa};

    /// Every method of every service, by path.
    fn methods() -> Vec<&'static str> {
        vec![
            "/consort.v1.NodeService/GetStatus",
            "/consort.v1.NodeService/GetBlock",
            "/consort.v1.NodeService/GetCommit",
            "/consort.v1.NodeService/GetValidators",
            "/consort.v1.NodeService/ListEvidence",
            "/consort.v1.NodeService/GetNodeInfo",
            "/consort.v1.TxService/Submit",
            "/consort.v1.TxService/SubmitStream",
            "/consort.v1.TxService/GetTx",
            "/consort.v1.TxService/StreamBlocks",
            "/consort.v1.TxService/StreamTxResults",
            "/consort.v1.QueryService/GetAccount",
            "/consort.v1.QueryService/GetRecord",
            "/consort.v1.SyncService/ListSnapshots",
            "/consort.v1.SyncService/GetManifest",
            "/consort.v1.SyncService/GetChunk",
            "/consort.v1.SyncService/GetLightBlock",
            "/consort.v1.SyncService/StreamBlockRange",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
    }

    /// The expected verdict of one caller on one method: Ok, or the code.
    fn expected(caller: &str, method: &str) -> Result<(), tonic::Code> {
        use tonic::Code::{PermissionDenied, Unauthenticated};
        let open = method.starts_with("/grpc.");
        // A light block (header, commit, validators) is what any client
        // needs to check a proof against a trusted header.
        let sync = method.contains("SyncService") && !method.ends_with("GetLightBlock");
        let operator = method.ends_with("GetNodeInfo");
        match caller {
            _ if open => Ok(()),
            "none" | "stranger" | "expired" => Err(Unauthenticated),
            "client" if sync || operator => Err(PermissionDenied),
            "member" | "node" | "other-admin" if operator => Err(PermissionDenied),
            _ => Ok(()),
        }
    }

    #[test]
    fn every_method_and_role() {
        let org1 = OrgCa::generate("org1").unwrap();
        let org2 = OrgCa::generate("org2").unwrap();
        let impostor = OrgCa::generate("org1").unwrap();
        let trust = TrustStore::new([(org1.org(), org1.cert_pem()), (org2.org(), org2.cert_pem())])
            .unwrap();
        let metrics = Arc::new(NodeMetrics::default());
        // A node of org1.
        let policy = AuthPolicy::new(trust, Some("org1".into()), metrics.clone());
        let now = SystemTime::now();
        let chain = |ca: &OrgCa, role: Role, opts: &IssueOptions| {
            let issued = ca.issue(role, "x", opts).unwrap();
            crate::pki::certs_from_pem(&issued.cert_pem, "t").unwrap()
        };
        let year = IssueOptions::days(365);
        let gone = IssueOptions {
            names: vec![],
            not_before: now - std::time::Duration::from_secs(10 * 86_400),
            not_after: now - std::time::Duration::from_secs(86_400),
        };
        let callers: Vec<(&str, Option<Vec<CertificateDer<'static>>>)> = vec![
            ("none", None),
            ("stranger", Some(chain(&impostor, Role::Admin, &year))),
            ("expired", Some(chain(&org1, Role::Admin, &gone))),
            ("client", Some(chain(&org2, Role::Client, &year))),
            ("member", Some(chain(&org2, Role::Member, &year))),
            ("node", Some(chain(&org2, Role::Node, &year))),
            ("other-admin", Some(chain(&org2, Role::Admin, &year))),
            ("own-admin", Some(chain(&org1, Role::Admin, &year))),
        ];
        let mut failures = Vec::new();
        for (name, certs) in &callers {
            for m in methods() {
                let got = policy
                    .judge(m, certs.as_deref(), now)
                    .map(|_| ())
                    .map_err(|s| {
                        assert!(!s.message().is_empty(), "{name} {m}: no message");
                        s.code()
                    });
                let want = expected(name, m);
                if got != want {
                    failures.push(format!(
                        "{name} calling {m}: got {got:?}, expected {want:?}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // Refusals are counted by reason.
        let counts = metrics.api_refused_counts();
        let of = |r: &str| counts.iter().find(|(k, _)| *k == r).map_or(0, |(_, v)| *v);
        assert!(of("no_certificate") > 0);
        assert!(of("unknown_issuer") > 0);
        assert!(of("expired") > 0);
        assert!(of("forbidden") > 0);
    }

    #[test]
    fn a_refusal_says_which_rule() {
        let org1 = OrgCa::generate("org1").unwrap();
        let trust = TrustStore::new([(org1.org(), org1.cert_pem())]).unwrap();
        let policy = AuthPolicy::new(trust, Some("org1".into()), Arc::new(NodeMetrics::default()));
        let e = policy
            .judge("/consort.v1.TxService/Submit", None, SystemTime::now())
            .unwrap_err();
        assert!(e.message().contains("no client certificate"), "{e:?}");
        let issued = org1
            .issue(Role::Client, "app", &IssueOptions::days(1))
            .unwrap();
        let chain = crate::pki::certs_from_pem(&issued.cert_pem, "t").unwrap();
        let e = policy
            .judge(
                "/consort.v1.SyncService/GetChunk",
                Some(&chain),
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(
            e.message().contains("role client") && e.message().contains("GetChunk"),
            "{e:?}"
        );
    }

    #[test]
    fn certificate_request_names_the_cas_as_der_names() {
        use x509_parser::prelude::FromDer as _;
        let org1 = OrgCa::generate("org1").unwrap();
        let org2 = OrgCa::generate("org2").unwrap();
        let trust = TrustStore::new([(org1.org(), org1.cert_pem()), (org2.org(), org2.cert_pem())])
            .unwrap();
        let hints = root_hints(&trust);
        assert_eq!(hints.len(), 2);
        for (hint, ca) in hints.iter().zip([&org1, &org2]) {
            let der = crate::pki::certs_from_pem(ca.cert_pem(), "ca").unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
            let (rest, name) = x509_parser::x509::X509Name::from_der(hint.as_ref()).unwrap();
            assert!(rest.is_empty());
            assert_eq!(name.as_raw(), cert.subject().as_raw());
        }
    }
}
