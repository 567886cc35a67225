//! A client of Dovecot's doveadm HTTP API (`POST /doveadm/v1`, a JSON list
//! of `[command, parameters, tag]`, answered in order by
//! `["doveadmResponse", result, tag]` or `["error", {"exitCode": n}, tag]`).
//!
//! Only loopback URLs are accepted: the API key travels in the clear. A
//! command doveadm cannot parse makes it drop the connection without an
//! answer, so the queries built here are always complete ones.

use std::time::Duration;

use serde_json::{json, Value};

/// Largest answer read (a search over a big host).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DoveadmError {
    #[error("Dovecot's doveadm API at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// Dovecot took the request and dropped it (its doveadm process died
    /// on it, or answered 5xx): trying again for long would only repeat it.
    #[error("Dovecot's doveadm API at {url} failed the request: {why}")]
    Failed { url: String, why: String },
    #[error("doveadm {command}: {}", exit_meaning(*.code))]
    Command { command: String, code: i64 },
    #[error("doveadm answered something unreadable: {0}")]
    Protocol(String),
}

impl DoveadmError {
    /// The user does not exist (sysexits EX_NOUSER).
    pub fn is_no_user(&self) -> bool {
        matches!(self, Self::Command { code: 67, .. })
    }

    /// Already exists (what `mailboxCreate` says of an existing mailbox).
    pub fn is_exists(&self) -> bool {
        matches!(self, Self::Command { code: 65, .. })
    }
}

/// What doveadm's exit codes (sysexits) mean here.
fn exit_meaning(code: i64) -> String {
    let what = match code {
        65 => "already exists or bad data",
        67 => "no such user",
        68 => "no such mailbox",
        75 => "temporary failure (try again)",
        77 => "permission denied",
        _ => "failed",
    };
    format!("{what} (exit code {code})")
}

/// One command of a request.
pub struct Command {
    pub name: &'static str,
    pub params: Value,
}

impl Command {
    pub fn new(name: &'static str, params: Value) -> Self {
        Self { name, params }
    }
}

