//! Picket's shared vocabulary: the wire messages exchanged by agent and
//! coordinator, the frame codec that carries them, identifiers and limits.
//!
//! This crate does no I/O. The codec works on byte buffers and reports an
//! incomplete frame as [`codec::DecodeError::Incomplete`]; sockets, TLS and
//! files live in the agent and coordinator crates.
//!
//! Layout:
//! - [`actions`]: action kinds, undo pairs, re-runnable kinds, results;
//!   [`actions::params`]: each kind's parameters, checked by both ends.
//! - [`proto`]: the two message enums (`AgentMsg`, `CoordMsg`), `Hello`, refusals.
//! - [`codec`]: `u32` big-endian length prefix + bincode 2 (serde) body, with limits.
//! - `io` (feature `io`): async `read_frame`/`write_frame` over a stream the caller owns.
//! - [`detection`]: severities, detections, alert reports, rule bundles, indicators.
//! - [`offboarding`]: the local offboarding token: format and verification.
//! - [`persistence`]: reading persistence lines (which paths a line names).
//! - [`links`]: wrapped links (time of click): format, signature, checks;
//!   `link_rewrite` (feature `mail`): links in a message rewritten.
//! - [`url_blocklist`]: a mail host's URL blocklist and the check of a link.
//! - [`limits`]: protocol version, default frame cap, timing defaults, names.

pub mod actions;
pub mod codec;
pub mod detection;
#[cfg(feature = "io")]
pub mod io;
pub mod limits;
#[cfg(feature = "mail")]
pub mod link_rewrite;
pub mod links;
pub mod offboarding;
pub mod persistence;
pub mod proto;
pub mod sieve;
pub mod url_blocklist;

pub use uuid::Uuid;
