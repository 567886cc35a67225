//! The link key file of a mail host: what `picket-linkwrap` (the Sieve
//! filter wrapping links at delivery, [`picket_common::link_rewrite`])
//! signs with.

/// The file `picket-linkwrap` reads: the click listener's base URL, this
/// device's id, and its link key. The agent writes it whenever the
/// coordinator sends a key; root owns it, the mail group reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub click_url: String,
    pub device: uuid::Uuid,
    pub key: [u8; 32],
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("click_url", &self.click_url)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileText {
    click_url: String,
    device: uuid::Uuid,
    key: String,
}

impl KeyFile {
    pub fn to_text(&self) -> String {
        let text = KeyFileText { click_url: self.click_url.clone(), device: self.device, key: hex::encode(self.key) };
        format!(
            "# Written by picket-agent: the key this mail host signs wrapped links with.\n{}",
            toml::to_string(&text).unwrap_or_default()
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let t: KeyFileText = toml::from_str(text).map_err(|e| e.to_string())?;
        let key =
            hex::decode(&t.key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()).ok_or("key: not 32 bytes in hex")?;
        if !picket_common::links::is_web(&t.click_url) {
            return Err("click_url: not an http(s) URL".into());
        }
        Ok(Self { click_url: t.click_url.trim_end_matches('/').to_string(), device: t.device, key })
    }

    /// Write it to `path` for `group`: atomically, through the directory's
    /// fd (which must be root's and writable by root only), 0640 root:group.
    pub fn store(&self, path: &std::path::Path, group: &str) -> Result<(), String> {
        use crate::fsutil::dir::{Dir, Owners};
        let gid = nix::unistd::Group::from_name(group)
            .map_err(|e| format!("group {group}: {e}"))?
            .ok_or_else(|| format!("no group {group} on this host (mail link_key_group)"))?
            .gid
            .as_raw();
        let (dir, name) = Dir::open_parent(path, Owners::RootOr(0)).map_err(|e| e.to_string())?;
        if !dir.root_only() {
            return Err(format!("{}: others can write in it; the link key is not written there", dir.path().display()));
        }
        dir.replace(&name, self.to_text().as_bytes(), Some((0, gid)), 0o640).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_reads_back_and_refuses_what_is_not_one() {
        let file =
            KeyFile { click_url: "https://click.example:7444".into(), device: uuid::Uuid::from_u128(7), key: [9; 32] };
        assert_eq!(KeyFile::parse(&file.to_text()).expect("reads"), file);
        assert!(!format!("{file:?}").contains("09"), "the key stays out of logs");
        for bad in
            ["", "click_url = \"javascript:x\"\ndevice = \"00000000-0000-0000-0000-000000000007\"\nkey = \"00\"\n"]
        {
            assert!(KeyFile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_is_never_written_where_a_user_could_plant_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let file = KeyFile { click_url: "https://c.example".into(), device: uuid::Uuid::from_u128(7), key: [9; 32] };
        let victim = tempfile::NamedTempFile::new().expect("victim");
        std::fs::write(victim.path(), "root's own file\n").expect("write");
        // A directory anyone can write in (as /tmp is), a link planted at the key's name.
        let open = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::os::unix::fs::symlink(victim.path(), open.path().join("link.key")).expect("plant");
        let err = file.store(&open.path().join("link.key"), "root").expect_err("refused");
        assert!(err.contains("others can write"), "{err}");
        // A directory an unprivileged user owns.
        let theirs = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).expect("chown");
        assert!(file.store(&theirs.path().join("link.key"), "root").is_err());
        assert_eq!(std::fs::read_to_string(victim.path()).expect("read"), "root's own file\n");
        // Root's own directory: written 0640 root:group, readable back.
        let ok = tempfile::tempdir().expect("tempdir");
        file.store(&ok.path().join("link.key"), "root").expect("stored");
        let meta = std::fs::symlink_metadata(ok.path().join("link.key")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        let back = KeyFile::parse(&std::fs::read_to_string(ok.path().join("link.key")).expect("read")).expect("parse");
        assert_eq!(back, file);
    }
}
