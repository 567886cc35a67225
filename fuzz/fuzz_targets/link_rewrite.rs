//! Links rewritten in any message a mail host is delivered (anyone on the
//! Internet writes these): no panic or hang, and a rewritten message is
//! still a message a second pass reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::link_rewrite::{wrap_links, Wrapped};

fuzz_target!(
    init: {
        // mail-parser's own debug assertions (compiled out of release
        // builds) fire on some broken nesting; wrap_links catches the
        // unwind and leaves the message as it is. Any other panic still
        // aborts, as libfuzzer-sys's hook does.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("mail-parser")) {
                abort(info);
            }
        }));
    },
    |data: &[u8]| {
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
