//! Enrollment's CSR handling — what an enrolling client (holding a token)
//! sends: any bytes either become a certificate for exactly the device id
//! the coordinator chose, or a `BadCsr` error. Never a panic, never a
//! certificate naming anything else.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use picket_coordinator::gateway::verifier::{device_id_from_cert, serial_of};
use picket_coordinator::pki::{Ca, DEVICE_CERT_VALIDITY};

fn ca() -> &'static Ca {
    static CA: OnceLock<(tempfile::TempDir, Ca)> = OnceLock::new();
    &CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(&dir.path().join("pki")).expect("CA");
        (dir, ca)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let id = uuid::Uuid::from_u128(0x5eed);
    if let Ok(issued) = ca().sign_device_csr(data, id, "fuzz", DEVICE_CERT_VALIDITY) {
        assert_eq!(device_id_from_cert(&issued.der), Some(id), "the certificate names the chosen device only");
        assert_eq!(serial_of(&issued.der).as_deref(), Some(issued.serial_hex.as_str()));
    }
});
