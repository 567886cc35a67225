//! Wrapping one message for one recipient: what both ways of running
//! `picket-linkwrap` (the Sieve filter and the LMTP proxy) do per delivery.

use picket_common::link_rewrite::{wrap_links, Wrapped};
use picket_common::links::{KeyFile, Signer};

/// The link key file at `path`, parsed.
pub fn read_key(path: &str) -> Result<KeyFile, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}"))
        .and_then(|t| KeyFile::parse(&t).map_err(|e| format!("{path}: {e}")))
}

/// `raw` with its links wrapped for `to`, or `None` when it stays byte for
/// byte as it came; then the reason, unless it simply had no links.
pub fn wrap_for(raw: &[u8], key: &KeyFile, to: &str) -> (Option<Vec<u8>>, Option<String>) {
    let own = format!("{}{}", key.click_url, picket_common::links::PREFIX);
    // One message, one Message-ID: the signer is made at the first link.
    let mut signer: Option<Option<Signer>> = None;
    let mut wrapper = |message_id: &str, url: &str| {
        if url.starts_with(&own) {
            return None; // already ours (a message forwarded inside the organisation)
        }
        let signer = signer.get_or_insert_with(|| Signer::new(&key.click_url, &key.key, key.device, to, message_id));
        signer.as_ref()?.wrap(url)
    };
    match wrap_links(raw, &mut wrapper) {
        Wrapped::Changed { message, .. } => (Some(message), None),
        Wrapped::Unchanged(why) if why == "no links" => (None, None),
        Wrapped::Unchanged(why) => (None, Some(why)),
    }
}
