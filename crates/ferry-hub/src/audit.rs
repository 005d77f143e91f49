//! The audit log: who did what on an endpoint, for its owner. File
//! operations the hub carries out (`ls`, `mkdir`, `rename`, `delete`),
//! what each transfer task reads and writes, links, and every sharing
//! change and refusal go through [`record`], the one way in; the owner
//! reads them with [`read`] (`ferry endpoint audit`, the endpoint page),
//! and [`prune`] keeps them for `audit_retention_days`.
//!
//! What a transfer touched is recorded per item, not per file: reports
//! from endpoints carry counters, not the names of the files moved, so
//! the hub knows honestly only the roots its task asked for. When the
//! destination first reports data flowing, each item's source path is
//! recorded as a `read` on the source and its destination path as a
//! `write` on the destination, with the task id; each entry `--delete`
//! removes is reported by path, and is a `delete`. Each file an endpoint
//! serves is in that endpoint's own log (target `ferry::served`), which
//! a site can audit without trusting the hub.

use crate::authz::Action;
use crate::endpoints::{self, RegistryError};
use crate::grants::Principal;
use crate::store::{AuditRow, Storage, StoreError};
use ferry_proto::api::{AuditEvent, FsOp};
use ferry_proto::wire_path::WirePath;

/// The action words, stable: scripts read them from `--json`.
pub mod action {
    pub const LS: &str = "ls";
    pub const READ: &str = "read";
    pub const WRITE: &str = "write";
    pub const MKDIR: &str = "mkdir";
    pub const RENAME: &str = "rename";
    pub const DELETE: &str = "delete";
    /// A link was made or deleted, or read through (anonymously).
    pub const LINK: &str = "link";
    /// The owner shared a path.
    pub const PERMISSION_CREATE: &str = "permission_create";
    /// The owner stopped sharing it.
    pub const PERMISSION_DELETE: &str = "permission_delete";
    /// A permission reached its expiry (recorded by the hub itself: the
    /// identity is empty).
    pub const PERMISSION_EXPIRE: &str = "permission_expire";
    /// The endpoint refused to share a path (its config-paths).
    pub const PERMISSION_REFUSED: &str = "permission_refused";
    /// A grantee's access was refused (by the hub or the endpoint).
    pub const REFUSED: &str = "refused";
}

/// Most events one request may read.
pub const MAX_PAGE: usize = 10_000;
/// Events a sweep deletes per statement, so no delete holds the database long.
const PRUNE_BATCH: usize = 5_000;
/// Batches one sweep runs at most; what is left goes at the next sweep.
const PRUNE_BATCHES: usize = 200;

/// Who acted: a user, by id and by name as at the time.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub id: i64,
    pub name: &'a str,
}

impl<'a> Actor<'a> {
    pub fn of(who: &'a Principal) -> Self {
        Actor {
            id: who.user_id,
            name: &who.user_name,
        }
    }
}

/// One thing done on an endpoint.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub action: &'static str,
    pub path: Option<&'a [u8]>,
    pub task_id: Option<&'a str>,
    pub detail: String,
}

