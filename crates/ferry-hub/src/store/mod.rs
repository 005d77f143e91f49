//! The hub's state: accounts, OAuth clients, codes, tokens, sessions,
//! endpoints, setup keys, and transfer tasks with their events.
//!
//! Storage is an interface, split by area: [`AccountStore`] (users, OAuth
//! clients, codes, tokens, browser sessions), [`EndpointStore`] (endpoints,
//! setup keys, revocations) and [`TaskStore`] (tasks, attempts, counters,
//! events); [`Storage`] is all three, and the hub holds its storage as an
//! `Arc<dyn Storage>`. Methods take plain rows, times as Unix seconds
//! passed in, every secret only as a hash, and fail with a [`StoreError`]
//! that says what a caller can do about it. Two backends: [`SqliteStore`]
//! (WAL, embedded, the default) and [`PostgresStore`] (a pool of
//! connections to a PostgreSQL server), each with numbered migrations of
//! its own applied in order at open; [`open`] picks one from `hub.toml`'s
//! `database`, and `migrate_store` moves a hub's state from the first to
//! the second. `conformance` is the suite every backend must pass.
//!
//! The methods are synchronous and the hub calls them from async code; a
//! backend that blocks (both do: SQLite on its disk and its one
//! connection, PostgreSQL on the network and its pool) must not stall the
//! runtime's worker threads while it does: each runs its calls under
//! `tokio::task::block_in_place` on a multi-threaded runtime (see
//! `SqliteStore::with_conn`, `PostgresStore::with_client`). SQL stays
//! portable (no SQLite-only functions, no `rowid`, no `INSERT OR ...`) so
//! both backends' queries say the same thing; only the migrations' DDL,
//! the placeholders and the row locks differ.

pub use ferry_proto::notify::NotifyEvents;
use ferry_proto::task::{
    ChecksumAlgorithm, TaskCounters, TaskStatus, TransferItem, TransferOptions,
};
use thiserror::Error;

#[cfg(test)]
pub mod conformance;
#[cfg(test)]
pub mod failing;
pub mod migrate_store;
mod postgres;
mod sqlite;

pub use postgres::{DatabaseUrl, PostgresStore, redacted};
pub use sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

/// Opens the hub's storage: the PostgreSQL database `database` names (a
/// `postgres://` URL from `hub.toml`, whose relative `sslrootcert` is
/// found in `state_dir`), or without one the SQLite file at `sqlite`.
pub fn open(
    database: Option<&str>,
    state_dir: &Path,
    sqlite: &Path,
) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match database {
        None => Arc::new(SqliteStore::open(sqlite)?),
        Some(url) => Arc::new(PostgresStore::open(&DatabaseUrl::parse(url, state_dir)?)?),
    })
}

/// Why a storage operation failed, in terms every backend can say and
/// every caller can act on: a conflict or a missing row is the request's
/// fault (409, 404), an unavailable database the moment's (503, "try
/// later"; never a reason to refuse an endpoint or fail a task).
#[derive(Debug, Error)]
pub enum StoreError {
    /// A unique key is taken; `what` names it ("user name", "endpoint name").
    #[error("that {what} is taken")]
    Conflict { what: &'static str },
    /// A row the operation refers to does not exist.
    #[error("a record it refers to does not exist")]
    NotFound,
    /// The database cannot answer now (busy, locked, I/O, out of space, a
    /// request crashed holding it); the same call may succeed later.
    #[error("the database is unavailable now: {0}")]
    Unavailable(String),
    /// The database answered with something no retry will change (a
    /// corrupt file, a bug).
    #[error("database error: {0}")]
    Internal(String),
    #[error(
        "the database is from a newer ferry-hub (schema {found}, this build knows {known}); upgrade ferry-hub"
    )]
    TooNew { found: i64, known: i64 },
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Events kept per task; a task that reports more (a million unreadable
/// files) keeps the first ones, a note, and its final event.
pub const MAX_TASK_EVENTS: u64 = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    /// `None` for public clients (which must use PKCE).
    pub secret_hash: Option<String>,
    /// The account a confidential client acts as (a service account's own
    /// account; a native app's or portal's owner, whom it never acts as).
    pub user_id: i64,
    pub scopes: String,
    pub kind: ClientKind,
    /// Who registered it, for apps registered by users; `None` for the
    /// clients an admin made with `ferry-hub client create`.
    pub owner_id: Option<i64>,
    /// Exact redirect URIs of a portal (a native app's are its loopback
    /// and the hub's code page, any port, so none are stored).
    pub redirect_uris: Vec<String>,
}

/// What sort of OAuth client a registered one is, which decides its grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Made by an admin: client_credentials, acting as a fixed account.
    Admin,
    /// A program on the user's computer: public, PKCE, loopback redirects.
    Native,
    /// A web portal: confidential, exact redirect URIs, code and refresh.
    Portal,
    /// A service account: client_credentials, acting as its own account.
    Service,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Admin => "admin",
            ClientKind::Native => "native",
            ClientKind::Portal => "portal",
            ClientKind::Service => "service",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ClientKind::Admin,
            ClientKind::Native,
            ClientKind::Portal,
            ClientKind::Service,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A redirect URI list as stored: one column, newline-separated (a
/// checked URI has no whitespace).
pub(crate) fn split_uris(stored: &str) -> Vec<String> {
    stored
        .split('\n')
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a user let an app do: the scopes they consented to, remembered
/// so the app does not ask again for the same or fewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: i64,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: String,
    pub expires: i64,
}

/// What an OpenID Connect request adds to an authorization code, for the
/// ID token it leads to: the client's `nonce` (echoed back) and when the
/// user signed in (`auth_time`). Kept beside the code, under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcCodeRow {
    pub code_hash: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    /// The code's own expiry: purged with it.
    pub expires: i64,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    Fresh(AuthCodeRow),
    /// Used before: per RFC 6749 §4.1.2 the tokens it produced are revoked.
    Reused,
    Expired,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub token_hash: String,
    pub kind: TokenKind,
    pub user_id: i64,
    pub user_name: String,
    pub client_id: String,
    pub scope: String,
    pub expires: i64,
    /// Tokens from one grant (a code and its refreshes) share this, so a
    /// replayed code or refresh token revokes them together.
    pub grant_id: String,
}

