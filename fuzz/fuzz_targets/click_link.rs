//! The click listener's input (any path a browser sends) and the links a
//! mail host makes of any URL: no panic; only a link signed with the key
//! verifies; what verifies leads to an http(s) URL; a link made reads back
//! exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::links::{device_key, is_web, parse, unwrapped, wrap, Link};
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let key = device_key(b"fuzz secret", Uuid::from_u128(1));
    let text = String::from_utf8_lossy(data);
    if let Ok(unverified) = parse(&text) {
        if let Ok(link) = unverified.verify(&key) {
            assert!(is_web(&link.url));
        }
    }
    // Any text read as a link a mail scan unwraps: a web link or nothing.
    if let Some(original) = unwrapped(&text) {
        assert!(is_web(&original));
    }
    // Made links: the input split into a URL, a recipient and a Message-ID.
    let mut parts = text.splitn(3, '\n');
    let url = format!("https://{}", parts.next().unwrap_or_default());
    let link = Link {
        url,
        device: Uuid::from_u128(1),
        recipient: parts.next().unwrap_or_default().to_string(),
        message_id: parts.next().unwrap_or_default().to_string(),
    };
    if let Some(wrapped) = wrap("https://c.example", &key, &link) {
        let back = parse(&wrapped["https://c.example".len()..]).expect("a made link parses").verify(&key).expect("and verifies");
        assert_eq!((&back.url, back.device, &back.recipient), (&link.url, link.device, &link.recipient));
        assert_eq!(unwrapped(&wrapped).as_deref(), Some(link.url.as_str()));
    }
});
