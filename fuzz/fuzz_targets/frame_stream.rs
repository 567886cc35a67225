//! `read_frame` over any byte stream, as the gateway and the agent read a
//! connection: each call ends in a message, a clean end, or an error —
//! never a panic, never a read past a frame's announced length, never an
//! allocation beyond the cap. The first byte picks the cap (pre-auth or
//! the default), the rest is the stream.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use picket_common::io::read_frame;
use picket_common::limits::{DEFAULT_MAX_FRAME, PRE_AUTH_MAX_FRAME};
use picket_common::proto::{AgentMsg, CoordMsg};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let cap = if pick & 1 == 0 { PRE_AUTH_MAX_FRAME } else { DEFAULT_MAX_FRAME };
    runtime().block_on(async {
        let mut reader = stream;
        for _ in 0..64 {
            let before = reader.len();
            let frame = if pick & 2 == 0 {
                read_frame::<_, AgentMsg>(&mut reader, cap).await.map(|m| m.is_some())
            } else {
                read_frame::<_, CoordMsg>(&mut reader, cap).await.map(|m| m.is_some())
            };
            match frame {
                Ok(true) => assert!(reader.len() < before, "a message consumed bytes"),
                Ok(false) | Err(_) => break,
            }
        }
    });
});
