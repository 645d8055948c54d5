//! The consortium's PKI for the gRPC API.
//!
//! Each organization has a certificate authority: an ECDSA P-256 key and a
//! self-signed CA certificate, listed in the genesis (`organizations`). It
//! issues X.509 certificates, ECDSA P-256 as well (what grpcio, Go, Java and
//! Node accept as client certificates), to its applications, member nodes,
//! operators and its nodes' gRPC servers. A certificate says:
//!
//! - its **organization**: the CA that signed it (its subject `O` must name
//!   the same organization);
//! - its **role**: the subject's organizational unit, `OU=client`,
//!   `OU=member`, `OU=admin` or `OU=node` (a node's server certificate);
//! - its name: the subject's common name, for logs.
//!
//! Any tool that issues certificates (openssl, cfssl, a corporate CA's
//! subordinate) can issue consort certificates by following these rules;
//! `consort certs issue` does it from an organization's CA key.
//!
//! [`TrustStore::identify`] is the one place a presented certificate is
//! judged: signed by an organization's CA, valid now, client-auth usage, a
//! role it understands.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, UnixTime};

/// Days a CA certificate is valid when generated.
pub const CA_DAYS: u64 = 3650;
/// Days an issued certificate is valid unless said otherwise.
pub const DEFAULT_DAYS: u64 = 365;
/// Largest PEM file read (a certificate or a bundle of a consortium's CAs).
pub const MAX_PEM_BYTES: usize = 1024 * 1024;

/// What a certificate's holder may do (the subject's `OU`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An application: submit transactions, query state, follow blocks.
    Client,
    /// A member node: everything a client may, and the sync service
    /// (snapshots, chunks, block ranges, light blocks).
    Member,
    /// An operator of its organization: everything, and the operator methods
    /// of its own organization's nodes.
    Admin,
    /// A node's gRPC server certificate (and its identity when it syncs from
    /// other nodes: a node may do what a member may).
    Node,
}

impl Role {
    /// Every role, in order of what they may do.
    pub const ALL: [Role; 4] = [Role::Client, Role::Member, Role::Node, Role::Admin];

    /// The `OU` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Node => "node",
        }
    }

    /// Parses an `OU` value.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a certificate could not be made, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("cannot issue the certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A PEM file holds no certificate or key of the expected kind.
    #[error("{what}: {reason}")]
    Pem {
        /// What was read.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate does not parse as X.509.
    #[error("not an X.509 certificate: {0}")]
    Parse(String),
}

/// Why a presented certificate is not trusted, each answered with its own
/// gRPC status message and counted under its own metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No client certificate was presented.
    #[error(
        "no client certificate: this node serves only holders of a certificate of a consortium organization"
    )]
    NoCertificate,
    /// No organization's CA signed it.
    #[error(
        "the client certificate was not issued by the CA of any organization of the consortium"
    )]
    UnknownIssuer,
    /// Its validity ended.
    #[error("the client certificate expired at {not_after} (unix seconds)")]
    Expired {
        /// End of validity, seconds since the epoch.
        not_after: u64,
    },
    /// Its validity has not begun.
    #[error("the client certificate is not valid before {not_before} (unix seconds)")]
    NotYetValid {
        /// Start of validity, seconds since the epoch.
        not_before: u64,
    },
    /// It parses, but breaks a rule (usage, organization name, role).
    #[error("the client certificate is not acceptable: {0}")]
    Invalid(String),
    /// Its role does not allow the method.
    #[error("role {role} of organization {org} may not call {method}")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// The caller's organization.
        org: String,
        /// The method called.
        method: String,
    },
}

impl AuthError {
    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NoCertificate => "no_certificate",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::Expired { .. } => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::Invalid(_) => "invalid",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }

    /// Every label, for the metric's zero rows.
    pub const REASONS: [&'static str; 6] = [
        "no_certificate",
        "unknown_issuer",
        "expired",
        "not_yet_valid",
        "invalid",
        "forbidden",
    ];
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// What to put in an issued certificate besides its role and organization.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// Host names and IP addresses (subject alternative names): what a
    /// client connecting to a server with this certificate may call it.
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl IssueOptions {
    /// Valid from an hour ago (clocks drift) for `days`.
    pub fn days(days: u64) -> IssueOptions {
        let now = SystemTime::now();
        IssueOptions {
            names: vec![],
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }

    /// With these subject alternative names.
    pub fn with_names(mut self, names: Vec<String>) -> IssueOptions {
        self.names = names;
        self
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    // Positive, and never with a leading zero byte to strip.
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&b)
}

/// An organization's certificate authority: its certificate and key.
pub struct OrgCa {
    org: String,
    cert_pem: String,
    key: KeyPair,
}

impl fmt::Debug for OrgCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgCa({})", self.org)
    }
}

