//! The vault: quarantined files, encrypted, under `<state dir>/vault/`.
//!
//! - `key`: 32 random bytes (0600), made on first use: the master key.
//! - `<id>/meta.json`: the [`Entry`] (fsync'd at each step).
//! - `<id>/blob`: `PKVAULT2`, a 32-byte random salt, then segments of at
//!   most 1 MiB of plaintext, each `u32 BE length ‖ ciphertext ‖ tag`, in
//!   AES-256-GCM under a key of this blob alone (HKDF-SHA256 of the master
//!   key with the salt and the entry id), nonce = segment number (96-bit
//!   counter), AAD = entry id ‖ segment number ‖ last-segment flag — so a
//!   nonce is never used twice with one key, and segments cannot be
//!   reordered, dropped or truncated unnoticed. Encrypted, the file can
//!   neither run nor match another scanner's signatures.
//!
//! - `persistence/<id>.json`: a [`PersistenceRecord`], what one
//!   `remove_persistence` removed, kept so `restore_persistence` can put it
//!   back from the device's own copy.
//!
//! `PKVAULT1` blobs (written before: the master key itself, nonce = a
//! 4-byte random prefix ‖ segment number, which two blobs could share) are
//! still read, never written.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::fsutil::{create_private_dir, write_atomic};
use crate::platform::linux::persistence::Removal;

const MAGIC_V1: &[u8; 8] = b"PKVAULT1";
const MAGIC: &[u8; 8] = b"PKVAULT2";
const SALT: usize = 32;
const SEGMENT: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Persistence removal and the encrypted copy are under way; the
    /// original is untouched.
    Copying,
    /// The copy is complete and verified; the original may still exist.
    Copied,
    /// The original is gone; the vault holds the only copy.
    Quarantined,
    /// Being written back.
    Releasing,
    /// Written back; the blob is deleted.
    Released,
}

/// Everything needed to put the file back as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: Uuid,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// (seconds, nanoseconds) since the epoch.
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub killed_pids: Vec<i32>,
    pub persistence: Vec<Removal>,
    pub state: EntryState,
    /// The action that quarantined it, if any.
    pub action_id: Option<Uuid>,
    pub quarantined_at: String,
}

/// What one `remove_persistence` removed, exactly enough to put it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceRecord {
    pub id: Uuid,
    /// The file the removed persistence ran or named.
    pub path: PathBuf,
    pub removals: Vec<Removal>,
    /// Put back already.
    pub restored: bool,
    /// The action that removed it, if any.
    pub action_id: Option<Uuid>,
    pub removed_at: String,
}

pub struct Vault {
    dir: PathBuf,
    /// The master key's bytes (blob keys are derived from it).
    master: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("vault: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io { path: path.to_path_buf(), source }
}

impl Vault {
    /// Open the vault under `state_dir`, making its key on first use.
    pub fn open(state_dir: &Path) -> Result<Self, VaultError> {
        let dir = state_dir.join("vault");
        create_private_dir(&dir).map_err(io(&dir))?;
        let key_path = dir.join("key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => return Err(VaultError::Corrupt(format!("{} is not a 32-byte key", key_path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                SystemRandom::new().fill(&mut k).map_err(|_| VaultError::Corrupt("no randomness".into()))?;
                write_atomic(&key_path, &k).map_err(io(&key_path))?;
                k
            }
            Err(e) => return Err(VaultError::Io { path: key_path, source: e }),
        };
        let master: [u8; 32] = key.try_into().map_err(|_| VaultError::Corrupt("bad key".into()))?;
        Ok(Self { dir, master })
    }

