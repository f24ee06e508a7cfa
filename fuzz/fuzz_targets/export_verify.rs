//! `dinh log verify --file`: any bytes as an export. Must report, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dinh_events::verify::verify_export(data, None);
});
