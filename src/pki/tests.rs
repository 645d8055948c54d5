use super::*;

fn store(cas: &[&OrgCa]) -> TrustStore {
    TrustStore::new(cas.iter().map(|c| (c.org(), c.cert_pem()))).unwrap()
}

fn chain(issued: &Issued) -> Vec<CertificateDer<'static>> {
    certs_from_pem(&issued.cert_pem, "test").unwrap()
}

#[test]
fn a_certificate_is_known_by_its_organization_and_role() {
    let org1 = OrgCa::generate("org1").unwrap();
    let org2 = OrgCa::generate("org2").unwrap();
    let trust = store(&[&org1, &org2]);
    let now = SystemTime::now();
    for role in Role::ALL {
        let issued = org2.issue(role, "app-7", &IssueOptions::days(30)).unwrap();
        let id = trust.identify(&chain(&issued), now).unwrap();
        assert_eq!(
            (id.org.as_str(), id.role, id.name.as_str()),
            ("org2", role, "app-7")
        );
        let info = describe(&chain(&issued)[0]).unwrap();
        assert_eq!(info.serial, id.serial);
        assert!((29..=30).contains(&info.days_left(now)), "{info:?}");
        assert!(!info.is_ca);
    }
    let ca = describe(&certs_from_pem(org1.cert_pem(), "ca").unwrap()[0]).unwrap();
    assert!(ca.is_ca);
    assert_eq!(ca.org.as_deref(), Some("org1"));
}

#[test]
fn issued_certificates_are_der() {
    // Strict parsers (BoringSSL in grpcio, Python's cryptography) refuse a
    // DEFAULT value written out, such as basic constraints with cA FALSE.
    let org = OrgCa::generate("org1").unwrap();
    for role in Role::ALL {
        let issued = org.issue(role, "app", &IssueOptions::days(30)).unwrap();
        let der = chain(&issued).remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let bc: Vec<_> = cert
            .extensions()
            .iter()
            .filter(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS)
            .collect();
        assert_eq!(bc.len(), 1, "{role:?}");
        assert!(bc[0].critical);
        assert_eq!(
            bc[0].value,
            &[0x30, 0x00],
            "{role:?}: CA:FALSE as DER has it"
        );
    }
}

#[test]
fn refusals_say_why() {
    let org1 = OrgCa::generate("org1").unwrap();
    let stranger = OrgCa::generate("org1").unwrap(); // same name, another key
    let trust = store(&[&org1]);
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);

    assert_eq!(trust.identify(&[], now), Err(AuthError::NoCertificate));

    let foreign = stranger
        .issue(Role::Client, "x", &IssueOptions::days(30))
        .unwrap();
    assert_eq!(
        trust.identify(&chain(&foreign), now),
        Err(AuthError::UnknownIssuer)
    );

    let old = IssueOptions {
        names: vec![],
        not_before: now - 10 * day,
        not_after: now - day,
    };
    let expired = org1.issue(Role::Client, "x", &old).unwrap();
    assert!(matches!(
        trust.identify(&chain(&expired), now),
        Err(AuthError::Expired { .. })
    ));

    let later = IssueOptions {
        names: vec![],
        not_before: now + day,
        not_after: now + 10 * day,
    };
    let early = org1.issue(Role::Client, "x", &later).unwrap();
    assert!(matches!(
        trust.identify(&chain(&early), now),
        Err(AuthError::NotYetValid { .. })
    ));

    // A CA certificate is no client certificate.
    let ca_chain = certs_from_pem(org1.cert_pem(), "ca").unwrap();
    assert!(matches!(
        trust.identify(&ca_chain, now),
        Err(AuthError::Invalid(_) | AuthError::UnknownIssuer)
    ));
}

#[test]
fn a_ca_round_trips_through_pem_and_keeps_issuing() {
    let org = OrgCa::generate("acme").unwrap();
    let again = OrgCa::from_pem("acme", org.cert_pem(), &org.key_pem()).unwrap();
    let trust = store(&[&org]);
    let issued = again
        .issue(
            Role::Node,
            "node0",
            &IssueOptions::days(1).with_names(vec!["localhost".into(), "127.0.0.1".into()]),
        )
        .unwrap();
    let id = trust.identify(&chain(&issued), SystemTime::now()).unwrap();
    assert_eq!(id.role, Role::Node);
    let info = describe(&chain(&issued)[0]).unwrap();
    assert_eq!(
        info.names,
        vec!["localhost".to_string(), "127.0.0.1".into()]
    );
    // Under another organization's name it is refused.
    assert!(OrgCa::from_pem("other", org.cert_pem(), &org.key_pem()).is_err());
    assert!(certs_from_pem("not pem", "x").is_err());
}
