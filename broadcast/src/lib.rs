//! # dinh-broadcast: the loudspeaker bridge
pub mod bridge;
pub mod clip;
pub mod config;
pub mod dsp;
pub mod engine;
pub mod files;
pub mod health;
pub mod icecast;
pub mod jitter;
pub mod ogg;
pub mod programme;
pub mod rtp;
