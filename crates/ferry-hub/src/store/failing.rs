//! Fault injection for storage (tests only): [`FailingStorage`] delegates
//! to a real backend but fails the methods it is told to with
//! [`StoreError::Unavailable`], as a busy, locked or unreadable database
//! would, and counts each failure so a test can show the path it meant to
//! exercise was taken.

use super::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Faults {
    all: bool,
    methods: HashSet<&'static str>,
    failed: HashMap<&'static str, usize>,
}

/// A backend whose chosen methods fail, until told to recover.
#[derive(Debug)]
pub struct FailingStorage {
    inner: Arc<dyn Storage>,
    faults: Mutex<Faults>,
}

impl FailingStorage {
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            faults: Mutex::new(Faults::default()),
        }
    }

    /// Fails `method` (its name, as `"endpoint"`) from now on.
    pub fn fail(&self, method: &'static str) {
        self.faults().methods.insert(method);
    }

    /// Fails every method from now on.
    pub fn fail_all(&self) {
        self.faults().all = true;
    }

    /// Fails nothing from now on.
    pub fn recover(&self) {
        let mut faults = self.faults();
        faults.all = false;
        faults.methods.clear();
    }

    /// How many calls of `method` failed.
    pub fn failures(&self, method: &str) -> usize {
        self.faults().failed.get(method).copied().unwrap_or(0)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, method: &'static str) -> Result<()> {
        let mut faults = self.faults();
        if faults.all || faults.methods.contains(method) {
            *faults.failed.entry(method).or_default() += 1;
            return Err(StoreError::Unavailable(format!(
                "{method}: injected by FailingStorage"
            )));
        }
        Ok(())
    }
}

macro_rules! delegate {
    ($area:ident { $( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )* }) => {
        impl $area for FailingStorage {
            $(
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.check(stringify!($name))?;
                    self.inner.$name($($arg),*)
                }
            )*
        }
    };
}

delegate!(AccountStore {
    fn add_user(&self, name: &str, password_hash: &str, now: i64) -> Result<i64>;
    fn user_by_name(&self, name: &str) -> Result<Option<UserRow>>;
    fn user_by_id(&self, id: i64) -> Result<Option<UserRow>>;
    fn add_client(&self, client: &ClientRow, now: i64) -> Result<()>;
    fn client(&self, client_id: &str) -> Result<Option<ClientRow>>;
    fn put_auth_code(&self, code: &AuthCodeRow) -> Result<()>;
    fn take_auth_code(&self, code_hash: &str, now: i64) -> Result<CodeUse>;
    fn put_oidc_code(&self, row: &OidcCodeRow) -> Result<()>;
    fn oidc_code(&self, code_hash: &str) -> Result<Option<OidcCodeRow>>;
    fn put_token(&self, token: &TokenRow) -> Result<()>;
    fn token(&self, token_hash: &str, kind: TokenKind, now: i64) -> Result<Option<TokenRow>>;
    fn token_was_revoked(&self, token_hash: &str) -> Result<Option<String>>;
    fn revoke_token(&self, token_hash: &str) -> Result<()>;
    fn revoke_live_token(&self, token_hash: &str) -> Result<bool>;
    fn revoke_grant(&self, grant_id: &str) -> Result<()>;
    fn put_personal_token(&self, grant_id: &str, user_id: i64, label: &str, created: i64) -> Result<()>;
    fn personal_tokens(&self, user_id: i64, now: i64) -> Result<Vec<PersonalTokenRow>>;
    fn put_session(&self, session_hash: &str, user_id: i64, csrf: &str, expires: i64) -> Result<()>;
    fn session(&self, session_hash: &str, now: i64) -> Result<Option<SessionRow>>;
    fn delete_session(&self, session_hash: &str) -> Result<()>;
    fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionListing>>;
    fn end_other_sessions(&self, user_id: i64, keep: &str) -> Result<u64>;
    fn purge_expired(&self, now: i64) -> Result<()>;
});

delegate!(EndpointStore {
    fn create_endpoint(&self, id: &str, owner_id: i64, display_name: &str, now: i64) -> Result<()>;
    fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>>;
    fn endpoint_by_name(&self, owner_id: i64, display_name: &str) -> Result<Option<EndpointRow>>;
    fn search_endpoints(&self, owner_id: Option<i64>, query: &str, limit: usize) -> Result<Vec<EndpointRow>>;
    fn set_endpoint_cert(&self, id: &str, cert_sha256: &str, now: i64) -> Result<()>;
    fn rename_endpoint(&self, id: &str, display_name: &str) -> Result<bool>;
    fn delete_endpoint(&self, id: &str) -> Result<DeleteOutcome>;
    fn revoke_endpoint(&self, id: &str) -> Result<bool>;
    fn revoked_endpoint_count(&self) -> Result<u64>;
    fn revoked_endpoints(&self, limit: usize) -> Result<Vec<String>>;
    fn put_setup_key(&self, key_hash: &str, endpoint_id: &str, expires: i64) -> Result<()>;
    fn take_setup_key(&self, key_hash: &str, now: i64) -> Result<SetupKeyUse>;
    fn add_endpoint_node(&self, endpoint_id: &str, name: &str, key_hash: &str, expires: i64, now: i64) -> Result<()>;
    fn endpoint_nodes(&self, endpoint_id: &str) -> Result<Vec<NodeRow>>;
    fn set_node_cert(&self, endpoint_id: &str, name: &str, cert_sha256: &str, now: i64) -> Result<bool>;
    fn remove_endpoint_node(&self, endpoint_id: &str, name: &str) -> Result<bool>;
});