pub struct Doveadm {
    url: String,
    authorization: String,
    agent: ureq::Agent,
    /// How long a request waits for an unreachable Dovecot to come back.
    patience: Duration,
    /// (user, folder) seen to exist: a batch creates a destination folder
    /// only for users not known to have it.
    folders: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Doveadm {
    /// `url`: `http://127.0.0.1:PORT/doveadm/v1` (loopback only);
    /// `patience`: how long to keep trying while Dovecot is unreachable.
    pub fn new(url: &str, api_key: &str, patience: Duration) -> Result<Self, String> {
        check_loopback(url)?;
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(600)))
            .http_status_as_error(false)
            .build();
        Ok(Self {
            url: url.to_string(),
            authorization: format!("X-Dovecot-API {}", base64(api_key.trim().as_bytes())),
            agent: config.into(),
            patience,
            folders: Default::default(),
        })
    }

    /// Whether `user`'s `folder` was seen to exist.
    pub fn has_folder(&self, user: &str, folder: &str) -> bool {
        self.folders.lock().is_ok_and(|f| f.contains(&(user.to_string(), folder.to_string())))
    }

    /// Remember that `user`'s `folder` exists (or forget it, if it vanished).
    pub fn set_folder(&self, user: &str, folder: &str, exists: bool) {
        if let Ok(mut f) = self.folders.lock() {
            let key = (user.to_string(), folder.to_string());
            if exists {
                f.insert(key);
            } else {
                f.remove(&key);
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Run `commands` in one request; one answer per command, in order.
    /// While Dovecot is unreachable (stopped, restarting) the request is
    /// sent again, with growing pauses, for up to the patience; a request
    /// Dovecot took and dropped is sent again `RETRIES_AFTER_FAILURE`
    /// times (a restart may have cut it), then its failure is the answer.
    /// Every request a batch makes may be repeated (a move only matches
    /// what is still in its old folder; creating an existing folder is no
    /// error).
    pub fn run(&self, commands: &[Command]) -> Result<Vec<Result<Value, DoveadmError>>, DoveadmError> {
        let deadline = std::time::Instant::now() + self.patience;
        let mut pause = Duration::from_millis(250);
        let mut failures = 0;
        loop {
            let error = match self.attempt(commands) {
                Err(e @ DoveadmError::Unreachable { .. }) => e,
                Err(e @ DoveadmError::Failed { .. }) if failures < RETRIES_AFTER_FAILURE => {
                    failures += 1;
                    e
                }
                other => return other,
            };
            if std::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::warn!(%error, "trying again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn attempt(&self, commands: &[Command]) -> Result<Vec<Result<Value, DoveadmError>>, DoveadmError> {
        let body: Vec<Value> =
            commands.iter().enumerate().map(|(i, c)| json!([c.name, c.params, format!("c{i}")])).collect();
        let unreachable = |why: String| DoveadmError::Unreachable { url: self.url.clone(), why };
        let failed = |why: String| DoveadmError::Failed { url: self.url.clone(), why };
        let mut response = self
            .agent
            .post(&self.url)
            .header("Authorization", &self.authorization)
            .send_json(&body)
            .map_err(|e| if never_reached(&e) { unreachable(e.to_string()) } else { failed(e.to_string()) })?;
        let status = response.status();
        if status == 401 || status == 403 {
            return Err(unreachable(format!("the API key was refused (HTTP {status})")));
        }
        if status == 503 {
            return Err(unreachable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let answer: Value = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_json()
            .map_err(|e| DoveadmError::Protocol(e.to_string()))?;
        let Value::Array(answers) = answer else {
            return Err(DoveadmError::Protocol("not a list".into()));
        };
        if answers.len() != commands.len() {
            return Err(DoveadmError::Protocol(format!("{} answers to {} commands", answers.len(), commands.len())));
        }
        Ok(answers.into_iter().zip(commands).map(|(a, c)| read_answer(a, c.name)).collect())
    }

    /// Run one command.
    pub fn one(&self, name: &'static str, params: Value) -> Result<Value, DoveadmError> {
        let mut answers = self.run(&[Command::new(name, params)])?;
        answers.pop().unwrap_or_else(|| Err(DoveadmError::Protocol("no answer".into())))
    }
}

/// How often a request Dovecot took and dropped is sent again.
const RETRIES_AFTER_FAILURE: u32 = 2;

/// Whether a request never reached Dovecot (nothing listening, no
/// connection in time): Dovecot is stopped or restarting, worth waiting
/// for. Otherwise it took the request and dropped it.
fn never_reached(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Io(io) => {
            matches!(io.kind(), K::ConnectionRefused | K::NotFound | K::AddrNotAvailable | K::TimedOut)
        }
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

fn read_answer(answer: Value, command: &str) -> Result<Value, DoveadmError> {
    let Value::Array(mut parts) = answer else {
        return Err(DoveadmError::Protocol(format!("{command}: the answer is not a list")));
    };
    if parts.len() < 2 {
        return Err(DoveadmError::Protocol(format!("{command}: a short answer")));
    }
    let result = parts.swap_remove(1);
    match parts.first().and_then(Value::as_str) {
        Some("doveadmResponse") => Ok(result),
        Some("error") => {
            let code = result.get("exitCode").and_then(Value::as_i64).unwrap_or(-1);
            Err(DoveadmError::Command { command: command.to_string(), code })
        }
        other => Err(DoveadmError::Protocol(format!("{command}: an answer of type {other:?}"))),
    }
}

fn check_loopback(url: &str) -> Result<(), String> {
    let rest =
        url.strip_prefix("http://").ok_or("the doveadm URL must start with http:// (Dovecot's API speaks HTTP)")?;
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "the doveadm URL must name a loopback address (the API key travels in the clear); {host:?} does not"
        ))
    }
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for ok in ["http://127.0.0.1:8080/doveadm/v1", "http://[::1]:8080/doveadm/v1", "http://localhost/doveadm/v1"] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["https://127.0.0.1/doveadm/v1", "http://10.0.0.5:8080/doveadm/v1", "http://mail.example/doveadm/v1"]
        {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_the_exit_code_means() {
        let e = read_answer(json!(["error", {"type": "exitCode", "exitCode": 67}, "c0"]), "move").expect_err("error");
        assert!(e.is_no_user() && e.to_string().contains("no such user"), "{e}");
        assert!(read_answer(json!(["doveadmResponse", [], "c0"]), "move").is_ok());
        assert!(read_answer(json!("x"), "move").is_err());
    }
}
