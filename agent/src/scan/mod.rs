//! Antivirus scanning: YARA-X rules plus SHA-256 indicators.
//!
//! - [`engine`]: rule loading (one bad file never stops the others), the
//!   built-in EICAR rule, external variables, severities.
//! - [`walk`]: the parallel file walk (no symlinks followed, special files
//!   skipped, size cap, errors counted, progress).
//! - [`targets`]: what quick and full scans cover.
//! - [`copies`]: other copies of a file by SHA-256, within a budget.

pub mod copies;
pub mod engine;
pub mod targets;
pub mod walk;

pub use engine::{Detection, Engine, IndicatorAction, Indicators, RuleFileError, Severity};
pub use walk::{scan, ScanOptions, ScanProgress, ScanSummary};
