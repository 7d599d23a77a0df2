//! A throwaway certificate authority for tests: server certificates for loopback, client certificates whose
//! subject Kubernetes reads as user (CN) and groups (O).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").field("key_pem", &"[redacted]").finish_non_exhaustive()
    }
}

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(2);
}

impl TestCa {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let key = KeyPair::generate().expect("generate a CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as a cluster's `caData`: base64 of the PEM.
    pub fn ca_data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_pem)
    }

    /// A server certificate for `names` (DNS names or IP addresses), e.g. `["127.0.0.1", "localhost"]`.
    pub fn server_cert(&self, names: &[&str]) -> CertifiedKey {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(params)
    }

    /// A client certificate for Kubernetes user `user` in `groups`, valid two days.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> CertifiedKey {
        self.client_cert_until(user, groups, std::time::SystemTime::now() + std::time::Duration::from_secs(2 * 86400))
    }

    /// A client certificate for `user` in `groups` that expires at `not_after` (a short-lived one, as a
    /// Pinniped Concierge issues).
    pub fn client_cert_until(&self, user: &str, groups: &[&str], not_after: std::time::SystemTime) -> CertifiedKey {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params);
        params.not_after = time::OffsetDateTime::from(not_after);
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the certificate");
        CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    fn sign(&self, mut params: CertificateParams) -> CertifiedKey {
        validity(&mut params);
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the certificate");
        CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// A new CA named `ca_name` and TLS settings for a server on `127.0.0.1` with a certificate it signed: what every
/// HTTPS fake of the testkit serves with (clients trust the CA).
pub fn loopback_tls(ca_name: &str) -> (TestCa, tokio_rustls::TlsAcceptor) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new(ca_name);
    let cert = ca.server_cert(&["127.0.0.1"]);
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).expect("tls");
    (ca, tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// A fresh ECDSA P-256 key pair, e.g. for signing service-account tokens: (private key as PKCS#8 PEM, public
/// key PEM).
pub fn signing_key_pem() -> (String, String) {
    let key = KeyPair::generate().expect("generate a key");
    (key.serialize_pem(), key.public_key_pem())
}

/// `bytes` random bytes as hex, from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut file = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut file, &mut buf).expect("random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