/// An access token a user made for scripts (`FERRY_TOKEN`): its grant,
/// the name they gave it, and when it was made and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTokenRow {
    pub grant_id: String,
    pub label: String,
    pub scope: String,
    pub created: i64,
    pub expires: i64,
}

/// One of a user's browser sessions, for the account page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionListing {
    pub session_hash: String,
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub user_name: String,
    pub csrf: String,
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: String,
    pub owner_id: i64,
    pub owner_name: String,
    pub display_name: String,
    pub created: i64,
    pub cert_sha256: Option<String>,
    pub revoked: bool,
    /// Deleted by its owner: revoked, and found only by id.
    pub deleted: bool,
    /// The identity domains a session must have authenticated an identity
    /// of before it may use the endpoint (`authz`); empty: no such policy.
    pub allowed_domains: Vec<String>,
}

/// An endpoint's allowed domains as stored: one column, comma-separated.
pub(crate) fn split_domains(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect()
}

/// What [`Store::delete_endpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Not deleted: these tasks are ACTIVE on it.
    Busy(Vec<String>),
    /// No such endpoint, or already deleted.
    Missing,
}

/// A machine of an endpoint other than its primary (a transfer node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub endpoint_id: String,
    pub name: String,
    /// Its certificate's hex SHA-256 once a machine registered as it.
    pub cert_sha256: Option<String>,
    pub created: i64,
    pub registered: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupKeyUse {
    /// `node`: the key sets a machine up as that node of the endpoint
    /// (`add_endpoint_node`); `None`: as the endpoint itself.
    Fresh {
        endpoint_id: String,
        node: Option<String>,
    },
    /// Used already (or its node was removed): for that endpoint (and
    /// node), so the refusal can say how to make another.
    Used {
        endpoint_id: String,
        node: Option<String>,
    },
    Expired {
        endpoint_id: String,
        node: Option<String>,
    },
    Unknown,
}

/// A task as submitted. A backend keeps its options and items in its
/// own columns and rows (not as JSON of the wire types), so they come
/// back exactly, path bytes included, and can be queried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub id: String,
    pub owner_id: i64,
    pub source_id: String,
    pub destination_id: String,
    /// In order; the task's `item_count` is their number.
    pub items: Vec<TransferItem>,
    pub options: TransferOptions,
    pub label: Option<String>,
    pub deadline: Option<i64>,
    pub created: i64,
    /// Which of its ends to e-mail the owner about (`--notify`).
    pub notify: NotifyEvents,
    /// The client's id for this submission: at most one task of an owner
    /// has it ([`Storage::create_task`] is a `Conflict` for a second).
    pub submission_id: Option<String>,
}

/// A task's state, without its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub owner_id: i64,
    pub source_id: String,
    pub source_name: String,
    pub destination_id: String,
    pub destination_name: String,
    pub item_count: u64,
    pub label: Option<String>,
    pub deadline: Option<i64>,
    pub checksum_algorithm: ChecksumAlgorithm,
    /// The hook its destination runs once its files landed.
    pub on_success: Option<String>,
    pub status: TaskStatus,
    pub attempt: u32,
    /// The furthest the attempts that ended reached.
    pub done: TaskCounters,
    /// The running attempt's, as last reported.
    pub current: TaskCounters,
    pub faults: u64,
    pub created: i64,
    pub completed: Option<i64>,
    pub last_fault: Option<String>,
    pub fatal_error: Option<String>,
    /// Encrypted bytes the hub's relay carried for it, both ways, over
    /// all its attempts.
    pub bytes_relayed: u64,
    /// Over how many nodes of each endpoint its latest attempt was spread
    /// (1: one machine of each moved it all).
    pub nodes: u32,
}

impl TaskRow {
    /// What the task has done over all its attempts.
    pub fn totals(&self) -> TaskCounters {
        self.done.furthest(self.current)
    }
}

/// What a task copies and how: what its capability carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWork {
    pub items: Vec<TransferItem>,
    pub options: TransferOptions,
}

/// What the scheduler needs to know of an ACTIVE task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTask {
    pub id: String,
    pub source_id: String,
    pub source_name: String,
    pub source_revoked: bool,
    pub destination_id: String,
    pub destination_name: String,
    pub destination_revoked: bool,
    pub attempt: u32,
    pub deadline: Option<i64>,
}

/// The tasks in one state, for the hub's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskStats {
    pub status: TaskStatus,
    pub tasks: u64,
    /// The sums of these tasks' totals (`TaskRow::totals`).
    pub bytes_transferred: u64,
    pub files_transferred: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEventRow {
    pub seq: u64,
    pub time: i64,
    pub code: String,
    pub description: String,
}

/// Users, OAuth clients, authorization codes, tokens and browser sessions.
pub trait AccountStore {
    // --- users ---
    /// A new account's id; `Conflict { what: "user name" }` when taken.
    fn add_user(&self, name: &str, password_hash: &str, now: i64) -> Result<i64>;

