//! TLS identities and peer verification.
//!
//! Every node has an ed25519 node key; its TLS certificate is self-signed with
//! that key and carries nothing else of value. A peer's identity is the key in its
//! certificate. Both sides of a connection (mutual TLS, TLS 1.3 only, ALPN
//! [`ALPN`]) run the same check in a custom rustls verifier:
//!
//! 1. the certificate is a well-formed X.509 certificate, valid now, whose
//!    self-signature verifies (webpki, with the certificate as its own trust
//!    anchor);
//! 2. its key is ed25519 and is in the permitted set, is not banned, is not our
//!    own, and, when we dialed a specific peer, is that peer's key;
//! 3. the handshake signature (TLS 1.3 `CertificateVerify`, which covers the
//!    transcript) is an ed25519 signature by that key, checked with the same
//!    rule as votes ([`crate::types::PublicKey::verify`]).
//!
//! A key that fails 2 is refused during the handshake, before any application
//! data is exchanged. Session resumption is disabled, so every connection runs
//! the full check against the current permitted set and bans.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerIncompatible,
    PeerMisbehaved, SignatureScheme,
};

use crate::types::{Keypair, PublicKey, Signature};

/// The application protocol negotiated on every connection. A peer speaking
/// another version of the wire protocol fails the handshake.
pub const ALPN: &[u8] = b"consort/1";

/// The TLS server name clients send. Peers are identified by key, not by name.
pub const SERVER_NAME: &str = "consort";

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the
/// 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why TLS could not be set up, or a certificate names no usable key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The node key could not be encoded.
    #[error("cannot encode the node key: {0}")]
    Key(String),
    /// rcgen could not make the certificate.
    #[error("cannot make the node certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// QUIC cannot use the TLS configuration.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
    /// A peer certificate is malformed or its key is not an ed25519 key.
    #[error("peer certificate: {0}")]
    PeerCertificate(String),
}

/// A node's TLS identity: the certificate self-signed with its node key.
#[derive(Debug)]
pub struct Identity {
    public: PublicKey,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// Makes the self-signed certificate of `key`.
    pub fn new(key: &Keypair) -> Result<Identity, TlsError> {
        let signing = ed25519_dalek::SigningKey::from_bytes(&key.seed());
        let pkcs8 = signing
            .to_pkcs8_der()
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let rc_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("consort node {}", key.public().to_hex()),
        );
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&rc_key)?;
        let cert = cert.der().clone();
        // The certificate must name the node key, or no peer would accept it.
        let named = key_of_cert(&cert)?;
        if named != key.public() {
            return Err(TlsError::PeerCertificate(
                "generated certificate names another key".into(),
            ));
        }
        Ok(Identity {
            public: key.public(),
            cert,
            key: der,
        })
    }

    /// The node key the certificate names.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The DER certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// The ed25519 key a certificate names. Checks the key's encoding only, not the
/// certificate's signature (see [`verify_certificate`]).
pub fn key_of_cert(cert: &CertificateDer<'_>) -> Result<PublicKey, TlsError> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|e| TlsError::PeerCertificate(e.to_string()))?;
    let spki = parsed.subject_public_key_info();
    let raw = spki.as_ref();
    match raw.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) => {
            PublicKey::from_bytes(key).map_err(|e| TlsError::PeerCertificate(e.to_string()))
        }
        None => Err(TlsError::PeerCertificate("key is not ed25519".into())),
    }
}

/// Checks that a certificate is well-formed, valid at `now` and signed by its
/// own key, and returns that key.
pub fn verify_certificate(
    cert: &CertificateDer<'_>,
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<PublicKey, rustls::Error> {
    let key = key_of_cert(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let ee = webpki::EndEntityCert::try_from(cert).map_err(pki_error)?;
    let anchor = webpki::anchor_from_trusted_cert(cert).map_err(pki_error)?;
    ee.verify_for_usage(
        &[webpki::ring::ED25519],
        &[anchor],
        &[],
        now,
        usage,
        None,
        None,
    )
    .map_err(pki_error)?;
    Ok(key)
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

/// Why a key is refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not in the permitted set.
    NotPermitted,
    /// Banned until the given instant.
    Banned,
    /// Our own key (a node dialing itself).
    OwnKey,
    /// Not the peer we dialed.
    Unexpected,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::NotPermitted => "key not permitted",
            Refusal::Banned => "key banned",
            Refusal::OwnKey => "our own key",
            Refusal::Unexpected => "not the key of the dialed peer",
        }
    }
}

