//! File operations on a connected endpoint (list, mkdir, rename, remove):
//! what the REST API and the web pages call alike. The endpoint is found
//! through [`endpoints::find_with_access`] and each path the operation
//! touches through [`authorize_paths`] (a grantee's request carries the
//! permission's grant), the operation is sent over its control channel,
//! and the endpoint's own checks (config-paths, the grant) decide what it
//! may touch. What it did, or refused a grantee, goes to the audit log.

use crate::audit::{self, Actor};
use crate::authz::{Action, Refusal, authorize_paths};
use crate::control::CallError;
use crate::endpoints::{self, RegistryError};
use crate::grants::{Principal, now};
use crate::server::Hub;
use crate::store::EndpointRow;
use ferry_proto::api::{FsOp, FsOutcome};
use ferry_proto::share::ShareGrant;
use std::time::Duration;

/// How long a file operation may take on the endpoint.
pub const FS_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The endpoint is not one the principal may use.
    #[error(transparent)]
    Endpoint(#[from] RegistryError),
    /// The endpoint's daemon is not connected to the hub.
    #[error(
        "endpoint '{name}' is not connected to the hub; start it with `ferry -start` on its machine"
    )]
    Offline { name: String, id: String },
    #[error("endpoint '{name}' did not answer within {} s; try again", .within.as_secs())]
    Timeout { name: String, within: Duration },
    /// The connection dropped or is too busy; a retry may work.
    #[error("endpoint '{name}': {reason}")]
    Unavailable { name: String, reason: CallError },
    /// The endpoint refused or failed the operation; its words.
    #[error("{0}")]
    Failed(String),
}

/// The endpoint `who` may touch these paths on (`(path, writes)`), and the
/// grant to send with the request when a permission is what lets them. A
/// refusal of someone who sees the endpoint goes to its audit log as a
/// refused `entry`.
pub(crate) fn authorize(
    hub: &Hub,
    who: &Principal,
    endpoint: &str,
    touched: &[(&[u8], bool)],
    entry: &audit::Entry<'_>,
) -> Result<(EndpointRow, Option<ShareGrant>), FilesError> {
    let (row, reaching) =
        endpoints::find_with_access(&*hub.store, who, endpoint, Action::UseEndpoint)?;
    match authorize_paths(who, &row, &reaching, touched) {
        Ok(permission) => {
            let grant = permission.map(crate::sharing::grant_of);
            Ok((row, grant))
        }
        Err(refusal) => {
            // Someone no permission reaches is not told the endpoint
            // exists, and leaves nothing in its owner's log.
            if !matches!(refusal, Refusal::Hidden) {
                refuse(hub, who, &row.id, entry, &refusal.to_string());
            }
            Err(FilesError::Endpoint(RegistryError::Refused(refusal)))
        }
    }
}

/// Records that `entry` was refused to `who` on `endpoint_id`.
pub(crate) fn refuse(
    hub: &Hub,
    who: &Principal,
    endpoint_id: &str,
    entry: &audit::Entry<'_>,
    reason: &str,
) {
    let refusal = audit::Entry {
        action: audit::action::REFUSED,
        detail: format!("{}: {reason}", entry.action),
        ..entry.clone()
    };
    audit::record_done(&*hub.store, now(), endpoint_id, Actor::of(who), &[refusal]);
}

/// Runs `op` on `endpoint` (a name or id) for `who`: a listing or `Done`.
pub async fn operate(
    hub: &Hub,
    who: &Principal,
    endpoint: &str,
    op: FsOp,
) -> Result<(EndpointRow, FsOutcome), FilesError> {
    let touched: Vec<(&[u8], bool)> = match &op {
        FsOp::List { path } => vec![(path.as_bytes(), false)],
        FsOp::Mkdir { path } | FsOp::Remove { path, .. } => vec![(path.as_bytes(), true)],
        FsOp::Rename { from, to } => vec![(from.as_bytes(), true), (to.as_bytes(), true)],
    };
    let entry = audit::fs_entry(&op);
    let (row, grant) = authorize(hub, who, endpoint, &touched, &entry)?;
    let store = &*hub.store;
    let refused = |reason: &str| refuse(hub, who, &row.id, &entry, reason);
    let permission = grant.as_ref().map(|g| g.permission_id.clone());
    match crate::cluster::fs(hub, &row.id, op.clone(), grant, FS_WITHIN).await {
        Ok(FsOutcome::Failed { message }) => {
            if permission.is_some() {
                refused(&message);
            }
            Err(FilesError::Failed(message))
        }
        Ok(outcome) => {
            let done = match &permission {
                Some(id) if entry.detail.is_empty() => entry.detail(format!("permission {id}")),
                Some(id) => {
                    let detail = format!("{}; permission {id}", entry.detail);
                    entry.detail(detail)
                }
                None => entry,
            };
            audit::record_done(store, now(), &row.id, Actor::of(who), &[done]);
            Ok((row, outcome))
        }
        Err(CallError::Offline) => Err(FilesError::Offline {
            name: row.display_name,
            id: row.id,
        }),
        Err(CallError::Timeout(within)) => Err(FilesError::Timeout {
            name: row.display_name,
            within,
        }),
        Err(reason) => Err(FilesError::Unavailable {
            name: row.display_name,
            reason,
        }),
    }
}
