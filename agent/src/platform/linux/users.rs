//! Local account names.

use std::collections::HashMap;

/// User names by uid, from /etc/passwd: every account, whatever its shell
/// or uid. (`sysinfo`'s user list leaves out accounts whose shell is
/// `/bin/false` and uids from 65536 — exactly the owners an investigator
/// must still see named.)
pub fn names() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}
