//! Links rewritten in any message a mail host is delivered (anyone on the
//! Internet writes these): no panic or hang, and a rewritten message is
//! still a message a second pass reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::link_rewrite::{wrap_links, Wrapped};

fuzz_target!(|data: &[u8]| {
    let mut made = 0usize;
    let mut wrap = |_: &str, link: &str| {
        if link.starts_with("https://c.example/l/v1/") {
            return None;
        }
        made += 1;
        Some(format!("https://c.example/l/v1/{made}"))
    };
    if let Wrapped::Changed { message, links } = wrap_links(data, &mut wrap) {
        assert!(links > 0);
        let mut again = |_: &str, link: &str| (!link.starts_with("https://c.example/l/v1/")).then(|| "https://c.example/l/v1/x".to_string());
        let twice = wrap_links(&message, &mut again);
        assert!(!matches!(twice, Wrapped::Unchanged(why) if why.starts_with("malformed")));
    }
});
