//! # dinh-events: the meeting record (not built yet)
//!
//! The event-sourced, tamper-evident record of sessions, attendance, floor and citizen
//! feedback is issue #3. Nothing here yet: the hub keeps no record until it lands.
