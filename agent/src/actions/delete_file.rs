//! `delete_file {path, force?}`: move a file into the vault without killing
//! anything (it can be released again).

use picket_common::actions::params;
use picket_common::actions::results::QuarantineOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::Feature;

pub struct DeleteFile;

impl Action for DeleteFile {
    const KIND: ActionKind = ActionKind::DeleteFile;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::Quarantine;
    type Output = QuarantineOutput;

    fn run(&self, p: params::Quarantine, run: &Run<'_>) -> Result<QuarantineOutput, ActionFailure> {
        super::stop_and_quarantine::quarantine_files(p, run, false)
    }
}
