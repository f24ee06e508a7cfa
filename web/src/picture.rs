//! What a notice's picture keeps of the file uploaded: the image, its colour profile and
//! which way up it goes; nothing its camera or editor wrote about it. A phone's photo carries
//! where it was taken (GPS), when, the phone's model and serial number, and sometimes a
//! thumbnail of the uncropped photo, and every house screen of the room would serve them.
//!
//! - JPEG: walked marker by marker (no decoding). Kept: the frame, tables and scans, `APP0`
//!   JFIF without its thumbnail, `APP2` colour profiles, `APP14` Adobe colour transform.
//!   Dropped: every other `APPn` (EXIF, XMP, IPTC, JFXX thumbnails, makers' notes,
//!   multi-picture indexes), comments, and whatever follows the end of the image (the further
//!   pictures of an MPF file, appended data).
//! - PNG and WebP: only the chunks on an allowlist are kept ([`PNG_KEPT`], [`WEBP_KEPT`]):
//!   the image, its colour and animation. The PNG colour profile's free-text name is replaced.
//!
//! The EXIF orientation, when the original had one other than "upright", is written back as
//! the only EXIF field: browsers turn the picture by it, and without it a photo taken with the
//! phone held upright would show on its side.
//!
//! What must stay true: the output is a well-formed file of the same kind whose image data
//! are the input's bytes unchanged; a malformed input is an error, never a panic.

use img_parts::png::Png;
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;
use img_parts::{Bytes, ImageEXIF};

