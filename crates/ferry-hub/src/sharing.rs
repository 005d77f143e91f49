//! Sharing: groups, and permissions that let other users use a path of an
//! endpoint (`r` or `rw`), for the REST API, the web pages and the CLI
//! alike. Who may do what with them is [`crate::authz`]'s; the endpoint
//! itself checks every grantee's request against its own `config-paths`
//! (a path under a rule whose SHARING flag is 0 is never shared), so the
//! hub asks the endpoint before it records a permission.
//!
//! Every grant, revocation and refusal is recorded in the audit log
//! ([`crate::audit`]).

use crate::audit::{self, Actor};
use crate::authz::Action;
use crate::control::CallError;
use crate::endpoints::{self, RegistryError};
use crate::grants::{Principal, now};
use crate::server::Hub;
use crate::store::{Grantee, GroupListing, PermissionRow, Storage, StoreError};
use crate::tasks;
use ferry_proto::api::{FsOp, FsOutcome};
use ferry_proto::share::{ShareGrant, ShareMode};
use ferry_proto::task::{MAX_ITEM_PATH, TaskStatus};
use ferry_proto::wire_path::WirePath;

/// Group names: what `ferry group create` takes.
pub const MAX_GROUP_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    /// The request itself is wrong; the text says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// No such user or group (or not one the caller may see).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Endpoint(#[from] RegistryError),
    /// The endpoint must answer for the share to be checked, and did not.
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> SharingError {
    SharingError::Invalid(message.into())
}

// --- groups ---

fn check_group_name(name: &str) -> Result<(), SharingError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "group name {name:?} is not allowed: use 1 to {MAX_GROUP_NAME} letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Creates group `name`, owned (managed) by `who`.
pub fn create_group(store: &dyn Storage, who: &Principal, name: &str) -> Result<(), SharingError> {
    check_group_name(name)?;
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create_group(&id, name, who.user_id, now())
        .map_err(|e| match e {
            StoreError::Conflict { .. } => invalid(format!(
                "a group named {name:?} exists already; choose another name"
            )),
            other => other.into(),
        })?;
    tracing::info!(group = %name, owner = %who.user_name, "group created");
    Ok(())
}

/// Adds (`add`) or removes a member of a group `who` owns; whether that
/// changed anything.
pub fn change_member(
    store: &dyn Storage,
    who: &Principal,
    group: &str,
    user: &str,
    add: bool,
) -> Result<bool, SharingError> {
    let not_yours = || {
        SharingError::NotFound(format!(
            "no group {group:?} of yours; list yours with `ferry group list`"
        ))
    };
    let row = store.group_by_name(group)?.ok_or_else(not_yours)?;
    if row.owner_id != who.user_id {
        return Err(not_yours());
    }
    let member = store
        .user_by_name(user)?
        .ok_or_else(|| SharingError::NotFound(format!("no user {user:?} on this hub")))?;
    let changed = if add {
        store.add_group_member(&row.id, member.id)?
    } else {
        store.remove_group_member(&row.id, member.id)?
    };
    tracing::info!(group = %group, user = %user, add, changed, "group membership");
    Ok(changed)
}

pub fn groups(store: &dyn Storage, who: &Principal) -> Result<Vec<GroupListing>, SharingError> {
    Ok(store.groups_of(who.user_id)?)
}

// --- permissions ---

/// Who a new permission is for, as the request names them.
#[derive(Debug, Clone)]
pub enum GranteeName {
    Identity(String),
    Group(String),
    AllAuthenticated,
    Anonymous,
}

/// A permission as the owner asks for it.
#[derive(Debug, Clone)]
pub struct NewPermission {
    /// The endpoint, by id or one of the owner's names.
    pub endpoint: String,
    pub path: WirePath,
    pub mode: ShareMode,
    pub grantee: GranteeName,
    pub expires: Option<i64>,
}