impl<'a> Entry<'a> {
    pub fn new(action: &'static str, path: &'a [u8]) -> Self {
        Entry {
            action,
            path: Some(path),
            task_id: None,
            detail: String::new(),
        }
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Records what `who` did on `endpoint_id`, all entries or none.
pub fn record(
    store: &dyn Storage,
    now: i64,
    endpoint_id: &str,
    who: Actor<'_>,
    entries: &[Entry<'_>],
) -> Result<(), StoreError> {
    let Actor { id, name } = who;
    let rows: Vec<AuditRow> = entries
        .iter()
        .map(|e| AuditRow {
            time: now,
            endpoint_id: endpoint_id.to_string(),
            actor_id: Some(id),
            identity: name.to_string(),
            action: e.action.to_string(),
            path: e.path.map(<[u8]>::to_vec),
            task_id: e.task_id.map(str::to_string),
            detail: e.detail.clone(),
        })
        .collect();
    store.record_audit(&rows)
}

/// As [`record`], for what has already happened: a failure to record is
/// logged (the operation stands; its endpoint's own log has it too).
pub fn record_done(
    store: &dyn Storage,
    now: i64,
    endpoint_id: &str,
    who: Actor<'_>,
    entries: &[Entry<'_>],
) {
    if let Err(e) = record(store, now, endpoint_id, who, entries) {
        tracing::error!(endpoint = %endpoint_id, error = %e, "cannot record in the audit log");
    }
}

/// What a file operation is, for the log: its entry (a rename's new path
/// in `detail`).
pub fn fs_entry(op: &FsOp) -> Entry<'_> {
    match op {
        FsOp::List { path } => Entry::new(action::LS, path.as_bytes()),
        FsOp::Mkdir { path } => Entry::new(action::MKDIR, path.as_bytes()),
        FsOp::Rename { from, to } => {
            Entry::new(action::RENAME, from.as_bytes()).detail(format!("to {to}"))
        }
        FsOp::Remove { path, recursive } => Entry::new(action::DELETE, path.as_bytes())
            .detail(if *recursive { "recursive" } else { "" }),
    }
}

/// A link to `path` was created (or used): one call for the links feature.
#[cfg_attr(not(test), allow(dead_code))] // until links land
pub fn link(
    store: &dyn Storage,
    now: i64,
    endpoint_id: &str,
    who: Actor<'_>,
    path: &[u8],
    detail: impl Into<String>,
) -> Result<(), StoreError> {
    record(
        store,
        now,
        endpoint_id,
        who,
        &[Entry::new(action::LINK, path).detail(detail)],
    )
}

/// A task's data began to flow: each item is a `read` on the source and
/// a `write` on the destination, by the task's owner. Failures are logged.
pub fn task_accessed(store: &dyn Storage, now: i64, task_id: &str) {
    let recorded = (|| -> Result<(), StoreError> {
        let Some(task) = store.task(task_id)? else {
            return Ok(());
        };
        let Some(work) = store.task_work(task_id)? else {
            return Ok(());
        };
        let owner = store
            .user_by_id(task.owner_id)?
            .map(|u| u.name)
            .unwrap_or_default();
        let who = Actor {
            id: task.owner_id,
            name: &owner,
        };
        let side = |read: bool| -> Vec<Entry<'_>> {
            work.items
                .iter()
                .map(|item| {
                    let (act, path) = if read {
                        (action::READ, &item.source)
                    } else {
                        (action::WRITE, &item.destination)
                    };
                    Entry {
                        action: act,
                        path: Some(path.as_bytes()),
                        task_id: Some(task_id),
                        detail: if item.recursive {
                            "recursive".into()
                        } else {
                            String::new()
                        },
                    }
                })
                .collect()
        };
        record(store, now, &task.source_id, who, &side(true))?;
        record(store, now, &task.destination_id, who, &side(false))
    })();
    if let Err(e) = recorded {
        tracing::error!(task = %task_id, error = %e, "cannot record a task's access in the audit log");
    }
}

/// `--delete` removed `paths` at the task's destination: each is a
/// `delete` there by the task's owner. Failures are logged.
pub fn task_removed(store: &dyn Storage, now: i64, task_id: &str, paths: &[WirePath]) {
    let recorded = (|| -> Result<(), StoreError> {
        let Some(task) = store.task(task_id)? else {
            return Ok(());
        };
        let owner = store
            .user_by_id(task.owner_id)?
            .map(|u| u.name)
            .unwrap_or_default();
        let entries: Vec<Entry<'_>> = paths
            .iter()
            .map(|path| Entry {
                task_id: Some(task_id),
                ..Entry::new(action::DELETE, path.as_bytes()).detail("--delete")
            })
            .collect();
        let who = Actor {
            id: task.owner_id,
            name: &owner,
        };
        record(store, now, &task.destination_id, who, &entries)
    })();
    if let Err(e) = recorded {
        tracing::error!(task = %task_id, error = %e, "cannot record a task's removals in the audit log");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Endpoint(#[from] RegistryError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// The newest `limit` (at most [`MAX_PAGE`]) events at or after `since`
/// on an endpoint `who` owns, oldest first.
pub fn read(
    store: &dyn Storage,
    who: &Principal,
    endpoint: &str,
    since: i64,
    limit: usize,
) -> Result<Vec<AuditEvent>, AuditError> {
    let row = endpoints::find(store, who, endpoint, Action::ManageEndpoint)?;
    let events = store.audit_events(&row.id, since, limit.clamp(1, MAX_PAGE))?;
    Ok(events.into_iter().map(event_of).collect())
}

pub fn event_of(row: AuditRow) -> AuditEvent {
    AuditEvent {
        time: row.time,
        identity: row.identity,
        action: row.action,
        path: row.path.map(WirePath::from_bytes),
        task_id: row.task_id,
        detail: row.detail,
    }
}

/// Expiries one sweep records at most; the rest wait for the next.
const EXPIRIES_PER_SWEEP: usize = 1000;

/// Records each permission that expired before `now` and is not yet in
/// its endpoint's log, as of its expiry time, once (several hubs on one
/// database included); how many it recorded.
pub fn record_expiries(store: &dyn Storage, now: i64) -> Result<usize, StoreError> {
    let mut recorded = 0;
    for p in store.unrecorded_expiries(now, EXPIRIES_PER_SWEEP)? {
        let event = AuditRow {
            time: p.expires.unwrap_or(now),
            endpoint_id: p.endpoint_id.clone(),
            actor_id: None,
            identity: String::new(),
            action: action::PERMISSION_EXPIRE.to_string(),
            path: Some(p.path.clone()),
            task_id: None,
            detail: format!(
                "{} with {}; permission {}",
                p.mode.as_str(),
                crate::sharing::grantee_words(&p),
                p.id
            ),
        };
        if store.record_expiry(&p.id, &event)? {
            recorded += 1;
        }
    }
    Ok(recorded)
}

/// Deletes events older than `days` before `now`, in bounded batches;
/// how many went.
pub fn prune(store: &dyn Storage, now: i64, days: u64) -> Result<u64, StoreError> {
    let before = now.saturating_sub(i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX));
    let mut gone = 0;
    for _ in 0..PRUNE_BATCHES {
        let n = store.prune_audit(before, PRUNE_BATCH)?;
        gone += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountStore, AuditStore, SqliteStore};

    #[test]
    fn pruning_keeps_what_is_within_the_retention() {
        let store = SqliteStore::in_memory().unwrap();
        let alice = store.add_user("alice", "h", 0).unwrap();
        let who = Actor {
            id: alice,
            name: "alice",
        };
        let day = 86_400;
        let now = 1_000 * day;
        let entries: Vec<Entry<'_>> = (0..PRUNE_BATCH + 3)
            .map(|_| Entry::new(action::LS, b"/"))
            .collect();
        record(&store, now - 91 * day, "e1", who, &entries).unwrap();
        record(
            &store,
            now - 89 * day,
            "e1",
            who,
            &[Entry::new(action::MKDIR, b"/d")],
        )
        .unwrap();
        assert_eq!(prune(&store, now, 90).unwrap(), PRUNE_BATCH as u64 + 3);
        let left = store.audit_events("e1", 0, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].action, "mkdir");
    }

    #[test]
    fn an_expiry_is_recorded_once_as_of_when_it_happened() {
        use crate::store::{Grantee, PermissionRow, ShareStore};
        let store = SqliteStore::in_memory().unwrap();
        let alice = store.add_user("alice", "h", 0).unwrap();
        let bob = store.add_user("bob", "h", 0).unwrap();
        crate::store::EndpointStore::create_endpoint(&store, "e1", alice, "laptop", 0).unwrap();
        let permission = |id: &str, expires: Option<i64>| PermissionRow {
            id: id.into(),
            endpoint_id: "e1".into(),
            path: b"/~/shared".to_vec(),
            mode: ferry_proto::share::ShareMode::Read,
            grantee: Grantee::Identity {
                user_id: bob,
                name: "bob".into(),
            },
            expires,
            created: 0,
            created_by: alice,
        };
        store
            .put_permission(&permission("p-past", Some(50)))
            .unwrap();
        store
            .put_permission(&permission("p-future", Some(500)))
            .unwrap();
        store.put_permission(&permission("p-never", None)).unwrap();
        assert_eq!(record_expiries(&store, 100).unwrap(), 1);
        assert_eq!(record_expiries(&store, 100).unwrap(), 0, "once");
        let log = store.audit_events("e1", 0, 10).unwrap();
        assert_eq!(
            (
                log[0].time,
                log[0].identity.as_str(),
                log[0].action.as_str(),
                log[0].path.as_deref(),
                log[0].detail.as_str()
            ),
            (
                50,
                "",
                "permission_expire",
                Some(&b"/~/shared"[..]),
                "r with identity bob; permission p-past"
            )
        );
        assert_eq!(record_expiries(&store, 1000).unwrap(), 1);
        assert_eq!(store.audit_events("e1", 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_link_is_one_call() {
        let store = SqliteStore::in_memory().unwrap();
        let alice = store.add_user("alice", "h", 0).unwrap();
        let who = Actor {
            id: alice,
            name: "alice",
        };
        link(&store, 5, "e1", who, b"/~/f", "link l1").unwrap();
        let got = store.audit_events("e1", 0, 10).unwrap();
        assert_eq!(
            (
                got[0].action.as_str(),
                got[0].path.as_deref(),
                got[0].detail.as_str()
            ),
            ("link", Some(&b"/~/f"[..]), "link l1")
        );
    }

    #[test]
    fn each_file_operation_is_one_entry_with_its_words() {
        let p = |s: &str| WirePath::from_bytes(s.as_bytes().to_vec());
        let rename = FsOp::Rename {
            from: p("/a"),
            to: p("/b"),
        };
        let e = fs_entry(&rename);
        assert_eq!(
            (e.action, e.path, e.detail.as_str()),
            ("rename", Some(&b"/a"[..]), "to /b")
        );
        let rm = FsOp::Remove {
            path: p("/x"),
            recursive: true,
        };
        assert_eq!(fs_entry(&rm).action, "delete");
        assert_eq!(fs_entry(&FsOp::List { path: p("/") }).action, "ls");
        assert_eq!(fs_entry(&FsOp::Mkdir { path: p("/m") }).action, "mkdir");
    }
}
