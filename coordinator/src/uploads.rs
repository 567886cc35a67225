//! Files agents upload for an action (`request_sample`, `collect_package`),
//! in chunks, resumable across reconnects and restarts of either side.
//!
//! Per upload, under `<data dir>/uploads/`: `<action id>.part` (the bytes)
//! and `<action id>.json` (size, whole-file SHA-256 and the verified
//! offset). A chunk is accepted only at the verified offset and only if its
//! own SHA-256 matches; it is written and fsync'd, then the offset is
//! recorded, then acknowledged. On `UploadBegin` the part file is cut back to
//! the verified offset, so a torn write is never kept. When the last byte
//! arrives the whole file's SHA-256 is checked.
//!
//! Samples are kept content-addressed and inert: `<data dir>/samples/<sha256>.zip`,
//! a ZIP encrypted (ZipCrypto) with the password `infected`, the field's
//! convention, so no scanner or careless double-click acts on them; files
//! are mode 0400. A sample already held is not uploaded again.
//!
//! Investigation packages are kept as `<data dir>/packages/<action id>.tar.gz`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use picket_common::actions::{params, ActionKind};
use picket_common::detection::{is_sha256_hex, sha256_hex};
use picket_common::proto::{UploadAck, UploadBegin, UploadChunk};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{ActionStatus, Store};

/// The password of every sample ZIP.
pub const SAMPLE_PASSWORD: &str = "infected";
/// Largest chunk accepted.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Where an upload stands: announced size and SHA-256, bytes verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub size: u64,
    pub sha256: String,
    pub verified: u64,
}

/// What to do with a chunk (the upload's state machine, without the files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Write it at its offset; `verified` becomes the new end.
    Take { verified: u64 },
    /// Not at the verified offset, empty, too big or corrupted in transit:
    /// answer with the verified offset so the agent resends from there.
    Resync,
    /// The upload cannot go on.
    Refuse(String),
}

/// Judge chunk `c` against `meta`. Pure: the caller writes and records.
pub fn judge_chunk(meta: &PartMeta, c: &UploadChunk) -> ChunkVerdict {
    if c.offset != meta.verified || c.data.is_empty() || c.data.len() > MAX_CHUNK {
        return ChunkVerdict::Resync;
    }
    let Some(end) = c.offset.checked_add(c.data.len() as u64).filter(|end| *end <= meta.size) else {
        return ChunkVerdict::Refuse("chunk goes past the announced size".into());
    };
    if sha256_hex(&c.data) != c.sha256 {
        tracing::warn!(action = %c.action_id, offset = c.offset, "chunk refused: its SHA-256 does not match");
        return ChunkVerdict::Resync;
    }
    ChunkVerdict::Take { verified: end }
}

pub struct Uploads {
    dir: PathBuf,
    samples: PathBuf,
    packages: PathBuf,
    max_sample_bytes: u64,
    max_package_bytes: u64,
    store: Store,
    /// Chunk bytes accepted by this process (for metrics and tests).
    received: std::sync::atomic::AtomicU64,
    /// `true` until shutdown. File work runs on blocking threads that
    /// outlive the session awaiting it; each holds a read guard while it
    /// runs, so [`Self::drain`] waits for it: nothing writes to the data dir
    /// after the coordinator has stopped.
    open: Arc<tokio::sync::RwLock<bool>>,
}

fn ack(action_id: Uuid, offset: u64) -> UploadAck {
    UploadAck { action_id, offset, done: false, error: None }
}

fn refuse(action_id: Uuid, error: impl Into<String>) -> UploadAck {
    UploadAck { action_id, offset: 0, done: false, error: Some(error.into()) }
}

impl Uploads {
    pub fn new(data_dir: &Path, max_sample_bytes: u64, store: Store) -> std::io::Result<Self> {
        let uploads = Self {
            dir: data_dir.join("uploads"),
            samples: data_dir.join("samples"),
            packages: data_dir.join("packages"),
            max_sample_bytes,
            max_package_bytes: max_sample_bytes,
            store,
            received: Default::default(),
            open: Arc::new(tokio::sync::RwLock::new(true)),
        };
        std::fs::create_dir_all(&uploads.dir)?;
        std::fs::create_dir_all(&uploads.samples)?;
        std::fs::create_dir_all(&uploads.packages)?;
        Ok(uploads)
    }

    /// Chunk bytes this process accepted.
    pub fn received_bytes(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait for the file work in flight; none starts afterwards.
    pub async fn drain(&self) {
        *self.open.write().await = false;
    }

    /// Run file work `f` on a blocking thread, unless shutting down.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let open = self.open.clone().read_owned().await;
        if !*open {
            return Err("the coordinator is shutting down".into());
        }
        tokio::task::spawn_blocking(move || {
            let _open = open;
            f()
        })
        .await
        .map_err(|e| format!("upload task failed: {e}"))
    }

