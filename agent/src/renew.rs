//! Certificate renewal over the authenticated session.
//!
//! At two thirds of its certificate's life the agent makes a new P-256 key
//! (it never leaves the device), sends a CSR in `RenewCertificate`, checks
//! the certificate that comes back (chains to the pinned CA, is valid now,
//! names this device, is for the new key), stores key and certificate
//! durably, and reconnects with them. The coordinator voids the old
//! certificate once the new one is used. Nothing in flight is lost: actions
//! are in the journal and results in the outbox, replayed on reconnect.
//!
//! Storing is crash-safe: `device.next.key` and `device.next.pem` are
//! written first, then renamed over `device.key` and then `device.pem`; a
//! start that finds `device.next.pem` finishes the renames
//! ([`crate::state::StateDir::identity`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, UnixTime};
use uuid::Uuid;

/// How long the agent waits for the renewed certificate before asking again.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("cannot make a key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the renewed certificate is not acceptable: {0}")]
    Bad(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// When the certificate `der` should be renewed: two thirds into its life
/// (at once if that is past).
pub fn due(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    let from = v.not_before.timestamp();
    let until = v.not_after.timestamp();
    let at = from + (until - from) * 2 / 3;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)))
}

/// A renewal in progress: the new key, waiting for its certificate.
pub struct Pending {
    key: KeyPair,
    pub csr_der: Vec<u8>,
    pub asked_at: tokio::time::Instant,
}

/// Make a new key and the CSR for it.
pub fn start(hostname: &str) -> Result<Pending, RenewError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    let csr = params.serialize_request(&key)?;
    Ok(Pending { key, csr_der: csr.der().to_vec(), asked_at: tokio::time::Instant::now() })
}

/// Check the renewed certificate against the pinned CA, this device and
/// the pending key, then store both durably.
pub fn finish(
    pending: Pending,
    certificate_der: Vec<u8>,
    ca: &CertificateDer<'static>,
    device: Uuid,
    state: &crate::state::StateDir,
) -> Result<(), RenewError> {
    let cert = CertificateDer::from(certificate_der);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| RenewError::Bad(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| RenewError::Bad(e.to_string()))?;
    verifier
        .verify_client_cert(&cert, &[], UnixTime::now())
        .map_err(|e| RenewError::Bad(format!("does not chain to the pinned CA or is not valid now: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|e| RenewError::Bad(e.to_string()))?;
    if parsed.public_key().raw != pending.key.subject_public_key_info().as_slice() {
        return Err(RenewError::Bad("it is for another key".into()));
    }
    let names_device = parsed.subject_alternative_name().ok().flatten().is_some_and(|san| {
        san.value.general_names.iter().any(|n| {
            matches!(n, x509_parser::extensions::GeneralName::URI(u)
                if picket_common::limits::parse_device_san(u) == Some(device))
        })
    });
    if !names_device {
        return Err(RenewError::Bad(format!("it does not name device {device}")));
    }
    state.save_renewed(&pending.key.serialize_pem(), cert.as_ref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_two_thirds_into_the_life() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let start = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        params.not_before = start;
        params.not_after = start + time::Duration::days(90);
        let cert = params.self_signed(&key).expect("cert");
        let at = due(cert.der()).expect("due");
        let want = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 60 * 86_400);
        assert_eq!(at, want);
    }
}
