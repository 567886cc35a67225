//! rustls client configurations.
//!
//! - Enrollment: the agent has no certificate yet and knows only the SHA-256
//!   fingerprint of the Picket CA (from the enrollment command). The
//!   coordinator sends its chain (leaf, CA); [`PinnedCaVerifier`] finds the
//!   CA whose fingerprint matches and verifies the leaf against it.
//! - Session: TLS 1.3 with the device certificate, trusting only the stored CA.
//!
//! Both verify the server as [`COORDINATOR_SERVER_NAME`], whatever address
//! was dialled: trust comes from the pinned private CA, not from DNS.

use std::sync::{Arc, Mutex};

use picket_common::limits::COORDINATOR_SERVER_NAME;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(COORDINATOR_SERVER_NAME).expect("COORDINATOR_SERVER_NAME is a valid DNS name")
}

/// SHA-256 of DER bytes, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Normalise a fingerprint typed by a person: hex digits only, lowercase
/// (accepts `AB:CD:…` and spaces). `None` unless it is 64 hex digits.
pub fn normalise_fingerprint(input: &str) -> Option<String> {
    let hex: String = input.chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect::<String>().to_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Verifies the coordinator during enrollment against a CA pinned by its
/// fingerprint. Records what was presented so a mismatch can be explained.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pinned: String,
    provider: Arc<CryptoProvider>,
    /// The CA that matched (to store), or the fingerprints seen (to report).
    pub outcome: Mutex<PinOutcome>,
}

#[derive(Debug, Default, Clone)]
pub enum PinOutcome {
    #[default]
    NotChecked,
    Matched(CertificateDer<'static>),
    Mismatch(Vec<String>),
}

impl PinnedCaVerifier {
    pub fn new(pinned: String) -> Self {
        Self { pinned, provider: provider(), outcome: Mutex::new(PinOutcome::NotChecked) }
    }

    fn set(&self, outcome: PinOutcome) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = outcome;
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == self.pinned) else {
            self.set(PinOutcome::Mismatch(intermediates.iter().map(|c| fingerprint(c)).collect()));
            return Err(rustls::Error::General("the coordinator's CA does not match the pinned fingerprint".into()));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("verifier: {e}")))?;
        let verified = verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        self.set(PinOutcome::Matched(ca.clone().into_owned()));
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS 1.3 config for enrollment: pinned CA, no client certificate.
pub fn enrollment_config(verifier: Arc<PinnedCaVerifier>) -> Result<ClientConfig, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// TLS 1.3 mutual-TLS config for the session.
pub fn session_config(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let fp = "AB".repeat(32);
        assert_eq!(normalise_fingerprint(&fp), Some("ab".repeat(32)));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(normalise_fingerprint(&colons), Some("ab".repeat(32)));
        assert_eq!(normalise_fingerprint("abc"), None);
        assert_eq!(normalise_fingerprint(&"zz".repeat(32)), None);
    }
}
