//! The coordinator's certificate authority: created on first start in the
//! data dir (ECDSA P-256, key 0600), it signs the coordinator's own server
//! certificate and every device certificate issued at enrollment.

use std::path::{Path, PathBuf};

use picket_common::limits::{device_san, COORDINATOR_SERVER_NAME};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::fsutil::{read_secret, write_file_0600};

/// How long a device certificate is valid.
/// Device certificates live this long by default; agents renew them over
/// their session at two thirds of their life.
pub const DEVICE_CERT_VALIDITY: Duration = Duration::days(90);
const CA_VALIDITY: Duration = Duration::days(3650);
const SERVER_CERT_VALIDITY: Duration = Duration::days(397);
/// Reissue the server certificate at start when it has less than this left.
const SERVER_CERT_RENEW_BEFORE: Duration = Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate authority in {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate signing request rejected: {0}")]
    BadCsr(String),
}

/// A device certificate issued from a CSR.
pub struct IssuedCert {
    pub der: CertificateDer<'static>,
    pub serial_hex: String,
    pub not_after_ms: i64,
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA key again, for signing offboarding tokens.
    key: KeyPair,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl Ca {
    /// Load the CA from `dir`, creating it (and the server certificate) on
    /// first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let io = |source| PkiError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.pem");
        if !ca_key_path.exists() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, "Picket CA");
            params.distinguished_name.push(DnType::OrganizationName, "Picket");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
            params.not_after = OffsetDateTime::now_utc() + CA_VALIDITY;
            let cert = params.self_signed(&key)?;
            write_file_0600(&ca_key_path, key.serialize_pem().as_bytes()).map_err(io)?;
            std::fs::write(&ca_cert_path, cert.pem()).map_err(io)?;
            tracing::info!(path = %ca_cert_path.display(), "created certificate authority");
        }
        let key_pem = read_secret(&ca_key_path).map_err(io)?;
        let key = KeyPair::from_pem(&key_pem)?;
        let signing_key = KeyPair::from_pem(&key_pem)?;
        let ca_pem = std::fs::read_to_string(&ca_cert_path).map_err(io)?;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| PkiError::BadCsr(format!("ca.pem unreadable: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key)?;
        let (server_chain, server_key_der) = load_or_issue_server_cert(dir, &issuer, &ca_der)?;
        Ok(Self { issuer, key: signing_key, ca_der, server_chain, server_key_der })
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex: what an agent pins
    /// at enrollment.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.ca_der)
    }

    /// A local offboarding token for `device`, valid until `expires_at_ms`,
    /// signed with the CA key (ECDSA P-256, SHA-256).
    pub fn offboarding_token(&self, device: Uuid, expires_at_ms: i64) -> Result<String, PkiError> {
        use rcgen::SigningKey;
        let claims = picket_common::offboarding::Claims { device_id: device, expires_at_ms };
        let signature = self.key.sign(&claims.payload())?;
        Ok(picket_common::offboarding::encode(&claims, &signature))
    }

    /// The coordinator's server certificate chain (leaf, CA) and its key.
    pub fn server_identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = PrivatePkcs8KeyDer::from(self.server_key_der.clone());
        (self.server_chain.clone(), PrivateKeyDer::Pkcs8(key))
    }

    /// A certificate for the API/console listener, for `names` (DNS names
    /// or IP addresses), with a new key, valid 397 days (as the agents' server
    /// certificate).
    /// Issued at each start and kept in memory: operators trust the CA, not
    /// this certificate. Never for the agents' server name.
    pub fn issue_api_cert(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        if names.is_empty() || names.iter().any(|n| n == COORDINATOR_SERVER_NAME) {
            return Err(PkiError::BadCsr(format!(
                "API certificate names must be given and must not include {COORDINATOR_SERVER_NAME}"
            )));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
        params.not_after = OffsetDateTime::now_utc() + SERVER_CERT_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.ca_der.clone()], key))
    }

    /// Sign a device certificate for the key in `csr`. Everything the CSR
    /// asks for besides its public key is ignored: the coordinator decides
    /// the identity (`urn:uuid:<device_id>`), usage and validity.
    pub fn sign_device_csr(
        &self,
        csr_der: &[u8],
        device_id: Uuid,
        hostname: &str,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::BadCsr("device key must be ECDSA P-256".into()));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, hostname);
        params.distinguished_name.push(DnType::OrganizationName, "Picket device");
        let san = device_san(&device_id).try_into().map_err(|e: rcgen::Error| PkiError::BadCsr(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(san)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = OffsetDateTime::now_utc();
        // Room for clock skew: 5 minutes, or a tenth of a short lifetime.
        params.not_before = now - std::cmp::min(lifetime / 10_i32, Duration::minutes(5));
        params.not_after = now + lifetime;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedCert {
            der: cert.der().clone(),
            serial_hex: hex::encode(serial),
            not_after_ms: crate::clock::unix_ms(params.not_after),
        })
    }
}

fn load_or_issue_server_cert(
    dir: &Path,
    issuer: &Issuer<'static, KeyPair>,
    ca_der: &CertificateDer<'static>,
) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), PkiError> {
    let io = |source| PkiError::Io { dir: dir.to_path_buf(), source };
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    if let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(&cert_path), read_secret(&key_path)) {
        if let (Ok(cert), Ok(key)) = (CertificateDer::from_pem_slice(cert_pem.as_bytes()), KeyPair::from_pem(&key_pem))
        {
            if let Some(not_after) = not_after(&cert) {
                if not_after - OffsetDateTime::now_utc() > SERVER_CERT_RENEW_BEFORE {
                    return Ok((vec![cert, ca_der.clone()], key.serialize_der()));
                }
            }
        }
        tracing::info!("server certificate missing, unreadable or near expiry: issuing a new one");
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![COORDINATOR_SERVER_NAME.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, COORDINATOR_SERVER_NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + SERVER_CERT_VALIDITY;
    let cert = params.signed_by(&key, issuer)?;
    write_file_0600(&key_path, key.serialize_pem().as_bytes()).map_err(io)?;
    std::fs::write(&cert_path, cert.pem()).map_err(io)?;
    Ok((vec![cert.der().clone(), ca_der.clone()], key.serialize_der()))
}

fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive INTEGER
    serial[0] |= 0x01; // and never shorter than 16 bytes
    serial
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn not_after(cert: &CertificateDer<'_>) -> Option<OffsetDateTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_with_a_private_key_only_the_owner_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Ca::load_or_create(dir.path()).expect("create");
        let second = Ca::load_or_create(dir.path()).expect("load");
        assert_eq!(first.fingerprint(), second.fingerprint());
        for key in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join(key)).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn device_certificates_carry_the_device_id_and_not_what_the_csr_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let params = CertificateParams::new(vec!["evil.example".to_string()]).expect("params");
        let csr = params.serialize_request(&key).expect("csr");
        let id = Uuid::new_v4();
        let issued = ca.sign_device_csr(csr.der(), id, "host1", DEVICE_CERT_VALIDITY).expect("sign");
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).expect("parse");
        let san = cert.subject_alternative_name().expect("san").expect("present");
        let uris: Vec<String> = san.value.general_names.iter().map(|n| format!("{n}")).collect();
        assert_eq!(uris.len(), 1, "{uris:?}");
        assert!(uris[0].contains(&id.to_string()), "{uris:?}");
    }

    #[test]
    fn garbage_csr_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        assert!(matches!(
            ca.sign_device_csr(b"not a csr", Uuid::new_v4(), "h", DEVICE_CERT_VALIDITY),
            Err(PkiError::BadCsr(_))
        ));
    }
}
