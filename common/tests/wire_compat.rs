//! Wire compatibility with the previous version.
//!
//! `fixtures/wire-protocol-1.txt` holds one frame of every message (and of
//! every action kind, failure and refusal reason) as the agent and
//! coordinator of Picket 0.1 (commit e2bb860, protocol 1) encoded them. This
//! version must decode each to the same value and encode each to the same
//! bytes: an agent one version older and this coordinator (or the reverse)
//! understand each other. The action results inside the `ActionResult`
//! frames are the JSON that agent version produced for each kind; each must
//! read into this version's typed result.
//!
//! The fixture is never rewritten by the tests. When a protocol change is
//! intended, bump `PROTOCOL_VERSION`, keep this file for the old version and
//! write the new one with `PICKET_WRITE_WIRE_FIXTURE=<path> cargo test -p
//! picket-common --test wire_compat`.

use picket_common::actions::results::{
    EvidenceOutput, IsolateOutput, KillProcessOutput, OffboardOutput, PackageOutput, PersistenceOutput,
    QuarantineOutput, ReleaseOutput, Released, RestoreOutput, RestrictOutput, SampleOutput, ScanOutput,
};
use picket_common::actions::{ActionKind, ActionOutcome, ActionRequest, ActionResult, FailureReason};
use picket_common::codec::{decode, encode};
use picket_common::detection::{
    AlertReport, ContentState, Detection, IndicatorAction, IndicatorSet, RuleBundle, RuleFile, Severity,
};
use picket_common::limits::{MAX_FRAME_CEILING, PROTOCOL_VERSION};
use picket_common::proto::{
    AgentMsg, CoordMsg, EnrollRequest, Enrolled, Hello, Refusal, RefusalReason, UploadAck, UploadBegin, UploadChunk,
    Welcome,
};
use uuid::Uuid;

const FIXTURE: &str = include_str!("fixtures/wire-protocol-1.txt");

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x6b1a6f9e_4a7c_4a44_9a38_000000000000 | n)
}

