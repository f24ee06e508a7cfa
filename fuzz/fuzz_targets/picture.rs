//! Notice pictures: any bytes, as any of the three kinds, through the metadata stripper.
//! Must never panic, and what it returns must strip to itself (nothing left to remove) and be
//! no longer than the input plus the one orientation block it may write back.
#![no_main]

#[path = "../../web/src/picture.rs"]
mod picture;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let ext = ["jpg", "png", "webp"][kind as usize % 3];
    if let Ok(out) = picture::strip(ext, bytes) {
        if ext == "jpg" {
            assert!(out.len() <= bytes.len() + 4 + 6 + 26);
        }
        let again = picture::strip(ext, &out).expect("a stripped picture parses");
        assert_eq!(again, out, "stripping is idempotent");
    }
});
