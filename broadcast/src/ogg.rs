//! Ogg/Opus pages (RFC 7845) for the HTTP streams and Icecast mounts, written once and shared
//! by every listener. A listener who joins late gets the two header pages and then the live
//! pages from where the stream is, as Icecast does; the granule positions simply do not start
//! at zero (RFC 7845 §4).

use std::borrow::Cow;

use bytes::Bytes;
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Encoder delay written into OpusHead (libopus at 48 kHz).
pub const PRE_SKIP: u16 = 312;

/// Pages of one logical Ogg/Opus stream.
pub struct OggPager {
    serial: u32,
    writer: PacketWriter<'static, Vec<u8>>,
    headers: Bytes,
    granule: u64,
    in_page: usize,
    per_page: usize,
}

crate::debug_fields!(OggPager: serial);

fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(1); // mono
    h.extend_from_slice(&PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family 0
    h
}

fn opus_tags(title: &str) -> Vec<u8> {
    let vendor = b"dinh";
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    let comment = format!("TITLE={title}");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&(comment.len() as u32).to_le_bytes());
    t.extend_from_slice(comment.as_bytes());
    t
}

impl OggPager {
    /// A stream with this serial number and title; a page every `per_page` packets.
    pub fn new(serial: u32, title: &str, per_page: usize) -> Self {
        let mut writer = PacketWriter::new(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = writer.write_packet(opus_head(), serial, PacketWriteEndInfo::EndPage, 0);
        let _ = writer.write_packet(opus_tags(title), serial, PacketWriteEndInfo::EndPage, 0);
        let headers = Bytes::from(std::mem::take(writer.inner_mut()));
        Self {
            serial,
            writer,
            headers,
            granule: 0,
            in_page: 0,
            per_page: per_page.max(1),
        }
    }

    /// The header pages every listener starts with.
    pub fn headers(&self) -> Bytes {
        self.headers.clone()
    }

    /// Add a 20 ms Opus packet; a finished page is returned.
    pub fn push(&mut self, packet: &[u8]) -> Option<Bytes> {
        self.granule += 960;
        self.in_page += 1;
        let end = if self.in_page >= self.per_page {
            self.in_page = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let flush = matches!(end, PacketWriteEndInfo::EndPage);
        let _ =
            self.writer
                .write_packet(Cow::Owned(packet.to_vec()), self.serial, end, self.granule);
        flush.then(|| Bytes::from(std::mem::take(self.writer.inner_mut())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_late_listener_can_read_the_stream_from_the_headers_on() {
        let mut p = OggPager::new(7, "Họp thôn", 5);
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let frame = [0.1f32; 960];
        let mut pages = Vec::new();
        for _ in 0..50 {
            if let Some(page) = p.push(&enc.encode_vec_float(&frame, 1500).unwrap()) {
                pages.push(page);
            }
        }
        assert_eq!(pages.len(), 10);
        // Joining at page 4: headers, then pages 4.. .
        let mut late = p.headers().to_vec();
        for page in &pages[4..] {
            late.extend_from_slice(page);
        }
        let mut r = ogg::PacketReader::new(Cursor::new(late));
        let head = r.read_packet().unwrap().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        let tags = r.read_packet().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&tags.data).contains("TITLE=Họp thôn"));
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut n = 0;
        let mut last_granule = 0;
        while let Ok(Some(pkt)) = r.read_packet() {
            let mut out = [0f32; 960];
            assert_eq!(dec.decode_float(&pkt.data, &mut out, false).unwrap(), 960);
            n += 1;
            last_granule = pkt.absgp_page();
        }
        assert_eq!(n, 30);
        assert_eq!(last_granule, 50 * 960);
    }
}