/// The kinds protocol 1 had (Picket 0.1), in their order. Kinds added
/// since come after them; an older agent never advertises them, so the
/// coordinator never sends them to it.
const PROTOCOL_1_KINDS: [ActionKind; 14] = [
    ActionKind::Isolate,
    ActionKind::ReleaseIsolation,
    ActionKind::RestrictCode,
    ActionKind::ReleaseCode,
    ActionKind::Scan,
    ActionKind::StopAndQuarantine,
    ActionKind::ReleaseFromQuarantine,
    ActionKind::CollectPackage,
    ActionKind::RequestSample,
    ActionKind::Offboard,
    ActionKind::KillProcess,
    ActionKind::RemovePersistence,
    ActionKind::DeleteFile,
    ActionKind::CollectEvidence,
];

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// What agents of the previous version reported for each kind that succeeded.
fn output_of(kind: ActionKind) -> String {
    let json = match kind {
        ActionKind::Isolate => {
            r#"{"mode":"selective","coordinator":["127.0.0.1:7443"],"exclusions":[{"cidr":"10.0.0.0/8","protocol":"tcp","port":22,"direction":"outbound"}],"rules":"table inet picket_isolation {}"}"#
        }
        ActionKind::ReleaseIsolation | ActionKind::ReleaseCode => r#"{"released":true}"#,
        ActionKind::RestrictCode => {
            r#"{"applied":"fanotify FAN_OPEN_EXEC_PERM on 2 mounts","policy":{"allow_sha256":[],"allow_paths":["/opt/app"],"scope":[]}}"#
        }
        ActionKind::Scan => {
            r#"{"files":12,"bytes":4096,"detections":[{"path":"/tmp/eicar.com","sha256":"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f","size":68,"rule":"EICAR","namespace":"builtin","severity":"malicious"}],"errors":0,"skipped":1,"seconds":0.25,"error_samples":[],"mode":"paths","rules_loaded":3,"rules_version":"abc"}"#
        }
        ActionKind::StopAndQuarantine | ActionKind::DeleteFile => {
            r#"{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-000000000007","path":"/tmp/x","sha256":"ab","size":5,"killed_pids":[42],"persistence_removed":["line 3 of /etc/crontab"],"files":[{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-000000000007","path":"/tmp/x","sha256":"ab","size":5,"killed_pids":[42],"persistence_removed":["line 3 of /etc/crontab"]}],"errors":[]}"#
        }
        ActionKind::ReleaseFromQuarantine => {
            r#"{"released":[{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-000000000007","path":"/tmp/x","sha256":"ab","persistence_restored":[]}],"undo_of":"6b1a6f9e-4a7c-4a44-9a38-000000000008"}"#
        }
        ActionKind::CollectPackage => {
            r#"{"sha256":"ab","size":1000,"items":40,"errors":2,"bytes_uncompressed":90000,"seconds":1.5}"#
        }
        ActionKind::RequestSample => r#"{"path":"/tmp/x","sha256":"ab","size":5}"#,
        ActionKind::Offboard => r#"{"isolation_released":true,"restriction_released":false}"#,
        ActionKind::KillProcess => {
            r#"{"pid":42,"executable":"/tmp/x","executable_sha256":"ab","signals":["SIGTERM","SIGKILL"],"exited":true}"#
        }
        ActionKind::RemovePersistence => {
            r#"{"path":"/tmp/x","removed":["line 3 of /etc/crontab"],"removals":[{"kind":"line","file":"/etc/crontab","line_no":3,"line":"* * * * * root /tmp/x"}]}"#
        }
        ActionKind::RestorePersistence
        | ActionKind::MailSearch
        | ActionKind::SoftDeleteEmail
        | ActionKind::MoveToJunk
        | ActionKind::MoveToInbox
        | ActionKind::RestoreEmail
        | ActionKind::QuarantineEmail
        | ActionKind::ReleaseEmail
        | ActionKind::HardDeleteEmail
        | ActionKind::QuarantineAttachment
        | ActionKind::MailScan
        | ActionKind::MailForwarding
        | ActionKind::DisableExternalForwarding
        | ActionKind::RestoreForwarding
        | ActionKind::BlockUrl
        | ActionKind::UnblockUrl => unreachable!("not in protocol 1"),
        ActionKind::CollectEvidence => {
            r#"{"file":{"path":"/tmp/x","exists":true,"sha256":"ab","size":5,"uid":1000,"mode":"755","mtime":1700000000,"package":null},"processes":[{"pid":42,"executable":"/tmp/x","ppid":1,"parent_executable":"/usr/lib/systemd/systemd","connections":[{"protocol":"tcp","local":"127.0.0.1:4444","remote":"0.0.0.0:0","state":"LISTEN","uid":1000,"pid":42}]}],"persistence":[{"what":"line 3 of /etc/crontab","removal":{"kind":"line","file":"/etc/crontab","line_no":3,"line":"* * * * * root /tmp/x"}}],"copies":["/home/ann/x"],"copies_search":{"paths":["/home","/tmp"],"files_seen":100,"files_hashed":3,"bytes_hashed":15,"complete":true,"stopped":null,"seconds":0.1},"temp_processes":[{"pid":43,"executable":"/tmp/y","sha256":"cd","connections":[]}],"temp_persistence":[{"path":"/tmp/z","named_in":"/etc/crontab"}]}"#
        }
    };
    json.to_string()
}

/// Reads `json` as the typed result of `kind`.
fn read_result(kind: ActionKind, json: &str) -> Result<(), serde_json::Error> {
    fn read<T: serde::de::DeserializeOwned>(json: &str) -> Result<(), serde_json::Error> {
        serde_json::from_str::<T>(json).map(|_| ())
    }
    match kind {
        ActionKind::Isolate => read::<IsolateOutput>(json),
        ActionKind::ReleaseIsolation | ActionKind::ReleaseCode => read::<Released>(json),
        ActionKind::RestrictCode => read::<RestrictOutput>(json),
        ActionKind::Scan => read::<ScanOutput>(json),
        ActionKind::StopAndQuarantine | ActionKind::DeleteFile => read::<QuarantineOutput>(json),
        ActionKind::ReleaseFromQuarantine => read::<ReleaseOutput>(json),
        ActionKind::CollectPackage => read::<PackageOutput>(json),
        ActionKind::RequestSample => read::<SampleOutput>(json),
        ActionKind::Offboard => read::<OffboardOutput>(json),
        ActionKind::KillProcess => read::<KillProcessOutput>(json),
        ActionKind::RemovePersistence => read::<PersistenceOutput>(json),
        ActionKind::CollectEvidence => read::<EvidenceOutput>(json),
        ActionKind::RestorePersistence => read::<RestoreOutput>(json),
        ActionKind::MailSearch => read::<picket_common::actions::mail::MailSearchOutput>(json),
        ActionKind::SoftDeleteEmail
        | ActionKind::MoveToJunk
        | ActionKind::MoveToInbox
        | ActionKind::RestoreEmail
        | ActionKind::QuarantineEmail
        | ActionKind::ReleaseEmail
        | ActionKind::HardDeleteEmail
        | ActionKind::QuarantineAttachment => read::<picket_common::actions::mail::MailBatchOutput>(json),
        ActionKind::MailScan => read::<picket_common::actions::mail::MailScanOutput>(json),
        ActionKind::MailForwarding => read::<picket_common::actions::mail::ForwardingOutput>(json),
        ActionKind::DisableExternalForwarding | ActionKind::RestoreForwarding => {
            read::<picket_common::actions::mail::ForwardingChangeOutput>(json)
        }
        ActionKind::BlockUrl => read::<picket_common::actions::mail::BlockUrlOutput>(json),
        ActionKind::UnblockUrl => read::<picket_common::actions::mail::UnblockUrlOutput>(json),
    }
}