/// Who may connect: the permitted set, minus our own key and the banned keys.
/// Shared by the verifiers of every connection and the runtime.
#[derive(Debug)]
pub(crate) struct PeerGate {
    local: PublicKey,
    permitted: HashSet<PublicKey>,
    bans: Mutex<HashMap<PublicKey, Instant>>,
    refused: AtomicU64,
}

impl PeerGate {
    pub(crate) fn new(local: PublicKey, permitted: HashSet<PublicKey>) -> PeerGate {
        PeerGate {
            local,
            permitted,
            bans: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `key` may hold a connection now.
    pub(crate) fn check(&self, key: &PublicKey) -> Result<(), Refusal> {
        if *key == self.local {
            return Err(Refusal::OwnKey);
        }
        if !self.permitted.contains(key) {
            return Err(Refusal::NotPermitted);
        }
        if self.banned_until(key).is_some() {
            return Err(Refusal::Banned);
        }
        Ok(())
    }

    pub(crate) fn is_permitted(&self, key: &PublicKey) -> bool {
        self.permitted.contains(key)
    }

    /// Refuses `key` for `ban` from now (extending, never shortening, a ban).
    pub(crate) fn ban(&self, key: PublicKey, ban: Duration) {
        let Some(until) = Instant::now().checked_add(ban) else {
            return;
        };
        let mut bans = self.bans.lock();
        let now = Instant::now();
        bans.retain(|_, t| *t > now);
        let entry = bans.entry(key).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    /// When the ban of `key` ends, if it is banned now.
    pub(crate) fn banned_until(&self, key: &PublicKey) -> Option<Instant> {
        let bans = self.bans.lock();
        bans.get(key).copied().filter(|t| *t > Instant::now())
    }

    /// Handshakes refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn refuse(&self, key: Option<&PublicKey>, why: &str) -> rustls::Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        match key {
            Some(k) => tracing::info!(peer = %k.short(), reason = why, "refused TLS handshake"),
            None => tracing::info!(reason = why, "refused TLS handshake"),
        }
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    }
}

/// The verifier of both sides: see the module documentation.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    gate: Arc<PeerGate>,
    /// When dialing: the key the peer must present.
    expect: Option<PublicKey>,
}