    fn user_by_name(&self, name: &str) -> Result<Option<UserRow>>;

    fn user_by_id(&self, id: i64) -> Result<Option<UserRow>>;

    // --- OAuth clients ---
    /// `Conflict { what: "client id" }` when taken.
    fn add_client(&self, client: &ClientRow, now: i64) -> Result<()>;

    fn client(&self, client_id: &str) -> Result<Option<ClientRow>>;

    // --- authorization codes ---
    fn put_auth_code(&self, code: &AuthCodeRow) -> Result<()>;

    /// Marks a code used and returns it, atomically; a second redemption
    /// revokes every token the first one produced.
    fn take_auth_code(&self, code_hash: &str, now: i64) -> Result<CodeUse>;

    /// Records the OpenID Connect part of a code's request.
    fn put_oidc_code(&self, row: &OidcCodeRow) -> Result<()>;

    /// The OpenID Connect part of a code's request, if it had one (the
    /// code itself is taken with [`AccountStore::take_auth_code`]).
    fn oidc_code(&self, code_hash: &str) -> Result<Option<OidcCodeRow>>;

    // --- tokens ---
    fn put_token(&self, token: &TokenRow) -> Result<()>;

    /// A live (unexpired, unrevoked) token of this kind.
    fn token(&self, token_hash: &str, kind: TokenKind, now: i64) -> Result<Option<TokenRow>>;

    /// Whether a token with this hash was ever issued and is now revoked
    /// (a replayed refresh token).
    fn token_was_revoked(&self, token_hash: &str) -> Result<Option<String>>;

    fn revoke_token(&self, token_hash: &str) -> Result<()>;

    /// Revokes a token if it is still unrevoked; `false` when another
    /// request revoked it first, so two concurrent refreshes cannot both
    /// rotate the same refresh token.
    fn revoke_live_token(&self, token_hash: &str) -> Result<bool>;

    fn revoke_grant(&self, grant_id: &str) -> Result<()>;

    /// Records that `grant_id` is a personal token of `user_id` named
    /// `label` (its token rows are written with `put_token`).
    fn put_personal_token(
        &self,
        grant_id: &str,
        user_id: i64,
        label: &str,
        created: i64,
    ) -> Result<()>;

    /// The user's personal tokens that still work at `now`, newest first.
    fn personal_tokens(&self, user_id: i64, now: i64) -> Result<Vec<PersonalTokenRow>>;

    // --- browser sessions ---
    fn put_session(&self, session_hash: &str, user_id: i64, csrf: &str, expires: i64)
    -> Result<()>;

    fn session(&self, session_hash: &str, now: i64) -> Result<Option<SessionRow>>;

    fn delete_session(&self, session_hash: &str) -> Result<()>;

    /// The user's live sessions, the longest-lived first.
    fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionListing>>;

    /// Ends every session of the user but `keep`; how many ended.
    fn end_other_sessions(&self, user_id: i64, keep: &str) -> Result<u64>;

    /// Drops expired sessions, codes and tokens (kept a day for replay detection).
    fn purge_expired(&self, now: i64) -> Result<()>;
}

/// Endpoints, their setup keys and revocations.
pub trait EndpointStore {
    // --- endpoints ---
    /// `Conflict { what: "endpoint name" }` when the owner has a live
    /// endpoint of that name; `NotFound` without such an owner.
    fn create_endpoint(&self, id: &str, owner_id: i64, display_name: &str, now: i64) -> Result<()>;

    /// By id, deleted ones included.
    fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>>;

    /// An owner's live (not deleted) endpoint of that name.
    fn endpoint_by_name(&self, owner_id: i64, display_name: &str) -> Result<Option<EndpointRow>>;

    /// Endpoints owned by `owner_id` (or everyone's when `None`), whose name
    /// or id contains `query`, oldest first, at most `limit`.
    fn search_endpoints(
        &self,
        owner_id: Option<i64>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<EndpointRow>>;

    /// Records the certificate an endpoint registered; an older one no longer
    /// authenticates.
    fn set_endpoint_cert(&self, id: &str, cert_sha256: &str, now: i64) -> Result<()>;

    /// Gives a live endpoint a new display name, unique among its owner's
    /// (`Conflict`); `false` when it is missing or deleted.
    fn rename_endpoint(&self, id: &str, display_name: &str) -> Result<bool>;

    /// Deletes an endpoint unless a task is ACTIVE on it: then nothing
    /// changes and the ids of those tasks (oldest first) come back. The row
    /// stays, revoked, under a name that frees the old one for reuse and
    /// tells old tasks' readers what became of it.
    fn delete_endpoint(&self, id: &str) -> Result<DeleteOutcome>;

    /// `false` without such an endpoint.
    fn revoke_endpoint(&self, id: &str) -> Result<bool>;

    /// How many endpoints are revoked: a cheap question to ask every sweep
    /// before asking for the list.
    fn revoked_endpoint_count(&self) -> Result<u64>;

    /// The ids of revoked endpoints, newest registrations first, at most `limit`.
    fn revoked_endpoints(&self, limit: usize) -> Result<Vec<String>>;

    // --- setup keys ---
    /// `NotFound` without such an endpoint.
    fn put_setup_key(&self, key_hash: &str, endpoint_id: &str, expires: i64) -> Result<()>;

    /// Uses a setup key, atomically: it works once, before it expires.
    fn take_setup_key(&self, key_hash: &str, now: i64) -> Result<SetupKeyUse>;

    // --- nodes ---
    /// Adds node `name` to the endpoint, with a setup key that registers a
    /// machine as it, together. `Conflict { what: "node name" }` when the
    /// endpoint has a node of that name; `NotFound` without the endpoint.
    fn add_endpoint_node(
        &self,
        endpoint_id: &str,
        name: &str,
        key_hash: &str,
        expires: i64,
        now: i64,
    ) -> Result<()>;

    /// The endpoint's nodes (not its primary), oldest first.
    fn endpoint_nodes(&self, endpoint_id: &str) -> Result<Vec<NodeRow>>;

    /// Registers a certificate as the node's; `false`: no such node (it
    /// was removed meanwhile).
    fn set_node_cert(
        &self,
        endpoint_id: &str,
        name: &str,
        cert_sha256: &str,
        now: i64,
    ) -> Result<bool>;

    /// Removes a node: its certificate is refused from then on, and its
    /// setup key, if unused, no longer works. `false`: no such node.
    fn remove_endpoint_node(&self, endpoint_id: &str, name: &str) -> Result<bool>;
}

/// Transfer tasks: their state, attempts, counters and events.
pub trait TaskStore {
    // --- tasks ---
    /// Stores a new ACTIVE task and its first event, together.
    fn create_task(&self, task: &NewTask, code: &str, event: &str) -> Result<()>;

