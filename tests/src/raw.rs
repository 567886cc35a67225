//! Hand-made TLS clients for the coordinator's agent port: the negative
//! matrix (no certificate, another CA, expired, revoked, TLS 1.2 only) and
//! malformed input.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use picket_common::io::{read_frame, write_frame};
use picket_common::limits::{device_san, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use picket_common::proto::{AgentMsg, CoordMsg, Hello, RefusalReason};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use uuid::Uuid;

/// How a session attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Welcome,
    Refused(RefusalReason),
    /// The handshake or the first read failed (e.g. a TLS alert).
    Failed(String),
}

pub fn hello() -> AgentMsg {
    AgentMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
        hostname: "raw-client".into(),
        os: "test".into(),
        kernel: "test".into(),
        capabilities: vec![],
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    roots
}

pub fn ca_of(coordinator_data_dir: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(coordinator_data_dir.join("pki/ca.pem")).expect("ca.pem")
}

/// The agent's own mutual-TLS config, from its state dir.
pub fn agent_config(state_dir: &Path) -> ClientConfig {
    let id = picket_agent::state::StateDir::new(state_dir).identity().expect("identity");
    picket_agent::tls::session_config(id.ca, id.cert, id.key).expect("config")
}

/// TLS 1.2 only, otherwise a valid device identity.
pub fn tls12_config(state_dir: &Path) -> ClientConfig {
    let id = picket_agent::state::StateDir::new(state_dir).identity().expect("identity");
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(roots(&id.ca))
        .with_client_auth_cert(vec![id.cert], id.key)
        .expect("client cert")
}

/// No client certificate at all.
pub fn anonymous_config(ca: &CertificateDer<'static>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots(ca))
        .with_no_client_auth()
}

/// A certificate for `device` signed by `issuer`, valid over the given window.
fn device_cert(
    device: Uuid,
    issuer: &Issuer<'_, KeyPair>,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::URI(device_san(&device).try_into().expect("uri"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
}

fn with_cert(ca: &CertificateDer<'static>, cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(vec![cert], key)
        .expect("client cert")
}

/// A device certificate for a real device id, from a CA the coordinator never saw.
pub fn other_ca_config(ca: &CertificateDer<'static>, device: Uuid) -> ClientConfig {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, "Picket CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(params, key);
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = device_cert(device, &issuer, now - time::Duration::hours(1), now + time::Duration::days(1));
    with_cert(ca, cert, key)
}

/// An expired certificate for a real, active device, signed by the real CA
/// (read from the coordinator's data dir).
pub fn expired_config(coordinator_data_dir: &Path, device: Uuid) -> ClientConfig {
    let ca = ca_of(coordinator_data_dir);
    let key_pem = std::fs::read_to_string(coordinator_data_dir.join("pki/ca.key")).expect("ca.key");
    let issuer = Issuer::from_ca_cert_der(&ca, KeyPair::from_pem(&key_pem).expect("key")).expect("issuer");
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = device_cert(device, &issuer, now - time::Duration::days(30), now - time::Duration::days(1));
    with_cert(&ca, cert, key)
}

pub async fn connect(addr: SocketAddr, config: ClientConfig) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = picket_agent::tls::server_name();
    TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await
}

/// Try a session: handshake, Hello, and the coordinator's first answer.
pub async fn try_session(addr: SocketAddr, config: ClientConfig) -> Outcome {
    let attempt = async {
        let mut tls = match connect(addr, config).await {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if let Err(e) = write_frame(&mut tls, &hello(), DEFAULT_MAX_FRAME).await {
            return Outcome::Failed(e.to_string());
        }
        match read_frame::<_, CoordMsg>(&mut tls, DEFAULT_MAX_FRAME).await {
            Ok(Some(CoordMsg::Welcome(_))) => Outcome::Welcome,
            Ok(Some(CoordMsg::Refused(r))) => Outcome::Refused(r.reason),
            Ok(Some(other)) => Outcome::Failed(format!("unexpected {other:?}")),
            Ok(None) => Outcome::Failed("closed".into()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(15), attempt).await.unwrap_or_else(|_| Outcome::Failed("timed out".into()))
}

/// A session with the coordinator's agent port.
pub type Tls = TlsStream<TcpStream>;

/// A session with a real device's identity (`state_dir`), after Hello and
/// Welcome: the rogue agent of the security tests, which sends what it likes.
pub async fn session(addr: SocketAddr, state_dir: &Path) -> TlsStream<TcpStream> {
    session_with(addr, state_dir, &hello()).await
}

/// [`session`] that introduces itself with `hello`.
pub async fn session_with(addr: SocketAddr, state_dir: &Path, hello: &AgentMsg) -> TlsStream<TcpStream> {
    let mut tls = connect(addr, agent_config(state_dir)).await.expect("handshake");
    write_frame(&mut tls, hello, DEFAULT_MAX_FRAME).await.expect("hello");
    match read_frame::<_, CoordMsg>(&mut tls, DEFAULT_MAX_FRAME).await {
        Ok(Some(CoordMsg::Welcome(_))) => tls,
        other => panic!("no welcome: {other:?}"),
    }
}
