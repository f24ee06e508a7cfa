//! # dinh-broadcast: the loudspeaker bridge (not built yet)
//!
//! Decoding, mixing, speech-band filtering, loudness normalisation and the RTP / HTTP Ogg /
//! Icecast outputs are issue #4. Nothing here yet.