impl PeerVerifier {
    fn check_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<PublicKey, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(self
                .gate
                .refuse(None, "certificate chain has intermediates"));
        }
        let key = match verify_certificate(end_entity, now, usage) {
            Ok(k) => k,
            Err(e) => {
                self.gate.refuse(None, &format!("bad certificate: {e}"));
                return Err(e);
            }
        };
        if let Err(r) = self.gate.check(&key) {
            return Err(self.gate.refuse(Some(&key), r.as_str()));
        }
        if self.expect.is_some_and(|e| e != key) {
            return Err(self.gate.refuse(Some(&key), Refusal::Unexpected.as_str()));
        }
        Ok(key)
    }

    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        let key = key_of_cert(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let sig = Signature::from_slice(dss.signature())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
        key.verify(message, &sig)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_cert(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_cert(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC server side: requires a client certificate that passes the gate.
pub(crate) fn server_config(
    id: &Identity,
    gate: Arc<PeerGate>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let verifier = Arc::new(PeerVerifier { gate, expect: None });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every handshake checks the certificate against the gate.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(cfg))
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The QUIC client side for dialing `expect` (or any permitted key if `None`).
pub(crate) fn client_config(
    id: &Identity,
    gate: Arc<PeerGate>,
    expect: Option<PublicKey>,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
    let verifier = Arc::new(PeerVerifier { gate, expect });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(cfg))
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The key of the peer of an established connection, from the certificate it
/// presented, and a check that the negotiated protocol is ours.
pub(crate) fn peer_of(conn: &quinn::Connection) -> Result<PublicKey, TlsError> {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        return Err(TlsError::PeerCertificate(
            "application protocol is not consort/1".into(),
        ));
    }
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::PeerCertificate("no certificate".into()))?;
    match certs.first() {
        Some(cert) => key_of_cert(cert),
        None => Err(TlsError::PeerCertificate("no certificate".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn certificate_names_the_node_key_and_verifies() {
        let k = Keypair::from_seed([1; 32]);
        let id = Identity::new(&k).unwrap();
        assert_eq!(key_of_cert(id.certificate()).unwrap(), k.public());
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            assert_eq!(
                verify_certificate(id.certificate(), now(), usage).unwrap(),
                k.public()
            );
        }
        // The same key always gives a certificate naming the same key.
        let again = Identity::new(&k).unwrap();
        assert_eq!(key_of_cert(again.certificate()).unwrap(), k.public());
    }

    #[test]
    fn tampered_or_foreign_certificates_are_refused() {
        let k = Keypair::from_seed([2; 32]);
        let id = Identity::new(&k).unwrap();
        // Flip a bit of the signature (the last bytes of the DER).
        let mut der = id.certificate().to_vec();
        let n = der.len();
        der[n - 1] ^= 1;
        let bad = CertificateDer::from(der);
        assert!(verify_certificate(&bad, now(), webpki::KeyUsage::server_auth()).is_err());

        // A certificate for a P-256 key names no ed25519 key.
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&p256)
            .unwrap();
        assert!(key_of_cert(cert.der()).is_err());
        assert!(key_of_cert(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn gate_refuses_unpermitted_own_banned_and_unexpected_keys() {
        let me = Keypair::from_seed([1; 32]);
        let friend = Keypair::from_seed([2; 32]);
        let other = Keypair::from_seed([3; 32]);
        let stranger = Keypair::from_seed([4; 32]);
        let permitted: HashSet<PublicKey> = [me.public(), friend.public(), other.public()]
            .into_iter()
            .collect();
        let gate = Arc::new(PeerGate::new(me.public(), permitted));
        let v = PeerVerifier {
            gate: gate.clone(),
            expect: None,
        };
        let cert = |k: &Keypair| Identity::new(k).unwrap().cert;
        let usage = webpki::KeyUsage::client_auth;
        assert!(v.check_cert(&cert(&friend), &[], now(), usage()).is_ok());
        assert!(v.check_cert(&cert(&stranger), &[], now(), usage()).is_err());
        assert!(v.check_cert(&cert(&me), &[], now(), usage()).is_err());
        gate.ban(friend.public(), Duration::from_secs(60));
        assert!(v.check_cert(&cert(&friend), &[], now(), usage()).is_err());
        assert!(v.check_cert(&cert(&other), &[], now(), usage()).is_ok());
        let dialing = PeerVerifier {
            gate: gate.clone(),
            expect: Some(friend.public()),
        };
        assert!(
            dialing
                .check_cert(&cert(&other), &[], now(), usage())
                .is_err()
        );
        assert_eq!(gate.refused(), 4);
    }

    #[test]
    fn handshake_signature_must_be_ed25519_by_the_certificate_key() {
        let k = Keypair::from_seed([5; 32]);
        let other = Keypair::from_seed([6; 32]);
        let gate = Arc::new(PeerGate::new(other.public(), HashSet::new()));
        let v = PeerVerifier { gate, expect: None };
        let cert = Identity::new(&k).unwrap().cert;
        let msg = b"transcript hash context";
        // DigitallySignedStruct has no public constructor; build it from its
        // TLS encoding: scheme (2 bytes), then a 2-byte length and the signature.
        let dss = |scheme: u16, sig: &[u8]| {
            let mut enc = scheme.to_be_bytes().to_vec();
            enc.extend_from_slice(&(sig.len() as u16).to_be_bytes());
            enc.extend_from_slice(sig);
            <DigitallySignedStruct as rustls::internal::msgs::codec::Codec>::read_bytes(&enc)
                .unwrap()
        };
        let good = k.sign(msg);
        assert!(v.check_signature(msg, &cert, &dss(0x0807, &good.0)).is_ok());
        assert!(
            v.check_signature(b"other", &cert, &dss(0x0807, &good.0))
                .is_err()
        );
        let forged = other.sign(msg);
        assert!(
            v.check_signature(msg, &cert, &dss(0x0807, &forged.0))
                .is_err()
        );
        // ECDSA P-256 scheme code: refused whatever the bytes.
        assert!(
            v.check_signature(msg, &cert, &dss(0x0403, &good.0))
                .is_err()
        );
    }
}
