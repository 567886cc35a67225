//! The upload state machine (samples and packages) against a device that
//! sends whatever it likes: any sequence of chunks leaves the verified
//! offset inside the announced size, moving only forward by exactly the
//! chunks taken at that offset whose hash matches; nothing past the size is
//! ever taken.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use picket_common::proto::UploadChunk;
use picket_coordinator::uploads::{judge_chunk, ChunkVerdict, PartMeta};
use sha2::Digest;

#[derive(Debug, Arbitrary)]
struct Chunk {
    offset: u64,
    data: Vec<u8>,
    /// Send the right hash of the data, or garbage.
    honest_hash: bool,
}

#[derive(Debug, Arbitrary)]
struct Upload {
    size: u16,
    chunks: Vec<Chunk>,
}

fuzz_target!(|u: Upload| {
    let mut meta = PartMeta { size: u64::from(u.size), sha256: "0".repeat(64), verified: 0 };
    let mut taken: Vec<u8> = Vec::new();
    for c in u.chunks.into_iter().take(64) {
        let sha256 = if c.honest_hash { hex::encode(sha2::Sha256::digest(&c.data)) } else { "x".repeat(64) };
        let chunk = UploadChunk { action_id: uuid::Uuid::nil(), offset: c.offset, data: c.data.clone(), sha256 };
        match judge_chunk(&meta, &chunk) {
            ChunkVerdict::Take { verified } => {
                assert!(c.honest_hash && c.offset == meta.verified && !c.data.is_empty());
                assert_eq!(verified, meta.verified + c.data.len() as u64);
                assert!(verified <= meta.size);
                taken.extend_from_slice(&c.data);
                meta.verified = verified;
            }
            ChunkVerdict::Resync => {}
            ChunkVerdict::Refuse(_) => {
                assert!(c.offset == meta.verified && c.offset.saturating_add(c.data.len() as u64) > meta.size);
            }
        }
        assert_eq!(taken.len() as u64, meta.verified);
    }
});