    fn task(&self, id: &str) -> Result<Option<TaskRow>>;

    /// The task of `owner_id` that was submitted with `submission_id`.
    fn task_by_submission(&self, owner_id: i64, submission_id: &str) -> Result<Option<TaskRow>>;

    /// A user's tasks whose id starts with `prefix`, oldest first, at most
    /// `limit`. The prefix is matched literally (`%` and `_` match
    /// themselves).
    fn tasks_with_prefix(&self, owner_id: i64, prefix: &str, limit: usize) -> Result<Vec<TaskRow>>;

    /// A user's tasks, newest first, at most `limit`.
    fn tasks_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TaskRow>>;

    /// Every ACTIVE task, oldest first (tests: the scheduler reads them
    /// through `ClusterStore::claim_changes`).
    #[cfg(test)]
    fn active_tasks(&self) -> Result<Vec<ActiveTask>>;

    /// A task's items (in order) and options, for its capability.
    fn task_work(&self, id: &str) -> Result<Option<TaskWork>>;

    /// Records that attempt `attempt` starts, with fresh counters; `false`
    /// when the task is no longer ACTIVE.
    fn begin_attempt(&self, id: &str, attempt: u32) -> Result<bool>;

    /// Records that attempt `attempt` runs spread over `nodes` nodes of
    /// each endpoint ([`Self::begin_attempt`] counts 1); `false` when the
    /// task is no longer ACTIVE or runs another attempt.
    fn spread_attempt(&self, id: &str, attempt: u32, nodes: u32) -> Result<bool>;

    /// The running attempt's counters, as its destination last reported them.
    fn set_progress(&self, id: &str, attempt: u32, counters: &TaskCounters) -> Result<bool>;

    /// Ends attempt `attempt` without success: its counters fold into the
    /// totals, and a fault, if given, is counted.
    fn end_attempt(&self, id: &str, attempt: u32, fault: Option<&str>) -> Result<bool>;

    /// Counts a fault that happened outside an attempt.
    fn note_fault(&self, id: &str, fault: &str) -> Result<bool>;

    /// Ends an ACTIVE task: the running attempt's counters (`last`, or as
    /// last reported) fold into the totals. `false` when it had already ended.
    fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        last: Option<&TaskCounters>,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool>;

    /// Appends an event. Past [`MAX_TASK_EVENTS`] only `always` events
    /// (a task's end) are kept.
    fn add_task_event(
        &self,
        id: &str,
        code: &str,
        description: &str,
        now: i64,
        always: bool,
    ) -> Result<()>;

    /// A task's latest `limit` events, oldest first.
    fn task_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>>;

    /// Adds `bytes` to what the hub's relay carried for the task (no task:
    /// nothing happens).
    fn add_task_bytes_relayed(&self, id: &str, bytes: u64) -> Result<()>;

    /// Every state that has tasks, with their count and the bytes and
    /// files they moved: one aggregate over the tasks, read at each scrape
    /// of the hub's metrics (tasks are never deleted, so the sums only grow).
    fn task_stats(&self) -> Result<Vec<TaskStats>>;
}

/// Who a permission is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// One user (their id; their name when read back).
    Identity { user_id: i64, name: String },
    /// Every member of a group.
    Group { group_id: String, name: String },
    /// Everyone signed in to this hub.
    AllAuthenticated,
    /// Anyone holding a link (read-only; links only).
    Anonymous,
}

impl Grantee {
    pub fn kind(&self) -> &'static str {
        match self {
            Grantee::Identity { .. } => "identity",
            Grantee::Group { .. } => "group",
            Grantee::AllAuthenticated => "all_authenticated",
            Grantee::Anonymous => "anonymous",
        }
    }
    /// The name people read: the user's, the group's, or empty.
    pub fn name(&self) -> &str {
        match self {
            Grantee::Identity { name, .. } | Grantee::Group { name, .. } => name,
            Grantee::AllAuthenticated | Grantee::Anonymous => "",
        }
    }
}

/// An endpoint owner's permission: `grantee` may use `path` (an endpoint
/// path, raw bytes) and everything beneath it, reading (`r`) or also
/// writing (`rw`), until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRow {
    pub id: String,
    pub endpoint_id: String,
    pub path: Vec<u8>,
    pub mode: ferry_proto::share::ShareMode,
    pub grantee: Grantee,
    pub expires: Option<i64>,
    pub created: i64,
    pub created_by: i64,
}

