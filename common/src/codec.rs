//! Frame codec: `u32` big-endian body length, then the bincode 2 (serde)
//! encoding of one message. The only module that knows the encoding.
//!
//! The length prefix is checked against the caller's cap before anything is
//! allocated, and bincode decodes under a byte limit no larger than the
//! caller's cap (rounded up to a tier: bincode takes the limit as a
//! constant), so a hostile length inside a body (a `Vec` claiming 4 G
//! elements) cannot allocate either.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::MAX_FRAME_CEILING;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes are needed; `needed` is the total length of the frame
    /// (header included) when known, else the header length.
    #[error("incomplete frame: {needed} bytes needed")]
    Incomplete { needed: usize },
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    #[error("empty frame")]
    Empty,
    #[error("undecodable frame body: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message in the frame body")]
    Trailing(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the {max}-byte frame limit")]
    TooLarge { len: usize, max: u32 },
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard().with_big_endian().with_variable_int_encoding().with_limit::<LIMIT>()
}

/// The decode limits bincode can be given (the smallest one not below the
/// caller's cap is used).
const TIERS: [u32; 7] = [64 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20, MAX_FRAME_CEILING];

/// The decode limit used for a frame cap of `max`.
pub fn decode_limit(max: u32) -> u32 {
    TIERS.iter().copied().find(|t| *t >= max).unwrap_or(MAX_FRAME_CEILING)
}