impl OrgCa {
    /// A new CA for `org`, valid for [`CA_DAYS`].
    pub fn generate(org: &str) -> Result<OrgCa, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{org} consort CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let o = IssueOptions::days(CA_DAYS);
        params.not_before = offset(o.not_before);
        params.not_after = offset(o.not_after);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(OrgCa {
            org: org.to_string(),
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA of `org` from its certificate and key (PEM).
    pub fn from_pem(org: &str, cert_pem: &str, key_pem: &str) -> Result<OrgCa, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Pem {
            what: format!("CA key of {org}"),
            reason: e.to_string(),
        })?;
        let der = first_cert(cert_pem, &format!("CA certificate of {org}"))?;
        let info = describe(&der)?;
        if !info.is_ca {
            return Err(PkiError::Pem {
                what: format!("CA certificate of {org}"),
                reason: "not a CA certificate".into(),
            });
        }
        if info.org.as_deref() != Some(org) {
            return Err(PkiError::Pem {
                what: format!("CA certificate of {org}"),
                reason: format!(
                    "it is the CA of organization {:?}",
                    info.org.unwrap_or_default()
                ),
            });
        }
        Ok(OrgCa {
            org: org.to_string(),
            cert_pem: cert_pem.to_string(),
            key,
        })
    }

    /// The organization's name.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PKCS#8 PEM), for the organization's safe.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate for `name` in `role`, with a fresh key.
    pub fn issue(&self, role: Role, name: &str, opts: &IssueOptions) -> Result<Issued, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(opts.names.clone())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.org.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name.push(DnType::CommonName, name);
        // Basic constraints CA:FALSE, critical, in DER: an empty SEQUENCE (cA
        // is DEFAULT FALSE, so DER leaves it out). rcgen's `ExplicitNoCa`
        // writes the FALSE out, which BoringSSL (grpcio, Chromium), Python's
        // cryptography and other strict parsers refuse.
        params.is_ca = IsCa::NoCa;
        let mut not_ca = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
        not_ca.set_criticality(true);
        params.custom_extensions.push(not_ca);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            // A node's certificate serves TLS and also identifies the node
            // when it syncs from another one.
            Role::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = offset(opts.not_before);
        params.not_after = offset(opts.not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The certificates of a PEM text, in order.
pub fn certs_from_pem(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    use rustls::pki_types::pem::PemObject as _;
    if pem.len() > MAX_PEM_BYTES {
        return Err(PkiError::Pem {
            what: what.into(),
            reason: format!("larger than {MAX_PEM_BYTES} bytes"),
        });
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Pem {
            what: what.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: what.into(),
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn first_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, PkiError> {
    certs_from_pem(pem, what).map(|mut v| v.swap_remove(0))
}

/// What a certificate says, as `consort certs show` prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Subject `O`.
    pub org: Option<String>,
    /// Subject `OU` (the role, for a consort certificate).
    pub role: Option<String>,
    /// Subject `CN`.
    pub name: Option<String>,
    /// Issuer `O`.
    pub issuer_org: Option<String>,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Subject alternative names (DNS names and IP addresses).
    pub names: Vec<String>,
}

impl CertInfo {
    /// Whole days from `now` to the end of validity (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        (self.not_after as i64 - now).div_euclid(86_400)
    }
}

fn attr(
    name: &x509_parser::x509::X509Name<'_>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> Option<String> {
    name.iter_by_oid(oid)
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

/// Reads what a certificate says (no trust decision).
pub fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, PkiError> {
    use x509_parser::oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let subject = cert.subject();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
                    16 => {
                        let a: [u8; 16] = (*b).try_into().unwrap_or([0; 16]);
                        names.push(std::net::Ipv6Addr::from(a).to_string())
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let secs = |t: x509_parser::time::ASN1Time| t.timestamp().max(0) as u64;
    Ok(CertInfo {
        org: attr(subject, &OID_X509_ORGANIZATION_NAME),
        role: attr(subject, &OID_X509_ORGANIZATIONAL_UNIT),
        name: attr(subject, &OID_X509_COMMON_NAME),
        issuer_org: attr(cert.issuer(), &OID_X509_ORGANIZATION_NAME),
        serial: hex::encode(cert.raw_serial()),
        not_before: secs(cert.validity().not_before),
        not_after: secs(cert.validity().not_after),
        is_ca: cert.is_ca(),
        names,
    })
}

/// Who a trusted certificate belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Its organization.
    pub org: String,
    /// Its role.
    pub role: Role,
    /// Its common name.
    pub name: String,
    /// Serial number, hex (for a deny list, and logs).
    pub serial: String,
    /// End of validity, unix seconds: long streams end there.
    pub not_after: u64,
}

/// One organization's CA as the trust store keeps it.
#[derive(Clone, Debug)]
struct Anchor {
    org: String,
    der: CertificateDer<'static>,
}

/// The consortium's CAs: what [`TrustStore::identify`] checks a client
/// certificate against.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    anchors: Vec<Anchor>,
}

impl TrustStore {
    /// A store of `(organization, CA certificate PEM)` pairs.
    pub fn new<'a>(
        orgs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TrustStore, PkiError> {
        let mut anchors = Vec::new();
        for (org, pem) in orgs {
            let der = first_cert(pem, &format!("CA certificate of {org}"))?;
            anchors.push(Anchor {
                org: org.to_string(),
                der,
            });
        }
        Ok(TrustStore { anchors })
    }

    /// Whether no organization is known.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The organizations and their CA certificates (DER), for a TLS config.
    pub fn ca_ders(&self) -> impl Iterator<Item = (&str, &CertificateDer<'static>)> {
        self.anchors.iter().map(|a| (a.org.as_str(), &a.der))
    }

    /// Judges a presented chain (end-entity first) at `now`: signed by the CA
    /// of an organization, valid now, for client authentication, naming that
    /// organization and a known role.
    pub fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let Some(ee_der) = chain.first() else {
            return Err(AuthError::NoCertificate);
        };
        let ee = webpki::EndEntityCert::try_from(ee_der)
            .map_err(|e| AuthError::Invalid(format!("{e:?}")))?;
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let intermediates = &chain[1..];
        let mut last = AuthError::UnknownIssuer;
        for a in &self.anchors {
            let anchors = match webpki::anchor_from_trusted_cert(&a.der) {
                Ok(t) => [t],
                Err(_) => continue,
            };
            let verified = ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                intermediates,
                time,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            );
            match verified {
                Ok(_) => return self.identity_of(ee_der, &a.org),
                // Named after this CA but not signed by its key: an
                // impostor, or another consortium's CA of the same name.
                Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey) => {
                }
                Err(webpki::Error::CertExpired { not_after, .. }) => {
                    last = AuthError::Expired {
                        not_after: not_after.as_secs(),
                    };
                }
                Err(webpki::Error::CertNotValidYet { not_before, .. }) => {
                    last = AuthError::NotYetValid {
                        not_before: not_before.as_secs(),
                    };
                }
                Err(e) => last = AuthError::Invalid(format!("{e:?}")),
            }
        }
        Err(last)
    }