    fn part(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    fn meta(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The investigation package of a collect_package action.
    pub fn package_path(&self, action: Uuid) -> PathBuf {
        self.packages.join(format!("{action}.tar.gz"))
    }

    /// The encrypted ZIP of a sample.
    pub fn sample_path(&self, sha256: &str) -> PathBuf {
        self.samples.join(format!("{sha256}.zip"))
    }

    /// Check that `device` may upload for `action` now: its own running
    /// action of a kind that uploads. Returns its kind and `path` param.
    async fn check_action(&self, device: Uuid, action: Uuid) -> Result<(ActionKind, String), String> {
        let a = match self.store.action(action).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(format!("no action {action}")),
            Err(e) => return Err(format!("store: {e}")),
        };
        if a.device_id != device {
            return Err(format!("action {action} belongs to another device"));
        }
        if !matches!(a.kind, ActionKind::RequestSample | ActionKind::CollectPackage) {
            return Err(format!("action {action} ({}) does not upload", a.kind));
        }
        if !matches!(a.status, ActionStatus::Sent | ActionStatus::Running) {
            return Err(format!("action {action} is {}, not running", a.status.as_str()));
        }
        // The sample's path, as the coordinator itself stored it.
        let path = match a.kind {
            ActionKind::RequestSample => params::parse::<params::RequestSample>(a.kind, &a.params)?.path,
            _ => Default::default(),
        };
        Ok((a.kind, path.to_string_lossy().into_owned()))
    }

    /// Start or resume an upload.
    pub async fn begin(&self, device: Uuid, b: &UploadBegin) -> UploadAck {
        let kind = match self.check_action(device, b.action_id).await {
            Ok((kind, _)) => kind,
            Err(e) => return refuse(b.action_id, e),
        };
        if !is_sha256_hex(&b.sha256) {
            return refuse(b.action_id, "the upload's SHA-256 is not 64 lowercase hex digits");
        }
        let (limit, what) = match kind {
            ActionKind::CollectPackage => (self.max_package_bytes, "package"),
            _ => (self.max_sample_bytes, "sample"),
        };
        if b.size > limit {
            return refuse(b.action_id, format!("{} bytes is over the {what} limit of {limit} bytes", b.size));
        }
        if kind == ActionKind::RequestSample && self.sample_path(&b.sha256).is_file() {
            // Held already: nothing to send.
            return self.finished(device, b.action_id, &b.sha256, b.size).await;
        }
        let (part, meta_path, id) = (self.part(b.action_id), self.meta(b.action_id), b.action_id);
        let begin = b.clone();
        let resumed = self
            .blocking(move || -> std::io::Result<u64> {
                let meta = std::fs::read(&meta_path).ok().and_then(|m| serde_json::from_slice::<PartMeta>(&m).ok());
                let verified = match meta {
                    Some(m) if m.size == begin.size && m.sha256 == begin.sha256 => m.verified,
                    _ => 0,
                };
                let file =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(false).mode(0o600).open(&part)?;
                file.set_len(verified)?;
                file.sync_all()?;
                let meta = PartMeta { size: begin.size, sha256: begin.sha256, verified };
                write_durably(&meta_path, &serde_json::to_vec(&meta).map_err(std::io::Error::other)?)?;
                Ok(verified)
            })
            .await;
        match resumed {
            Ok(Ok(offset)) => {
                if offset > 0 {
                    tracing::info!(action = %id, offset, "upload resumed");
                }
                if offset == b.size {
                    return self.complete(device, id).await;
                }
                ack(id, offset)
            }
            Ok(Err(e)) => refuse(id, format!("coordinator cannot store the upload: {e}")),
            Err(e) => refuse(id, format!("coordinator cannot store the upload: {e}")),
        }
    }

    /// Take one chunk.
    pub async fn chunk(&self, device: Uuid, c: UploadChunk) -> UploadAck {
        let id = c.action_id;
        if let Err(e) = self.check_action(device, id).await {
            return refuse(id, e);
        }
        let (part, meta_path, len) = (self.part(id), self.meta(id), c.data.len() as u64);
        let written = self
            .blocking(move || -> Result<(PartMeta, bool), String> {
                let bytes =
                    std::fs::read(&meta_path).map_err(|_| "no upload in progress: send UploadBegin".to_string())?;
                let mut meta: PartMeta = serde_json::from_slice(&bytes).map_err(|e| format!("upload record: {e}"))?;
                let verified = match judge_chunk(&meta, &c) {
                    ChunkVerdict::Take { verified } => verified,
                    ChunkVerdict::Resync => return Ok((meta, false)),
                    ChunkVerdict::Refuse(why) => return Err(why),
                };
                let io = |e: std::io::Error| format!("coordinator cannot store the upload: {e}");
                let mut f = std::fs::OpenOptions::new().write(true).open(&part).map_err(io)?;
                f.seek(SeekFrom::Start(c.offset)).map_err(io)?;
                f.write_all(&c.data).map_err(io)?;
                f.sync_data().map_err(io)?;
                meta.verified = verified;
                write_durably(&meta_path, &serde_json::to_vec(&meta).map_err(|e| e.to_string())?).map_err(io)?;
                Ok((meta, true))
            })
            .await;
        if let Ok(Ok((_, true))) = &written {
            self.received.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
        match written {
            Ok(Ok((meta, _))) if meta.verified == meta.size => self.complete(device, id).await,
            Ok(Ok((meta, _))) => ack(id, meta.verified),
            Ok(Err(e)) => refuse(id, e),
            Err(e) => refuse(id, e),
        }
    }

    /// Every byte arrived: check the whole hash, seal the sample.
    async fn complete(&self, device: Uuid, id: Uuid) -> UploadAck {
        let kind = match self.check_action(device, id).await {
            Ok((kind, _)) => kind,
            Err(e) => return refuse(id, e),
        };
        let (part, meta_path, samples) = (self.part(id), self.meta(id), self.samples.clone());
        let package = self.package_path(id);
        let sealed = self
            .blocking(move || -> Result<(String, u64), String> {
                let meta: PartMeta = std::fs::read(&meta_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or("upload record missing")?;
                let actual = hash_file(&part).map_err(|e| e.to_string())?;
                if actual != meta.sha256 {
                    let _ = std::fs::remove_file(&part);
                    let _ = std::fs::remove_file(&meta_path);
                    return Err(format!("the file's SHA-256 is {actual}, not the announced {}", meta.sha256));
                }
                if kind == ActionKind::CollectPackage {
                    std::fs::set_permissions(&part, std::os::unix::fs::PermissionsExt::from_mode(0o400))
                        .and_then(|_| std::fs::rename(&part, &package))
                        .map_err(|e| format!("cannot keep the package: {e}"))?;
                } else {
                    seal_sample(&part, &samples, &meta.sha256).map_err(|e| format!("cannot seal the sample: {e}"))?;
                }
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(&meta_path);
                Ok((meta.sha256, meta.size))
            })
            .await;
        match sealed {
            Ok(Ok((sha256, size))) => self.finished(device, id, &sha256, size).await,
            Ok(Err(e)) => {
                tracing::warn!(action = %id, error = %e, "upload refused");
                refuse(id, e)
            }
            Err(e) => refuse(id, e),
        }
    }

    async fn finished(&self, device: Uuid, id: Uuid, sha256: &str, size: u64) -> UploadAck {
        let (kind, path) = match self.check_action(device, id).await {
            Ok(k) => k,
            Err(e) => return refuse(id, e),
        };
        if kind == ActionKind::RequestSample {
            if let Err(e) = self.store.put_sample(sha256, size, device, &path, id).await {
                return refuse(id, format!("cannot record the sample: {e}"));
            }
        }
        tracing::info!(action = %id, %sha256, size, kind = %kind, "upload stored");
        UploadAck { action_id: id, offset: size, done: true, error: None }
    }
}

/// Write a small file durably (temp, fsync, rename).
fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Write `<dir>/<sha256>.zip`: one entry named after the hash, encrypted
/// with [`SAMPLE_PASSWORD`], mode 0400.
fn seal_sample(part: &Path, dir: &Path, sha256: &str) -> Result<(), String> {
    use zip::unstable::write::FileOptionsExt;
    let final_path = dir.join(format!("{sha256}.zip"));
    let tmp = dir.join(format!(".{sha256}.zip.tmp"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o400)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true)
        .with_deprecated_encryption(SAMPLE_PASSWORD.as_bytes())
        .map_err(|e| e.to_string())?;
    zip.start_file(sha256, options).map_err(|e| e.to_string())?;
    let mut input = std::fs::File::open(part).map_err(|e| e.to_string())?;
    std::io::copy(&mut input, &mut zip).map_err(|e| e.to_string())?;
    let out = zip.finish().map_err(|e| e.to_string())?;
    out.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &final_path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ActionSource, NewAction};

    async fn running_sample_action(store: &Store, path: &str) -> (Uuid, Uuid) {
        let device = store.test_device().await;
        let params = serde_json::json!({ "path": path }).to_string();
        let new = NewAction {
            kind: ActionKind::RequestSample,
            params: &params,
            device_id: device,
            source: ActionSource::ManualDeviceAction,
            requestor: "t",
            requestor_identity: "user:t",
            comment: "c",
            investigation_id: None,
            status: ActionStatus::Sent,
            dedupe_key: &Uuid::new_v4().to_string(),
            undoes: None,
            expires_at: i64::MAX,
        };
        let (action, _) = store.insert_action(&new).await.expect("action");
        (device, action.id)
    }

    #[tokio::test]
    async fn chunks_are_checked_and_resumed_and_the_whole_hash_seals_the_sample() {
        for (store, _db) in crate::store::test_support::stores().await {
            let dir = tempfile::tempdir().expect("tempdir");
            let uploads = Uploads::new(dir.path(), 1024, store.clone()).expect("uploads");
            let (device, id) = running_sample_action(&store, "/tmp/x").await;
            let data: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
            let sha = sha256_hex(&data);
            let chunk = |offset: usize, bytes: &[u8], sha: Option<String>| UploadChunk {
                action_id: id,
                offset: offset as u64,
                data: bytes.to_vec(),
                sha256: sha.unwrap_or_else(|| sha256_hex(bytes)),
            };
            let too_big = UploadBegin { action_id: id, size: 4096, sha256: sha.clone() };
            assert!(uploads.begin(device, &too_big).await.error.is_some_and(|e| e.contains("over the sample limit")));
            let begin = UploadBegin { action_id: id, size: 600, sha256: sha.clone() };
            assert!(uploads.begin(Uuid::new_v4(), &begin).await.error.is_some(), "another device");
            assert_eq!(uploads.begin(device, &begin).await, ack(id, 0));
            // Tampered: the data does not match its hash.
            assert_eq!(uploads.chunk(device, chunk(0, &data[..300], Some(sha256_hex(b"other")))).await, ack(id, 0));
            assert_eq!(uploads.chunk(device, chunk(0, &data[..300], None)).await, ack(id, 300));
            // A repeat or a gap is not taken: the answer says where to continue.
            assert_eq!(uploads.chunk(device, chunk(0, &data[..300], None)).await, ack(id, 300));
            assert_eq!(uploads.chunk(device, chunk(400, &data[400..], None)).await, ack(id, 300));
            // A restart of either side: begin again, resume at 300.
            let again = Uploads::new(dir.path(), 1024, store.clone()).expect("uploads");
            assert_eq!(again.begin(device, &begin).await, ack(id, 300));
            let done = again.chunk(device, chunk(300, &data[300..], None)).await;
            assert!(done.done && done.error.is_none(), "{done:?}");
            assert!(again.sample_path(&sha).is_file());
            assert!(store.sample(&sha).await.expect("sample").is_some_and(|s| s.size == 600 && s.path == "/tmp/x"));
            assert!(!dir.path().join(format!("uploads/{id}.part")).exists());
        }
    }

    #[tokio::test]
    async fn a_whole_file_hash_mismatch_is_refused() {
        for (store, _db) in crate::store::test_support::stores().await {
            let dir = tempfile::tempdir().expect("tempdir");
            let uploads = Uploads::new(dir.path(), 1024, store.clone()).expect("uploads");
            let (device, id) = running_sample_action(&store, "/tmp/y").await;
            let claimed = sha256_hex(b"what the agent said");
            let begin = UploadBegin { action_id: id, size: 5, sha256: claimed.clone() };
            assert_eq!(uploads.begin(device, &begin).await, ack(id, 0));
            let c = UploadChunk { action_id: id, offset: 0, data: b"other".to_vec(), sha256: sha256_hex(b"other") };
            let r = uploads.chunk(device, c).await;
            assert!(r.error.is_some_and(|e| e.contains("not the announced")));
            assert!(!uploads.sample_path(&claimed).exists());
        }
    }

    #[test]
    fn a_sealed_sample_opens_only_with_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("x.part");
        let data = b"MZ pretend malware body".repeat(100);
        std::fs::write(&part, &data).expect("write");
        let sha = sha256_hex(&data);
        seal_sample(&part, dir.path(), &sha).expect("seal");
        let zip_path = dir.path().join(format!("{sha}.zip"));
        let raw = std::fs::read(&zip_path).expect("zip");
        assert!(!raw.windows(10).any(|w| w == &data[..10]), "the sample is not stored in the clear");
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("open")).expect("archive");
        // ZipCrypto checks one byte of the key at open, so 1 wrong password
        // in 256 gets past it; the content it then yields fails its CRC.
        match archive.by_index_decrypt(0, b"wrong") {
            Err(_) => {}
            Ok(mut entry) => {
                let mut garbled = Vec::new();
                let read = entry.read_to_end(&mut garbled);
                assert!(read.is_err() || garbled != data, "a wrong password never yields the sample");
            }
        }
        let mut entry = archive.by_index_decrypt(0, SAMPLE_PASSWORD.as_bytes()).expect("decrypt");
        let mut back = Vec::new();
        entry.read_to_end(&mut back).expect("read");
        assert_eq!(back, data);
    }
}
