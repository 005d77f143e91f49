//! The endpoint daemon: one per config dir, holding the hub link, the path
//! policy and the local API socket.
//!
//! Start-up is split in two so every refusal (not set up, already running,
//! a bad config-paths) happens synchronously, before `-detach` forks and
//! before the tokio runtime exists: [`Daemon::prepare`] checks and claims,
//! [`Daemon::run`] serves until stopped.

mod error;
mod fs_ops;
mod hooks;
mod hub_dial;
mod hub_link;
pub mod local_api;
mod lock;
pub mod logging;
mod metrics;
mod policy;
mod serve;
mod service_manager;
mod transfers;

pub use error::DaemonError;
pub use lock::{DaemonLock, LockState};
pub use policy::{PolicyChoice, load_policy};
pub use serve::Daemon;

/// The policy in force and where it came from, shared by the local API
/// (which reloads it) and the hub link (which enforces it).
pub(crate) type PolicyHandle = std::sync::Arc<
    std::sync::RwLock<(
        std::sync::Arc<ferry_paths::Policy>,
        ferry_proto::local_api::PolicySource,
    )>,
>;
