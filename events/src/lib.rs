//! # dinh-events: the meeting record
//!
//! An event-sourced, append-only, tamper-evident record of meetings (agenda, attendance,
//! floor, loudspeaker relay) and of citizen feedback through its whole life.
//!
//! # Layout
//! - [`domain`]: commands, events and the aggregates ([`domain::meeting::Meeting`],
//!   [`domain::feedback::Feedback`], [`domain::loudspeakers::Loudspeakers`]), pure and
//!   synchronous behind one [`domain::Decide`] trait;
//! - [`store`]: the log on SQLite (default) or PostgreSQL: one global, gap-free position in
//!   commit order, idempotent commands, SHA-256 hash chain, one writer committing many
//!   commands in one transaction;
//! - [`chain`]: canonical bytes, the hash chain, RFC 9162 Merkle tree heads and signed
//!   checkpoints; [`verify`] checks a log or an export offline, and against tree heads held
//!   elsewhere;
//! - [`note`], [`checkpoint`], [`consistency`]: C2SP signed notes and checkpoints, RFC 9162
//!   consistency proofs; [`witness`]: the c2sp.org/tlog-witness core (pure) through which
//!   other hubs cosign this log's checkpoints, and [`witness_store`], where a witness keeps
//!   what it holds;
//! - [`domain::notices`]: notices of the village bulletin boards (post, withdraw);
//! - [`projections`]: attendance, the feedback register, the minutes and the notices, rebuilt from
//!   position 0 and kept up to date from the log;
//! - [`record`]: [`record::Record`], what the hub drives: commands in (through cqrs-es, each
//!   aggregate kept in memory), positions out, and [`record::Record::subscribe`], the live
//!   events;
//! - [`visibility`]: who may see which meetings, feedback items and events.
pub mod chain;
pub mod checkpoint;
pub mod consistency;
pub mod domain;
pub mod note;
pub mod projections;
pub mod record;
pub mod store;
pub mod verify;
pub mod visibility;
pub mod witness;
pub mod witness_store;
