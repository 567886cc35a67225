//! `picketctl login URL`: trust on first use that is never silent.
//!
//! The coordinator's HTTPS certificate is fetched without trusting it, the
//! CA at the end of the chain it presents is shown with its SHA-256, and it
//! is pinned only when the operator says yes (or the fingerprint matches
//! `--ca-fingerprint`) and the CA then verifies the server for that URL.
//! The pin and the URL are kept in `picketctl.toml` in the config
//! directory; later commands trust that CA and nothing else, and a changed
//! certificate is an error that says what to do.

use std::io::{BufRead, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use picket_coordinator::client::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};

/// What `login` remembers: the server to use by default and, per server,
/// the CA pinned for it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub server: Option<String>,
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, Pin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    pub ca_sha256: String,
    pub ca_pem: String,
}

/// `$PICKET_CONFIG_DIR`, else `$XDG_CONFIG_HOME/picket`, else
/// `~/.config/picket`.
pub fn config_dir() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("PICKET_CONFIG_DIR")
        .or_else(|| env("XDG_CONFIG_HOME").map(|d| d.join("picket")))
        .or_else(|| env("HOME").map(|d| d.join(".config/picket")))
}

fn saved_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("picketctl.toml"))
}

/// A URL as pins are keyed: no trailing slash.
pub fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

impl Saved {
    /// The saved state, or nothing saved yet.
    pub fn load() -> Result<Self, String> {
        let Some(path) = saved_path() else { return Ok(Self::default()) };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Written whole to a new private file, then renamed over the old one.
    fn store(&self) -> Result<PathBuf, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        // create_new (O_EXCL) never follows a symlink planted at `tmp`.
        let path = saved_path().ok_or("no config directory: set PICKET_CONFIG_DIR or HOME")?;
        let dir = path.parent().ok_or("config path has no directory")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!(".picketctl.toml.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })?;
        Ok(path)
    }
}

/// Accepts any certificate chain and keeps it, so that it can be shown to
/// the operator; the handshake signatures are still verified, so the server
/// holds the key of the certificate it shows. Used only by the probe, which
/// sends nothing.
#[derive(Debug)]
struct Record {
    chain: std::sync::Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Record {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        Ok(ServerCertVerified::assertion())
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

/// The certificate chain the server at `url` presents.
fn probe(url: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?}: login pins the certificate of an https:// URL"));
    }
    let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let record = Arc::new(Record { chain: Default::default(), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(record.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach the coordinator at {url}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| format!("TLS handshake with {url} failed: {e}"))?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    let chain = record.chain.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if chain.is_empty() {
        return Err(format!("{url} presented no certificate"));
    }
    Ok(chain)
}

fn subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unparsable certificate)".into())
}

/// A fingerprint as typed (any case, colons or spaces) as lower-case hex.
pub fn hex_digits(fingerprint: &str) -> String {
    fingerprint.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_ascii_lowercase()
}

/// `ab:cd:…` for reading aloud and comparing by eye.
fn colons(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_ascii_uppercase()).collect::<Vec<_>>().join(":")
}

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Pins the CA of the coordinator at `url`: prints it, asks (or compares
/// with `expected`), checks that it verifies the server, saves it.
pub fn login(url: &str, expected: Option<&str>, input: &mut dyn BufRead) -> Result<(), String> {
    let url = normalize(url);
    let chain = probe(&url)?;
    // The last certificate the server sends is the furthest up its chain:
    // the coordinator's own CA, or the operator's CA if it was included.
    let ca = chain.last().ok_or("empty chain")?;
    let sha = picket_coordinator::pki::fingerprint(ca);
    let mut saved = Saved::load()?;
    println!("The coordinator at {url} presents a certificate chain ending in:");
    println!("  subject: {}", subject(ca));
    println!("  SHA-256: {}", colons(&sha));
    if let Some(old) = saved.servers.get(&url).filter(|p| p.ca_sha256 != sha) {
        println!("WARNING: this is NOT the CA pinned for {url} before ({}).", colons(&old.ca_sha256));
        println!("If the coordinator's CA was not replaced on purpose, someone may be in the way.");
    }
    match expected {
        Some(want) => {
            let want = hex_digits(want);
            if want != sha {
                return Err(format!("its SHA-256 is not the {want} given with --ca-fingerprint: nothing pinned"));
            }
            println!("It matches --ca-fingerprint.");
        }
        None => {
            println!("Compare it with the `CA SHA-256:` the coordinator printed at start.");
            print!("Trust this CA for {url}? [y/N] ");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            let mut answer = String::new();
            input.read_line(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
            if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                println!();
            }
            if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                return Err("not trusted: nothing pinned".into());
            }
        }
    }
    // The CA must verify the server for this very URL (host name included)
    // the way every later command will.
    let ca_pem = pem(ca);
    let client = Client::with_ca(&url, "", ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    client.get("/health").map_err(|e| {
        format!(
            "with that CA the server does not verify for {url}: {e}. If it sent no CA certificate in its chain, \
             use --ca-file with its CA instead"
        )
    })?;
    saved.servers.insert(url.clone(), Pin { ca_sha256: sha, ca_pem });
    saved.server = Some(url.clone());
    let path = saved.store()?;
    println!("Pinned. picketctl now uses {url} and trusts only this CA for it ({}).", path.display());
    Ok(())
}

/// The CA pinned for `server` by an earlier `login`, if any.
pub fn pinned(saved: &Saved, server: &str) -> Option<Pin> {
    saved.servers.get(&normalize(server)).cloned()
}

/// Where `login` keeps its state, for messages.
pub fn describe() -> String {
    saved_path().as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| "(no config directory)".into())
}
