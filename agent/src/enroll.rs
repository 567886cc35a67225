//! `picket-agent enroll`: make a P-256 key on this device, send a CSR and the
//! enrollment token over TLS to a coordinator whose CA is pinned by
//! fingerprint, and store the certificate it returns. The key never leaves
//! the device.

use std::sync::Arc;
use std::time::Duration;

use picket_common::io::{read_frame, write_frame};
use picket_common::limits::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use picket_common::proto::{AgentMsg, CoordMsg, EnrollRequest, Enrolled, RefusalReason};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::state::{Enrollment, StateDir, StateError};
use crate::tls::{self, PinOutcome, PinnedCaVerifier};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EnrollOptions {
    /// `HOST:PORT` of the coordinator's agent listener.
    pub coordinator: String,
    pub token: String,
    /// SHA-256 of the Picket CA certificate, hex (colons allowed).
    pub ca_fingerprint: String,
    pub state: StateDir,
    /// Replace an existing enrollment in the state dir.
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0} is already enrolled as device {1}; pass --force to enroll again (the old identity is discarded)")]
    AlreadyEnrolled(String, uuid::Uuid),
    #[error("--ca-fingerprint must be 64 hexadecimal digits (the SHA-256 printed with the enrollment token)")]
    BadFingerprint,
    #[error("cannot reach the coordinator at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error(
        "the coordinator at {addr} presented a CA with fingerprint {presented}, not the pinned {expected}: \
         check --ca-fingerprint, or you may be talking to the wrong server"
    )]
    FingerprintMismatch { addr: String, expected: String, presented: String },
    #[error("TLS handshake with {addr} failed: {detail}")]
    Tls { addr: String, detail: String },
    #[error("enrollment refused: {message}")]
    Refused { reason: RefusalReason, message: String },
    #[error("the coordinator answered with something other than an enrollment result: {0}")]
    Protocol(String),
    #[error("cannot make the device key: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Enroll and store the identity. Returns what was stored.
pub async fn enroll(opts: EnrollOptions) -> Result<Enrollment, EnrollError> {
    if opts.state.is_enrolled() {
        let existing = opts.state.enrollment()?;
        if !opts.force {
            return Err(EnrollError::AlreadyEnrolled(opts.state.path().display().to_string(), existing.device_id));
        }
    }
    let pinned = tls::normalise_fingerprint(&opts.ca_fingerprint).ok_or(EnrollError::BadFingerprint)?;
    let issued = request_certificate(&opts.coordinator, &opts.token, &pinned, &crate::sysinfo::hostname()).await?;
    let record = Enrollment {
        device_id: issued.enrolled.device_id,
        coordinator: opts.coordinator,
        group: issued.enrolled.group.clone(),
        ca_fingerprint: pinned,
        enrolled_at: crate::clock::now_rfc3339(),
    };
    if opts.force {
        opts.state.clear()?;
    }
    opts.state.save_enrollment(&record, &issued.key_pem, &issued.enrolled.certificate_der, &issued.enrolled.ca_der)?;
    Ok(record)
}

/// A certificate issued to a key made here, not yet stored anywhere.
pub struct Issued {
    pub enrolled: Enrolled,
    /// PKCS#8 PEM of the device key.
    pub key_pem: String,
}

/// The enrollment exchange itself: make a key, send the CSR and token to the
/// coordinator whose CA has the `pinned` fingerprint (normalised hex), and
/// return the certificate. Stores nothing (the load generator uses it too).
pub async fn request_certificate(
    coordinator: &str,
    token: &str,
    pinned: &str,
    hostname: &str,
) -> Result<Issued, EnrollError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    let csr = params.serialize_request(&key)?;

    let addr = coordinator.to_string();
    let unreachable = |detail: String| EnrollError::Unreachable { addr: addr.clone(), detail };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(coordinator))
        .await
        .map_err(|_| unreachable("connection timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let verifier = Arc::new(PinnedCaVerifier::new(pinned.to_string()));
    let config = tls::enrollment_config(verifier.clone())
        .map_err(|e| EnrollError::Tls { addr: addr.clone(), detail: e.to_string() })?;
    let connector = TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(tls::server_name(), tcp))
        .await
        .map_err(|_| unreachable("TLS handshake timed out".into()))?;
    let outcome = verifier.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut stream = match (handshake, outcome) {
        (Ok(s), PinOutcome::Matched(_)) => s,
        (_, PinOutcome::Mismatch(seen)) => {
            return Err(EnrollError::FingerprintMismatch {
                addr,
                expected: pinned.to_string(),
                presented: if seen.is_empty() { "(no CA in the chain)".into() } else { seen.join(", ") },
            })
        }
        (Err(e), _) => return Err(EnrollError::Tls { addr, detail: e.to_string() }),
        (Ok(_), PinOutcome::NotChecked) => {
            return Err(EnrollError::Tls { addr, detail: "server certificate was not verified".into() })
        }
    };

    let request = AgentMsg::Enroll(EnrollRequest {
        protocol_version: PROTOCOL_VERSION,
        token: token.trim().to_string(),
        csr_der: csr.der().to_vec(),
        hostname: hostname.to_string(),
    });
    write_frame(&mut stream, &request, DEFAULT_MAX_FRAME).await.map_err(|e| unreachable(e.to_string()))?;
    let reply = tokio::time::timeout(REPLY_TIMEOUT, read_frame::<_, CoordMsg>(&mut stream, DEFAULT_MAX_FRAME))
        .await
        .map_err(|_| unreachable("no answer to the enrollment request".into()))?
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let enrolled = match reply {
        Some(CoordMsg::Enrolled(e)) => e,
        Some(CoordMsg::Refused(r)) => return Err(EnrollError::Refused { reason: r.reason, message: r.message }),
        Some(other) => return Err(EnrollError::Protocol(format!("{other:?}"))),
        None => return Err(EnrollError::Protocol("connection closed without an answer".into())),
    };
    if tls::fingerprint(&enrolled.ca_der) != pinned {
        return Err(EnrollError::Protocol("the returned CA is not the pinned one".into()));
    }
    Ok(Issued { enrolled, key_pem: key.serialize_pem() })
}
