//! Every action kind the agent runs: one row each. Adding a kind is its
//! types in `picket_common::actions::{params, results}`, one file here
//! implementing [`super::Action`], and one row below.

use picket_common::actions::ActionKind;

use super::Registered;
use crate::platform::Feature;

pub static TABLE: &[&dyn Registered] = &[
    &super::kill_process::KillProcess,
    &super::isolate::Isolate,
    &super::release_isolation::ReleaseIsolation,
    &super::restrict_code::RestrictCode,
    &super::release_code::ReleaseCode,
    &super::scan::Scan,
    &super::stop_and_quarantine::StopAndQuarantine,
    &super::delete_file::DeleteFile,
    &super::release_from_quarantine::ReleaseFromQuarantine,
    &super::remove_persistence::RemovePersistence,
    &super::restore_persistence::RestorePersistence,
    &super::request_sample::RequestSample,
    &super::collect_package::CollectPackage,
    &super::collect_evidence::CollectEvidence,
    &super::offboard::Offboard,
    &super::mail::MailSearch,
    &super::mail::SoftDeleteEmail,
    &super::mail::MoveToJunk,
    &super::mail::MoveToInbox,
    &super::mail::RestoreEmail,
    &super::mail::QuarantineEmail,
    &super::mail::ReleaseEmail,
    &super::mail::HardDeleteEmail,
    &super::mail::QuarantineAttachment,
    &super::mail::MailScan,
    &super::mail::MailForwarding,
    &super::mail::DisableExternalForwarding,
    &super::mail::RestoreForwarding,
];

/// The row of `kind`.
pub fn find(kind: ActionKind) -> Option<&'static dyn Registered> {
    TABLE.iter().copied().find(|a| a.kind() == kind)
}

/// The kinds a platform with `features` can run (what `Hello` advertises).
pub fn capabilities(features: &[Feature]) -> Vec<ActionKind> {
    TABLE.iter().filter(|a| a.needs().iter().all(|f| features.contains(f))).map(|a| a.kind()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_an_agent_runs_has_exactly_one_row() {
        for kind in ActionKind::ALL {
            let rows = TABLE.iter().filter(|a| a.kind() == kind).count();
            // The coordinator runs its own kinds; an agent never offers them.
            assert_eq!(rows, usize::from(!kind.on_coordinator()), "{kind}");
        }
    }

    #[test]
    fn a_platform_without_a_firewall_does_not_advertise_isolation() {
        let kinds = capabilities(&[Feature::Processes, Feature::Files, Feature::ExecControl]);
        assert!(!kinds.contains(&ActionKind::Isolate) && kinds.contains(&ActionKind::KillProcess));
        assert!(capabilities(&[]).is_empty());
        let mail = capabilities(&[Feature::Mail]);
        assert!(mail.contains(&ActionKind::SoftDeleteEmail) && !mail.contains(&ActionKind::Scan));
        assert!(!capabilities(&[Feature::Processes, Feature::Files]).contains(&ActionKind::MailSearch));
    }
}