fn agent_samples() -> Vec<(String, AgentMsg)> {
    let mut out = vec![
        (
            "hello".into(),
            AgentMsg::Hello(Hello {
                protocol_version: 1,
                agent_version: "0.1.0".into(),
                hostname: "web-1".into(),
                os: "Debian GNU/Linux 12".into(),
                kernel: "6.1.0".into(),
                capabilities: PROTOCOL_1_KINDS.iter().map(|k| k.as_str().to_string()).collect(),
            }),
        ),
        ("heartbeat".into(), AgentMsg::Heartbeat { seq: 300 }),
        (
            "enroll".into(),
            AgentMsg::Enroll(EnrollRequest {
                protocol_version: 1,
                token: "pke_abc".into(),
                csr_der: vec![0x30, 0x82, 1, 2],
                hostname: "web-1".into(),
            }),
        ),
        ("action_started".into(), AgentMsg::ActionStarted { action_id: id(1) }),
        (
            "action_progress".into(),
            AgentMsg::ActionProgress { action_id: id(1), phase: "scanning".into(), percent: 42 },
        ),
        (
            "alert".into(),
            AgentMsg::Alert(AlertReport {
                report_id: id(2),
                source: "realtime".into(),
                observed_ms: 1_700_000_000_000,
                detections: vec![Detection {
                    path: "/tmp/x".into(),
                    sha256: SHA.into(),
                    size: 5,
                    rule: "EICAR".into(),
                    namespace: "builtin".into(),
                    severity: Severity::Malicious,
                }],
            }),
        ),
        (
            "content_state".into(),
            AgentMsg::ContentState(ContentState {
                rules_version: "r1".into(),
                indicators_version: "i1".into(),
                rules_error: Some("bad rule".into()),
            }),
        ),
        ("upload_begin".into(), AgentMsg::UploadBegin(UploadBegin { action_id: id(3), size: 10, sha256: SHA.into() })),
        (
            "upload_chunk".into(),
            AgentMsg::UploadChunk(UploadChunk { action_id: id(3), offset: 4, data: vec![1, 2, 3], sha256: SHA.into() }),
        ),
        ("renew_certificate".into(), AgentMsg::RenewCertificate { csr_der: vec![0x30, 1] }),
    ];
    for (n, kind) in PROTOCOL_1_KINDS.into_iter().enumerate() {
        let outcome = ActionOutcome::Succeeded { output_json: output_of(kind) };
        out.push((
            format!("result_{kind}"),
            AgentMsg::ActionResult(ActionResult { action_id: id(10 + n as u128), outcome }),
        ));
    }
    for reason in
        [FailureReason::Error, FailureReason::Interrupted, FailureReason::Unsupported, FailureReason::InvalidParams]
    {
        let outcome = ActionOutcome::Failed { reason, error: "why".into() };
        out.push((
            format!("failed_{}", reason.as_str()),
            AgentMsg::ActionResult(ActionResult { action_id: id(4), outcome }),
        ));
    }
    out.push((
        "cancelled".into(),
        AgentMsg::ActionResult(ActionResult { action_id: id(5), outcome: ActionOutcome::Cancelled }),
    ));
    out
}