/// A link: whoever holds its token may read `path` (an endpoint path,
/// raw bytes) and what is beneath it, until `expires` or until deleted,
/// at most `max_bytes` in all when that is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub id: String,
    /// SHA-256 of the URL's token ([`crate::secrets::token_hash`]): the
    /// token itself is shown once, at creation.
    pub token_hash: String,
    pub endpoint_id: String,
    pub path: Vec<u8>,
    pub created_by: i64,
    pub created: i64,
    pub expires: Option<i64>,
    pub deleted: bool,
    pub max_bytes: Option<i64>,
    pub bytes_served: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub owner_id: i64,
    pub owner_name: String,
}

/// A group as its owner and members see it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub name: String,
    pub owner_name: String,
    /// Member names, sorted.
    pub members: Vec<String>,
}

/// Groups, permissions on endpoint paths, and the permissions a task's
/// endpoints act under. (What was shared, revoked or refused is in the
/// audit log: [`AuditStore`].)
pub trait ShareStore {
    // --- groups ---
    /// `Conflict { what: "group name" }` when taken.
    fn create_group(&self, id: &str, name: &str, owner_id: i64, now: i64) -> Result<()>;

    fn group_by_name(&self, name: &str) -> Result<Option<GroupRow>>;

    /// `false` when already a member.
    fn add_group_member(&self, group_id: &str, user_id: i64) -> Result<bool>;

    /// `false` when not a member.
    fn remove_group_member(&self, group_id: &str, user_id: i64) -> Result<bool>;

    /// The groups the user owns or is a member of, by name.
    fn groups_of(&self, user_id: i64) -> Result<Vec<GroupListing>>;

    // --- permissions ---
    /// `NotFound` when the endpoint, user or group does not exist.
    fn put_permission(&self, permission: &PermissionRow) -> Result<()>;

    /// A permission by id, expired or not.
    fn permission(&self, id: &str) -> Result<Option<PermissionRow>>;

    /// An endpoint's permissions that have not expired at `now`, oldest first.
    fn endpoint_permissions(&self, endpoint_id: &str, now: i64) -> Result<Vec<PermissionRow>>;

    /// `false` when the endpoint has no such permission.
    fn delete_permission(&self, endpoint_id: &str, id: &str) -> Result<bool>;

    /// The live permissions on the endpoint that reach the user: theirs,
    /// their groups', everyone signed in's.
    fn permissions_for(
        &self,
        user_id: i64,
        endpoint_id: &str,
        now: i64,
    ) -> Result<Vec<PermissionRow>>;

    /// Endpoints of others (not deleted) that a live permission shares
    /// with the user, matching `query` as `search_endpoints` does.
    fn shared_with(
        &self,
        user_id: i64,
        query: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<EndpointRow>>;

    // --- a task's grants ---
    /// Records that the task's `side` (`source` or `destination`) acts
    /// under `permission_id`.
    fn put_task_grant(&self, task_id: &str, side: &str, permission_id: &str) -> Result<()>;

    /// (side, permission id) of each of the task's grants.
    fn task_grants(&self, task_id: &str) -> Result<Vec<(String, String)>>;

    /// ACTIVE tasks that act under `permission_id`.
    fn active_tasks_of_permission(&self, permission_id: &str) -> Result<Vec<String>>;

    // --- links ---
    /// `Conflict` when the id or token is taken.
    fn put_link(&self, link: &LinkRow) -> Result<()>;

    /// The link whose token hashes to `token_hash`, deleted or not.
    fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>>;

    /// The links `user_id` made that are not deleted, oldest first.
    fn links_of(&self, user_id: i64) -> Result<Vec<LinkRow>>;

    /// Marks a link of `user_id`'s deleted; `false` when there is none
    /// (or it is deleted already).
    fn delete_link(&self, user_id: i64, id: &str) -> Result<bool>;

    /// Counts `bytes` more served through the link, unless that would take
    /// it past its `max_bytes`: `false`, and nothing counted, then.
    fn charge_link(&self, id: &str, bytes: i64) -> Result<bool>;
}

/// One entry of an endpoint's audit log: who did what, where, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Unix seconds.
    pub time: i64,
    pub endpoint_id: String,
    /// The user who acted, when a user did (`None`: the hub itself, as
    /// for an expiry).
    pub actor_id: Option<i64>,
    /// Who acted, by name, as at the time.
    pub identity: String,
    /// A stable word: `ls`, `read`, `write`, `mkdir`, `rename`, `delete`,
    /// `link`, `permission_create`, ... (see `crate::audit`).
    pub action: String,
    /// The endpoint path acted on (raw bytes), when there is one.
    pub path: Option<Vec<u8>>,
    pub task_id: Option<String>,
    /// What else there is to say (a rename's new path, a permission's
    /// id, a refusal's reason); may be empty.
    pub detail: String,
}

/// The audit log: every access and sharing change on an endpoint, kept
/// for its owner for a bounded time.
pub trait AuditStore {
    /// Appends the events, all or none.
    fn record_audit(&self, events: &[AuditRow]) -> Result<()>;

    /// The newest `limit` events of the endpoint at or after `since`,
    /// oldest first.
    fn audit_events(&self, endpoint_id: &str, since: i64, limit: usize) -> Result<Vec<AuditRow>>;

    /// Deletes up to `limit` of the oldest events from before `before`;
    /// how many went.
    fn prune_audit(&self, before: i64, limit: usize) -> Result<u64>;

    /// Permissions that expired before `now` whose expiry is not in the
    /// log yet, the soonest expired first, at most `limit`.
    fn unrecorded_expiries(&self, now: i64, limit: usize) -> Result<Vec<PermissionRow>>;

