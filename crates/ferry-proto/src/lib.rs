//! Wire types and framing for ferry's channels, with no I/O.
//!
//! Everything here is pure: bytes and time go in, values and decisions come
//! out. The daemon, the hub and the CLI own the sockets and the clock; this
//! crate owns what may cross them, how large it may be, and which version
//! speaks it.

pub mod api;
pub mod backoff;
pub mod control;
pub mod data;
pub mod filter;
pub mod frame;
pub mod human;
pub mod local_api;
pub mod notify;
pub mod rate;
pub mod relay;
pub mod setup_key;
pub mod share;
pub mod task;
pub mod wire_path;
