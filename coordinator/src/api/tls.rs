//! HTTPS for the API and console listener: TLS 1.3 and 1.2 (rustls, ring),
//! HTTP/1.1. The certificate is either the operator's (`--api-cert`,
//! `--api-key`; re-read on SIGHUP: new connections get the new one, open
//! ones keep theirs) or one the coordinator's own CA issues at start for
//! the configured names — operators then trust the CA (its fingerprint is
//! printed at start), as agents do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiTlsConfig;
use crate::pki::Ca;

/// The certificate the listener presents, replaceable while it runs.
pub struct ApiCert {
    current: RwLock<Arc<CertifiedKey>>,
    /// The operator's files, if the certificate comes from them.
    files: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for ApiCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ApiCert {
    /// The operator's certificate, or one issued by `ca` for `names`.
    pub fn new(config: &ApiTlsConfig, ca: &Ca, names: &[String]) -> Result<Self, String> {
        if config.cert.as_os_str().is_empty() {
            let (chain, key) = ca.issue_api_cert(names).map_err(|e| e.to_string())?;
            let current = RwLock::new(Arc::new(certified(chain, &key)?));
            return Ok(Self { current, files: None });
        }
        let files = (config.cert.clone(), config.key.clone());
        let current = RwLock::new(Arc::new(read_files(&files.0, &files.1)?));
        Ok(Self { current, files: Some(files) })
    }

    /// Read the operator's files again. `Ok(false)`: the certificate is
    /// self-issued, there is nothing to read. On an error the certificate
    /// in use stays.
    pub fn reload(&self) -> Result<bool, String> {
        let Some((cert, key)) = &self.files else { return Ok(false) };
        let fresh = Arc::new(read_files(cert, key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    /// The acceptor of the listener.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ApiCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn certified(chain: Vec<CertificateDer<'static>>, key: &PrivateKeyDer<'static>) -> Result<CertifiedKey, String> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| format!("API key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| format!("the API key does not belong to the certificate: {e}"))?;
    Ok(certified)
}

fn read_files(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--api-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--api-cert {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--api-key {}: {e}", key.display()))?;
    certified(chain, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, DER).
    fn self_signed() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn served(cert: &ApiCert) -> Vec<u8> {
        cert.current.read().expect("lock").cert[0].to_vec()
    }

    #[test]
    fn reload_replaces_the_certificate_and_keeps_it_when_the_files_are_bad() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(&dir.path().join("pki")).expect("ca");
        let (cert_path, key_path) = (dir.path().join("api.pem"), dir.path().join("api.key"));
        let (pem, key, first) = self_signed();
        std::fs::write(&cert_path, pem).expect("cert");
        std::fs::write(&key_path, key).expect("key");
        let config = ApiTlsConfig { cert: cert_path.clone(), key: key_path.clone(), ..ApiTlsConfig::default() };
        let cert = ApiCert::new(&config, &ca, &[]).expect("operator's certificate");
        assert_eq!(served(&cert), first);

        std::fs::write(&cert_path, "not a certificate").expect("garbage");
        assert!(cert.reload().is_err());
        assert_eq!(served(&cert), first, "a bad file leaves the certificate in use");
        let (pem, other_key, _) = self_signed();
        std::fs::write(&cert_path, pem).expect("cert");
        assert!(cert.reload().expect_err("a key of another certificate").contains("does not belong"));
        assert_eq!(served(&cert), first);

        let (pem, key, second) = self_signed();
        std::fs::write(&cert_path, pem).expect("cert");
        std::fs::write(&key_path, key).expect("key");
        drop(other_key);
        assert_eq!(cert.reload(), Ok(true));
        assert_eq!(served(&cert), second);

        let issued = ApiCert::new(&ApiTlsConfig::default(), &ca, &["127.0.0.1".to_string()]).expect("issued");
        assert_eq!(issued.reload(), Ok(false), "a self-issued certificate has nothing to re-read");
    }
}
