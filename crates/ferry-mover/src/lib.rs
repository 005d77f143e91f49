//! The data mover: parallel, checksummed, restartable transfers between two
//! endpoints over mutual-TLS data connections.
//!
//! [`source::send`] runs a task attempt on the sending endpoint;
//! [`dest::serve`] accepts attempts on the receiving one. Every file
//! operation goes through the rooted filesystem, so config-paths bounds
//! both sides whatever the hub or the peer asks.

pub mod admission;
pub mod buffers;
pub mod channel;
mod context;
pub mod dest;
pub mod digest;
mod faults;
pub mod journal;
pub mod plan;
pub mod source;

pub use context::{Context, Report};

/// A session's failure reason starting `fatal: ` is one no retry fixes (a
/// path the policy refuses, a directory where a file must go): the task
/// fails. Anything else is a fault the hub retries.
pub(crate) fn fatal_message(reason: &str) -> Option<&str> {
    reason.strip_prefix("fatal: ")
}