/// Encode `msg` as one frame (header + body).
pub fn encode<T: Serialize>(msg: &T, max: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut out, config::<{ MAX_FRAME_CEILING as usize }>())
        .map_err(|e| EncodeError::Encode(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    let max = max.min(MAX_FRAME_CEILING);
    let len32 = u32::try_from(len).ok().filter(|l| *l <= max).ok_or(EncodeError::TooLarge { len, max })?;
    out[..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// Read the length prefix at the start of `buf` and check it against `max`.
/// Returns the body length. Used by readers to size their buffer safely.
pub fn body_len(header: [u8; HEADER_LEN], max: u32) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header);
    let max = max.min(MAX_FRAME_CEILING);
    if len > max {
        return Err(DecodeError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(len as usize)
}

/// Decode one message from a frame body (without its header), under the
/// decode limit of the frame cap `max`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], max: u32) -> Result<T, DecodeError> {
    fn with<T: DeserializeOwned, const L: usize>(body: &[u8]) -> Result<(T, usize), DecodeError> {
        bincode::serde::decode_from_slice(body, config::<L>()).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
    let (msg, used) = match decode_limit(max) {
        l if l == TIERS[0] => with::<T, { 64 << 10 }>(body)?,
        l if l == TIERS[1] => with::<T, { 1 << 20 }>(body)?,
        l if l == TIERS[2] => with::<T, { 4 << 20 }>(body)?,
        l if l == TIERS[3] => with::<T, { 8 << 20 }>(body)?,
        l if l == TIERS[4] => with::<T, { 16 << 20 }>(body)?,
        l if l == TIERS[5] => with::<T, { 32 << 20 }>(body)?,
        _ => with::<T, { MAX_FRAME_CEILING as usize }>(body)?,
    };
    if used != body.len() {
        return Err(DecodeError::Trailing(body.len() - used));
    }
    Ok(msg)
}

/// Decode the first frame in `buf`. Returns the message and the number of
/// bytes it occupied, or `Incomplete` when `buf` holds only part of a frame.
pub fn decode<T: DeserializeOwned>(buf: &[u8], max: u32) -> Result<(T, usize), DecodeError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Incomplete { needed: HEADER_LEN });
    };
    let len = body_len(*header, max)?;
    let total = HEADER_LEN + len;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Err(DecodeError::Incomplete { needed: total });
    };
    Ok((decode_body(body, max)?, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
    use crate::proto::*;

    fn every_agent_msg() -> Vec<AgentMsg> {
        vec![
            AgentMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_version: "0.1.0".into(),
                hostname: "host-ä".into(),
                os: "Debian 12".into(),
                kernel: "6.1.0".into(),
                capabilities: vec!["isolate".into()],
            }),
            AgentMsg::Heartbeat { seq: u64::MAX },
            AgentMsg::Enroll(EnrollRequest {
                protocol_version: PROTOCOL_VERSION,
                token: "pkt_x".into(),
                csr_der: vec![0x30, 0x82, 1, 2],
                hostname: "h".into(),
            }),
            AgentMsg::ActionStarted { action_id: uuid::Uuid::new_v4() },
            AgentMsg::ActionProgress { action_id: uuid::Uuid::new_v4(), phase: "walking".into(), percent: 42 },
            AgentMsg::ActionResult(ActionResult {
                action_id: uuid::Uuid::new_v4(),
                outcome: ActionOutcome::Succeeded { output_json: "{}".into() },
            }),
            AgentMsg::ActionResult(ActionResult {
                action_id: uuid::Uuid::new_v4(),
                outcome: ActionOutcome::Failed { reason: FailureReason::Interrupted, error: "agent restarted".into() },
            }),
            AgentMsg::ActionResult(ActionResult { action_id: uuid::Uuid::new_v4(), outcome: ActionOutcome::Cancelled }),
            AgentMsg::RenewCertificate { csr_der: vec![0x30, 0x82, 3, 4] },
            AgentMsg::MailHost(crate::proto::MailHostFacts { internal_domains: vec!["example.org".into()] }),
        ]
    }

    fn every_coord_msg() -> Vec<CoordMsg> {
        vec![
            CoordMsg::Welcome(Welcome { device_id: uuid::Uuid::new_v4(), heartbeat_secs: 30, server_time_ms: -1 }),
            CoordMsg::HeartbeatAck { seq: 7 },
            CoordMsg::Refused(Refusal { reason: RefusalReason::Revoked, message: "revoked by admin".into() }),
            CoordMsg::Enrolled(Enrolled {
                device_id: uuid::Uuid::new_v4(),
                certificate_der: vec![1; 300],
                ca_der: vec![2; 300],
                group: "default".into(),
            }),
            CoordMsg::Action(ActionRequest {
                action_id: uuid::Uuid::new_v4(),
                kind: ActionKind::KillProcess,
                params_json: r#"{"pid":1}"#.into(),
            }),
            CoordMsg::Cancel { action_id: uuid::Uuid::new_v4() },
            CoordMsg::ResultAck { action_id: uuid::Uuid::new_v4() },
            CoordMsg::CertificateRenewed { certificate_der: vec![5; 300] },
            CoordMsg::LinkKey(crate::proto::LinkKey { click_url: "https://click.example:7444".into(), key: [7; 32] }),
            CoordMsg::UrlBlocklist(crate::url_blocklist::HostBlocklist {
                entries: vec![crate::url_blocklist::BlockedUrl {
                    id: uuid::Uuid::new_v4(),
                    match_type: crate::actions::mail::UrlMatch::Domain,
                    value: "evil.example".into(),
                    comment: "phishing".into(),
                    expires_at: Some(1),
                }],
                truncated: false,
            }),
        ]
    }

    /// Seeds for the fuzz corpus (`fuzz/corpus`): every message as a frame.
    #[test]
    #[ignore = "writes fuzz seeds: PICKET_FUZZ_CORPUS=fuzz/corpus cargo test -p picket-common write_fuzz_seeds -- --ignored"]
    fn write_fuzz_seeds() {
        let dir = std::path::PathBuf::from(std::env::var("PICKET_FUZZ_CORPUS").expect("PICKET_FUZZ_CORPUS"));
        let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, m) in every_agent_msg().iter().enumerate() {
            frames.push((format!("agent-{i}"), encode(m, DEFAULT_MAX_FRAME).expect("encode")));
        }
        for (i, m) in every_coord_msg().iter().enumerate() {
            frames.push((format!("coord-{i}"), encode(m, DEFAULT_MAX_FRAME).expect("encode")));
        }
        for (name, frame) in frames {
            std::fs::create_dir_all(dir.join("messages")).expect("mkdir");
            std::fs::write(dir.join("messages").join(format!("seed-{name}")), &frame).expect("write");
            // frame_stream: a cap/direction byte, then two frames back to back.
            let pick = if name.starts_with("agent") { 1u8 } else { 3u8 };
            let mut stream = vec![pick];
            stream.extend_from_slice(&frame);
            stream.extend_from_slice(&frame);
            std::fs::create_dir_all(dir.join("frame_stream")).expect("mkdir");
            std::fs::write(dir.join("frame_stream").join(format!("seed-{name}")), stream).expect("write");
        }
    }

    #[test]
    fn every_message_round_trips() {
        for msg in every_agent_msg() {
            let frame = encode(&msg, DEFAULT_MAX_FRAME).expect("encode");
            let (back, used) = decode::<AgentMsg>(&frame, DEFAULT_MAX_FRAME).expect("decode");
            assert_eq!(back, msg);
            assert_eq!(used, frame.len());
        }
        for msg in every_coord_msg() {
            let frame = encode(&msg, DEFAULT_MAX_FRAME).expect("encode");
            let (back, used) = decode::<CoordMsg>(&frame, DEFAULT_MAX_FRAME).expect("decode");
            assert_eq!(back, msg);
            assert_eq!(used, frame.len());
        }
    }

    #[test]
    fn the_decode_limit_follows_the_frame_cap() {
        assert_eq!(decode_limit(crate::limits::PRE_AUTH_MAX_FRAME), 64 << 10);
        assert_eq!(decode_limit(DEFAULT_MAX_FRAME), 8 << 20);
        assert_eq!(decode_limit(5 << 20), 8 << 20);
        assert_eq!(decode_limit(u32::MAX), MAX_FRAME_CEILING);
        // A short body claiming a 1 MB string: over a pre-auth cap's limit it
        // is refused for the claim itself, before anything is read for it.
        let body = [252u8, 0x00, 0x0F, 0x42, 0x40, b'a', b'b', b'c'];
        let small = decode_body::<String>(&body, crate::limits::PRE_AUTH_MAX_FRAME).expect_err("refused");
        assert!(small.to_string().contains("LimitExceeded"), "{small}");
        let large = decode_body::<String>(&body, MAX_FRAME_CEILING).expect_err("refused");
        assert!(large.to_string().contains("UnexpectedEnd"), "the ceiling allows the claim; the input ends: {large}");
    }

    #[test]
    fn header_is_big_endian_body_length() {
        let frame = encode(&AgentMsg::Heartbeat { seq: 1 }, DEFAULT_MAX_FRAME).expect("encode");
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(len as usize, frame.len() - HEADER_LEN);
    }

    #[test]
    fn truncated_frames_are_incomplete_at_every_cut() {
        let frame = encode(&every_agent_msg()[0], DEFAULT_MAX_FRAME).expect("encode");
        for cut in 0..frame.len() {
            let err = decode::<AgentMsg>(&frame[..cut], DEFAULT_MAX_FRAME).unwrap_err();
            assert!(matches!(err, DecodeError::Incomplete { .. }), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn two_frames_in_one_buffer_decode_in_order() {
        let mut buf = encode(&AgentMsg::Heartbeat { seq: 1 }, DEFAULT_MAX_FRAME).expect("encode");
        buf.extend(encode(&AgentMsg::Heartbeat { seq: 2 }, DEFAULT_MAX_FRAME).expect("encode"));
        let (first, used) = decode::<AgentMsg>(&buf, DEFAULT_MAX_FRAME).expect("first");
        let (second, _) = decode::<AgentMsg>(&buf[used..], DEFAULT_MAX_FRAME).expect("second");
        assert_eq!(first, AgentMsg::Heartbeat { seq: 1 });
        assert_eq!(second, AgentMsg::Heartbeat { seq: 2 });
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_allocation() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert_eq!(
            decode::<AgentMsg>(&buf, DEFAULT_MAX_FRAME).unwrap_err(),
            DecodeError::TooLarge { len: u32::MAX, max: DEFAULT_MAX_FRAME }
        );
        let just_over = (DEFAULT_MAX_FRAME + 1).to_be_bytes();
        assert!(matches!(body_len(just_over, DEFAULT_MAX_FRAME), Err(DecodeError::TooLarge { .. })));
        assert_eq!(body_len(DEFAULT_MAX_FRAME.to_be_bytes(), DEFAULT_MAX_FRAME), Ok(DEFAULT_MAX_FRAME as usize));
    }

    #[test]
    fn zero_length_frame_is_an_error() {
        assert_eq!(decode::<AgentMsg>(&[0, 0, 0, 0], DEFAULT_MAX_FRAME).unwrap_err(), DecodeError::Empty);
    }

    #[test]
    fn garbage_bodies_are_malformed_not_panics() {
        // An unknown variant index, and pseudo-random bytes of many lengths.
        let unknown_variant = [0, 0, 0, 1, 0x7f];
        assert!(matches!(decode::<AgentMsg>(&unknown_variant, DEFAULT_MAX_FRAME), Err(DecodeError::Malformed(_))));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 1..512usize {
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.push(state as u8);
            }
            let _ = decode_body::<AgentMsg>(&body, DEFAULT_MAX_FRAME);
            let _ = decode_body::<CoordMsg>(&body, DEFAULT_MAX_FRAME);
        }
    }

    #[test]
    fn hostile_inner_length_cannot_allocate() {
        // Variant 2 (Enroll), protocol_version 1, then a token string claiming
        // u64::MAX bytes (varint marker 253 + 8 bytes).
        let mut body = vec![2u8, 1, 253];
        body.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        assert!(matches!(decode::<AgentMsg>(&frame, DEFAULT_MAX_FRAME), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_refused() {
        let mut frame = encode(&AgentMsg::Heartbeat { seq: 1 }, DEFAULT_MAX_FRAME).expect("encode");
        frame.push(0);
        let len = (frame.len() - HEADER_LEN) as u32;
        frame[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode::<AgentMsg>(&frame, DEFAULT_MAX_FRAME).unwrap_err(), DecodeError::Trailing(1));
    }

    #[test]
    fn wrong_version_hello_still_decodes_so_it_can_be_refused() {
        // The version is a field, not part of the framing: a newer agent's
        // Hello decodes and the coordinator answers VersionMismatch.
        let hello = AgentMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION + 1,
            agent_version: "9.9.9".into(),
            hostname: "h".into(),
            os: "o".into(),
            kernel: "k".into(),
            capabilities: vec![],
        });
        let frame = encode(&hello, DEFAULT_MAX_FRAME).expect("encode");
        let (back, _) = decode::<AgentMsg>(&frame, DEFAULT_MAX_FRAME).expect("decode");
        let AgentMsg::Hello(h) = back else { panic!("not a hello") };
        assert_ne!(h.protocol_version, PROTOCOL_VERSION);
    }

    #[test]
    fn encode_refuses_messages_over_the_cap() {
        let msg = AgentMsg::Enroll(EnrollRequest {
            protocol_version: 1,
            token: String::new(),
            csr_der: vec![0; 2048],
            hostname: String::new(),
        });
        assert!(matches!(encode(&msg, 1024), Err(EncodeError::TooLarge { .. })));
    }
}
