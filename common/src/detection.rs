//! Detection vocabulary shared by agent and coordinator: severities, one
//! detection, alert reports, and the content the coordinator distributes
//! (rule bundles and SHA-256 indicators).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Informational,
    Suspicious,
    Malicious,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "informational",
            Self::Suspicious => "suspicious",
            Self::Malicious => "malicious",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "informational" => Some(Self::Informational),
            "suspicious" => Some(Self::Suspicious),
            "malicious" => Some(Self::Malicious),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rules built into every agent, known to the coordinator without a
/// bundle: (namespace, rule, severity).
pub const BUILTIN_RULES: [(&str, &str, Severity); 1] = [("builtin", "EICAR_Test_File", Severity::Malicious)];

/// How the coordinator indexes a rule's severity: `namespace:rule`.
pub fn rule_key(namespace: &str, rule: &str) -> String {
    format!("{namespace}:{rule}")
}

/// One detection in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub path: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// Rule identifier, or `indicator` for a block-listed hash.
    pub rule: String,
    /// Rule namespace (the rule file's name), `builtin` or `indicators`.
    pub namespace: String,
    pub severity: Severity,
}

/// Detections the agent reports as an alert. `report_id` makes delivery
/// idempotent: the agent resends until `AlertAck { report_id }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertReport {
    pub report_id: Uuid,
    /// What found them: `realtime`, or `scan:<action id>`.
    pub source: String,
    /// Device clock, Unix milliseconds.
    pub observed_ms: i64,
    pub detections: Vec<Detection>,
}

/// A rule file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleFile {
    /// Base name, `[A-Za-z0-9._-]+` ending in `.yar` or `.yara`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.yara?$", max_length = 200))]
    pub name: String,
    pub source: String,
}

/// The coordinator's current rule set. `version` is the SHA-256 of the
/// files (see [`bundle_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleBundle {
    pub version: String,
    pub files: Vec<RuleFile>,
}

/// Whether a hash is blocked (malicious) or allowed (overrides every rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IndicatorAction {
    Block,
    Allow,
}

impl IndicatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// The indicators in force. `version` is the SHA-256 of the sorted entries
/// (see [`indicator_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndicatorSet {
    pub version: String,
    pub entries: Vec<(String, IndicatorAction)>,
}

/// What content the agent holds, sent after `Welcome` and after each change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContentState {
    /// Version of the rule bundle in use (empty: none yet).
    pub rules_version: String,
    pub indicators_version: String,
    /// Why the last bundle received was not taken into use, if it was not.
    pub rules_error: Option<String>,
}

/// Whether a rule file name is acceptable in a bundle.
pub fn valid_rule_file_name(name: &str) -> bool {
    (name.ends_with(".yar") || name.ends_with(".yara"))
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Content version of a bundle: SHA-256 over the files sorted by name, each
/// as name, NUL, length, NUL, source.
pub fn bundle_version(files: &[RuleFile]) -> String {
    let mut sorted: Vec<&RuleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut buf = Vec::new();
    for f in sorted {
        buf.extend_from_slice(f.name.as_bytes());
        buf.push(0);
        buf.extend_from_slice(f.source.len().to_string().as_bytes());
        buf.push(0);
        buf.extend_from_slice(f.source.as_bytes());
    }
    sha256_hex(&buf)
}

/// Content version of an indicator set: SHA-256 of the sorted `hash:action` lines.
pub fn indicator_version(entries: &[(String, IndicatorAction)]) -> String {
    let mut lines: Vec<String> = entries.iter().map(|(h, a)| format!("{h}:{}\n", a.as_str())).collect();
    lines.sort();
    sha256_hex(lines.concat().as_bytes())
}

/// SHA-256 of `data` in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Whether `s` is a SHA-256 in lowercase hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_file_names() {
        assert!(valid_rule_file_name("apt_foo-1.yar"));
        assert!(valid_rule_file_name("x.yara"));
        for bad in ["../x.yar", "x.txt", ".yar", "a/b.yar", "a b.yar", ""] {
            assert!(!valid_rule_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn versions_ignore_order_and_see_content() {
        let a = RuleFile { name: "a.yar".into(), source: "rule a {condition: true}".into() };
        let b = RuleFile { name: "b.yar".into(), source: "rule b {condition: true}".into() };
        assert_eq!(bundle_version(&[a.clone(), b.clone()]), bundle_version(&[b.clone(), a.clone()]));
        let b2 = RuleFile { source: "rule b {condition: false}".into(), ..b };
        assert_ne!(bundle_version(&[a.clone(), b2]), bundle_version(&[a]));
        let x = vec![("aa".to_string(), IndicatorAction::Block), ("bb".to_string(), IndicatorAction::Allow)];
        let y = vec![x[1].clone(), x[0].clone()];
        assert_eq!(indicator_version(&x), indicator_version(&y));
    }
}