    fn identity_of(&self, der: &CertificateDer<'_>, org: &str) -> Result<Identity, AuthError> {
        let info = describe(der).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if info.org.as_deref() != Some(org) {
            return Err(AuthError::Invalid(format!(
                "it names organization {:?} but was issued by the CA of {org}",
                info.org.unwrap_or_default()
            )));
        }
        let role = info.role.as_deref().and_then(Role::parse).ok_or_else(|| {
            AuthError::Invalid(format!(
                "its role (subject OU) {:?} is not one of client, member, admin, node",
                info.role.clone().unwrap_or_default()
            ))
        })?;
        Ok(Identity {
            org: org.to_string(),
            role,
            name: info.name.unwrap_or_default(),
            serial: info.serial,
            not_after: info.not_after,
        })
    }
}

/// How a client reaches a node over TLS: the consortium's CAs (to trust the
/// node's server certificate) and, to be served, its own certificate and key.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM bundle of the CAs a node's certificate may be issued by.
    pub ca_pem: String,
    /// The client's certificate and key (PEM), if it has one.
    pub identity: Option<(String, String)>,
}

impl ClientTls {
    /// Reads the CA bundle, and the certificate and key if given.
    pub fn load(
        ca: &std::path::Path,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<ClientTls, PkiError> {
        let read = |p: &std::path::Path| -> Result<String, PkiError> {
            let what = p.display().to_string();
            let meta = std::fs::metadata(p).map_err(|e| PkiError::Pem {
                what: what.clone(),
                reason: e.to_string(),
            })?;
            if meta.len() > MAX_PEM_BYTES as u64 {
                return Err(PkiError::Pem {
                    what,
                    reason: format!("larger than {MAX_PEM_BYTES} bytes"),
                });
            }
            std::fs::read_to_string(p).map_err(|e| PkiError::Pem {
                what,
                reason: e.to_string(),
            })
        };
        let ca_pem = read(ca)?;
        certs_from_pem(&ca_pem, &ca.display().to_string())?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(PkiError::Pem {
                    what: "client identity".into(),
                    reason: "a certificate needs its key, and a key its certificate".into(),
                });
            }
        };
        Ok(ClientTls { ca_pem, identity })
    }

    /// The tonic TLS settings to reach the node named `host` (a DNS name or
    /// an IP address, which its certificate must list).
    pub fn tonic_config(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .domain_name(host);
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }

    /// A tonic endpoint for `addr` (`host:port`) over TLS.
    pub fn endpoint(&self, addr: &str) -> Result<tonic::transport::Endpoint, String> {
        let host = host_of(addr);
        tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(self.tonic_config(&host))
            .map_err(|e| e.to_string())
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
pub fn host_of(addr: &str) -> String {
    let addr = addr
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests;
