//! The mail adapter: on a mail host, the agent acts on the local Dovecot
//! through its doveadm HTTP API (DESIGN.md "Email"). The coordinator holds
//! no mail credentials: the API key is in a root-only file on this host.
//!
//! - [`doveadm`]: the API client (loopback only).
//! - [`search`]: `mail_search`, messages by header, date and user.
//! - [`batch`]: moves of many messages (soft delete, junk, inbox,
//!   quarantine), their restore or release, and hard deletes, with a
//!   durable record per batch so a re-run resumes and an undo puts back
//!   exactly what was moved.
//! - [`linkkey`]: the key the `picket-linkwrap` Sieve filter signs
//!   wrapped links with.

pub mod attach;
pub mod batch;
pub mod doveadm;
pub mod forwarding;
pub mod global_sieve;
pub mod linkkey;
pub mod mime;
pub mod scan;
pub mod search;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[mail]` in the agent's configuration: present on a mail host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// Dovecot's doveadm HTTP API, e.g. `http://127.0.0.1:8080/doveadm/v1`
    /// (loopback only).
    pub doveadm_url: String,
    /// A file holding Dovecot's `doveadm_api_key` (not world-readable).
    pub doveadm_api_key_file: PathBuf,
    /// The organisation's mail domains on this host.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// Where soft-deleted messages go: a folder each user has but is not
    /// subscribed to, so mail clients do not show it by default.
    #[serde(default = "recoverable")]
    pub recoverable_mailbox: String,
    #[serde(default = "junk")]
    pub junk_mailbox: String,
    /// The Dovecot account quarantined messages go to (a folder per user
    /// there). It must exist in Dovecot's userdb and nobody may log in as
    /// it (passwd-file: no password and `nologin=y`).
    #[serde(default = "quarantine")]
    pub quarantine_account: String,
    /// How long an action waits for an unreachable Dovecot (restarting,
    /// stopped) before the messages it could not reach fail.
    #[serde(default = "patience")]
    pub unreachable_wait_secs: u64,
    /// Where the agent keeps the key that `picket-linkwrap` (the Sieve
    /// filter that wraps links at delivery) signs with, e.g.
    /// `/etc/dovecot/picket-link.key`. Unset: links are not wrapped. Its
    /// directory must be root's and writable by root only.
    #[serde(default)]
    pub link_key_file: Option<PathBuf>,
    /// The group that may read `link_key_file`: the one Dovecot delivers
    /// mail as (Dovecot runs the filter with the recipient's uid and gid).
    #[serde(default = "link_key_group")]
    pub link_key_group: String,
    /// Dovecot's main configuration file: where `doveconf` finds the
    /// global Sieve scripts (`sieve_before`, `sieve_after`) whose
    /// redirects `mail_forwarding` lists too.
    #[serde(default = "dovecot_config")]
    pub dovecot_config: PathBuf,
}

impl MailConfig {
    /// The API at `doveadm_url` with the key in `key_file`; defaults otherwise.
    pub fn new(doveadm_url: &str, key_file: &Path) -> Self {
        Self {
            doveadm_url: doveadm_url.to_string(),
            doveadm_api_key_file: key_file.to_path_buf(),
            internal_domains: Vec::new(),
            recoverable_mailbox: recoverable(),
            junk_mailbox: junk(),
            quarantine_account: quarantine(),
            unreachable_wait_secs: patience(),
            link_key_file: None,
            link_key_group: link_key_group(),
            dovecot_config: dovecot_config(),
        }
    }
}

fn recoverable() -> String {
    "Recoverable Items".into()
}

fn dovecot_config() -> PathBuf {
    PathBuf::from("/etc/dovecot/dovecot.conf")
}

fn link_key_group() -> String {
    "dovecot".into()
}

fn junk() -> String {
    "Junk".into()
}

fn quarantine() -> String {
    "picket-quarantine".into()
}

fn patience() -> u64 {
    300
}

/// The local Dovecot, as the actions use it.
pub struct MailHost {
    pub config: MailConfig,
    pub doveadm: doveadm::Doveadm,
    /// Batch records: `<state dir>/mail`.
    pub records: PathBuf,
}

