//! # dinh-broadcast: the loudspeaker bridge
pub mod dsp;
pub mod clip;
pub mod jitter;
pub mod config;
pub mod engine;
