//! What the automation level of a device group lets an investigation do:
//! the levels, folder classes, and the one decision table of the design.

use picket_common::detection::Severity;
use picket_common::persistence::inside;
use serde::Deserialize;

/// The five automation levels of a device group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Full,
    SemiAny,
    SemiCore,
    SemiNonTemp,
    None,
}

impl Level {
    /// In declaration order.
    pub const NAMES: [&'static str; 5] = ["full", "semi_any", "semi_core", "semi_non_temp", "none"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "semi_any" => Some(Self::SemiAny),
            "semi_core" => Some(Self::SemiCore),
            "semi_non_temp" => Some(Self::SemiNonTemp),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderClass {
    Core,
    Temp,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Automatic,
    Pending,
    NoResponse,
}

/// DESIGN.md's table: what happens to the remediation of evidence with
/// `verdict` in a folder of `class` under automation `level`.
pub fn decide(level: Level, verdict: Severity, class: FolderClass) -> Decision {
    use Decision::*;
    match (level, verdict) {
        (Level::None, _) => NoResponse,
        (_, Severity::Informational) => NoResponse,
        (_, Severity::Suspicious) => Pending,
        (Level::Full, Severity::Malicious) => Automatic,
        (Level::SemiAny, Severity::Malicious) => Pending,
        (Level::SemiCore, Severity::Malicious) => {
            if class == FolderClass::Core {
                Pending
            } else {
                Automatic
            }
        }
        (Level::SemiNonTemp, Severity::Malicious) => {
            if class == FolderClass::Temp {
                Automatic
            } else {
                Pending
            }
        }
    }
}

/// `[investigations]` in the coordinator config: the folder classes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvestigationConfig {
    /// Open an investigation for every new alert (manual ones work either way).
    pub automatic: bool,
    /// Folders whose files are "core" (a `*` component matches any one name).
    pub core_folders: Vec<String>,
    /// Folders whose files are "temp".
    pub temp_folders: Vec<String>,
    /// Where the agent looks for other copies (empty: its quick-scan places).
    pub copy_search_paths: Vec<String>,
    /// How long, and how many bytes, the search for other copies may read.
    pub copy_search_budget_secs: u64,
    pub copy_search_budget_bytes: u64,
    /// No longer used: every expansion to other devices waits for an
    /// approver. Accepted so older configs still load (a warning says so).
    pub expansion_approval_threshold: Option<usize>,
}

impl Default for InvestigationConfig {
    fn default() -> Self {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        Self {
            automatic: true,
            core_folders: v(&["/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/boot"]),
            temp_folders: v(&[
                "/tmp",
                "/var/tmp",
                "/dev/shm",
                "/run/user/*",
                "/home/*/Downloads",
                "/home/*/.cache",
                "/root/Downloads",
                "/root/.cache",
            ]),
            copy_search_paths: Vec::new(),
            copy_search_budget_secs: 120,
            copy_search_budget_bytes: 8 * 1024 * 1024 * 1024,
            expansion_approval_threshold: None,
        }
    }
}

impl InvestigationConfig {
    pub fn class_of(&self, path: &str) -> FolderClass {
        // Temp first: /tmp is not core even where /usr-like rules would match.
        if self.temp_folders.iter().any(|f| inside(path, f)) {
            FolderClass::Temp
        } else if self.core_folders.iter().any(|f| inside(path, f)) {
            FolderClass::Core
        } else {
            FolderClass::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_table_for_every_level_verdict_and_folder() {
        use Decision::*;
        use FolderClass::*;
        let m = Severity::Malicious;
        let s = Severity::Suspicious;
        let table = [
            (Level::Full, [(m, [Automatic, Automatic, Automatic]), (s, [Pending, Pending, Pending])]),
            (Level::SemiAny, [(m, [Pending, Pending, Pending]), (s, [Pending, Pending, Pending])]),
            (Level::SemiCore, [(m, [Pending, Automatic, Automatic]), (s, [Pending, Pending, Pending])]),
            (Level::SemiNonTemp, [(m, [Pending, Automatic, Pending]), (s, [Pending, Pending, Pending])]),
            (Level::None, [(m, [NoResponse, NoResponse, NoResponse]), (s, [NoResponse, NoResponse, NoResponse])]),
        ];
        for (level, rows) in table {
            for (verdict, expected) in rows {
                for (class, want) in [Core, Temp, Other].into_iter().zip(expected) {
                    assert_eq!(decide(level, verdict, class), want, "{level:?} × {verdict:?} × {class:?}");
                }
            }
        }
    }

    #[test]
    fn folder_classes() {
        let c = InvestigationConfig::default();
        assert_eq!(c.class_of("/usr/bin/x"), FolderClass::Core);
        assert_eq!(c.class_of("/etc/cron.d/job"), FolderClass::Core);
        assert_eq!(c.class_of("/tmp/x"), FolderClass::Temp);
        assert_eq!(c.class_of("/home/ann/Downloads/setup.sh"), FolderClass::Temp);
        assert_eq!(c.class_of("/run/user/1000/x"), FolderClass::Temp);
        assert_eq!(c.class_of("/opt/app/bin/x"), FolderClass::Other);
        assert_eq!(c.class_of("/usr"), FolderClass::Other, "the folder itself is not inside it");
        assert_eq!(c.class_of("/usrlocal/x"), FolderClass::Other);
    }
}
