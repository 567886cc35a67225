//! Every message either side can decode: what decodes re-encodes to a frame
//! that decodes to the same message (nothing is lost or invented between the
//! two ends), under every frame cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::codec::{decode, decode_body, encode};
use picket_common::limits::{DEFAULT_MAX_FRAME, PRE_AUTH_MAX_FRAME};
use picket_common::proto::{AgentMsg, CoordMsg};

fuzz_target!(|data: &[u8]| {
    for cap in [PRE_AUTH_MAX_FRAME, DEFAULT_MAX_FRAME] {
        if let Ok((msg, used)) = decode::<AgentMsg>(data, cap) {
            assert!(used <= data.len());
            let again = encode(&msg, cap).expect("what decoded under the cap re-encodes under it");
            assert_eq!(decode::<AgentMsg>(&again, cap).expect("re-decodes").0, msg);
        }
        if let Ok((msg, _)) = decode::<CoordMsg>(data, cap) {
            let again = encode(&msg, cap).expect("re-encodes");
            assert_eq!(decode::<CoordMsg>(&again, cap).expect("re-decodes").0, msg);
        }
    }
    // A body without its header, as the async reader hands it over.
    let _ = decode_body::<AgentMsg>(data, PRE_AUTH_MAX_FRAME);
});
