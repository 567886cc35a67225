//! Protocol constants shared by both ends.

use std::time::Duration;

/// Version of the wire protocol spoken by this build. A peer sending another
/// version is refused with [`crate::proto::RefusalReason::VersionMismatch`].
pub const PROTOCOL_VERSION: u16 = 1;

/// Default cap on one frame body, checked against the length prefix before
/// any buffer is allocated.
pub const DEFAULT_MAX_FRAME: u32 = 8 * 1024 * 1024;

/// Hard ceiling for the configurable frame cap (and bincode's decode limit).
pub const MAX_FRAME_CEILING: u32 = 64 * 1024 * 1024;

/// Cap on frames from a peer that has not authenticated yet (enrollment:
/// a CSR and a token fit many times over).
pub const PRE_AUTH_MAX_FRAME: u32 = 64 * 1024;

/// Default interval between agent heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Upper bound of the agent's reconnect backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// DNS name carried by the coordinator's server certificate. Agents verify the
/// coordinator against this name and the pinned Picket CA, whatever address
/// they dial, so a coordinator can move hosts without reissuing its identity.
pub const COORDINATOR_SERVER_NAME: &str = "coordinator.picket.internal";

/// Prefix of the URI subject-alternative-name that carries a device id in an
/// agent certificate: `urn:uuid:<device id>`.
pub const DEVICE_SAN_PREFIX: &str = "urn:uuid:";

/// The device URI SAN for `id`.
pub fn device_san(id: &uuid::Uuid) -> String {
    format!("{DEVICE_SAN_PREFIX}{id}")
}

/// Parse a device id out of a URI SAN written by [`device_san`].
pub fn parse_device_san(uri: &str) -> Option<uuid::Uuid> {
    uri.strip_prefix(DEVICE_SAN_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_san_round_trips() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(parse_device_san(&device_san(&id)), Some(id));
        assert_eq!(parse_device_san("urn:uuid:not-a-uuid"), None);
        assert_eq!(parse_device_san("https://example.test"), None);
    }
}
