//! Uploads for actions (samples; later investigation packages): the file
//! goes in chunks over the session, each acknowledged by the coordinator
//! only once it holds it durably, so the upload resumes where it stopped
//! after a lost connection, a coordinator restart or an agent restart (the
//! uploading kinds are re-runnable). Stop-and-wait: one chunk in flight.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use picket_common::detection::sha256_hex;
use picket_common::proto::{AgentMsg, UploadAck, UploadBegin, UploadChunk};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Bytes per chunk.
pub const CHUNK: usize = 1024 * 1024;
/// Without an answer for this long, ask again where to resume.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Give up when nothing moved for this long (the coordinator unreachable).
const STALL_LIMIT: Duration = Duration::from_secs(30 * 60);
/// A chunk the coordinator refused this many times in a row ends the upload.
const MAX_REFUSALS: u32 = 8;

pub struct Uploader {
    pending: Mutex<HashMap<Uuid, Sender<UploadAck>>>,
    out: mpsc::Sender<AgentMsg>,
}

/// Removes the upload's ack route when the upload ends.
struct Route<'a>(&'a Uploader, Uuid);

impl Drop for Route<'_> {
    fn drop(&mut self) {
        self.0.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

impl Uploader {
    pub fn new(out: mpsc::Sender<AgentMsg>) -> Self {
        Self { pending: Mutex::new(HashMap::new()), out }
    }

    /// An `UploadAck` from the coordinator.
    pub fn deliver(&self, ack: UploadAck) {
        let route = self.pending.lock().unwrap_or_else(|p| p.into_inner()).get(&ack.action_id).cloned();
        match route {
            Some(tx) => {
                let _ = tx.send(ack);
            }
            None => tracing::debug!(action = %ack.action_id, "acknowledgement for no running upload"),
        }
    }

    /// Upload `size` bytes of `file` (whose SHA-256 is `sha256`) for `action`.
    /// Blocking; `progress` gets the bytes the coordinator holds.
    pub fn upload(
        &self,
        action: Uuid,
        file: &std::fs::File,
        size: u64,
        sha256: &str,
        progress: &dyn Fn(u64),
    ) -> Result<(), String> {
        let (tx, rx) = channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(action, tx);
        let _route = Route(self, action);
        let begin = AgentMsg::UploadBegin(UploadBegin { action_id: action, size, sha256: sha256.to_string() });
        let _ = self.out.try_send(begin.clone());
        let mut moved = Instant::now();
        let mut held = u64::MAX;
        let mut refusals = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let ack = match rx.recv_timeout(ACK_WAIT) {
                Ok(ack) => ack,
                Err(RecvTimeoutError::Timeout) => {
                    if moved.elapsed() > STALL_LIMIT {
                        return Err(format!("the upload made no progress for {} minutes", STALL_LIMIT.as_secs() / 60));
                    }
                    // Offline, or the answer was lost: ask where to resume.
                    let _ = self.out.try_send(begin.clone());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Err("upload route closed".into()),
            };
            if let Some(error) = ack.error {
                return Err(format!("the coordinator refused the upload: {error}"));
            }
            if ack.done {
                progress(size);
                return Ok(());
            }
            if ack.offset == held {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    return Err(format!("the coordinator refused the chunk at {} {MAX_REFUSALS} times", ack.offset));
                }
            } else {
                refusals = 0;
                moved = Instant::now();
                progress(ack.offset);
            }
            held = ack.offset;
            if held >= size {
                // All sent; the coordinator will answer done (or an error).
                continue;
            }
            let len = usize::try_from((size - held).min(CHUNK as u64)).unwrap_or(CHUNK);
            file.read_exact_at(&mut buf[..len], held).map_err(|e| format!("reading the file at {held}: {e}"))?;
            let data = buf[..len].to_vec();
            let chunk = UploadChunk { action_id: action, offset: held, sha256: sha256_hex(&data), data };
            let _ = self.out.try_send(AgentMsg::UploadChunk(chunk));
        }
    }
}
