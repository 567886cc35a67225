//! A small blocking client for the coordinator API, used by `picketctl` and
//! by tests. Every call returns the JSON body, or an [`ClientError`] that
//! carries the API's own error code and message.
//!
//! Over HTTPS the server's certificate must chain to the CA the client was
//! given ([`Client::with_ca`]): the coordinator's own CA (its
//! `pki/ca.pem`), or the CA of the operator's certificate. Nothing else is
//! trusted, and there is no way to turn verification off.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("unexpected answer from the coordinator ({status}): {detail}")]
    BadResponse { status: u16, detail: String },
    /// A problem on this side (bad arguments, a file that cannot be written).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::BadResponse { status, .. } => Some(*status),
            Self::Unreachable { .. } | Self::Local(_) => None,
        }
    }
}

/// What a certificate error means for a client given a CA file.
const CA_FILE_HINT: &str = "the coordinator's certificate is not one the given CA signed (--ca-file / \
                            PICKET_CA_FILE; its CA fingerprint is printed at start), or the URL names a host the \
                            certificate is not for";

/// A failed request, saying what to do when it is the certificate.
fn unreachable(url: String, e: ureq::Error, hint: &str) -> ClientError {
    // rustls' errors come through ureq as such or inside an I/O error.
    let tls = match &e {
        ureq::Error::Rustls(tls) => Some(tls.to_string()),
        ureq::Error::Io(io) => {
            io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(|t| t.to_string())
        }
        _ => None,
    };
    let detail = match tls {
        Some(tls) => format!("TLS: {tls} — {hint}"),
        None => e.to_string(),
    };
    ClientError::Unreachable { url, detail }
}

pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    tls: ureq::tls::TlsConfig,
    /// What a certificate error means, for the message.
    hint: String,
}

/// TLS that trusts exactly `roots`, with rustls on ring.
fn tls_trusting(roots: Vec<ureq::tls::Certificate<'static>>) -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
}

impl Client {
    /// `server` is the API base URL. Plain `http://` only (a coordinator
    /// started with `--api-insecure-http`); for `https://` see
    /// [`Client::with_ca`].
    pub fn new(server: &str, token: &str) -> Self {
        Self::build(server, token, tls_trusting(Vec::new()))
    }

    /// A client that trusts the CA certificates in `ca_pem` (PEM) and
    /// nothing else.
    pub fn with_ca(server: &str, token: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let roots = ureq::tls::parse_pem(ca_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Local(format!("the CA file is not PEM: {e}")))?;
        if roots.is_empty() {
            return Err(ClientError::Local("the CA file holds no certificate".into()));
        }
        Ok(Self::build(server, token, tls_trusting(roots)))
    }

    fn build(server: &str, token: &str, tls: ureq::tls::TlsConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls.clone())
            .build()
            .into();
        Self {
            base: server.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent,
            tls,
            hint: CA_FILE_HINT.into(),
        }
    }

    /// Says `hint` when the server's certificate is refused (where the
    /// trusted CA came from, and what to do).
    pub fn trust_hint(mut self, hint: String) -> Self {
        self.hint = hint;
        self
    }

    /// This client's TLS trust, for an agent configured otherwise (for
    /// example one that does not follow redirects).
    pub fn tls_config(&self) -> ureq::tls::TlsConfig {
        self.tls.clone()
    }

    /// The HTTP agent, with this client's TLS trust, for requests the
    /// methods here do not cover (headers such as `Range`).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let res = self.agent.get(&url).header("Authorization", &self.bearer()).call();
        self.finish(url, res)
    }

    /// GET a non-JSON body (e.g. CSV). API errors still come back as JSON.
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let mut res = self
            .agent
            .get(&url)
            .header("Authorization", &self.bearer())
            .call()
            .map_err(|e| unreachable(url, e, &self.hint))?;
        let status = res.status().as_u16();
        let text =
            res.body_mut().read_to_string().map_err(|e| ClientError::BadResponse { status, detail: e.to_string() })?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(ClientError::Api {
            status,
            code: body["error"]["code"].as_str().unwrap_or("unknown").to_string(),
            message: body["error"]["message"].as_str().unwrap_or(&text).to_string(),
        })
    }

    /// GET a file into `out`, calling `progress(bytes so far, total if known)`.
    /// No overall deadline (large files); connecting still times out.
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<u64, ClientError> {
        let url = self.url(path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(self.tls.clone())
            .build()
            .into();
        let mut res = agent
            .get(&url)
            .header("Authorization", &self.bearer())
            .call()
            .map_err(|e| unreachable(url.clone(), e, &self.hint))?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let text = res.body_mut().read_to_string().unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(ClientError::Api {
                status,
                code: body["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                message: body["error"]["message"].as_str().unwrap_or(&text).to_string(),
            });
        }
        let total = res.body().content_length();
        let mut reader = res.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = 0u64;
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| ClientError::BadResponse { status, detail: e.to_string() })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| ClientError::Local(format!("writing the download: {e}")))?;
            done += n as u64;
            progress(done, total);
        }
        if total.is_some_and(|t| t != done) {
            return Err(ClientError::BadResponse { status, detail: format!("got {done} of {total:?} bytes") });
        }
        Ok(done)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        let res = self.agent.post(&url).header("Authorization", &self.bearer()).send_json(body);
        self.finish(url, res)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        let res = self.agent.patch(&url).header("Authorization", &self.bearer()).send_json(body);
        self.finish(url, res)
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let res = self.agent.delete(&url).header("Authorization", &self.bearer()).call();
        self.finish(url, res)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn finish(
        &self,
        url: String,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ClientError> {
        let mut res = res.map_err(|e| unreachable(url, e, &self.hint))?;
        let status = res.status().as_u16();
        let text =
            res.body_mut().read_to_string().map_err(|e| ClientError::BadResponse { status, detail: e.to_string() })?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|_| ClientError::BadResponse { status, detail: text.chars().take(200).collect() })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = &body["error"];
        Err(ClientError::Api {
            status,
            code: err["code"].as_str().unwrap_or("unknown").to_string(),
            message: err["message"].as_str().unwrap_or("").to_string(),
        })
    }
}
