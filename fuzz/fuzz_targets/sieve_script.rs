//! Users' Sieve scripts as the mail host's agent reads them for forwarding
//! (any user writes their own): any text gives an answer without a panic
//! or a hang; a script with its external redirects taken out still reads,
//! holds no external redirect, and a second pass leaves it as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::sieve::{redirects, without_external};

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else { return };
    let internal = ["example.org".to_string()];
    let Ok(found) = redirects(script) else {
        assert!(without_external(script, &internal).is_err());
        return;
    };
    let (out, removed) = without_external(script, &internal).expect("readable once, readable twice");
    assert_eq!(removed, found.iter().filter(|r| r.is_external(&internal)).count());
    let again = redirects(&out).expect("the rewritten script reads");
    assert!(again.iter().all(|r| !r.is_external(&internal)));
    assert_eq!(without_external(&out, &internal).expect("reads"), (out.clone(), 0));
});