delegate!(ClusterStore {
    fn claim_changes(&self, instance: &str, now: i64, lease_until: i64, since: Option<i64>) -> Result<ClaimChanges>;
    fn release_task_claims(&self, instance: Option<&str>) -> Result<u64>;
    fn set_control_link(&self, endpoint_id: &str, instance: &str, since: i64) -> Result<()>;
    fn drop_control_link(&self, endpoint_id: &str, instance: &str) -> Result<()>;
    fn shared_key(&self, name: &str, candidate: &str) -> Result<String>;
    fn control_link(&self, endpoint_id: &str, now: i64) -> Result<Option<String>>;
    fn post_message(&self, to_instance: &str, payload: &str, now: i64, deadline: i64) -> Result<i64>;
    fn take_messages(&self, instance: &str, now: i64, max: usize) -> Result<Vec<InstanceMessage>>;
    fn answer_message(&self, id: i64, reply: &str) -> Result<()>;
    fn message_reply(&self, id: i64) -> Result<Option<String>>;
    fn drop_message(&self, id: i64) -> Result<()>;
    fn purge_messages(&self, now: i64, logins_before: i64) -> Result<u64>;
    fn add_login_failure(&self, key: &str, now: i64, window: i64) -> Result<u32>;
    fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<Option<(u32, i64)>>;
    fn clear_login_failures(&self, key: &str) -> Result<()>;
    fn set_link_details(&self, endpoint_id: &str, instance: &str, link: &LinkDetails) -> Result<()>;
    fn remote_links(&self, instance: &str, now: i64) -> Result<Vec<RemoteLink>>;
    fn task_claim(&self, task_id: &str) -> Result<Option<String>>;
    fn sync_node_links(&self, endpoint_id: &str, instance: &str, nodes: &[NodeLinkRow]) -> Result<()>;
    fn remote_nodes(&self, endpoint_id: &str, instance: &str, now: i64) -> Result<Vec<NodeLinkRow>>;
});

delegate!(TaskStore {
    fn create_task(&self, task: &NewTask, code: &str, event: &str) -> Result<()>;
    fn task(&self, id: &str) -> Result<Option<TaskRow>>;
    fn task_by_submission(&self, owner_id: i64, submission_id: &str) -> Result<Option<TaskRow>>;
    fn tasks_with_prefix(&self, owner_id: i64, prefix: &str, limit: usize) -> Result<Vec<TaskRow>>;
    fn tasks_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TaskRow>>;
    fn task_stats(&self) -> Result<Vec<TaskStats>>;
    fn active_tasks(&self) -> Result<Vec<ActiveTask>>;
    fn task_work(&self, id: &str) -> Result<Option<TaskWork>>;
    fn begin_attempt(&self, id: &str, attempt: u32) -> Result<bool>;
    fn spread_attempt(&self, id: &str, attempt: u32, nodes: u32) -> Result<bool>;
    fn set_progress(&self, id: &str, attempt: u32, counters: &TaskCounters) -> Result<bool>;
    fn end_attempt(&self, id: &str, attempt: u32, fault: Option<&str>) -> Result<bool>;
    fn note_fault(&self, id: &str, fault: &str) -> Result<bool>;
    fn finish_task(&self, id: &str, status: TaskStatus, last: Option<&TaskCounters>, error: Option<&str>, now: i64) -> Result<bool>;
    fn add_task_event(&self, id: &str, code: &str, description: &str, now: i64, always: bool) -> Result<()>;
    fn task_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>>;
    fn add_task_bytes_relayed(&self, id: &str, bytes: u64) -> Result<()>;
});

