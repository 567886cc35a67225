//! Events out: every action transition is a row in `action_events` (written
//! in the same transaction as the change); sinks read that log in order from
//! their own persisted cursor, so a slow or absent receiver delays only its
//! own delivery and loses nothing, and the pipeline never waits for a sink.
//!
//! - the wake-up signal: [`crate::store::Logged`], pulsed by the store
//!   itself after each commit that appended to a log.
//! - [`webhook`]: HTTP POST of JSON, retried with backoff.
//! - [`syslog`]: RFC 5424 over UDP or TCP.

pub mod sink;
pub mod syslog;
pub mod webhook;
