//! Several hub instances over one database (PostgreSQL): this process's
//! identity among them and the leases on the tasks its scheduler drives.
//!
//! Each `ferry-hub serve` is an instance with an id drawn at its start. Its
//! scheduler drives only the ACTIVE tasks it holds a claim on
//! (`ClusterStore::claim_tasks`), renewed at every sweep for [`LEASE`]
//! seconds. An instance that dies stops renewing; once its leases ended,
//! the next instance to sweep takes its tasks up as a restarted hub does
//! (a new attempt). One that stops cleanly lets go of its claims at once.
//!
//! A task goes to the instance that holds its source's control link
//! (recorded in the database as endpoints connect and go), so the
//! scheduler that drives it can send the source its start directly. Its
//! destination must be connected to the same instance for it to run: a
//! command for an endpoint connected to another instance is not routed
//! there yet, and such a task waits as for an offline endpoint. Put
//! instances behind a front that sends every connection to one instance
//! while it lives (HAProxy's `balance first`, `docs/hub.md`): the others
//! are standbys that take over the tasks of one that dies.
//!
//! A SQLite database has one instance (it is a local file): a hub on one
//! forgets every claim when it starts, so a restart resumes its tasks at
//! once, as before claims existed.

use crate::control::Notice;
use crate::server::Hub;
use crate::store::StoreError;
use std::collections::HashSet;

/// How long a claim lasts unless renewed, in seconds: how long the tasks of
/// an instance that died wait before another takes them. Each sweep
/// (`tasks::TICK`) renews a lease with less than half left, so a slow
/// database or a paused process has many sweeps' margin before it loses
/// what it drives.
pub const LEASE: i64 = 15;

/// This process among the hub instances of its database.
#[derive(Debug, Clone)]
pub struct Instance {
    id: String,
}

impl Instance {
    /// A fresh identity: random, so a restarted process never inherits
    /// the claims of the one before it (they end with their leases).
    pub fn new() -> Result<Self, getrandom::Error> {
        Ok(Self {
            id: crate::secrets::random_token(12)?,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// At the start of `serve`, before the scheduler's first sweep: on a
/// database no other instance can share, the claims a previous process
/// left are its own and need not run out.
pub fn starting(hub: &Hub) {
    if hub.config.database.is_some() {
        tracing::info!(instance = %hub.instance.id(), "hub instance starting; tasks are shared through the database by lease");
        return;
    }
    match hub.store.release_task_claims(None) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            tasks = n,
            "took up the tasks the previous hub process drove"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot release the previous process's task claims"),
    }
}

/// At a clean stop: other instances take this one's tasks at their next
/// sweep instead of after the lease.
pub fn stopping(hub: &Hub) {
    match hub.store.release_task_claims(Some(hub.instance.id())) {
        Ok(n) => tracing::info!(tasks = n, "released this instance's tasks"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release this instance's tasks; others take them when the lease ends")
        }
    }
}

/// Claims what is free and renews what this instance holds: the ACTIVE
/// tasks its scheduler drives until the next sweep.
pub fn claim(hub: &Hub, now: i64) -> Result<HashSet<String>, StoreError> {
    Ok(hub
        .store
        .claim_tasks(hub.instance.id(), now, now + LEASE)?
        .into_iter()
        .collect())
}

/// Records which instance holds an endpoint's control link, so that the
/// instance holding a task's source drives the task.
pub fn noticed(hub: &Hub, notice: &Notice) {
    let written = match notice {
        Notice::Connected { endpoint_id, .. } => {
            hub.store
                .set_control_link(endpoint_id, hub.instance.id(), crate::grants::now())
        }
        Notice::Disconnected { endpoint_id } => {
            hub.store.drop_control_link(endpoint_id, hub.instance.id())
        }
        Notice::Paused { .. } | Notice::Report { .. } => return,
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record which hub instance holds an endpoint's control link");
    }
}

/// The key named `name` that every instance of the database uses
/// (`ClusterStore::shared_key`): the sign-in form one instance served must
/// verify on whichever instance the browser posts it to.
pub fn shared_mac_key(
    store: &dyn crate::store::Storage,
    name: &str,
) -> anyhow::Result<crate::secrets::MacKey> {
    use anyhow::Context;
    let candidate = crate::secrets::MacKey::generate().context("no randomness for a key")?;
    let stored = store
        .shared_key(name, &candidate.to_text())
        .with_context(|| format!("cannot read or store the hub's {name} key"))?;
    crate::secrets::MacKey::from_text(&stored).with_context(|| {
        format!("the {name} key stored in the database is damaged; delete its row from hub_secrets and restart every instance")
    })
}
