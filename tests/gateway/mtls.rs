//! Mutual TLS on the listener (`listen.client_auth`) and the audit record's `user_id` taken
//! from the verified client certificate's subject (`audit.user_id.source: client_cert`).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::common::*;

/// A client CA and one client certificate it issued: (CA PEM, chain PEM, key PEM).
fn client_pki(ca_name: &str, cn: &str, org: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (
        ca.pem(),
        format!("{}{}", cert.pem(), ca.pem()),
        key.serialize_pem(),
    )
}

fn mtls_gateway(up: &RecordingUpstream, ca_file: &std::path::Path, required: bool) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.listen_extra = vec![
        "  client_auth:".into(),
        format!("    ca_file: \"{}\"", ca_file.display()),
        format!("    required: {required}"),
    ];
    o.audit_extra = vec!["  user_id:".into(), "    source: client_cert".into()];
    Gateway::start(o)
}

async fn get(c: &reqwest::Client, gw: &Gateway) -> Result<(u16, String), reqwest::Error> {
    let r = c
        .get(gw.url("/fhir/Patient/example"))
        .header(AUDIT, "mtls")
        .send()
        .await?;
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Ok((status, id))
}

#[tokio::test]
async fn a_required_client_certificate_names_the_audit_user() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, chain, key) = client_pki("Clinic A client CA", "dr.alice", "Clinic A");
    let (_, rogue_chain, rogue_key) = client_pki("Rogue CA", "mallory", "Nowhere");
    let ca_file = pki.path().join("client-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let up = RecordingUpstream::start();
    let mut gw = mtls_gateway(&up, &ca_file, true);

    let with_cert = client_with_identity(&gw.ca_pem_path(), false, Some((&chain, &key)));
    let (status, id) = get(&with_cert, &gw).await.expect("mTLS request");
    assert_eq!(status, 200);

    // No certificate, or one from a CA the gateway does not trust: no handshake, nothing sent.
    let requests_before = up.requests().len();
    assert!(
        get(&gw.client(false), &gw).await.is_err(),
        "served without a client certificate"
    );
    let rogue = client_with_identity(&gw.ca_pem_path(), false, Some((&rogue_chain, &rogue_key)));
    assert!(
        get(&rogue, &gw).await.is_err(),
        "served a certificate from an untrusted CA"
    );
    up.quiesce();
    assert_eq!(up.requests().len(), requests_before, "{}", up.describe());

    assert!(gw.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(10)));
    let records = gw.audit_records();
    let user = audit_record_of(&records, &id)["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        user.contains("CN=dr.alice") && user.contains("O=Clinic A"),
        "user_id should be the certificate subject: {user}"
    );
}

#[tokio::test]
async fn an_optional_client_certificate_is_used_when_presented() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, chain, key) = client_pki("Clinic B client CA", "integration-engine", "Clinic B");
    let ca_file = pki.path().join("client-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let up = RecordingUpstream::start();
    let mut gw = mtls_gateway(&up, &ca_file, false);

    let (status, anonymous_id) = get(&gw.client(false), &gw).await.expect("no certificate");
    assert_eq!(status, 200);
    let with_cert = client_with_identity(&gw.ca_pem_path(), true, Some((&chain, &key)));
    let (status, named_id) = get(&with_cert, &gw).await.expect("with certificate");
    assert_eq!(status, 200);

    assert!(gw.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(10)));
    let records = gw.audit_records();
    assert_eq!(
        audit_record_of(&records, &anonymous_id)["user_id"],
        "anonymous"
    );
    let user = audit_record_of(&records, &named_id)["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(user.contains("CN=integration-engine"), "{user}");
}