/// The shared path as the hub keeps it: absolute (or `/~/...`), no `..`,
/// no `.` or repeated `/`, no trailing `/` (but `/` itself).
pub(crate) fn normalize_root(path: &WirePath) -> Result<Vec<u8>, SharingError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(invalid(
            "the shared path must be absolute: start it with / (or /~/ for your home)",
        ));
    }
    if bytes.len() > MAX_ITEM_PATH || bytes.contains(&0) {
        return Err(invalid(
            "the shared path is too long or contains a NUL byte",
        ));
    }
    let mut out = Vec::with_capacity(bytes.len());
    for component in bytes.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(invalid("the shared path must not contain '..'")),
            c => {
                out.push(b'/');
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// What a permission grants, as the endpoint is told with each request.
pub fn grant_of(permission: &PermissionRow) -> ShareGrant {
    ShareGrant {
        permission_id: permission.id.clone(),
        root: WirePath::from_bytes(permission.path.clone()),
        mode: permission.mode,
        grantee: match &permission.grantee {
            Grantee::Identity { name, .. } => name.clone(),
            Grantee::Group { name, .. } => format!("group {name}"),
            Grantee::AllAuthenticated => "all authenticated users".into(),
            Grantee::Anonymous => "anonymous".into(),
        },
    }
}

/// Whom a permission is for, as the audit log says it: `identity bob`,
/// `group lab`, `all_authenticated`.
pub(crate) fn grantee_words(permission: &PermissionRow) -> String {
    match permission.grantee.name() {
        "" => permission.grantee.kind().to_string(),
        name => format!("{} {name}", permission.grantee.kind()),
    }
}

/// Records a permission on an endpoint of `who`'s, once the endpoint
/// itself has shown it would serve it: the hub lists the shared path on
/// the endpoint as the grantee would, so a path that does not exist, or
/// lies under a `config-paths` rule whose SHARING flag is 0, is refused
/// here with the endpoint's own reason.
pub async fn create_permission(
    hub: &Hub,
    who: &Principal,
    new: NewPermission,
) -> Result<PermissionRow, SharingError> {
    let store = &*hub.store;
    let endpoint = endpoints::find(store, who, &new.endpoint, Action::ManageEndpoint)?;
    let path = normalize_root(&new.path)?;
    let now = now();
    if new.expires.is_some_and(|e| e <= now) {
        return Err(invalid("the expiry has already passed"));
    }
    let grantee = match &new.grantee {
        GranteeName::Identity(name) => {
            let user = store
                .user_by_name(name)?
                .ok_or_else(|| SharingError::NotFound(format!("no user {name:?} on this hub")))?;
            if user.id == who.user_id {
                return Err(invalid(
                    "you own this endpoint already: share it with someone else",
                ));
            }
            Grantee::Identity {
                user_id: user.id,
                name: user.name,
            }
        }
        GranteeName::Group(name) => {
            let group = store.group_by_name(name)?.ok_or_else(|| {
                SharingError::NotFound(format!(
                    "no group {name:?} on this hub; make one with `ferry group create`"
                ))
            })?;
            Grantee::Group {
                group_id: group.id,
                name: group.name,
            }
        }
        GranteeName::AllAuthenticated => Grantee::AllAuthenticated,
        GranteeName::Anonymous => {
            if new.mode.allows_write() {
                return Err(invalid(
                    "anonymous access is read-only: use --permissions r",
                ));
            }
            Grantee::Anonymous
        }
    };
    let permission = PermissionRow {
        id: uuid::Uuid::new_v4().to_string(),
        endpoint_id: endpoint.id.clone(),
        path,
        mode: new.mode,
        grantee,
        expires: new.expires,
        created: now,
        created_by: who.user_id,
    };
    // The endpoint decides what may be shared: ask it as the grantee.
    let probe = FsOp::List {
        path: WirePath::from_bytes(permission.path.clone()),
    };
    let shown = String::from_utf8_lossy(&permission.path).into_owned();
    match crate::cluster::fs(
        hub,
        &endpoint.id,
        probe,
        Some(grant_of(&permission)),
        crate::files::FS_WITHIN,
    )
    .await
    {
        Ok(FsOutcome::Failed { message }) => {
            audit::record(
                store,
                now,
                &endpoint.id,
                Actor::of(who),
                &[
                    audit::Entry::new(audit::action::PERMISSION_REFUSED, &permission.path).detail(
                        format!(
                            "{} with {}: {message}",
                            permission.mode.as_str(),
                            grantee_words(&permission)
                        ),
                    ),
                ],
            )?;
            return Err(invalid(format!(
                "endpoint '{}' will not share {shown}: {message}",
                endpoint.display_name
            )));
        }
        Ok(_) => {}
        Err(CallError::Offline) => {
            return Err(SharingError::Unreachable(format!(
                "endpoint '{}' is not connected: start it with `ferry -start`, so it can confirm its config-paths allow sharing {shown}",
                endpoint.display_name
            )));
        }
        Err(e) => {
            return Err(SharingError::Unreachable(format!(
                "endpoint '{}' could not confirm it shares {shown}: {e}",
                endpoint.display_name
            )));
        }
    }
    store.put_permission(&permission)?;
    audit::record(
        store,
        now,
        &endpoint.id,
        Actor::of(who),
        &[
            audit::Entry::new(audit::action::PERMISSION_CREATE, &permission.path).detail(format!(
                "{} with {}; permission {}",
                permission.mode.as_str(),
                grantee_words(&permission),
                permission.id
            )),
        ],
    )?;
    tracing::info!(endpoint = %endpoint.id, permission = %permission.id, by = %who.user_name, "permission created");
    // Read back, with the grantee's name as stored.
    Ok(store.permission(&permission.id)?.unwrap_or(permission))
}

/// The live permissions on an endpoint of `who`'s.
pub fn list_permissions(
    store: &dyn Storage,
    who: &Principal,
    endpoint: &str,
) -> Result<Vec<PermissionRow>, SharingError> {
    let endpoint = endpoints::find(store, who, endpoint, Action::ManageEndpoint)?;
    Ok(store.endpoint_permissions(&endpoint.id, now())?)
}

/// Deletes a permission on an endpoint of `who`'s. Access ends at once:
/// the grantee's next request is refused, and each ACTIVE task that acts
/// under it fails with an event that says why (the caller wakes the
/// scheduler, which stops their data work). Returns those tasks' ids.
pub fn delete_permission(
    store: &dyn Storage,
    who: &Principal,
    endpoint: &str,
    id: &str,
) -> Result<Vec<String>, SharingError> {
    let endpoint = endpoints::find(store, who, endpoint, Action::ManageEndpoint)?;
    let deleting = store.permission(id)?;
    if !store.delete_permission(&endpoint.id, id)? {
        return Err(SharingError::NotFound(format!(
            "no permission {id} on endpoint '{}'; list them with `ferry endpoint permission list`",
            endpoint.display_name
        )));
    }
    let now = now();
    let entry = audit::Entry {
        action: audit::action::PERMISSION_DELETE,
        path: deleting.as_ref().map(|p| p.path.as_slice()),
        task_id: None,
        detail: match &deleting {
            Some(p) => format!(
                "{} with {}; permission {id}",
                p.mode.as_str(),
                grantee_words(p)
            ),
            None => format!("permission {id}"),
        },
    };
    audit::record(store, now, &endpoint.id, Actor::of(who), &[entry])?;
    let reason = format!(
        "the permission this task used on endpoint '{}' was deleted by its owner",
        endpoint.display_name
    );
    let failed = fail_tasks_of(store, id, &reason, now)?;
    tracing::info!(endpoint = %endpoint.id, permission = %id, by = %who.user_name, tasks = failed.len(), "permission deleted");
    Ok(failed)
}

/// Fails every ACTIVE task acting under `permission_id`, saying `reason`.
pub fn fail_tasks_of(
    store: &dyn Storage,
    permission_id: &str,
    reason: &str,
    now: i64,
) -> Result<Vec<String>, SharingError> {
    let mut failed = Vec::new();
    for task in store.active_tasks_of_permission(permission_id)? {
        if store.finish_task(&task, TaskStatus::Failed, None, Some(reason), now)? {
            store.add_task_event(&task, tasks::code::FAILED, reason, now, true)?;
            failed.push(task);
        }
    }
    Ok(failed)
}