/// Why a picture was refused: it does not parse as the kind its first bytes claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid picture: {0}")]
pub struct BadPicture(pub &'static str);

/// `bytes`, a picture of kind `ext` (`jpg`, `png` or `webp`, as sniffed), without its
/// metadata.
pub fn strip(ext: &str, bytes: &[u8]) -> Result<Vec<u8>, BadPicture> {
    match ext {
        "jpg" => jpeg(bytes),
        "png" => {
            let mut png = Png::from_bytes(Bytes::copy_from_slice(bytes))
                .map_err(|_| BadPicture("a damaged PNG file"))?;
            let upright = png.exif().and_then(|e| orientation(&e));
            png.chunks_mut().retain(|c| PNG_KEPT.contains(&c.kind()));
            // The colour profile's name is free text: name it plainly.
            for c in png.chunks_mut().iter_mut() {
                if &c.kind() != b"iCCP" {
                    continue;
                }
                if let Some(nul) = c.contents().iter().position(|&b| b == 0) {
                    let renamed = [b"ICC".as_slice(), &c.contents()[nul..]].concat();
                    *c = img_parts::png::PngChunk::new(*b"iCCP", Bytes::from(renamed));
                }
            }
            png.set_exif(upright.map(|o| Bytes::from(exif_with_orientation(o))));
            Ok(png.encoder().bytes().to_vec())
        }
        "webp" => {
            let mut webp = WebP::from_bytes(Bytes::copy_from_slice(bytes))
                .map_err(|_| BadPicture("a damaged WebP file"))?;
            let upright = webp.exif().and_then(|e| orientation(&e));
            webp.chunks_mut().retain(|c| WEBP_KEPT.contains(&c.id()));
            // Sets the VP8X header's ICC and EXIF flags to the chunks left...
            webp.set_exif(upright.map(|o| Bytes::from(exif_with_orientation(o))));
            // ...and its XMP flag (0x04) is cleared here: no XMP chunk is left.
            for c in webp.chunks_mut().iter_mut() {
                if let (b"VP8X", Some(body)) = (&c.id(), c.content().data()) {
                    let mut body = body.to_vec();
                    if let Some(flags) = body.first_mut() {
                        *flags &= !0x04;
                    }
                    *c = RiffChunk::new(*b"VP8X", RiffContent::Data(Bytes::from(body)));
                }
            }
            Ok(webp.encoder().bytes().to_vec())
        }
        _ => Err(BadPicture("a PNG, JPEG or WebP file")),
    }
}

/// The PNG chunks kept: the image, its transparency, colour and pixel size, animation. Every
/// other chunk goes (text, EXIF in any spelling, time, previews, C2PA, private chunks).
const PNG_KEPT: [[u8; 4]; 16] = [
    *b"IHDR", *b"PLTE", *b"IDAT", *b"IEND", *b"tRNS", *b"gAMA", *b"cHRM", *b"sRGB", *b"iCCP",
    *b"cICP", *b"sBIT", *b"bKGD", *b"pHYs", *b"acTL", *b"fcTL", *b"fdAT",
];

/// The WebP chunks kept: the image, its alpha, animation and colour profile.
const WEBP_KEPT: [[u8; 4]; 7] = [
    *b"VP8X", *b"VP8 ", *b"VP8L", *b"ALPH", *b"ANIM", *b"ANMF", *b"ICCP",
];

/// The EXIF orientation (2 to 8) of a TIFF-structured EXIF block, if it has one that turns
/// or mirrors the picture.
fn orientation(tiff: &[u8]) -> Option<u16> {
    // Leniently: phones' EXIF often has a damaged entry elsewhere (a truncated maker note, a
    // broken thumbnail directory), and the orientation is still good.
    let exif = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
        .or_else(|e| e.distill_partial_result(|_| {}))
        .ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let o = field.value.get_uint(0)?;
    (2..=8).contains(&o).then_some(o as u16)
}

/// An EXIF block (TIFF, big-endian) holding the orientation and nothing else.
fn exif_with_orientation(o: u16) -> Vec<u8> {
    let mut v = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    v.extend_from_slice(&1u16.to_be_bytes()); // one entry
    v.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    v.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    v.extend_from_slice(&1u32.to_be_bytes()); // one value
    v.extend_from_slice(&o.to_be_bytes());
    v.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    v.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    v
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

/// What is kept of a segment with `marker` and `body`: all of it, part of it, or nothing.
fn kept_segment(marker: u8, body: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    match marker {
        // JFIF without its thumbnail (which may be the uncropped picture); JFXX goes.
        APP0 if body.starts_with(b"JFIF\0") && body.len() >= 14 => {
            let mut jfif = body[..14].to_vec();
            jfif[12] = 0; // thumbnail width
            jfif[13] = 0; // and height
            Some(Cow::Owned(jfif))
        }
        APP2 if body.starts_with(b"ICC_PROFILE\0") => Some(Cow::Borrowed(body)),
        APP14 if body.starts_with(b"Adobe") => Some(Cow::Borrowed(body)),
        0xE0..=0xEF | COM => None,
        _ => Some(Cow::Borrowed(body)),
    }
}

fn jpeg(b: &[u8]) -> Result<Vec<u8>, BadPicture> {
    const TRUNCATED: BadPicture = BadPicture("a JPEG file cut short");
    if b.len() < 4 || b[0] != 0xFF || b[1] != SOI {
        return Err(BadPicture("not a JPEG file"));
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, SOI]);
    // Where the orientation goes back: after the leading APP0 segments.
    let mut exif_at = out.len();
    let mut only_app0_so_far = true;
    let mut upright = None;
    let mut seen_scan = false;
    let mut i = 2;
    loop {
        if b.get(i) != Some(&0xFF) {
            return Err(b
                .get(i)
                .map_or(TRUNCATED, |_| BadPicture("a damaged JPEG file")));
        }
        while b.get(i) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        let marker = *b.get(i).ok_or(TRUNCATED)?;
        i += 1;
        match marker {
            EOI => {
                if !seen_scan {
                    return Err(BadPicture("a JPEG file with no image"));
                }
                out.extend_from_slice(&[0xFF, EOI]);
                break; // and nothing after it
            }
            0x01 | 0xD0..=0xD7 => out.extend_from_slice(&[0xFF, marker]),
            SOI | 0x00 => return Err(BadPicture("a damaged JPEG file")),
            _ => {
                let len = b.get(i..i + 2).ok_or(TRUNCATED)?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                if len < 2 {
                    return Err(BadPicture("a damaged JPEG file"));
                }
                let body = b.get(i + 2..i + len).ok_or(TRUNCATED)?;
                if marker == APP1 {
                    if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                        upright = upright.or_else(|| orientation(tiff));
                    }
                }
                if let Some(kept) = kept_segment(marker, body) {
                    out.extend_from_slice(&[0xFF, marker]);
                    out.extend_from_slice(&((kept.len() + 2) as u16).to_be_bytes());
                    out.extend_from_slice(&kept);
                    if marker == APP0 && only_app0_so_far {
                        exif_at = out.len();
                    } else {
                        only_app0_so_far = false;
                    }
                }
                i += len;
                if marker == SOS {
                    seen_scan = true;
                    // The entropy-coded data, up to the next marker that is neither a stuffed
                    // 0xFF (0xFF00) nor a restart marker.
                    let start = i;
                    loop {
                        let ff = start_of_marker(b, i).ok_or(TRUNCATED)?;
                        let next = *b.get(ff + 1).ok_or(TRUNCATED)?;
                        if next == 0x00 || (0xD0..=0xD7).contains(&next) {
                            i = ff + 2;
                        } else {
                            i = ff;
                            break;
                        }
                    }
                    out.extend_from_slice(&b[start..i]);
                }
            }
        }
    }
    if let Some(o) = upright {
        let tiff = exif_with_orientation(o);
        let mut seg = vec![0xFF, APP1];
        seg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(&tiff);
        out.splice(exif_at..exif_at, seg);
    }
    Ok(out)
}