impl MailHost {
    /// Read the API key and check the configuration.
    pub fn open(config: MailConfig, state_dir: &Path) -> Result<Self, String> {
        use std::os::unix::fs::MetadataExt;
        let key_file = &config.doveadm_api_key_file;
        let meta = std::fs::metadata(key_file).map_err(|e| format!("mail: {}: {e}", key_file.display()))?;
        if meta.mode() & 0o004 != 0 {
            return Err(format!(
                "mail: {} is readable by every user; it holds Dovecot's API key (chmod 600 it)",
                key_file.display()
            ));
        }
        let key = std::fs::read_to_string(key_file).map_err(|e| format!("mail: {}: {e}", key_file.display()))?;
        if key.trim().is_empty() {
            return Err(format!("mail: {} is empty", key_file.display()));
        }
        for (what, name) in
            [("recoverable_mailbox", &config.recoverable_mailbox), ("junk_mailbox", &config.junk_mailbox)]
        {
            let probe =
                picket_common::actions::mail::MailRef { user: "u".into(), mailbox: name.clone(), guid: "g".into() };
            picket_common::actions::mail::check_ref(&probe).map_err(|e| format!("mail.{what}: {e}"))?;
        }
        use picket_common::actions::mail::{valid_domain, MAX_DOMAINS};
        if let Some(bad) = config.internal_domains.iter().find(|d| !valid_domain(d)) {
            return Err(format!("mail.internal_domains: {bad:?} is not a lowercase domain name"));
        }
        if config.internal_domains.len() > MAX_DOMAINS {
            return Err(format!("mail.internal_domains: at most {MAX_DOMAINS}"));
        }
        if !picket_common::actions::mail::valid_user(&config.quarantine_account) {
            return Err(format!("mail.quarantine_account {:?} is not a login name", config.quarantine_account));
        }
        let patience = std::time::Duration::from_secs(config.unreachable_wait_secs.min(3600));
        let doveadm = doveadm::Doveadm::new(&config.doveadm_url, &key, patience).map_err(|e| format!("mail: {e}"))?;
        let records = state_dir.join("mail");
        crate::fsutil::create_private_dir(&records).map_err(|e| format!("mail: {}: {e}", records.display()))?;
        Ok(Self { config, doveadm, records })
    }
}

impl MailHost {
    /// The batches of this host.
    pub fn batches(&self) -> batch::Batches<'_> {
        batch::Batches { dv: &self.doveadm, dir: &self.records, quarantine: &self.config.quarantine_account }
    }

    /// Forwarding on this host.
    pub fn forwarding(&self) -> forwarding::Forwarding<'_> {
        forwarding::Forwarding {
            dv: &self.doveadm,
            dir: &self.records,
            quarantine: &self.config.quarantine_account,
            internal: &self.config.internal_domains,
        }
    }

    /// Check that the quarantine account exists (a quarantine into a
    /// missing account would fail message by message).
    pub fn check_quarantine(&self) -> Result<(), String> {
        let account = &self.config.quarantine_account;
        match self.doveadm.one("mailboxList", serde_json::json!({ "user": account })) {
            Ok(_) => Ok(()),
            Err(e) if e.is_no_user() => Err(format!(
                "the quarantine account {account:?} is not a Dovecot user: add it to the userdb with no password \
                 and nologin=y (docs/OPERATIONS.md, \"Mail hosts\"), or set mail.quarantine_account"
            )),
            Err(e) => Err(format!("the quarantine account {account:?}: {e}")),
        }
    }
}

/// A record the agent keeps of a mail action (`what` names it in errors):
/// `None` when there is none yet.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{what}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Write a record whole, durably (in the agent's own private directory).
pub(crate) fn write_record<T: serde::Serialize>(path: &Path, record: &T, what: &str) -> Result<(), String> {
    let json = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(path, &json).map_err(|e| format!("{what}: {e}"))
}

/// Split doveadm's flag list, leaving out the per-session `\Recent`.
pub(crate) fn flags(value: &str) -> Vec<String> {
    value.split_whitespace().filter(|f| !f.eq_ignore_ascii_case("\\Recent")).map(str::to_string).collect()
}