delegate!(ShareStore {
    fn create_group(&self, id: &str, name: &str, owner_id: i64, now: i64) -> Result<()>;
    fn group_by_name(&self, name: &str) -> Result<Option<GroupRow>>;
    fn add_group_member(&self, group_id: &str, user_id: i64) -> Result<bool>;
    fn remove_group_member(&self, group_id: &str, user_id: i64) -> Result<bool>;
    fn groups_of(&self, user_id: i64) -> Result<Vec<GroupListing>>;
    fn put_permission(&self, permission: &PermissionRow) -> Result<()>;
    fn permission(&self, id: &str) -> Result<Option<PermissionRow>>;
    fn endpoint_permissions(&self, endpoint_id: &str, now: i64) -> Result<Vec<PermissionRow>>;
    fn delete_permission(&self, endpoint_id: &str, id: &str) -> Result<bool>;
    fn permissions_for(&self, user_id: i64, endpoint_id: &str, now: i64) -> Result<Vec<PermissionRow>>;
    fn shared_with(&self, user_id: i64, query: &str, now: i64, limit: usize) -> Result<Vec<EndpointRow>>;
    fn put_task_grant(&self, task_id: &str, side: &str, permission_id: &str) -> Result<()>;
    fn task_grants(&self, task_id: &str) -> Result<Vec<(String, String)>>;
    fn active_tasks_of_permission(&self, permission_id: &str) -> Result<Vec<String>>;
    fn put_link(&self, link: &LinkRow) -> Result<()>;
    fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>>;
    fn links_of(&self, user_id: i64) -> Result<Vec<LinkRow>>;
    fn delete_link(&self, user_id: i64, id: &str) -> Result<bool>;
    fn charge_link(&self, id: &str, bytes: i64) -> Result<bool>;
});

delegate!(AuditStore {
    fn record_audit(&self, events: &[AuditRow]) -> Result<()>;
    fn audit_events(&self, endpoint_id: &str, since: i64, limit: usize) -> Result<Vec<AuditRow>>;
    fn prune_audit(&self, before: i64, limit: usize) -> Result<u64>;
    fn unrecorded_expiries(&self, now: i64, limit: usize) -> Result<Vec<PermissionRow>>;
    fn record_expiry(&self, permission_id: &str, event: &AuditRow) -> Result<bool>;
});

delegate!(TimerStore {
    fn create_timer(&self, timer: &NewTimer) -> Result<()>;
    fn timer(&self, id: &str) -> Result<Option<TimerRow>>;
    fn timers_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TimerRow>>;
    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRow>>;
    fn claim_timer_run(&self, id: &str, due: i64, next: Option<i64>, skipped: bool) -> Result<bool>;
    fn record_timer_run(&self, id: &str, task_id: &str) -> Result<()>;
    fn add_timer_event(&self, id: &str, code: &str, description: &str, now: i64) -> Result<()>;
    fn timer_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>>;
    fn delete_timer(&self, id: &str) -> Result<bool>;
});

delegate!(NotifyStore {
    fn set_user_email(&self, user_id: i64, email: Option<&str>) -> Result<bool>;
    fn user_email(&self, user_id: i64) -> Result<Option<String>>;
    fn claim_task_notice(&self, task_id: &str, notice: &str) -> Result<Option<NotifyEvents>>;
    fn rearm_task_notice(&self, task_id: &str) -> Result<()>;
    fn put_webhook(&self, webhook: &WebhookRow) -> Result<()>;
    fn webhook(&self, id: &str) -> Result<Option<WebhookRow>>;
    fn webhooks_of(&self, owner_id: i64) -> Result<Vec<WebhookRow>>;
    fn delete_webhook(&self, id: &str) -> Result<bool>;
});

delegate!(AppStore {
    fn add_service_account(&self, account: &str, password_hash: &str, client: &ClientRow, now: i64) -> Result<i64>;
    fn clients_of(&self, owner_id: i64) -> Result<Vec<ClientRow>>;
    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool>;
    fn delete_client(&self, client_id: &str) -> Result<bool>;
    fn put_consent(&self, user_id: i64, client_id: &str, scope: &str, now: i64) -> Result<()>;
    fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>>;
    fn consents_of(&self, user_id: i64) -> Result<Vec<ConsentRow>>;
    fn revoke_consent(&self, user_id: i64, client_id: &str) -> Result<bool>;
});

delegate!(IdentityStore {
    fn link_identity(&self, identity: &str, user_id: i64, provider: &str, now: i64) -> Result<()>;
    fn identity(&self, identity: &str) -> Result<Option<IdentityRow>>;
    fn identities_of(&self, user_id: i64) -> Result<Vec<IdentityRow>>;
    fn note_login_identity(&self, login_id: &str, identity: &str, at: i64) -> Result<()>;
    fn login_identities(&self, login_id: &str) -> Result<Vec<(String, i64)>>;
    fn set_allowed_domains(&self, endpoint_id: &str, domains: &[String]) -> Result<bool>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_fails_what_it_is_told_to_and_recovers() {
        let store = FailingStorage::new(Arc::new(SqliteStore::in_memory().unwrap()));
        store.add_user("alice", "h", 0).unwrap();
        store.fail("user_by_name");
        assert!(store.user_by_name("alice").unwrap_err().is_transient());
        assert!(
            store.user_by_id(1).unwrap().is_some(),
            "only what it was told"
        );
        store.fail_all();
        assert!(store.user_by_id(1).is_err());
        store.recover();
        assert!(store.user_by_name("alice").unwrap().is_some());
        assert_eq!(store.failures("user_by_name"), 1);
    }

    #[test]
    fn a_failing_store_that_fails_nothing_passes_the_conformance_suite() {
        conformance::run(&|| {
            Box::new(FailingStorage::new(Arc::new(
                SqliteStore::in_memory().unwrap(),
            )))
        });
    }
}
