//! The Linux platform adapter.
//!
//! - [`process`]: terminate processes (kill_process).

mod process;

use picket_common::actions::ActionKind;

use super::{KillReport, KillRequest, Platform, PlatformError};

#[derive(Default)]
pub struct Linux;

impl Platform for Linux {
    fn capabilities(&self) -> Vec<ActionKind> {
        vec![ActionKind::KillProcess]
    }

    fn kill_process(&self, req: &KillRequest) -> Result<KillReport, PlatformError> {
        process::kill(req)
    }
}
