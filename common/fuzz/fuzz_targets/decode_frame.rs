//! Any bytes fed to the decoder must yield a message, `Incomplete`, or an
//! error — never a panic, and never an allocation beyond the frame cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::codec::{decode, encode};
use picket_common::limits::DEFAULT_MAX_FRAME;
use picket_common::proto::{AgentMsg, CoordMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok((msg, used)) = decode::<AgentMsg>(data, DEFAULT_MAX_FRAME) {
        assert!(used <= data.len());
        // What decodes must re-encode to a frame that decodes to the same message.
        let again = encode(&msg, DEFAULT_MAX_FRAME).expect("re-encode");
        let (back, _) = decode::<AgentMsg>(&again, DEFAULT_MAX_FRAME).expect("re-decode");
        assert_eq!(back, msg);
    }
    let _ = decode::<CoordMsg>(data, DEFAULT_MAX_FRAME);
});
