//! The client-certificate check run inside the TLS handshake.
//!
//! A client certificate must chain to the Picket CA and be within its
//! validity (webpki does both), carry a device id in its SAN, name a device
//! the registry knows and has not revoked or offboarded, and be that
//! device's current certificate (or the one its last renewal replaced,
//! until the renewed one is used). Anything else fails the handshake. A client with no certificate is let through the
//! handshake only to enroll: the session code refuses every other frame.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use picket_common::limits::parse_device_san;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use uuid::Uuid;

use crate::store::DeviceStatus;

/// Every device's status and certificate serials, kept in memory for the
/// synchronous verifier and updated by enrollment, renewal, revocation and
/// offboarding.
#[derive(Debug, Default)]
pub struct DeviceDirectory {
    statuses: RwLock<HashMap<Uuid, DeviceStatus>>,
    serials: RwLock<HashMap<Uuid, Serials>>,
}

/// The certificate serials a device may use (lowercase hex): its current
/// one, and the one before its last renewal until it has used the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serials {
    pub current: String,
    pub previous: Option<String>,
}

impl DeviceDirectory {
    pub fn new(entries: impl IntoIterator<Item = (Uuid, DeviceStatus)>) -> Self {
        Self { statuses: RwLock::new(entries.into_iter().collect()), serials: RwLock::default() }
    }

    pub fn set_serials(&self, id: Uuid, serials: Serials) {
        self.serials.write().unwrap_or_else(|p| p.into_inner()).insert(id, serials);
    }

    pub fn serials(&self, id: &Uuid) -> Option<Serials> {
        self.serials.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Whether `serial` is one `id` may use now.
    fn serial_ok(&self, id: &Uuid, serial: &str) -> bool {
        match self.serials(id) {
            Some(s) => s.current == serial || s.previous.as_deref() == Some(serial),
            None => true,
        }
    }

    pub fn set(&self, id: Uuid, status: DeviceStatus) {
        self.statuses.write().unwrap_or_else(|p| p.into_inner()).insert(id, status);
    }

    pub fn status(&self, id: &Uuid) -> Option<DeviceStatus> {
        self.statuses.read().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }
}

/// A certificate's serial number, lowercase hex.
pub fn serial_of(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(cert.tbs_certificate.raw_serial()))
}

/// The device id in a certificate's `urn:uuid:` URI SAN, if exactly one.
pub fn device_id_from_cert(der: &CertificateDer<'_>) -> Option<Uuid> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => parse_device_san(uri),
        _ => None,
    });
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

#[derive(Debug)]
pub struct DeviceCertVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    directory: Arc<DeviceDirectory>,
}

impl DeviceCertVerifier {
    pub fn new(
        ca: CertificateDer<'static>,
        directory: Arc<DeviceDirectory>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca)?;
        let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(format!("client verifier: {e}")))?;
        Ok(Self { chain, directory })
    }
}

impl ClientCertVerifier for DeviceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.chain.verify_client_cert(end_entity, intermediates, now)?;
        let Some(id) = device_id_from_cert(end_entity) else {
            tracing::warn!("client certificate from the Picket CA without a device id refused");
            return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        };
        match self.directory.status(&id) {
            Some(DeviceStatus::Active) => {
                let serial = serial_of(end_entity).unwrap_or_default();
                if self.directory.serial_ok(&id, &serial) {
                    Ok(verified)
                } else {
                    tracing::warn!(device = %id, %serial, "handshake refused: a certificate replaced by a renewal");
                    Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
                }
            }
            Some(status @ (DeviceStatus::Revoked | DeviceStatus::Offboarded)) => {
                tracing::warn!(device = %id, ?status, "handshake refused: device is no longer trusted");
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            None => {
                tracing::warn!(device = %id, "handshake refused: unknown device");
                Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
