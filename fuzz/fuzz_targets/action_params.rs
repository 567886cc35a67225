//! Action parameters as the agent (and the coordinator) check them before
//! anything runs: any text, for any kind, is accepted or refused with a
//! reason — and what is accepted stays accepted once re-serialised (the two
//! ends read the same thing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::actions::params::{self, check};
use picket_common::actions::{mail, ActionKind};

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(kind: ActionKind, json: &str) {
    let value: T = params::parse(kind, json).expect("checked parameters parse");
    let again = serde_json::to_string(&value).expect("serialise");
    assert_eq!(check(kind, &again), Ok(()), "{kind}: {json} → {again}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(json) = std::str::from_utf8(rest) else { return };
    let kind = ActionKind::ALL[usize::from(pick) % ActionKind::ALL.len()];
    if check(kind, json).is_err() {
        return;
    }
    use params::*;
    match kind {
        ActionKind::KillProcess => round_trip::<KillProcess>(kind, json),
        ActionKind::Isolate => round_trip::<Isolate>(kind, json),
        ActionKind::ReleaseIsolation | ActionKind::ReleaseCode => round_trip::<Release>(kind, json),
        ActionKind::CollectPackage | ActionKind::Offboard => round_trip::<Nothing>(kind, json),
        ActionKind::Scan => round_trip::<Scan>(kind, json),
        ActionKind::RequestSample => round_trip::<RequestSample>(kind, json),
        ActionKind::CollectEvidence => round_trip::<CollectEvidence>(kind, json),
        ActionKind::StopAndQuarantine | ActionKind::DeleteFile => round_trip::<Quarantine>(kind, json),
        ActionKind::ReleaseFromQuarantine => round_trip::<ReleaseFromQuarantine>(kind, json),
        ActionKind::RemovePersistence => round_trip::<RemovePersistence>(kind, json),
        ActionKind::RestorePersistence => round_trip::<RestorePersistence>(kind, json),
        ActionKind::RestrictCode => round_trip::<RestrictCode>(kind, json),
        ActionKind::MailSearch => round_trip::<mail::MailSearch>(kind, json),
        ActionKind::SoftDeleteEmail
        | ActionKind::MoveToJunk
        | ActionKind::MoveToInbox
        | ActionKind::QuarantineEmail
        | ActionKind::HardDeleteEmail
        | ActionKind::MailScan => round_trip::<mail::MailMessages>(kind, json),
        ActionKind::RestoreEmail | ActionKind::ReleaseEmail | ActionKind::RestoreForwarding => {
            round_trip::<mail::RestoreEmail>(kind, json)
        }
        ActionKind::MailForwarding | ActionKind::DisableExternalForwarding => {
            round_trip::<mail::MailUsers>(kind, json)
        }
        ActionKind::QuarantineAttachment => round_trip::<mail::QuarantineAttachment>(kind, json),
        ActionKind::BlockUrl => round_trip::<mail::BlockUrl>(kind, json),
        ActionKind::UnblockUrl => round_trip::<mail::UnblockUrl>(kind, json),
    }
});