    /// Records `event` as the permission's expiry, once: `false`, and
    /// nothing recorded, when its expiry is in the log already.
    fn record_expiry(&self, permission_id: &str, event: &AuditRow) -> Result<bool>;
}

/// Whether a timer still makes runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerStatus {
    /// It has a next run.
    Active,
    /// Its last run was made (`--stop-after-runs`) or its next would fall
    /// after `--stop-after-date`.
    Finished,
}

impl TimerStatus {
    /// Its name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerStatus::Active => "active",
            TimerStatus::Finished => "finished",
        }
    }
}

/// A timer as created: `submission` is JSON of the wire
/// [`ferry_proto::task::SubmitTask`] each run submits again (endpoints by
/// id). Unlike a task's, it is kept as JSON: nothing queries into it, and
/// each run's task stores its own options and items in columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer {
    pub id: String,
    pub owner_id: i64,
    pub submission: String,
    pub label: Option<String>,
    /// Seconds between due times.
    pub interval: i64,
    /// The first due time.
    pub start: i64,
    pub stop_after_runs: Option<u64>,
    pub stop_after_date: Option<i64>,
    /// Each run's task fails if not done this many seconds after it starts.
    pub run_deadline: Option<i64>,
    pub created: i64,
}

/// A timer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRow {
    pub timer: NewTimer,
    /// The next due time; `None` once finished.
    pub next_run: Option<i64>,
    /// Runs that made a task.
    pub runs: u64,
    /// Due times passed over because the previous run was still ACTIVE.
    pub skipped: u64,
    pub last_task_id: Option<String>,
    pub status: TimerStatus,
}

/// Recurring transfers ([`crate::timers`]) and their events.
pub trait TimerStore {
    /// `NotFound` without such an owner.
    fn create_timer(&self, timer: &NewTimer) -> Result<()>;

    fn timer(&self, id: &str) -> Result<Option<TimerRow>>;

    /// A user's timers, oldest first, at most `limit`.
    fn timers_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TimerRow>>;

    /// ACTIVE timers due at `now`, the most overdue first, at most `limit`.
    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRow>>;

    /// Takes the run due at `due`, atomically: only if the timer is still
    /// ACTIVE with `next_run = due`, it moves on to `next` (finished when
    /// `None`), counting a skip when `skipped`. `false` when another hub
    /// (or an earlier pass) took it first: then this caller does nothing.
    fn claim_timer_run(&self, id: &str, due: i64, next: Option<i64>, skipped: bool)
    -> Result<bool>;

    /// Counts a run that made `task_id`.
    fn record_timer_run(&self, id: &str, task_id: &str) -> Result<()>;

    /// Appends an event; only the latest [`MAX_TIMER_EVENTS`] are kept.
    fn add_timer_event(&self, id: &str, code: &str, description: &str, now: i64) -> Result<()>;

    /// A timer's latest `limit` events, oldest first.
    fn timer_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>>;

    /// Deletes a timer and its events; `false` when there was none.
    fn delete_timer(&self, id: &str) -> Result<bool>;
}

/// Events one timer keeps: a timer skips on and on while its runs
/// outlast its interval, and only the recent past is worth reading.
pub const MAX_TIMER_EVENTS: u64 = 200;

/// A user's webhook: where the hub POSTs news of their tasks, and the
/// secret it signs each body with (kept as given: the hub needs it to sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub owner_id: i64,
    pub url: String,
    pub events: NotifyEvents,
    pub secret: String,
    pub created: i64,
}

/// What notifications need: users' addresses, which news of a task was
/// told already (so a restart never tells it twice), and webhooks.
pub trait NotifyStore {
    /// Sets or (`None`) clears where a user's e-mail goes; `false`: no such user.
    fn set_user_email(&self, user_id: i64, email: Option<&str>) -> Result<bool>;

    fn user_email(&self, user_id: i64) -> Result<Option<String>>;

    /// Records that the owner of a task is told `notice` (`SUCCEEDED`,
    /// `FAILED`, `INACTIVE`) and returns the task's `--notify` set, or
    /// `None` when that was the last thing told (or there is no such task).
    fn claim_task_notice(&self, task_id: &str, notice: &str) -> Result<Option<NotifyEvents>>;

    /// The task moves again: its next wait is news again.
    fn rearm_task_notice(&self, task_id: &str) -> Result<()>;

    fn put_webhook(&self, webhook: &WebhookRow) -> Result<()>;

    fn webhook(&self, id: &str) -> Result<Option<WebhookRow>>;

    /// A user's webhooks, oldest first.
    fn webhooks_of(&self, owner_id: i64) -> Result<Vec<WebhookRow>>;

    fn delete_webhook(&self, id: &str) -> Result<bool>;
}

/// How long a sign-in's record of authenticated identities is kept: no
/// endpoint's age limit (`identity_max_age_hours`) reaches further back.
pub const LOGIN_IDENTITY_KEPT: i64 = 366 * 86_400;

/// An identity (`name@domain`) linked to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub identity: String,
    pub user_id: i64,
    /// The `[[identity_provider]]` that vouched for it when it was linked.
    pub provider: String,
    pub linked_at: i64,
}

/// Identities linked to accounts, the identities each sign-in
/// authenticated (and when), and endpoints' identity policy.
///
/// A sign-in is named by a `login_id`: a browser session's hash, or the
/// grant id of tokens issued through one (a snapshot of the session's
/// identities taken when the code was issued).
pub trait IdentityStore {
    /// Links `identity` to the account; `Conflict { what: "identity" }`
    /// when it is already linked (to this account or another).
    fn link_identity(&self, identity: &str, user_id: i64, provider: &str, now: i64) -> Result<()>;

