//! On whose behalf the hub asks an endpoint to act: its owner (no grant),
//! or a grantee through one of the owner's permissions. The grant travels
//! in file requests and, signed, in a task's capability; the endpoint
//! checks every path against it itself (beneath the shared root, beneath a
//! `config-paths` rule whose SHARING flag is 1, writes only with `rw`), so
//! a hub cannot widen what the owner shared.

use crate::wire_path::WirePath;
use serde::{Deserialize, Serialize};

/// What a permission lets its grantee do beneath its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShareMode {
    /// List and read (`r`).
    #[serde(rename = "r")]
    Read,
    /// Also write, make directories, rename and remove (`rw`).
    #[serde(rename = "rw")]
    ReadWrite,
}

impl ShareMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "r" => Some(Self::Read),
            "rw" => Some(Self::ReadWrite),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "r",
            Self::ReadWrite => "rw",
        }
    }
    pub fn allows_write(self) -> bool {
        self == Self::ReadWrite
    }
}

/// A grantee's access through one permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareGrant {
    /// The permission this access rests on (for the endpoint's log, and
    /// so a revoked permission's work can be named).
    pub permission_id: String,
    /// The shared directory, as an endpoint path (`/~/` is the owner's
    /// home); nothing outside it is reachable.
    pub root: WirePath,
    pub mode: ShareMode,
    /// Who acts, for the endpoint's log: `bob`, `group lab`, ….
    pub grantee: String,
}