    /// The key of one blob: HKDF-SHA256(master key, salt, entry id).
    fn blob_key(&self, id: Uuid, salt: &[u8]) -> Result<LessSafeKey, VaultError> {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(&self.master);
        let info = [b"picket vault blob".as_slice(), id.as_bytes().as_slice()];
        let okm = prk.expand(&info, &AES_256_GCM).map_err(|_| VaultError::Corrupt("key derivation failed".into()))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// The key and nonce prefix of a `PKVAULT1` blob.
    fn v1_key(&self) -> Result<LessSafeKey, VaultError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.master).map_err(|_| VaultError::Corrupt("bad key".into()))?;
        Ok(LessSafeKey::new(key))
    }

    fn entry_dir(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn blob_path(&self, id: Uuid) -> PathBuf {
        self.entry_dir(id).join("blob")
    }

    /// Write (fsync) an entry's metadata.
    pub fn save(&self, entry: &Entry) -> Result<(), VaultError> {
        write_json(&self.entry_dir(entry.id), "meta.json", entry)
    }

    pub fn load(&self, id: Uuid) -> Result<Option<Entry>, VaultError> {
        read_json(self.entry_dir(id).join("meta.json"))
    }

    /// Every entry (unreadable ones are logged and skipped).
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Ok(id) = e.file_name().to_string_lossy().parse::<Uuid>() else { continue };
            match self.load(id) {
                Ok(Some(entry)) => out.push(entry),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "unreadable vault entry skipped"),
            }
        }
        out
    }

    fn records(&self) -> PathBuf {
        self.dir.join("persistence")
    }

    /// Write (fsync) a persistence record.
    pub fn save_record(&self, record: &PersistenceRecord) -> Result<(), VaultError> {
        write_json(&self.records(), &format!("{}.json", record.id), record)
    }

    pub fn load_record(&self, id: Uuid) -> Result<Option<PersistenceRecord>, VaultError> {
        read_json(self.records().join(format!("{id}.json")))
    }

    /// Drop a persistence record (its removal was rolled back).
    pub fn remove_record(&self, id: Uuid) {
        let _ = std::fs::remove_file(self.records().join(format!("{id}.json")));
    }

    /// Remove an entry entirely.
    pub fn remove(&self, id: Uuid) {
        let _ = std::fs::remove_dir_all(self.entry_dir(id));
    }

    /// Remove an entry's blob (after release).
    pub fn remove_blob(&self, id: Uuid) {
        let _ = std::fs::remove_file(self.blob_path(id));
        let _ = std::fs::remove_file(self.entry_dir(id).join("blob.tmp"));
    }

    fn nonce(prefix: &[u8; 4], n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(prefix);
        bytes[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(bytes)
    }

    fn aad(id: Uuid, n: u64, last: bool) -> Vec<u8> {
        let mut aad = id.as_bytes().to_vec();
        aad.extend_from_slice(&n.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Encrypt `src` into the entry's blob (temp file, fsync, rename, fsync
    /// the directory). Returns the plaintext's SHA-256 and size.
    pub fn seal(&self, id: Uuid, src: &mut dyn Read) -> Result<(String, u64), VaultError> {
        let dir = self.entry_dir(id);
        create_private_dir(&dir).map_err(io(&dir))?;
        let tmp = dir.join("blob.tmp");
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut salt = [0u8; SALT];
        SystemRandom::new().fill(&mut salt).map_err(|_| VaultError::Corrupt("no randomness".into()))?;
        let key = self.blob_key(id, &salt)?;
        out.write_all(MAGIC).and_then(|_| out.write_all(&salt)).map_err(io(&tmp))?;
        let prefix = [0u8; 4];
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut current = read_segment(src).map_err(io(&tmp))?;
        let mut n = 0u64;
        loop {
            let next = if current.len() == SEGMENT { read_segment(src).map_err(io(&tmp))? } else { Vec::new() };
            let last = next.is_empty();
            hasher.update(&current);
            size += current.len() as u64;
            let mut buf = current;
            key.seal_in_place_append_tag(Self::nonce(&prefix, n), Aad::from(Self::aad(id, n, last)), &mut buf)
                .map_err(|_| VaultError::Corrupt("encryption failed".into()))?;
            let len = u32::try_from(buf.len()).map_err(|_| VaultError::Corrupt("segment too large".into()))?;
            out.write_all(&len.to_be_bytes()).and_then(|_| out.write_all(&buf)).map_err(io(&tmp))?;
            if last {
                break;
            }
            current = next;
            n += 1;
        }
        out.sync_all().map_err(io(&tmp))?;
        let blob = self.blob_path(id);
        std::fs::rename(&tmp, &blob).map_err(io(&blob))?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Decrypt the entry's blob into `dst`; returns the SHA-256 and size of
    /// what was written. Any tampering fails.
    pub fn open_blob(&self, id: Uuid, dst: &mut dyn Write) -> Result<(String, u64), VaultError> {
        let path = self.blob_path(id);
        let mut f = std::fs::File::open(&path).map_err(io(&path))?;
        let mut magic = [0u8; 8];
        f.read_exact(&mut magic).map_err(io(&path))?;
        let (key, prefix) = if &magic == MAGIC {
            let mut salt = [0u8; SALT];
            f.read_exact(&mut salt).map_err(io(&path))?;
            (self.blob_key(id, &salt)?, [0u8; 4])
        } else if &magic == MAGIC_V1 {
            let mut prefix = [0u8; 4];
            f.read_exact(&mut prefix).map_err(io(&path))?;
            (self.v1_key()?, prefix)
        } else {
            return Err(VaultError::Corrupt(format!("{} is not a vault blob", path.display())));
        };
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut n = 0u64;
        loop {
            let mut len = [0u8; 4];
            f.read_exact(&mut len).map_err(|_| VaultError::Corrupt("blob truncated".into()))?;
            let len = u32::from_be_bytes(len) as usize;
            if len > SEGMENT + 16 {
                return Err(VaultError::Corrupt("segment length out of range".into()));
            }
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf).map_err(|_| VaultError::Corrupt("blob truncated".into()))?;
            // The last segment is the one after which the file ends.
            let mut probe = [0u8; 1];
            let last = f.read(&mut probe).map_err(io(&path))? == 0;
            if !last {
                f.seek_relative(-1).map_err(io(&path))?;
            }
            let plain = key
                .open_in_place(Self::nonce(&prefix, n), Aad::from(Self::aad(id, n, last)), &mut buf)
                .map_err(|_| VaultError::Corrupt(format!("segment {n} fails authentication")))?;
            hasher.update(&*plain);
            size += plain.len() as u64;
            dst.write_all(plain).map_err(io(&path))?;
            if last {
                break;
            }
            n += 1;
        }
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// Write `value` as `dir/name` (the directory made private first), fsync'd.
fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), VaultError> {
    create_private_dir(dir).map_err(io(dir))?;
    let path = dir.join(name);
    let json = serde_json::to_vec_pretty(value).map_err(|e| VaultError::Corrupt(e.to_string()))?;
    write_atomic(&path, &json).map_err(io(&path))
}

/// Read what [`write_json`] wrote; `None` when there is no such file.
fn read_json<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<Option<T>, VaultError> {
    match std::fs::read(&path) {
        Ok(b) => {
            serde_json::from_slice(&b).map(Some).map_err(|e| VaultError::Corrupt(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VaultError::Io { path, source: e }),
    }
}

fn read_segment(src: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(SEGMENT);
    src.take(SEGMENT as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_tampering_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::open(dir.path()).expect("vault");
        for len in [0usize, 5, SEGMENT, SEGMENT + 7, 3 * SEGMENT] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let id = Uuid::new_v4();
            let (sha, size) = vault.seal(id, &mut data.as_slice()).expect("seal");
            assert_eq!((sha.clone(), size), (hex::encode(sha2::Sha256::digest(&data)), len as u64));
            let raw = std::fs::read(vault.blob_path(id)).expect("blob");
            if len >= 64 {
                assert!(!raw.windows(64).any(|w| w == &data[..64]), "not in the clear");
            }
            let mut back = Vec::new();
            assert_eq!(vault.open_blob(id, &mut back).expect("open").0, sha);
            assert_eq!(back, data);
            // Cutting the last segment off is detected.
            if len > SEGMENT {
                std::fs::write(vault.blob_path(id), &raw[..8 + SALT + 4 + SEGMENT + 16]).expect("truncate");
                assert!(vault.open_blob(id, &mut Vec::new()).is_err(), "truncation at {len}");
            }
        }
        let id = Uuid::new_v4();
        vault.seal(id, &mut &b"payload bytes"[..]).expect("seal");
        let mut raw = std::fs::read(vault.blob_path(id)).expect("blob");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(vault.blob_path(id), raw).expect("tamper");
        assert!(vault.open_blob(id, &mut Vec::new()).is_err());
        // Two blobs of the same content share nothing: each has its own key.
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        vault.seal(a, &mut &b"same bytes"[..]).expect("seal");
        vault.seal(b, &mut &b"same bytes"[..]).expect("seal");
        let (ra, rb) = (std::fs::read(vault.blob_path(a)).expect("a"), std::fs::read(vault.blob_path(b)).expect("b"));
        assert_eq!(&ra[..8], MAGIC);
        assert_ne!(ra[8..8 + SALT], rb[8..8 + SALT]);
        assert_ne!(ra[8 + SALT..], rb[8 + SALT..]);
        // A blob written in the first format still opens.
        let old = Uuid::new_v4();
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&[1, 2, 3, 4]);
        let mut seg = b"old format".to_vec();
        vault
            .v1_key()
            .expect("key")
            .seal_in_place_append_tag(Vault::nonce(&[1, 2, 3, 4], 0), Aad::from(Vault::aad(old, 0, true)), &mut seg)
            .expect("seal");
        v1.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        v1.extend_from_slice(&seg);
        std::fs::create_dir_all(vault.entry_dir(old)).expect("dir");
        std::fs::write(vault.blob_path(old), v1).expect("write");
        let mut back = Vec::new();
        vault.open_blob(old, &mut back).expect("v1 opens");
        assert_eq!(back, b"old format");
        // The key survives a reopen.
        let again = Vault::open(dir.path()).expect("reopen");
        let id2 = Uuid::new_v4();
        again.seal(id2, &mut &b"x"[..]).expect("seal");
        assert!(vault.open_blob(id2, &mut Vec::new()).is_ok());
    }
}