/// The position of the next 0xFF at or after `i` that is not followed by another 0xFF (the
/// last of a run of fill bytes).
fn start_of_marker(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + b.get(i..)?.iter().position(|&x| x == 0xFF)?;
    while b.get(j + 1) == Some(&0xFF) {
        j += 1;
    }
    Some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// An EXIF block with an orientation and a camera's model, little-endian as phones write.
    fn camera_exif(o: u16) -> Vec<u8> {
        let mut v = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
        v.extend_from_slice(&2u16.to_le_bytes());
        // Model (ASCII, 12 bytes at offset 38).
        v.extend_from_slice(&0x0110u16.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&12u32.to_le_bytes());
        v.extend_from_slice(&38u32.to_le_bytes());
        // Orientation.
        v.extend_from_slice(&0x0112u16.to_le_bytes());
        v.extend_from_slice(&3u16.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&o.to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(b"SECRETPHONE\0");
        v
    }

    /// A JPEG's structure: metadata segments, tables, a scan with stuffed bytes and a restart
    /// marker, the end, and a second picture after it.
    fn camera_jpeg(o: u16) -> (Vec<u8>, Vec<u8>) {
        let scan_data = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56];
        let mut kept = vec![0xFF, SOI];
        kept.extend(segment(APP0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"));
        let mut v = kept.clone();
        v.extend(segment(
            APP1,
            &[b"Exif\0\0".as_slice(), &camera_exif(o)].concat(),
        ));
        v.extend(segment(
            APP1,
            b"http://ns.adobe.com/xap/1.0/\0<gps>21.02N</gps>",
        ));
        v.extend(segment(0xED, b"Photoshop 3.0\0SECRET IPTC"));
        v.extend(segment(COM, b"SECRET comment"));
        v.extend(segment(APP2, b"MPF\0SECRET"));
        let icc = segment(APP2, b"ICC_PROFILE\0\x01\x01profile");
        let tables = [
            icc.clone(),
            segment(0xDB, &[0; 65]),
            segment(0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]),
            segment(0xC4, &[0; 20]),
            segment(SOS, &[1, 1, 0, 0, 63, 0]),
        ]
        .concat();
        v.extend_from_slice(&tables);
        kept.extend_from_slice(&tables);
        v.extend_from_slice(&scan_data);
        kept.extend_from_slice(&scan_data);
        v.extend_from_slice(&[0xFF, EOI]);
        kept.extend_from_slice(&[0xFF, EOI]);
        // A second image (an MPF preview) with its own EXIF.
        v.extend_from_slice(&[0xFF, SOI]);
        v.extend(segment(
            APP1,
            &[b"Exif\0\0".as_slice(), &camera_exif(1)].concat(),
        ));
        v.extend_from_slice(&[0xFF, EOI]);
        (v, kept)
    }

    fn has(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_jpeg_keeps_its_image_and_loses_its_metadata() {
        let (photo, kept) = camera_jpeg(1);
        let out = strip("jpg", &photo).unwrap();
        assert_eq!(out, kept);
        assert!(!has(&out, b"SECRET") && !has(&out, b"gps"));
    }

    #[test]
    fn a_turned_jpeg_keeps_its_orientation_and_nothing_else_of_its_exif() {
        let (photo, kept) = camera_jpeg(6);
        let out = strip("jpg", &photo).unwrap();
        assert!(!has(&out, b"SECRET"));
        assert_eq!(out.len(), kept.len() + 4 + 6 + 26);
        // Right after SOI and APP0, as readers expect.
        let app1 = 2 + 18;
        assert_eq!(&out[app1..app1 + 2], &[0xFF, APP1]);
        let tiff = &out[app1 + 10..app1 + 10 + 26];
        assert_eq!(orientation(tiff), Some(6));
        // Stripping again changes nothing.
        assert_eq!(strip("jpg", &out).unwrap(), out);
    }

    #[test]
    fn thumbnails_go_and_a_damaged_exif_still_gives_its_orientation() {
        let mut v = vec![0xFF, SOI];
        // JFIF with a 1×1 thumbnail, then a JFXX extension holding another.
        v.extend(segment(APP0, b"JFIF\0\x01\x02\0\0\x01\0\x01\x01\x01SEC"));
        v.extend(segment(APP0, b"JFXX\0\x13SECRET thumbnail"));
        v.extend(segment(APP14, b"Adobe\0\x64\0\0\0\0\x01"));
        v.extend(segment(APP14, b"SECRET"));
        // An EXIF whose second entry points past its end, and orientation 3.
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x02".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0]);
        tiff.extend_from_slice(&[0x01, 0x10, 0, 2, 0, 0, 0, 40, 0, 0, 0x10, 0]);
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        v.extend(segment(APP1, &[b"Exif\0\0".as_slice(), &tiff].concat()));
        v.extend(segment(SOS, &[1, 1, 0, 0, 63, 0]));
        v.extend_from_slice(&[0x12, 0xFF, EOI]);
        let out = strip("jpg", &v).unwrap();
        assert!(!has(&out, b"SEC") && !has(&out, b"JFXX"), "{out:x?}");
        assert!(has(&out, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0") && has(&out, b"Adobe"));
        let app1 = out
            .windows(8)
            .position(|w| w == b"Exif\0\0MM")
            .expect("orientation");
        assert_eq!(orientation(&out[app1 + 6..app1 + 6 + 26]), Some(3));
    }

    #[test]
    fn damaged_jpegs_are_refused_without_panicking() {
        let (photo, _) = camera_jpeg(6);
        let first_end = photo.len() - (2 + 4 + 6 + camera_exif(1).len() + 2);
        assert_eq!(&photo[first_end - 2..first_end], &[0xFF, EOI]);
        for cut in 0..first_end {
            // Every prefix that ends before the first image's end is refused.
            assert!(strip("jpg", &photo[..cut]).is_err(), "cut at {cut}");
        }
        assert!(strip("jpg", &[0xFF, SOI, 0xFF, EOI]).is_err());
        assert!(strip("jpg", &[0xFF, SOI, 0xFF, 0xE0, 0, 1]).is_err());
        assert!(strip("gif", b"GIF89a").is_err());
    }

    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0D, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0, 0x05, 0x00, 0x01, 0xFF,
        0x89, 0x99, 0x3D, 0x1D, 0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn a_png_loses_its_text_and_exif_chunks() {
        let mut png = Png::from_bytes(Bytes::from_static(PNG)).unwrap();
        let chunk =
            |k: &[u8; 4], v: &[u8]| img_parts::png::PngChunk::new(*k, Bytes::copy_from_slice(v));
        png.chunks_mut()
            .insert(1, chunk(b"tEXt", b"Author\0SECRET"));
        png.chunks_mut()
            .insert(1, chunk(b"iTXt", b"GPS\0\0\0\0\0SECRET"));
        png.chunks_mut().insert(1, chunk(b"caBX", b"SECRET c2pa"));
        png.chunks_mut()
            .insert(1, chunk(b"iCCP", b"SECRET name\0\0profile"));
        png.set_exif(Some(Bytes::from(camera_exif(8))));
        let photo = png.encoder().bytes().to_vec();
        assert!(has(&photo, b"SECRET"));
        let out = strip("png", &photo).unwrap();
        assert!(!has(&out, b"SECRET"));
        let back = Png::from_bytes(Bytes::from(out)).unwrap();
        assert_eq!(back.exif().and_then(|e| orientation(&e)), Some(8));
        assert!(back.chunk_by_type(*b"IDAT").is_some());
        let icc = back.chunk_by_type(*b"iCCP").expect("the profile is kept");
        assert_eq!(&icc.contents()[..], b"ICC\0\0profile");
        assert_eq!(strip("png", PNG).unwrap(), PNG, "nothing to strip");
        assert!(strip("png", &PNG[..40]).is_err());
    }

    #[test]
    fn a_webp_loses_its_exif_and_xmp() {
        // A lossless 1×1 WebP, as `cwebp -lossless` writes it.
        let mut webp = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00".to_vec();
        let n = webp.len() as u32 - 8;
        webp[4..8].copy_from_slice(&n.to_le_bytes());
        let mut w = WebP::from_bytes(Bytes::from(webp)).unwrap();
        w.set_exif(Some(Bytes::from(camera_exif(1))));
        w.chunks_mut().push(img_parts::riff::RiffChunk::new(
            img_parts::webp::CHUNK_XMP,
            img_parts::riff::RiffContent::Data(Bytes::from_static(b"<x>SECRET</x>")),
        ));
        // C2PA content credentials, or anything else unknown, go too.
        w.chunks_mut().push(img_parts::riff::RiffChunk::new(
            *b"C2PA",
            img_parts::riff::RiffContent::Data(Bytes::from_static(b"SECRET author")),
        ));
        let photo = w.encoder().bytes().to_vec();
        assert!(has(&photo, b"SECRET"));
        let out = strip("webp", &photo).unwrap();
        assert!(!has(&out, b"SECRET") && !has(&out, b"EXIF") && !has(&out, b"XMP "));
        assert!(has(&out, b"VP8L"));
        let back = WebP::from_bytes(Bytes::from(out)).unwrap();
        if let Some(vp8x) = back.chunk_by_id(*b"VP8X") {
            let flags = vp8x.content().data().unwrap()[0];
            assert_eq!(flags & 0x0C, 0, "no EXIF or XMP flag left: {flags:#x}");
        }
    }
}
