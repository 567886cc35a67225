//! The link key file of a mail host: what `picket-linkwrap` (the Sieve
//! filter wrapping links at delivery, [`picket_common::link_rewrite`])
//! signs with.

pub use picket_common::links::KeyFile;

/// Write `file` to `path` for `group`: atomically, through the directory's
/// fd (which must be root's and writable by root only), 0640 root:group.
pub fn store(file: &KeyFile, path: &std::path::Path, group: &str) -> Result<(), String> {
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
    dir.replace(&name, file.to_text().as_bytes(), Some((0, gid)), 0o640).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = store(&file, &open.path().join("link.key"), "root").expect_err("refused");
        assert!(err.contains("others can write"), "{err}");
        // A directory an unprivileged user owns.
        let theirs = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).expect("chown");
        assert!(store(&file, &theirs.path().join("link.key"), "root").is_err());
        assert_eq!(std::fs::read_to_string(victim.path()).expect("read"), "root's own file\n");
        // Root's own directory: written 0640 root:group, readable back.
        let ok = tempfile::tempdir().expect("tempdir");
        store(&file, &ok.path().join("link.key"), "root").expect("stored");
        let meta = std::fs::symlink_metadata(ok.path().join("link.key")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        let back = KeyFile::parse(&std::fs::read_to_string(ok.path().join("link.key")).expect("read")).expect("parse");
        assert_eq!(back, file);
    }
}
