//! The `Range` header of package and sample downloads: any header and any
//! size give a range inside the file, or none — never an overflow, never a
//! byte past the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_coordinator::api::range::parse_range;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Ok(header) = std::str::from_utf8(&data[8..]) else { return };
    if let Some((first, last)) = parse_range(header, size) {
        assert!(first <= last && last < size, "{header:?} of {size}: {first}-{last}");
    }
});