    fn identity(&self, identity: &str) -> Result<Option<IdentityRow>>;

    /// The account's linked identities, oldest first.
    fn identities_of(&self, user_id: i64) -> Result<Vec<IdentityRow>>;

    /// Records that sign-in `login_id` authenticated `identity` at `at`
    /// (a later authentication of the same identity replaces the time).
    fn note_login_identity(&self, login_id: &str, identity: &str, at: i64) -> Result<()>;

    /// (identity, authenticated at) of each identity sign-in `login_id`
    /// authenticated, oldest first.
    fn login_identities(&self, login_id: &str) -> Result<Vec<(String, i64)>>;

    /// Sets a live endpoint's allowed domains (empty: none required);
    /// `false` when it is missing or deleted.
    fn set_allowed_domains(&self, endpoint_id: &str, domains: &[String]) -> Result<bool>;
}

/// Apps users register (native apps, portals, service accounts) and the
/// consents users gave them.
pub trait AppStore {
    /// The clients `owner_id` registered, oldest first.
    fn clients_of(&self, owner_id: i64) -> Result<Vec<ClientRow>>;

    /// Makes a service account's own account, named `account`, and the
    /// client acting as it (`client.user_id` is replaced by the new
    /// account's id, returned), together.
    fn add_service_account(
        &self,
        account: &str,
        password_hash: &str,
        client: &ClientRow,
        now: i64,
    ) -> Result<i64>;

    /// Replaces a confidential client's secret; `false`: no such client.
    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool>;

    /// Deletes a client with its consents and codes and revokes every
    /// token issued to it, together; `false`: no such client.
    fn delete_client(&self, client_id: &str) -> Result<bool>;

    /// Records (or replaces) what `user_id` consented to for `client_id`.
    fn put_consent(&self, user_id: i64, client_id: &str, scope: &str, now: i64) -> Result<()>;

    /// The scopes `user_id` consented to for `client_id`, if any.
    fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>>;

    /// The user's consents, with the apps' names, oldest first.
    fn consents_of(&self, user_id: i64) -> Result<Vec<ConsentRow>>;

    /// Forgets the consent and revokes every token and code the app holds
    /// for the user, together; `false` when there was no consent.
    fn revoke_consent(&self, user_id: i64, client_id: &str) -> Result<bool>;
}

/// Several hub instances over one database: which instance drives each
/// ACTIVE task. A task's claim names its instance and holds while that
/// instance's lease (its mark of life in `hub_instances`, one row it
/// renews at every sweep) lasts: no task is rewritten to keep its claim.
/// The tasks of an instance whose lease ran out (it died) are taken by the
/// next instance that claims.
pub trait ClusterStore {
    /// Marks `instance` alive until `lease_until`; frees the tasks of
    /// instances whose lease ended before `now` and claims for `instance`
    /// every ACTIVE task no live instance holds. A task goes to the
    /// instance that holds its source's control link: one whose source is
    /// linked to another live instance is not claimed, and `instance` lets
    /// it go if it held it (so that instance takes it). Of two instances
    /// claiming at once, each task goes to one.
    ///
    /// Tells what changed since the call that returned `since` as its
    /// `next` (a scheduler's sweep, whose cost then follows the changes,
    /// not the queue's length): the whole picture instead when `since` is
    /// `None` or when `instance`'s lease had ended (or it had none), since
    /// another instance may then have taken any of its tasks. A task may be
    /// told again in a later call (a change made by a transaction that was
    /// still open at this one); as it is then, so telling it twice is
    /// harmless.
    fn claim_changes(
        &self,
        instance: &str,
        now: i64,
        lease_until: i64,
        since: Option<i64>,
    ) -> Result<ClaimChanges>;

    /// The tasks `instance` holds after a claim, by id (tests: the whole
    /// picture of [`ClusterStore::claim_changes`]).
    #[cfg(test)]
    fn claim_tasks(&self, instance: &str, now: i64, lease_until: i64) -> Result<Vec<String>> {
        let mut held: Vec<String> = self
            .claim_changes(instance, now, lease_until, None)?
            .held
            .into_iter()
            .map(|t| t.id)
            .collect();
        held.sort();
        Ok(held)
    }

    fn release_task_claims(&self, instance: Option<&str>) -> Result<u64>;

    /// Records that `instance` holds `endpoint_id`'s control link (a newer
    /// link replaces an older one, wherever it was).
    fn set_control_link(&self, endpoint_id: &str, instance: &str, since: i64) -> Result<()>;

    /// Forgets `endpoint_id`'s control link if `instance` still holds it.
    fn drop_control_link(&self, endpoint_id: &str, instance: &str) -> Result<()>;

    /// The key every instance uses for `name`: `candidate` if none was
    /// stored yet (it is then stored), else the stored one, so that what
    /// one instance signs another verifies.
    fn shared_key(&self, name: &str, candidate: &str) -> Result<String>;

    /// The instance holding `endpoint_id`'s control link, if it is alive
    /// (its mark of life lasts until `now` or later).
    fn control_link(&self, endpoint_id: &str, now: i64) -> Result<Option<String>>;

    /// Leaves `payload` (a command, JSON) for `to_instance` until
    /// `deadline`; its id, to read the reply by.
    fn post_message(
        &self,
        to_instance: &str,
        payload: &str,
        now: i64,
        deadline: i64,
    ) -> Result<i64>;

    /// Up to `max` messages for `instance` not taken yet and not past
    /// their deadline, oldest first, each marked taken (only one caller
    /// gets a message).
    fn take_messages(&self, instance: &str, now: i64, max: usize) -> Result<Vec<InstanceMessage>>;

