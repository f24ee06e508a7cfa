//! # dinh-events: the meeting record
//!
//! An event-sourced, append-only, tamper-evident record of meetings (agenda, attendance,
//! floor, loudspeaker relay) and of citizen feedback through its whole life.
//!
//! # Layout
//! - [`domain`]: commands, events and the two aggregates ([`domain::meeting::Meeting`],
//!   [`domain::feedback::Feedback`]), pure and synchronous;
//! - [`store`]: the log on SQLite (default) or PostgreSQL, behind cqrs-es's
//!   `PersistedEventRepository`: one global, gap-free position in commit order, idempotent
//!   commands, SHA-256 hash chain;
//! - [`chain`]: canonical bytes, the hash chain, RFC 9162 Merkle tree heads and signed
//!   checkpoints; [`verify`] checks a log or an export offline;
//! - [`domain::notices`]: notices of the village bulletin boards (post, withdraw);
//! - [`projections`]: attendance, the feedback register, the minutes and the notices, rebuilt from
//!   position 0 and kept up to date from the log;
//! - [`record`]: [`record::Record`], what the hub drives: commands in, positions out.
pub mod chain;
pub mod domain;
pub mod projections;
pub mod record;
pub mod store;
pub mod verify;