fn coordinator_samples() -> Vec<(String, CoordMsg)> {
    let mut out = vec![
        (
            "welcome".into(),
            CoordMsg::Welcome(Welcome { device_id: id(6), heartbeat_secs: 30, server_time_ms: 1_700_000_000_000 }),
        ),
        ("heartbeat_ack".into(), CoordMsg::HeartbeatAck { seq: 300 }),
        (
            "enrolled".into(),
            CoordMsg::Enrolled(Enrolled {
                device_id: id(6),
                certificate_der: vec![0x30, 2],
                ca_der: vec![0x30, 3],
                group: "servers".into(),
            }),
        ),
        ("cancel".into(), CoordMsg::Cancel { action_id: id(1) }),
        ("result_ack".into(), CoordMsg::ResultAck { action_id: id(1) }),
        ("alert_ack".into(), CoordMsg::AlertAck { report_id: id(2) }),
        (
            "rules".into(),
            CoordMsg::Rules(RuleBundle {
                version: "r1".into(),
                files: vec![RuleFile { name: "a.yar".into(), source: "rule a { condition: false }".into() }],
            }),
        ),
        (
            "indicators".into(),
            CoordMsg::Indicators(IndicatorSet {
                version: "i1".into(),
                entries: vec![(SHA.into(), IndicatorAction::Block), ("ab".repeat(32), IndicatorAction::Allow)],
            }),
        ),
        (
            "upload_ack".into(),
            CoordMsg::UploadAck(UploadAck { action_id: id(3), offset: 7, done: false, error: Some("no".into()) }),
        ),
        ("certificate_renewed".into(), CoordMsg::CertificateRenewed { certificate_der: vec![0x30, 4] }),
    ];
    for reason in [
        RefusalReason::VersionMismatch,
        RefusalReason::Revoked,
        RefusalReason::Offboarded,
        RefusalReason::UnknownDevice,
        RefusalReason::CertificateRequired,
        RefusalReason::ProtocolViolation,
        RefusalReason::TokenInvalid,
        RefusalReason::TokenExpired,
        RefusalReason::TokenUsedUp,
        RefusalReason::TokenRevoked,
        RefusalReason::BadCsr,
        RefusalReason::Replaced,
        RefusalReason::Internal,
        RefusalReason::ShuttingDown,
    ] {
        let name = format!("refused_{reason:?}");
        out.push((name, CoordMsg::Refused(Refusal { reason, message: reason.to_string() })));
    }
    for (n, kind) in PROTOCOL_1_KINDS.into_iter().enumerate() {
        let request = ActionRequest { action_id: id(10 + n as u128), kind, params_json: "{}".into() };
        out.push((format!("action_{kind}"), CoordMsg::Action(request)));
    }
    out
}

fn fixture() -> Vec<(String, Vec<u8>)> {
    FIXTURE
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("`name hex` lines");
            (name.to_string(), hex::decode(hex).expect("hex"))
        })
        .collect()
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let agent = agent_samples().into_iter().map(|(n, m)| (format!("agent.{n}"), encode(&m, MAX_FRAME_CEILING)));
    let coord =
        coordinator_samples().into_iter().map(|(n, m)| (format!("coordinator.{n}"), encode(&m, MAX_FRAME_CEILING)));
    agent.chain(coord).map(|(n, f)| (n, f.expect("encode"))).collect()
}

#[test]
fn frames_of_the_previous_version_decode_and_encode_identically() {
    if let Ok(path) = std::env::var("PICKET_WRITE_WIRE_FIXTURE") {
        let mut text = format!("# Picket wire frames, protocol {PROTOCOL_VERSION}: `name hex-of-frame`.\n");
        for (name, frame) in frames() {
            text.push_str(&format!("{name} {}\n", hex::encode(frame)));
        }
        std::fs::write(path, text).expect("write the fixture");
        return;
    }
    let fixture = fixture();
    let agent = agent_samples();
    let coordinator = coordinator_samples();
    assert_eq!(fixture.len(), agent.len() + coordinator.len(), "every sample has its frame");
    for (name, bytes) in &fixture {
        let (side, sample) = name.split_once('.').expect("side.name");
        let matches = match side {
            "agent" => {
                let expected = &agent.iter().find(|(n, _)| n == sample).expect(name).1;
                let (decoded, used) = decode::<AgentMsg>(bytes, MAX_FRAME_CEILING).expect(name);
                if let AgentMsg::ActionResult(ActionResult {
                    outcome: ActionOutcome::Succeeded { output_json }, ..
                }) = &decoded
                {
                    let kind = ActionKind::parse(sample.trim_start_matches("result_")).expect(name);
                    read_result(kind, output_json).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                used == bytes.len()
                    && &decoded == expected
                    && encode(expected, MAX_FRAME_CEILING).expect(name) == *bytes
            }
            _ => {
                let expected = &coordinator.iter().find(|(n, _)| n == sample).expect(name).1;
                let (decoded, used) = decode::<CoordMsg>(bytes, MAX_FRAME_CEILING).expect(name);
                used == bytes.len()
                    && &decoded == expected
                    && encode(expected, MAX_FRAME_CEILING).expect(name) == *bytes
            }
        };
        assert!(matches, "{name}: this version reads or writes it differently");
    }
}

#[test]
fn kinds_added_since_come_after_protocol_1s() {
    assert_eq!(ActionKind::ALL[..PROTOCOL_1_KINDS.len()], PROTOCOL_1_KINDS, "a kind was inserted or reordered");
}

#[test]
fn the_protocol_version_is_the_fixtures() {
    assert_eq!(PROTOCOL_VERSION, 1, "a new protocol version needs its own fixture (see the module doc)");
}
