//! Local offboarding tokens, which anyone can type at `picket-agent
//! offboard --token`: any string is refused unless it is the CA's own
//! signature over this device's id and a future expiry. A token the real CA
//! signed is found by the fuzzer's mutations; every mutation of it that
//! still verifies must carry the same claims.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use picket_common::offboarding::{self, Claims};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

const DEVICE: uuid::Uuid = uuid::Uuid::from_u128(0xdead_beef);
const NOW: i64 = 1_800_000_000_000;

/// The CA's key pair, and a valid token it signed.
fn ca() -> &'static (EcdsaKeyPair, String) {
    static CA: OnceLock<(EcdsaKeyPair, String)> = OnceLock::new();
    CA.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
        let claims = Claims { device_id: DEVICE, expires_at_ms: NOW + 60_000 };
        let sig = key.sign(&rng, &claims.payload()).expect("sign");
        let token = offboarding::encode(&claims, sig.as_ref());
        (key, token)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (key, valid) = ca();
    // The fuzzer's own string, and the valid token with it appended.
    for token in [text.to_string(), format!("{valid}{text}")] {
        if let Ok(claims) = offboarding::verify(&token, key.public_key().as_ref(), DEVICE, NOW) {
            assert_eq!(claims.device_id, DEVICE);
            assert!(claims.expires_at_ms > NOW);
        }
    }
    assert!(offboarding::verify(valid, key.public_key().as_ref(), DEVICE, NOW).is_ok());
});