    /// Writes the reply to message `id` (nothing if it is gone).
    fn answer_message(&self, id: i64, reply: &str) -> Result<()>;

    /// The reply to message `id`, once there is one.
    fn message_reply(&self, id: i64) -> Result<Option<String>>;

    /// Deletes message `id` (its sender has its reply or gave up).
    fn drop_message(&self, id: i64) -> Result<()>;

    /// Deletes the messages whose deadline is before `now`, and the
    /// failed sign-ins counted in windows that started before
    /// `logins_before`; how many rows went.
    fn purge_messages(&self, now: i64, logins_before: i64) -> Result<u64>;

    /// Counts one failed sign-in against `key` (an account's or an
    /// address's): in its window if that started less than `window`
    /// seconds before `now`, else in a new one starting now. The count in
    /// the window afterwards.
    fn add_login_failure(&self, key: &str, now: i64, window: i64) -> Result<u32>;

    /// The failed sign-ins counted against `key` in a window still open at
    /// `now`: how many, and when the window started.
    fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<Option<(u32, i64)>>;

    /// Forgets `key`'s failed sign-ins (its owner got in).
    fn clear_login_failures(&self, key: &str) -> Result<()>;

    /// What a task's driver must know of `endpoint_id`'s link, which
    /// `instance` holds: where it takes data connections, whether it
    /// relays, whether it is paused (nothing if another instance holds it).
    fn set_link_details(&self, endpoint_id: &str, instance: &str, link: &LinkDetails)
    -> Result<()>;

    /// The links that other live instances hold of the sources and
    /// destinations of the ACTIVE tasks `instance` holds.
    fn remote_links(&self, instance: &str, now: i64) -> Result<Vec<RemoteLink>>;

    /// The instance holding ACTIVE task `task_id`'s claim, if one does.
    fn task_claim(&self, task_id: &str) -> Result<Option<String>>;

    /// Records the nodes of `endpoint_id` whose control links `instance`
    /// holds now, `nodes` (all of one endpoint and instance): a node's
    /// newer link replaces its older one wherever it was, and a node no
    /// longer in `nodes` is forgotten if `instance` still held it.
    fn sync_node_links(
        &self,
        endpoint_id: &str,
        instance: &str,
        nodes: &[NodeLinkRow],
    ) -> Result<()>;

    /// The node links of `endpoint_id` that live instances other than
    /// `instance` hold (their mark of life lasts until `now` or later),
    /// by node name.
    fn remote_nodes(&self, endpoint_id: &str, instance: &str, now: i64)
    -> Result<Vec<NodeLinkRow>>;

    /// Calls `wake` whenever a message is left for `instance`, from a
    /// thread of its own for the life of the process, where the database
    /// can say so (PostgreSQL's LISTEN); elsewhere nothing, and the
    /// instance polls.
    fn listen_for_messages(&self, instance: &str, wake: Box<dyn Fn() + Send>) {
        let _ = (instance, wake);
    }
}

/// What the scheduler knows of a connected endpoint beyond its being so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDetails {
    pub data_address: Option<String>,
    pub relay: bool,
    pub paused: bool,
}

/// An endpoint's control link another instance holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLink {
    pub endpoint_id: String,
    pub instance: String,
    pub since: i64,
    pub details: LinkDetails,
}

/// One machine (node) of an endpoint linked to a hub instance, as a task's
/// driver on another instance must know it to spread the task over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLinkRow {
    pub endpoint_id: String,
    pub node: String,
    pub instance: String,
    pub since: i64,
    pub data_address: Option<String>,
    /// The features its hello named (`ferry_proto::task::FEATURE_SHARDS`,
    /// ...), as the driver asks `Registry::node_has_feature` of its own.
    pub features: Vec<String>,
}

/// The features of a [`NodeLinkRow`] as stored: words apart.
pub(crate) fn split_features(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// A command one hub instance left for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMessage {
    pub id: i64,
    pub payload: String,
    pub deadline: i64,
}

/// The PostgreSQL notification channel on which `instance` hears that a
/// message was left for it (a channel name is an identifier: the
/// instance's id is random letters and digits, lower-cased here).
pub fn messages_channel(instance: &str) -> String {
    let safe: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(40)
        .collect();
    format!("ferry_msg_{safe}")
}

/// What one sweep's claim tells an instance ([`ClusterStore::claim_changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimChanges {
    /// The whole picture: `held` and `elsewhere` list every ACTIVE task,
    /// and a task the instance knew of that is in neither has ended.
    pub whole: bool,
    /// ACTIVE tasks the instance holds: all of them when `whole`, else
    /// those that changed (its new claims among them).
    pub held: Vec<ActiveTask>,
    /// ACTIVE tasks it does not hold (another instance's or no one's):
    /// all of them when `whole`, else those that changed.
    pub elsewhere: Vec<String>,
    /// Tasks that ended since `since` (none when `whole`).
    pub ended: Vec<String>,
    /// `since` for the next call.
    pub next: i64,
}

/// Everything the hub keeps: what it holds, as `Arc<dyn Storage>`.
pub trait Storage:
    AppStore
    + AccountStore
    + ClusterStore
    + EndpointStore
    + TaskStore
    + ShareStore
    + TimerStore
    + AuditStore
    + NotifyStore
    + IdentityStore
    + Send
    + Sync
    + std::fmt::Debug
{
}

impl<
    T: AppStore
        + AccountStore
        + ClusterStore
        + EndpointStore
        + TaskStore
        + ShareStore
        + TimerStore
        + AuditStore
        + NotifyStore
        + IdentityStore
        + Send
        + Sync
        + std::fmt::Debug,
> Storage for T
{
}
