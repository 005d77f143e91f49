//! The SQLite backend: one connection behind a mutex, WAL, foreign keys
//! on, a busy timeout, and numbered migrations applied in order at open.
//!
//! Its queries are portable SQL (a test scans this file for SQLite-only
//! constructs): what the PostgreSQL backend (`postgres.rs`) writes
//! differently is the migrations' DDL, the placeholders' spelling, and
//! the row locks this backend's one connection makes unnecessary.

use super::*;
use ferry_proto::filter::{FilterAction, FilterRule};
use ferry_proto::share::ShareMode;
use ferry_proto::task::{ChecksumAlgorithm, SyncLevel};
use ferry_proto::wire_path::WirePath;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::Mutex;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        use rusqlite::ffi;
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::CannotOpen
                | C::DiskFull
                | C::OutOfMemory
                | C::FileLockingProtocolFailed
                | C::OperationInterrupted => StoreError::Unavailable(e.to_string()),
                C::ConstraintViolation if f.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    StoreError::NotFound
                }
                C::ConstraintViolation
                    if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                        || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    StoreError::Conflict { what: "key" }
                }
                _ => StoreError::Internal(e.to_string()),
            },
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// A write's error, naming what a unique-key conflict is about.
fn taken(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict { what },
        other => other,
    }
}

/// One step of the schema: SQL, or code where existing rows must be
/// rewritten in ways SQL alone cannot (parsing what an older hub stored).
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>, i64) -> Result<()>),
}

/// Each entry migrates the schema from its index to index + 1. An entry,
/// once released, keeps its meaning: databases in the field ran it.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(
        r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    scopes TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE auth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    redirect_uri TEXT NOT NULL,
    challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    user_id INTEGER NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    grant_id TEXT NOT NULL
);
CREATE INDEX tokens_grant ON tokens(grant_id);
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    display_name TEXT NOT NULL,
    created INTEGER NOT NULL,
    cert_sha256 TEXT,
    registered INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0,
    UNIQUE (owner_id, display_name)
);
CREATE TABLE setup_keys (
    key_hash TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    expires INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
"#,
    ),
    Migration::Sql(
        r#"
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    source_id TEXT NOT NULL REFERENCES endpoints(id),
    destination_id TEXT NOT NULL REFERENCES endpoints(id),
    items TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    options TEXT NOT NULL,
    label TEXT,
    deadline INTEGER,
    status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUCCEEDED', 'FAILED', 'CANCELED')),
    attempt INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    files_transferred INTEGER NOT NULL DEFAULT 0,
    files_skipped INTEGER NOT NULL DEFAULT 0,
    bytes_transferred INTEGER NOT NULL DEFAULT 0,
    faults INTEGER NOT NULL DEFAULT 0,
    cur_files INTEGER NOT NULL DEFAULT 0,
    cur_files_transferred INTEGER NOT NULL DEFAULT 0,
    cur_files_skipped INTEGER NOT NULL DEFAULT 0,
    cur_bytes_transferred INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    completed INTEGER,
    last_fault TEXT,
    fatal_error TEXT
);
CREATE INDEX tasks_owner ON tasks(owner_id, created);
CREATE INDEX tasks_active ON tasks(status) WHERE status = 'ACTIVE';
CREATE TABLE task_events (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
"#,
    ),
    // Counters became the task's own (each attempt counts what earlier
    // ones committed): the totals are the furthest any attempt reached,
    // not a sum. A running attempt's counters fold in as they were meant.
    Migration::Sql(
        r#"
UPDATE tasks SET files = CASE WHEN cur_files > files THEN cur_files ELSE files END,
    files_transferred = files_transferred + cur_files_transferred,
    files_skipped = files_skipped + cur_files_skipped,
    bytes_transferred = bytes_transferred + cur_bytes_transferred,
    cur_files = 0, cur_files_transferred = 0, cur_files_skipped = 0, cur_bytes_transferred = 0;
ALTER TABLE tasks ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN bytes_resent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN walk_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cur_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cur_bytes_resent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cur_walk_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN bytes_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cur_bytes_skipped INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    // A deleted endpoint stays, revoked, so its tasks keep their names and
    // destinations keep refusing its certificate.
    Migration::Sql(
        r#"
ALTER TABLE endpoints ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    Migration::Code(tasks_in_columns),
    // Tokens a user made for scripts, named so they can tell them apart
    // on the account page and revoke one.
    Migration::Sql(
        r#"
CREATE TABLE personal_tokens (
    grant_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    label TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_id);
"#,
    ),
    // Sharing: groups, permissions on endpoint paths, the permission each
    // side of a grantee's task acts under, and the record of changes.
    Migration::Sql(
        r#"
CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    created INTEGER NOT NULL
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    path BLOB NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('r', 'rw')),
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('identity', 'group', 'all_authenticated', 'anonymous')),
    grantee_user INTEGER REFERENCES users(id),
    grantee_group TEXT REFERENCES user_groups(id),
    expires INTEGER,
    created INTEGER NOT NULL,
    created_by INTEGER NOT NULL REFERENCES users(id)
);
CREATE INDEX permissions_endpoint ON permissions(endpoint_id);
CREATE TABLE task_grants (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    side TEXT NOT NULL CHECK (side IN ('source', 'destination')),
    permission_id TEXT NOT NULL,
    PRIMARY KEY (task_id, side)
);
CREATE INDEX task_grants_permission ON task_grants(permission_id);
CREATE TABLE share_events (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    actor_id INTEGER,
    endpoint_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX share_events_endpoint ON share_events(endpoint_id, time);
"#,
    ),
    // Schema 8: a task's `--include`/`--exclude` rules, in order (patterns
    // as raw bytes), and its `--bwlimit` (bytes per second).
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN bwlimit INTEGER;
CREATE TABLE task_filters (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    rule INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('include', 'exclude')),
    pattern BLOB NOT NULL,
    PRIMARY KEY (task_id, rule)
);
"#,
    ),
    // Schema 9: A task's digest algorithm (its wire name). Every task stored before
    // had none, which means SHA-256: what its endpoints hashed with.
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN checksum_algorithm TEXT NOT NULL DEFAULT 'sha256'
    CHECK (checksum_algorithm IN ('sha256', 'blake3'));
"#,
    ),
    // Schema 10: timers: recurring transfers, each run a task (`submission` is the
    // wire SubmitTask each run submits), and what happened to each.
    Migration::Sql(
        r#"
CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    submission TEXT NOT NULL,
    label TEXT,
    interval_secs INTEGER NOT NULL,
    start INTEGER NOT NULL,
    stop_after_runs INTEGER,
    stop_after_date INTEGER,
    run_deadline INTEGER,
    created INTEGER NOT NULL,
    next_run INTEGER,
    runs INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    last_task_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'finished'))
);
CREATE INDEX timers_due ON timers(status, next_run);
CREATE TABLE timer_events (
    timer_id TEXT NOT NULL REFERENCES timers(id),
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (timer_id, seq)
);
"#,
    ),
    // Schema 11: the audit log: every access and sharing change on an endpoint, for
    // its owner. It takes over the record of sharing changes, so there is
    // one place to read: those rows move here, under the audit log's
    // action names, with the name of who acted as it is now. A
    // permission's expiry is recorded once (`expiry_recorded`).
    Migration::Sql(
        r#"
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    actor_id INTEGER,
    identity TEXT NOT NULL,
    action TEXT NOT NULL,
    path BLOB,
    task_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_endpoint ON audit_events(endpoint_id, time);
CREATE INDEX audit_events_time ON audit_events(time);
ALTER TABLE permissions ADD COLUMN expiry_recorded INTEGER NOT NULL DEFAULT 0;
INSERT INTO audit_events (time, endpoint_id, actor_id, identity, action, path, task_id, detail)
    SELECT s.time, s.endpoint_id, s.actor_id, COALESCE(u.name, ''),
        CASE s.action
            WHEN 'share_created' THEN 'permission_create'
            WHEN 'share_deleted' THEN 'permission_delete'
            WHEN 'share_refused' THEN 'permission_refused'
            ELSE s.action
        END,
        NULL, NULL, s.detail
    FROM share_events s LEFT JOIN users u ON u.id = s.actor_id
    ORDER BY s.time, s.id;
DROP TABLE share_events;
"#,
    ),
    // Schema 12: notifications: a user's e-mail address; a task's `--notify` set
    // (tasks stored before get the default) and the last news told of it,
    // so a restart never tells it twice; users' webhooks.
    Migration::Sql(
        r#"
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE tasks ADD COLUMN notify TEXT NOT NULL DEFAULT 'succeeded,failed';
ALTER TABLE tasks ADD COLUMN notified TEXT;
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks(owner_id);
"#,
    ),
    // Schema 13: the hook a task asks its destination to run once its files landed
    // (`--on-success NAME`); tasks stored before asked for none.
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN on_success TEXT;
"#,
    ),
    // Schema 14: identities (`name@domain`) linked to accounts, each vouched for by
    // an upstream OpenID provider; which identities a sign-in (a browser
    // session, by its hash, or the grant of tokens issued through one)
    // authenticated and when; and an endpoint's allowed identity domains
    // (comma-separated, empty: no policy).
    Migration::Sql(
        r#"
CREATE TABLE identities (
    identity TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    provider TEXT NOT NULL,
    linked_at INTEGER NOT NULL
);
CREATE INDEX identities_user ON identities(user_id);
CREATE TABLE login_identities (
    login_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    authenticated_at INTEGER NOT NULL,
    PRIMARY KEY (login_id, identity)
);
ALTER TABLE endpoints ADD COLUMN allowed_domains TEXT NOT NULL DEFAULT '';
"#,
    ),
    // Schema 15: the hub as an OpenID provider: what an authorization
    // request with scope `openid` adds to its code (the client's nonce,
    // when the user signed in), for the ID token the code leads to.
    Migration::Sql(
        r#"
CREATE TABLE oidc_codes (
    code_hash TEXT PRIMARY KEY,
    nonce TEXT,
    auth_time INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
"#,
    ),
    // Schema 16: the id a client gave its task submission (`submission_id`),
    // at most once per owner, so a retried submission finds its task;
    // tasks stored before have none.
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN submission_id TEXT;
CREATE UNIQUE INDEX tasks_submission ON tasks(owner_id, submission_id);
"#,
    ),
    // Schema 17: apps on ferry: what sort each client is (those an admin made before
    // act as a fixed account), who registered it, a portal's exact
    // redirect URIs (newline-separated); and the scopes each user
    // consented to for each app.
    Migration::Sql(
        r#"
ALTER TABLE clients ADD COLUMN kind TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE clients ADD COLUMN owner_id INTEGER REFERENCES users(id);
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_owner ON clients(owner_id);
CREATE TABLE consents (
    user_id INTEGER NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
"#,
    ),
    // Schema 18: hub instances sharing the database (`ClusterStore`): which
    // instance drives each ACTIVE task, and until when its lease lasts
    // (tasks stored before are unclaimed, taken by the first instance that
    // sweeps); each live instance and until when it is taken to be alive;
    // which instance holds each connected endpoint's control link; keys
    // every instance must share (the sign-in form's).
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
CREATE TABLE hub_instances (
    id TEXT PRIMARY KEY,
    lease_until INTEGER NOT NULL
);
CREATE TABLE control_links (
    endpoint_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    since INTEGER NOT NULL
);
CREATE TABLE hub_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    // The encrypted bytes the hub's relay carried for a task, over all
    // its attempts and both ways.
    Migration::Sql("ALTER TABLE tasks ADD COLUMN bytes_relayed INTEGER NOT NULL DEFAULT 0;"),
    // Links: an HTTPS URL anyone holding it may read a path through,
    // read-only (`ferry link create`). Only the token's SHA-256 is kept;
    // a deleted link stays, so its URL answers 410 rather than 404.
    Migration::Sql(
        r#"
CREATE TABLE links (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    path BLOB NOT NULL,
    created_by INTEGER NOT NULL REFERENCES users(id),
    created INTEGER NOT NULL,
    expires INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    max_bytes INTEGER,
    bytes_served INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX links_creator ON links(created_by);
"#,
    ),
    // Hub instances calling each other through the database: a command
    // for an endpoint whose control link another instance holds, and its
    // answer (`ClusterStore::post_message`); failed sign-ins counted per
    // account or address for every instance (`ClusterStore::add_login_failure`);
    // what a task's driver must know of a link another instance holds
    // (`ClusterStore::remote_links`).
    Migration::Sql(
        r#"
CREATE TABLE hub_messages (
    id INTEGER PRIMARY KEY,
    to_instance TEXT NOT NULL,
    payload TEXT NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0,
    reply TEXT,
    created INTEGER NOT NULL,
    deadline INTEGER NOT NULL
);
CREATE INDEX hub_messages_to ON hub_messages(to_instance, taken);
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL
);
ALTER TABLE control_links ADD COLUMN data_address TEXT;
ALTER TABLE control_links ADD COLUMN relay INTEGER NOT NULL DEFAULT 0;
ALTER TABLE control_links ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    // An endpoint's machines besides its primary (transfer nodes), each
    // with its own certificate, and the setup keys that register one.
    Migration::Sql(
        r#"
CREATE TABLE endpoint_nodes (
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    name TEXT NOT NULL,
    cert_sha256 TEXT,
    created INTEGER NOT NULL,
    registered INTEGER,
    PRIMARY KEY (endpoint_id, name)
);
ALTER TABLE setup_keys ADD COLUMN node TEXT;
"#,
    ),
    // Over how many nodes of each endpoint a task's latest attempt ran
    // (1: not spread).
    Migration::Sql("ALTER TABLE tasks ADD COLUMN nodes INTEGER NOT NULL DEFAULT 1;"),
    // A task's claim holds while its instance's lease (`hub_instances`)
    // does: `tasks.lease_until` is no longer written. Each task carries a
    // change mark (`changed`), the next number whenever it is created,
    // ends or changes hands, so a sweep reads only the tasks that changed
    // since its last (`ClusterStore::claim_changes`); and the indexes
    // that find an instance's tasks, the free ones, and its tasks of an
    // endpoint another instance holds the link of.
    Migration::Sql(
        r#"
ALTER TABLE tasks ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_changed ON tasks(changed);
CREATE INDEX tasks_claims ON tasks(claimed_by) WHERE status = 'ACTIVE';
CREATE INDEX tasks_active_source ON tasks(source_id, claimed_by) WHERE status = 'ACTIVE';
CREATE INDEX tasks_active_destination ON tasks(destination_id, claimed_by) WHERE status = 'ACTIVE';
CREATE TRIGGER tasks_changed_insert AFTER INSERT ON tasks
BEGIN
    UPDATE tasks SET changed = (SELECT MAX(changed) FROM tasks) + 1 WHERE id = NEW.id;
END;
CREATE TRIGGER tasks_changed_update AFTER UPDATE OF status, claimed_by ON tasks
WHEN OLD.status IS NOT NEW.status OR OLD.claimed_by IS NOT NEW.claimed_by
BEGIN
    UPDATE tasks SET changed = (SELECT MAX(changed) FROM tasks) + 1 WHERE id = NEW.id;
END;
"#,
    ),
    // Which instance holds each node's control link, with what a task's
    // driver on another instance needs to spread the task over the node
    // (`ClusterStore::sync_node_links`). `control_links` keeps naming one
    // instance per endpoint, for commands to the endpoint.
    Migration::Sql(
        r#"
CREATE TABLE node_links (
    endpoint_id TEXT NOT NULL,
    node TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    since INTEGER NOT NULL,
    data_address TEXT,
    features TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (endpoint_id, node)
);
"#,
    ),
];

/// Schema 5: a task's options in columns of their own and its items as
/// rows of `task_items` (raw path bytes), instead of JSON of the wire
/// types that no query could look into; and a `seq` column, the task's
/// number in order of submission, which listings order by where they
/// used SQLite's implicit `rowid`. Tasks already stored are numbered by
/// creation time, then id: which of two tasks of the same second came
/// first was known only to that `rowid`, which this backend no longer
/// reads.
///
/// Its SQL is its own (not the helpers the queries use), so later schema
/// changes cannot change what it does. The JSON is read with this
/// release's wire types, which read what every earlier hub wrote; should
/// they ever stop doing so, this needs a frozen copy of them.
fn tasks_in_columns(tx: &Transaction<'_>, now: i64) -> Result<()> {
    tx.execute_batch(
        r#"
ALTER TABLE tasks ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN sync_level TEXT CHECK (sync_level IN ('exists', 'size', 'mtime', 'checksum'));
ALTER TABLE tasks ADD COLUMN delete_extraneous INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN preserve_mtime INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN preserve_mode INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN skip_source_errors INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN streams INTEGER;
CREATE TABLE task_items (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    item INTEGER NOT NULL,
    source BLOB NOT NULL,
    destination BLOB NOT NULL,
    recursive INTEGER NOT NULL,
    PRIMARY KEY (task_id, item)
);
"#,
    )?;
    let stored: Vec<(String, String, String)> = {
        let mut stmt = tx.prepare("SELECT id, items, options FROM tasks ORDER BY created, id")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut add_item = tx.prepare(
        "INSERT INTO task_items (task_id, item, source, destination, recursive) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (seq, (id, items, options)) in (1i64..).zip(stored) {
        tx.execute("UPDATE tasks SET seq = ?2 WHERE id = ?1", params![id, seq])?;
        let parsed = serde_json::from_str::<Vec<TransferItem>>(&items).and_then(|items| {
            Ok(TaskWork {
                items,
                options: serde_json::from_str(&options)?,
            })
        });
        match parsed {
            Ok(TaskWork { items, options: o }) => {
                tx.execute(
                    "UPDATE tasks SET sync_level = ?2, delete_extraneous = ?3, preserve_mtime = ?4,
                        preserve_mode = ?5, skip_source_errors = ?6, streams = ?7
                     WHERE id = ?1",
                    params![
                        id,
                        sync_level_text(o.sync_level),
                        o.delete,
                        o.preserve_mtime,
                        o.preserve_mode,
                        o.skip_source_errors,
                        o.streams,
                    ],
                )?;
                for (n, item) in (0i64..).zip(&items) {
                    add_item.execute(params![
                        id,
                        n,
                        item.source.as_bytes(),
                        item.destination.as_bytes(),
                        item.recursive
                    ])?;
                }
            }
            // The hub wrote this JSON itself, so this is a damaged row.
            // Such a task could never have started (its capability is
            // made from it); an ACTIVE one ends here, saying why, rather
            // than stopping every upgrade or running with no items. (Its
            // running attempt's counters need no folding: a task's totals
            // are the furthest of both.)
            Err(e) => {
                let why = format!("the hub's stored copy of the task is unreadable: {e}");
                let ended = tx.execute(
                    "UPDATE tasks SET status = 'FAILED', completed = ?2, fatal_error = ?3
                     WHERE id = ?1 AND status = 'ACTIVE'",
                    params![id, now, why],
                )?;
                if ended > 0 {
                    tx.execute(
                        "INSERT INTO task_events (task_id, seq, time, code, description)
                         SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, 'FAILED', ?3 FROM task_events WHERE task_id = ?1",
                        params![id, now, why],
                    )?;
                }
            }
        }
    }
    drop(add_item);
    tx.execute_batch(
        "CREATE UNIQUE INDEX tasks_seq ON tasks(seq);
         ALTER TABLE tasks DROP COLUMN items;
         ALTER TABLE tasks DROP COLUMN options;",
    )?;
    Ok(())
}

/// The text a sync level is stored as (its wire name).
fn sync_level_text(level: Option<SyncLevel>) -> Option<&'static str> {
    level.map(|l| match l {
        SyncLevel::Exists => "exists",
        SyncLevel::Size => "size",
        SyncLevel::Mtime => "mtime",
        SyncLevel::Checksum => "checksum",
    })
}

/// Stores a task's filter rules, numbered from 0 in their order.
fn write_filters(conn: &Connection, id: &str, rules: &[FilterRule]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO task_filters (task_id, rule, action, pattern) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (n, rule) in (0i64..).zip(rules) {
        let action = match rule.action {
            FilterAction::Include => "include",
            FilterAction::Exclude => "exclude",
        };
        stmt.execute(params![id, n, action, rule.pattern.as_bytes()])?;
    }
    Ok(())
}

/// Stores a task's items, numbered from 0 in their order.
fn write_items(conn: &Connection, id: &str, items: &[TransferItem]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO task_items (task_id, item, source, destination, recursive) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (n, item) in (0i64..).zip(items) {
        stmt.execute(params![
            id,
            n,
            item.source.as_bytes(),
            item.destination.as_bytes(),
            item.recursive
        ])?;
    }
    Ok(())
}

/// Folds the running attempt's counters into the task's (each at the
/// furthest either reached: see [`TaskCounters`]) and clears them.
/// (`CASE`, not SQLite's two-argument `MAX`, which PostgreSQL spells
/// `GREATEST`.)
const FOLD_CURRENT: &str = "files = CASE WHEN cur_files > files THEN cur_files ELSE files END,
    files_transferred = CASE WHEN cur_files_transferred > files_transferred THEN cur_files_transferred ELSE files_transferred END,
    files_skipped = CASE WHEN cur_files_skipped > files_skipped THEN cur_files_skipped ELSE files_skipped END,
    bytes_transferred = CASE WHEN cur_bytes_transferred > bytes_transferred THEN cur_bytes_transferred ELSE bytes_transferred END,
    bytes = CASE WHEN cur_bytes > bytes THEN cur_bytes ELSE bytes END,
    bytes_resent = CASE WHEN cur_bytes_resent > bytes_resent THEN cur_bytes_resent ELSE bytes_resent END,
    walk_done = CASE WHEN cur_walk_done > walk_done THEN cur_walk_done ELSE walk_done END,
    bytes_skipped = CASE WHEN cur_bytes_skipped > bytes_skipped THEN cur_bytes_skipped ELSE bytes_skipped END,
    cur_files = 0, cur_files_transferred = 0, cur_files_skipped = 0, cur_bytes_transferred = 0,
    cur_bytes = 0, cur_bytes_resent = 0, cur_walk_done = 0, cur_bytes_skipped = 0";

/// SQLite integers are signed; counters beyond i64 stick at the top.
fn sql_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

const ENDPOINT_COLUMNS: &str = "e.id, e.owner_id, u.name, e.display_name, e.created, e.cert_sha256, e.revoked, e.deleted, e.allowed_domains FROM endpoints e JOIN users u ON u.id = e.owner_id";

fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        owner_name: r.get(2)?,
        display_name: r.get(3)?,
        created: r.get(4)?,
        cert_sha256: r.get(5)?,
        revoked: r.get::<_, i64>(6)? != 0,
        deleted: r.get::<_, i64>(7)? != 0,
        allowed_domains: split_domains(&r.get::<_, String>(8)?),
    })
}

const TASK_COLUMNS: &str = "t.id, t.owner_id, t.source_id, s.display_name, t.destination_id, d.display_name,
    t.item_count, t.label, t.deadline, t.status, t.attempt,
    t.files, t.files_transferred, t.files_skipped, t.bytes_transferred,
    t.cur_files, t.cur_files_transferred, t.cur_files_skipped, t.cur_bytes_transferred,
    t.faults, t.created, t.completed, t.last_fault, t.fatal_error,
    t.bytes, t.bytes_resent, t.walk_done, t.bytes_skipped,
    t.cur_bytes, t.cur_bytes_resent, t.cur_walk_done, t.cur_bytes_skipped,
    t.checksum_algorithm, t.on_success, t.bytes_relayed, t.nodes
    FROM tasks t JOIN endpoints s ON s.id = t.source_id JOIN endpoints d ON d.id = t.destination_id";

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let status: String = r.get(9)?;
    let counters = |first: usize, more: usize| -> rusqlite::Result<TaskCounters> {
        Ok(TaskCounters {
            files: u64_of(r.get(first)?),
            files_transferred: u64_of(r.get(first + 1)?),
            files_skipped: u64_of(r.get(first + 2)?),
            bytes_transferred: u64_of(r.get(first + 3)?),
            bytes: u64_of(r.get(more)?),
            bytes_resent: u64_of(r.get(more + 1)?),
            walk_done: r.get::<_, i64>(more + 2)? != 0,
            bytes_skipped: u64_of(r.get(more + 3)?),
        })
    };
    Ok(TaskRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        source_id: r.get(2)?,
        source_name: r.get(3)?,
        destination_id: r.get(4)?,
        destination_name: r.get(5)?,
        item_count: u64_of(r.get(6)?),
        label: r.get(7)?,
        on_success: r.get(33)?,
        deadline: r.get(8)?,
        // The CHECK constraints admit nothing else.
        checksum_algorithm: ChecksumAlgorithm::parse(&r.get::<_, String>(32)?)
            .unwrap_or(ChecksumAlgorithm::Sha256),
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
        attempt: u32::try_from(r.get::<_, i64>(10)?).unwrap_or_default(),
        done: counters(11, 24)?,
        current: counters(15, 28)?,
        faults: u64_of(r.get(19)?),
        created: r.get(20)?,
        completed: r.get(21)?,
        last_fault: r.get(22)?,
        fatal_error: r.get(23)?,
        bytes_relayed: u64_of(r.get(34)?),
        nodes: u32::try_from(r.get::<_, i64>(35)?).unwrap_or(1),
    })
}

/// The SQLite backend.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
        Self::init(conn).map_err(|e| anyhow::anyhow!("database {}: {e}", path.display()))
    }

    /// An in-memory store, for tests.
    #[cfg(test)]
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Self {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| sql_u64(d.as_secs()));
        self.with_conn(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            )?;
            let version: i64 = conn
                .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let known = MIGRATIONS.len() as i64;
            if version > known {
                return Err(StoreError::TooNew {
                    found: version,
                    known,
                });
            }
            let done = usize::try_from(version)
                .map_err(|_| StoreError::Internal(format!("schema version {version}")))?;
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(done) {
                let tx = conn.transaction()?;
                match migration {
                    Migration::Sql(sql) => tx.execute_batch(sql)?,
                    Migration::Code(step) => step(&tx, now)?,
                }
                tx.execute("DELETE FROM schema_version", [])?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [i as i64 + 1],
                )?;
                tx.commit()?;
            }
            Ok(())
        })
    }

    /// Runs `f` with the connection: the one way in, so every call gets
    /// the treatment below.
    ///
    /// The trait is synchronous and the hub calls it from async code (every
    /// heartbeat, every API request, the scheduler). Waiting for the
    /// connection and SQLite's own work (the disk, a busy timeout of up to
    /// five seconds) would hold a runtime worker thread and stall every
    /// other task queued on it: control links, pings, other requests. On a
    /// multi-threaded runtime the call therefore runs under
    /// `block_in_place`, which first hands the worker's other tasks to
    /// another thread. On a current-thread runtime `block_in_place` panics
    /// (there is no other worker to hand them to), and outside a runtime
    /// (the admin commands, most tests) nothing waits on this thread: there
    /// `f` runs directly.
    ///
    /// Not `spawn_blocking`: that would need an async trait (or every call
    /// site wrapped) and owned arguments, a change to every caller. The
    /// PostgreSQL backend does the same (`PostgresStore::with_client`).
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let work = || {
            let mut conn = self.lock()?;
            f(&mut conn)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(work)
            }
            _ => work(),
        }
    }

    /// The connection. A request that panicked holding it left no
    /// transaction open (a dropped transaction rolls back): this call
    /// fails as unavailable and the next one finds the lock usable.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| {
            self.conn.clear_poison();
            StoreError::Unavailable("a request crashed holding the database".into())
        })
    }
}

impl AccountStore for SqliteStore {
    // --- users ---

    fn add_user(&self, name: &str, password_hash: &str, now: i64) -> Result<i64> {
        self.with_conn(|conn| {
            conn.query_row(
                "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3) RETURNING id",
                params![name, password_hash, now],
                |r| r.get(0),
            )
            .map_err(taken("user name"))
        })
    }

    fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, name, password_hash FROM users WHERE name = ?1",
                    [name],
                    |r| {
                        Ok(UserRow {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            password_hash: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, name, password_hash FROM users WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(UserRow {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            password_hash: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    // --- OAuth clients ---

    fn add_client(&self, client: &ClientRow, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO clients (client_id, name, secret_hash, user_id, scopes, created, kind, owner_id, redirect_uris) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![client.client_id, client.name, client.secret_hash, client.user_id, client.scopes, now, client.kind.as_str(), client.owner_id, client.redirect_uris.join("\n")],
            )
            .map_err(taken("client id"))?;
            Ok(())
        })
    }

    fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1"),
                    [client_id],
                    client_row,
                )
                .optional()?)
        })
    }

    // --- authorization codes ---

    fn put_auth_code(&self, code: &AuthCodeRow) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, challenge, scope, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![code.code_hash, code.client_id, code.user_id, code.redirect_uri, code.challenge, code.scope, code.expires],
            )?;
            Ok(())
        })
    }

    fn take_auth_code(&self, code_hash: &str, now: i64) -> Result<CodeUse> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let row = tx
                .query_row(
                    "SELECT code_hash, client_id, user_id, redirect_uri, challenge, scope, expires, used FROM auth_codes WHERE code_hash = ?1",
                    [code_hash],
                    |r| {
                        Ok((
                            AuthCodeRow {
                                code_hash: r.get(0)?,
                                client_id: r.get(1)?,
                                user_id: r.get(2)?,
                                redirect_uri: r.get(3)?,
                                challenge: r.get(4)?,
                                scope: r.get(5)?,
                                expires: r.get(6)?,
                            },
                            r.get::<_, i64>(7)? != 0,
                        ))
                    },
                )
                .optional()?;
            let outcome = match row {
                None => CodeUse::Unknown,
                Some((_, true)) => {
                    // The code's grant id is the code hash itself.
                    tx.execute(
                        "UPDATE tokens SET revoked = 1 WHERE grant_id = ?1",
                        [code_hash],
                    )?;
                    CodeUse::Reused
                }
                Some((row, false)) if row.expires < now => CodeUse::Expired,
                Some((row, false)) => {
                    tx.execute(
                        "UPDATE auth_codes SET used = 1 WHERE code_hash = ?1",
                        [code_hash],
                    )?;
                    CodeUse::Fresh(row)
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn put_oidc_code(&self, row: &OidcCodeRow) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO oidc_codes (code_hash, nonce, auth_time, expires) VALUES (?1, ?2, ?3, ?4)",
                params![row.code_hash, row.nonce, row.auth_time, row.expires],
            )?;
            Ok(())
        })
    }

    fn oidc_code(&self, code_hash: &str) -> Result<Option<OidcCodeRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT code_hash, nonce, auth_time, expires FROM oidc_codes WHERE code_hash = ?1",
                    [code_hash],
                    |r| {
                        Ok(OidcCodeRow {
                            code_hash: r.get(0)?,
                            nonce: r.get(1)?,
                            auth_time: r.get(2)?,
                            expires: r.get(3)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    // --- tokens ---

    fn put_token(&self, token: &TokenRow) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO tokens (token_hash, kind, user_id, client_id, scope, expires, grant_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![token.token_hash, token.kind.as_str(), token.user_id, token.client_id, token.scope, token.expires, token.grant_id],
            )?;
            Ok(())
        })
    }

    fn token(&self, token_hash: &str, kind: TokenKind, now: i64) -> Result<Option<TokenRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT t.token_hash, t.user_id, u.name, t.client_id, t.scope, t.expires, t.grant_id
                     FROM tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_hash = ?1 AND t.kind = ?2 AND t.revoked = 0 AND t.expires >= ?3",
                    params![token_hash, kind.as_str(), now],
                    |r| {
                        Ok(TokenRow {
                            token_hash: r.get(0)?,
                            kind,
                            user_id: r.get(1)?,
                            user_name: r.get(2)?,
                            client_id: r.get(3)?,
                            scope: r.get(4)?,
                            expires: r.get(5)?,
                            grant_id: r.get(6)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn token_was_revoked(&self, token_hash: &str) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT grant_id FROM tokens WHERE token_hash = ?1 AND revoked = 1",
                    [token_hash],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn revoke_token(&self, token_hash: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1",
                [token_hash],
            )?;
            Ok(())
        })
    }

    fn revoke_live_token(&self, token_hash: &str) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1 AND revoked = 0",
                [token_hash],
            )? > 0)
        })
    }

    fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE grant_id = ?1",
                [grant_id],
            )?;
            Ok(())
        })
    }

    fn put_personal_token(
        &self,
        grant_id: &str,
        user_id: i64,
        label: &str,
        created: i64,
    ) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO personal_tokens (grant_id, user_id, label, created) VALUES (?1, ?2, ?3, ?4)",
                params![grant_id, user_id, label, created],
            )?;
            Ok(())
        })
    }

    fn personal_tokens(&self, user_id: i64, now: i64) -> Result<Vec<PersonalTokenRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT p.grant_id, p.label, t.scope, p.created, t.expires
                 FROM personal_tokens p JOIN tokens t ON t.grant_id = p.grant_id
                 WHERE p.user_id = ?1 AND t.user_id = ?1 AND t.kind = 'access'
                   AND t.revoked = 0 AND t.expires >= ?2
                 ORDER BY p.created DESC, p.grant_id",
            )?;
            let rows = statement
                .query_map(params![user_id, now], |r| {
                    Ok(PersonalTokenRow {
                        grant_id: r.get(0)?,
                        label: r.get(1)?,
                        scope: r.get(2)?,
                        created: r.get(3)?,
                        expires: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // --- browser sessions ---

    fn put_session(
        &self,
        session_hash: &str,
        user_id: i64,
        csrf: &str,
        expires: i64,
    ) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO sessions (session_hash, user_id, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
                params![session_hash, user_id, csrf, expires],
            )?;
            Ok(())
        })
    }

    fn session(&self, session_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT s.user_id, u.name, s.csrf, s.expires FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.session_hash = ?1 AND s.expires >= ?2",
                    params![session_hash, now],
                    |r| Ok(SessionRow { user_id: r.get(0)?, user_name: r.get(1)?, csrf: r.get(2)?, expires: r.get(3)? }),
                )
                .optional()?)
        })
    }

    fn delete_session(&self, session_hash: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "DELETE FROM sessions WHERE session_hash = ?1",
                [session_hash],
            )?;
            Ok(())
        })
    }

    fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionListing>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT session_hash, expires FROM sessions WHERE user_id = ?1 AND expires >= ?2
                 ORDER BY expires DESC, session_hash",
            )?;
            let rows = statement
                .query_map(params![user_id, now], |r| {
                    Ok(SessionListing {
                        session_hash: r.get(0)?,
                        expires: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn end_other_sessions(&self, user_id: i64, keep: &str) -> Result<u64> {
        self.with_conn(|conn| {
            let ended = conn.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND session_hash <> ?2",
                params![user_id, keep],
            )?;
            Ok(ended as u64)
        })
    }

    fn purge_expired(&self, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            let day_ago = now - 86_400;
            conn.execute("DELETE FROM sessions WHERE expires < ?1", [now])?;
            conn.execute("DELETE FROM auth_codes WHERE expires < ?1", [day_ago])?;
            conn.execute("DELETE FROM oidc_codes WHERE expires < ?1", [day_ago])?;
            conn.execute("DELETE FROM tokens WHERE expires < ?1", [day_ago])?;
            conn.execute(
                "DELETE FROM login_identities WHERE authenticated_at < ?1",
                [now - LOGIN_IDENTITY_KEPT],
            )?;
            Ok(())
        })
    }
}

impl EndpointStore for SqliteStore {
    // --- endpoints ---

    fn create_endpoint(&self, id: &str, owner_id: i64, display_name: &str, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO endpoints (id, owner_id, display_name, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, owner_id, display_name, now],
            )
            .map_err(taken("endpoint name"))?;
            Ok(())
        })
    }

    fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {} WHERE e.id = ?1", ENDPOINT_COLUMNS),
                    [id],
                    endpoint_row,
                )
                .optional()?)
        })
    }

    fn endpoint_by_name(&self, owner_id: i64, display_name: &str) -> Result<Option<EndpointRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {} WHERE e.owner_id = ?1 AND e.display_name = ?2 AND e.deleted = 0",
                        ENDPOINT_COLUMNS
                    ),
                    params![owner_id, display_name],
                    endpoint_row,
                )
                .optional()?)
        })
    }

    fn search_endpoints(
        &self,
        owner_id: Option<i64>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<EndpointRow>> {
        self.with_conn(|conn| {
            let pattern = format!(
                "%{}%",
                query
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            // SQLite's LIKE ignores ASCII case, PostgreSQL's does not:
            // lower() on both sides makes them agree.
            let mut stmt = conn.prepare(&format!(
                "SELECT {} WHERE (?1 IS NULL OR e.owner_id = ?1) AND e.deleted = 0
                 AND (lower(e.display_name) LIKE lower(?2) ESCAPE '\\' OR lower(e.id) LIKE lower(?2) ESCAPE '\\')
                 ORDER BY e.created, e.id LIMIT ?3",
                ENDPOINT_COLUMNS
            ))?;
            let rows = stmt.query_map(params![owner_id, pattern, limit as i64], endpoint_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn set_endpoint_cert(&self, id: &str, cert_sha256: &str, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE endpoints SET cert_sha256 = ?2, registered = ?3 WHERE id = ?1",
                params![id, cert_sha256, now],
            )?;
            Ok(())
        })
    }

    fn rename_endpoint(&self, id: &str, display_name: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn
                .execute(
                    "UPDATE endpoints SET display_name = ?2 WHERE id = ?1 AND deleted = 0",
                    params![id, display_name],
                )
                .map_err(taken("endpoint name"))?;
            Ok(n > 0)
        })
    }

    fn delete_endpoint(&self, id: &str) -> Result<DeleteOutcome> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let active = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM tasks WHERE status = 'ACTIVE' AND (source_id = ?1 OR destination_id = ?1)
                     ORDER BY created, seq",
                )?;
                stmt.query_map([id], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?
            };
            if !active.is_empty() {
                return Ok(DeleteOutcome::Busy(active));
            }
            let changed = tx.execute(
                "UPDATE endpoints SET deleted = 1, revoked = 1, display_name = display_name || ' (deleted ' || id || ')'
                 WHERE id = ?1 AND deleted = 0",
                [id],
            )?;
            tx.commit()?;
            Ok(if changed > 0 {
                DeleteOutcome::Deleted
            } else {
                DeleteOutcome::Missing
            })
        })
    }

    fn revoke_endpoint(&self, id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute("UPDATE endpoints SET revoked = 1 WHERE id = ?1", [id])? > 0)
        })
    }

    fn revoked_endpoint_count(&self) -> Result<u64> {
        self.with_conn(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM endpoints WHERE revoked = 1",
                [],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn revoked_endpoints(&self, limit: usize) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id FROM endpoints WHERE revoked = 1 ORDER BY created DESC, id LIMIT ?1",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let ids = stmt
                .query_map([limit], |r| r.get(0))?
                .collect::<std::result::Result<Vec<String>, _>>()?;
            Ok(ids)
        })
    }

    // --- setup keys ---

    fn put_setup_key(&self, key_hash: &str, endpoint_id: &str, expires: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO setup_keys (key_hash, endpoint_id, expires) VALUES (?1, ?2, ?3)",
                params![key_hash, endpoint_id, expires],
            )?;
            Ok(())
        })
    }

    fn take_setup_key(&self, key_hash: &str, now: i64) -> Result<SetupKeyUse> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let row: Option<(String, i64, bool, Option<String>)> = tx
                .query_row(
                    "SELECT endpoint_id, expires, used, node FROM setup_keys WHERE key_hash = ?1",
                    [key_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?)),
                )
                .optional()?;
            let outcome = match row {
                None => SetupKeyUse::Unknown,
                Some((endpoint_id, _, true, node)) => SetupKeyUse::Used { endpoint_id, node },
                Some((endpoint_id, expires, false, node)) if expires < now => {
                    SetupKeyUse::Expired { endpoint_id, node }
                }
                Some((endpoint_id, _, false, node)) => {
                    tx.execute(
                        "UPDATE setup_keys SET used = 1 WHERE key_hash = ?1",
                        [key_hash],
                    )?;
                    SetupKeyUse::Fresh { endpoint_id, node }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn add_endpoint_node(
        &self,
        endpoint_id: &str,
        name: &str,
        key_hash: &str,
        expires: i64,
        now: i64,
    ) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO endpoint_nodes (endpoint_id, name, created) VALUES (?1, ?2, ?3)",
                params![endpoint_id, name, now],
            )
            .map_err(taken("node name"))?;
            tx.execute(
                "INSERT INTO setup_keys (key_hash, endpoint_id, expires, node) VALUES (?1, ?2, ?3, ?4)",
                params![key_hash, endpoint_id, expires, name],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn endpoint_nodes(&self, endpoint_id: &str) -> Result<Vec<NodeRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT endpoint_id, name, cert_sha256, created, registered FROM endpoint_nodes
                 WHERE endpoint_id = ?1 ORDER BY created, name",
            )?;
            let rows = stmt
                .query_map([endpoint_id], |r| {
                    Ok(NodeRow {
                        endpoint_id: r.get(0)?,
                        name: r.get(1)?,
                        cert_sha256: r.get(2)?,
                        created: r.get(3)?,
                        registered: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn set_node_cert(
        &self,
        endpoint_id: &str,
        name: &str,
        cert_sha256: &str,
        now: i64,
    ) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE endpoint_nodes SET cert_sha256 = ?3, registered = ?4 WHERE endpoint_id = ?1 AND name = ?2",
                params![endpoint_id, name, cert_sha256, now],
            )?;
            Ok(n > 0)
        })
    }

    fn remove_endpoint_node(&self, endpoint_id: &str, name: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let n = tx.execute(
                "DELETE FROM endpoint_nodes WHERE endpoint_id = ?1 AND name = ?2",
                params![endpoint_id, name],
            )?;
            tx.execute(
                "UPDATE setup_keys SET used = 1 WHERE endpoint_id = ?1 AND node = ?2",
                params![endpoint_id, name],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }
}

const PERMISSION_COLUMNS: &str = "p.id, p.endpoint_id, p.path, p.mode, p.grantee_kind, p.grantee_user, u.name, p.grantee_group, g.name, p.expires, p.created, p.created_by
     FROM permissions p LEFT JOIN users u ON u.id = p.grantee_user LEFT JOIN user_groups g ON g.id = p.grantee_group";

fn permission_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PermissionRow> {
    let mode: String = r.get(3)?;
    let kind: String = r.get(4)?;
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, what.into())
    };
    let grantee = match kind.as_str() {
        "identity" => Grantee::Identity {
            user_id: r
                .get::<_, Option<i64>>(5)?
                .ok_or_else(|| bad("identity without a user".into()))?,
            name: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        },
        "group" => Grantee::Group {
            group_id: r
                .get::<_, Option<String>>(7)?
                .ok_or_else(|| bad("group without an id".into()))?,
            name: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
        },
        "all_authenticated" => Grantee::AllAuthenticated,
        "anonymous" => Grantee::Anonymous,
        other => return Err(bad(format!("grantee kind {other:?}"))),
    };
    Ok(PermissionRow {
        id: r.get(0)?,
        endpoint_id: r.get(1)?,
        path: r.get(2)?,
        mode: ShareMode::parse(&mode).ok_or_else(|| bad(format!("mode {mode:?}")))?,
        grantee,
        expires: r.get(9)?,
        created: r.get(10)?,
        created_by: r.get(11)?,
    })
}

/// The live permissions that reach user ?1 at ?2 (`p.` in scope): theirs,
/// their groups', everyone signed in's.
const REACHES_USER: &str = "(p.expires IS NULL OR p.expires >= ?2) AND (
       (p.grantee_kind = 'identity' AND p.grantee_user = ?1)
    OR (p.grantee_kind = 'group' AND p.grantee_group IN (SELECT group_id FROM group_members WHERE user_id = ?1))
    OR p.grantee_kind = 'all_authenticated')";

/// The columns [`client_row`] reads, in its order.
const CLIENT_COLUMNS: &str =
    "client_id, name, secret_hash, user_id, scopes, kind, owner_id, redirect_uris";

fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    let kind: String = r.get(5)?;
    let uris: String = r.get(7)?;
    Ok(ClientRow {
        client_id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        user_id: r.get(3)?,
        scopes: r.get(4)?,
        kind: ClientKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown client kind {kind:?}").into(),
            )
        })?,
        owner_id: r.get(6)?,
        redirect_uris: split_uris(&uris),
    })
}

impl AppStore for SqliteStore {
    fn add_service_account(
        &self,
        account: &str,
        password_hash: &str,
        client: &ClientRow,
        now: i64,
    ) -> Result<i64> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let user_id: i64 = tx
                .query_row(
                    "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3) RETURNING id",
                    params![account, password_hash, now],
                    |r| r.get(0),
                )
                .map_err(taken("user name"))?;
            tx.execute(
                "INSERT INTO clients (client_id, name, secret_hash, user_id, scopes, created, kind, owner_id, redirect_uris) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![client.client_id, client.name, client.secret_hash, user_id, client.scopes, now, client.kind.as_str(), client.owner_id, client.redirect_uris.join("\n")],
            )
            .map_err(taken("client id"))?;
            tx.commit()?;
            Ok(user_id)
        })
    }

    fn clients_of(&self, owner_id: i64) -> Result<Vec<ClientRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE owner_id = ?1 ORDER BY created, client_id"
            ))?;
            let rows = stmt.query_map([owner_id], client_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE clients SET secret_hash = ?2 WHERE client_id = ?1 AND secret_hash IS NOT NULL",
                params![client_id, secret_hash],
            )? > 0)
        })
    }

    fn delete_client(&self, client_id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE tokens SET revoked = 1 WHERE client_id = ?1",
                [client_id],
            )?;
            tx.execute("DELETE FROM auth_codes WHERE client_id = ?1", [client_id])?;
            tx.execute("DELETE FROM consents WHERE client_id = ?1", [client_id])?;
            let n = tx.execute("DELETE FROM clients WHERE client_id = ?1", [client_id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn put_consent(&self, user_id: i64, client_id: &str, scope: &str, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO consents (user_id, client_id, scope, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, created = excluded.created",
                params![user_id, client_id, scope, now],
            )?;
            Ok(())
        })
    }

    fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT scope FROM consents WHERE user_id = ?1 AND client_id = ?2",
                    params![user_id, client_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn consents_of(&self, user_id: i64) -> Result<Vec<ConsentRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT c.client_id, k.name, c.scope, c.created FROM consents c
                 JOIN clients k ON k.client_id = c.client_id
                 WHERE c.user_id = ?1 ORDER BY c.created, c.client_id",
            )?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(ConsentRow {
                    client_id: r.get(0)?,
                    client_name: r.get(1)?,
                    scope: r.get(2)?,
                    created: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn revoke_consent(&self, user_id: i64, client_id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let n = tx.execute(
                "DELETE FROM consents WHERE user_id = ?1 AND client_id = ?2",
                params![user_id, client_id],
            )?;
            tx.execute(
                "UPDATE tokens SET revoked = 1 WHERE user_id = ?1 AND client_id = ?2",
                params![user_id, client_id],
            )?;
            tx.execute(
                "DELETE FROM auth_codes WHERE user_id = ?1 AND client_id = ?2",
                params![user_id, client_id],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }
}

impl IdentityStore for SqliteStore {
    fn link_identity(&self, identity: &str, user_id: i64, provider: &str, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO identities (identity, user_id, provider, linked_at) VALUES (?1, ?2, ?3, ?4)",
                params![identity, user_id, provider, now],
            )
            .map_err(taken("identity"))?;
            Ok(())
        })
    }

    fn identity(&self, identity: &str) -> Result<Option<IdentityRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT identity, user_id, provider, linked_at FROM identities WHERE identity = ?1",
                    [identity],
                    identity_row,
                )
                .optional()?)
        })
    }

    fn identities_of(&self, user_id: i64) -> Result<Vec<IdentityRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT identity, user_id, provider, linked_at FROM identities WHERE user_id = ?1 ORDER BY linked_at, identity",
            )?;
            let rows = stmt.query_map([user_id], identity_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn note_login_identity(&self, login_id: &str, identity: &str, at: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO login_identities (login_id, identity, authenticated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (login_id, identity) DO UPDATE SET authenticated_at = excluded.authenticated_at",
                params![login_id, identity, at],
            )?;
            Ok(())
        })
    }

    fn login_identities(&self, login_id: &str) -> Result<Vec<(String, i64)>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT identity, authenticated_at FROM login_identities WHERE login_id = ?1 ORDER BY authenticated_at, identity",
            )?;
            let rows = stmt.query_map([login_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_allowed_domains(&self, endpoint_id: &str, domains: &[String]) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE endpoints SET allowed_domains = ?2 WHERE id = ?1 AND deleted = 0",
                params![endpoint_id, domains.join(",")],
            )?;
            Ok(n > 0)
        })
    }
}

fn identity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        identity: r.get(0)?,
        user_id: r.get(1)?,
        provider: r.get(2)?,
        linked_at: r.get(3)?,
    })
}

impl ShareStore for SqliteStore {
    fn create_group(&self, id: &str, name: &str, owner_id: i64, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO user_groups (id, name, owner_id, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, owner_id, now],
            )
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict { .. } => StoreError::Conflict { what: "group name" },
                other => other,
            })?;
            Ok(())
        })
    }

    fn group_by_name(&self, name: &str) -> Result<Option<GroupRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT g.id, g.name, g.owner_id, u.name FROM user_groups g JOIN users u ON u.id = g.owner_id WHERE g.name = ?1",
                    [name],
                    |r| {
                        Ok(GroupRow {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            owner_id: r.get(2)?,
                            owner_name: r.get(3)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn add_group_member(&self, group_id: &str, user_id: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let added = conn.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![group_id, user_id],
            )?;
            Ok(added == 1)
        })
    }

    fn remove_group_member(&self, group_id: &str, user_id: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let removed = conn.execute(
                "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                params![group_id, user_id],
            )?;
            Ok(removed == 1)
        })
    }

    fn groups_of(&self, user_id: i64) -> Result<Vec<GroupListing>> {
        self.with_conn(|conn| {
            let mut groups = conn.prepare(
                "SELECT g.id, g.name, u.name FROM user_groups g JOIN users u ON u.id = g.owner_id
                 WHERE g.owner_id = ?1 OR g.id IN (SELECT group_id FROM group_members WHERE user_id = ?1)
                 ORDER BY g.name",
            )?;
            let found = groups
                .query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<(String, String, String)>>>()?;
            let mut members = conn.prepare(
                "SELECT u.name FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ?1 ORDER BY u.name",
            )?;
            let mut listed = Vec::with_capacity(found.len());
            for (id, name, owner_name) in found {
                let names = members
                    .query_map([&id], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                listed.push(GroupListing {
                    name,
                    owner_name,
                    members: names,
                });
            }
            Ok(listed)
        })
    }

    fn put_permission(&self, p: &PermissionRow) -> Result<()> {
        let (user, group) = match &p.grantee {
            Grantee::Identity { user_id, .. } => (Some(*user_id), None),
            Grantee::Group { group_id, .. } => (None, Some(group_id.as_str())),
            Grantee::AllAuthenticated | Grantee::Anonymous => (None, None),
        };
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO permissions (id, endpoint_id, path, mode, grantee_kind, grantee_user, grantee_group, expires, created, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![p.id, p.endpoint_id, p.path, p.mode.as_str(), p.grantee.kind(), user, group, p.expires, p.created, p.created_by],
            )?;
            Ok(())
        })
    }

    fn permission(&self, id: &str) -> Result<Option<PermissionRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {PERMISSION_COLUMNS} WHERE p.id = ?1"),
                    [id],
                    permission_row,
                )
                .optional()?)
        })
    }

    fn endpoint_permissions(&self, endpoint_id: &str, now: i64) -> Result<Vec<PermissionRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {PERMISSION_COLUMNS} WHERE p.endpoint_id = ?1 AND (p.expires IS NULL OR p.expires >= ?2)
                 ORDER BY p.created, p.id"
            ))?;
            let rows = statement.query_map(params![endpoint_id, now], permission_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn delete_permission(&self, endpoint_id: &str, id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let deleted = conn.execute(
                "DELETE FROM permissions WHERE endpoint_id = ?1 AND id = ?2",
                params![endpoint_id, id],
            )?;
            Ok(deleted == 1)
        })
    }

    fn permissions_for(
        &self,
        user_id: i64,
        endpoint_id: &str,
        now: i64,
    ) -> Result<Vec<PermissionRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {PERMISSION_COLUMNS} WHERE p.endpoint_id = ?3 AND {REACHES_USER} ORDER BY p.created, p.id"
            ))?;
            let rows = statement.query_map(params![user_id, now, endpoint_id], permission_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn shared_with(
        &self,
        user_id: i64,
        query: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<EndpointRow>> {
        self.with_conn(|conn| {
            let pattern = format!(
                "%{}%",
                query
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let mut statement = conn.prepare(&format!(
                "SELECT {ENDPOINT_COLUMNS} WHERE e.deleted = 0 AND e.owner_id <> ?1
                 AND (lower(e.display_name) LIKE lower(?3) ESCAPE '\\' OR lower(e.id) LIKE lower(?3) ESCAPE '\\')
                 AND e.id IN (SELECT p.endpoint_id FROM permissions p WHERE {REACHES_USER})
                 ORDER BY e.created, e.id LIMIT ?4"
            ))?;
            let rows =
                statement.query_map(params![user_id, now, pattern, limit as i64], endpoint_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn put_task_grant(&self, task_id: &str, side: &str, permission_id: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO task_grants (task_id, side, permission_id) VALUES (?1, ?2, ?3)",
                params![task_id, side, permission_id],
            )?;
            Ok(())
        })
    }

    fn task_grants(&self, task_id: &str) -> Result<Vec<(String, String)>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT side, permission_id FROM task_grants WHERE task_id = ?1 ORDER BY side",
            )?;
            let rows = statement.query_map([task_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn active_tasks_of_permission(&self, permission_id: &str) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT t.id FROM task_grants g JOIN tasks t ON t.id = g.task_id
                 WHERE g.permission_id = ?1 AND t.status = 'ACTIVE' ORDER BY t.seq",
            )?;
            let rows = statement.query_map([permission_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn put_link(&self, l: &LinkRow) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO links (id, token_hash, endpoint_id, path, created_by, created, expires, deleted, max_bytes, bytes_served)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![l.id, l.token_hash, l.endpoint_id, l.path, l.created_by, l.created, l.expires, l.deleted, l.max_bytes, l.bytes_served],
            )?;
            Ok(())
        })
    }

    fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {LINK_COLUMNS} FROM links WHERE token_hash = ?1"),
                    [token_hash],
                    link_row,
                )
                .optional()?)
        })
    }

    fn links_of(&self, user_id: i64) -> Result<Vec<LinkRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE created_by = ?1 AND deleted = 0 ORDER BY created, id"
            ))?;
            let rows = statement.query_map([user_id], link_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn delete_link(&self, user_id: i64, id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE links SET deleted = 1 WHERE id = ?1 AND created_by = ?2 AND deleted = 0",
                params![id, user_id],
            )? == 1)
        })
    }

    fn charge_link(&self, id: &str, bytes: i64) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE links SET bytes_served = bytes_served + ?2
                 WHERE id = ?1 AND (max_bytes IS NULL OR bytes_served + ?2 <= max_bytes)",
                params![id, bytes],
            )? == 1)
        })
    }
}

const LINK_COLUMNS: &str = "id, token_hash, endpoint_id, path, created_by, created, expires, deleted, max_bytes, bytes_served";

fn link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRow> {
    Ok(LinkRow {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        endpoint_id: r.get(2)?,
        path: r.get(3)?,
        created_by: r.get(4)?,
        created: r.get(5)?,
        expires: r.get(6)?,
        deleted: r.get(7)?,
        max_bytes: r.get(8)?,
        bytes_served: r.get(9)?,
    })
}

impl AuditStore for SqliteStore {
    fn record_audit(&self, events: &[AuditRow]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO audit_events (time, endpoint_id, actor_id, identity, action, path, task_id, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for e in events {
                    insert.execute(params![
                        e.time,
                        e.endpoint_id,
                        e.actor_id,
                        e.identity,
                        e.action,
                        e.path,
                        e.task_id,
                        e.detail
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn audit_events(&self, endpoint_id: &str, since: i64, limit: usize) -> Result<Vec<AuditRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT time, endpoint_id, actor_id, identity, action, path, task_id, detail FROM audit_events
                 WHERE endpoint_id = ?1 AND time >= ?2 ORDER BY time DESC, id DESC LIMIT ?3",
            )?;
            let rows = statement.query_map(
                params![endpoint_id, since, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(AuditRow {
                        time: r.get(0)?,
                        endpoint_id: r.get(1)?,
                        actor_id: r.get(2)?,
                        identity: r.get(3)?,
                        action: r.get(4)?,
                        path: r.get(5)?,
                        task_id: r.get(6)?,
                        detail: r.get(7)?,
                    })
                },
            )?;
            let mut newest_first = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            newest_first.reverse();
            Ok(newest_first)
        })
    }

    fn prune_audit(&self, before: i64, limit: usize) -> Result<u64> {
        self.with_conn(|conn| {
            let gone = conn.execute(
                "DELETE FROM audit_events WHERE id IN
                 (SELECT id FROM audit_events WHERE time < ?1 ORDER BY time LIMIT ?2)",
                params![before, i64::try_from(limit).unwrap_or(i64::MAX)],
            )?;
            Ok(gone as u64)
        })
    }

    fn unrecorded_expiries(&self, now: i64, limit: usize) -> Result<Vec<PermissionRow>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {PERMISSION_COLUMNS} WHERE p.expires < ?1 AND p.expiry_recorded = 0
                 ORDER BY p.expires, p.id LIMIT ?2"
            ))?;
            let rows = statement.query_map(
                params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
                permission_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn record_expiry(&self, permission_id: &str, event: &AuditRow) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let marked = tx.execute(
                "UPDATE permissions SET expiry_recorded = 1 WHERE id = ?1 AND expiry_recorded = 0",
                [permission_id],
            )?;
            if marked > 0 {
                let e = event;
                tx.execute(
                    "INSERT INTO audit_events (time, endpoint_id, actor_id, identity, action, path, task_id, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![e.time, e.endpoint_id, e.actor_id, e.identity, e.action, e.path, e.task_id, e.detail],
                )?;
            }
            tx.commit()?;
            Ok(marked > 0)
        })
    }
}

/// A stored notification set; one this hub cannot read (written by a
/// newer one) tells nothing rather than failing the task's end.
fn notify_events(text: &str) -> NotifyEvents {
    NotifyEvents::parse(text).unwrap_or(NotifyEvents::NONE)
}

fn webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookRow> {
    Ok(WebhookRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        url: r.get(2)?,
        events: notify_events(&r.get::<_, String>(3)?),
        secret: r.get(4)?,
        created: r.get(5)?,
    })
}

impl NotifyStore for SqliteStore {
    fn set_user_email(&self, user_id: i64, email: Option<&str>) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE users SET email = ?2 WHERE id = ?1",
                params![user_id, email],
            )? > 0)
        })
    }

    fn user_email(&self, user_id: i64) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row("SELECT email FROM users WHERE id = ?1", [user_id], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .flatten())
        })
    }

    fn claim_task_notice(&self, task_id: &str, notice: &str) -> Result<Option<NotifyEvents>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "UPDATE tasks SET notified = ?2 WHERE id = ?1 AND notified IS NOT ?2
                     RETURNING notify",
                    params![task_id, notice],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .map(|text| notify_events(&text)))
        })
    }

    fn rearm_task_notice(&self, task_id: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE tasks SET notified = NULL WHERE id = ?1 AND notified = 'INACTIVE'",
                [task_id],
            )?;
            Ok(())
        })
    }

    fn put_webhook(&self, w: &WebhookRow) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO webhooks (id, owner_id, url, events, secret, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    w.id,
                    w.owner_id,
                    w.url,
                    w.events.to_string(),
                    w.secret,
                    w.created
                ],
            )
            .map_err(taken("webhook id"))?;
            Ok(())
        })
    }

    fn webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, owner_id, url, events, secret, created FROM webhooks WHERE id = ?1",
                    [id],
                    webhook_row,
                )
                .optional()?)
        })
    }

    fn webhooks_of(&self, owner_id: i64) -> Result<Vec<WebhookRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, owner_id, url, events, secret, created FROM webhooks
                 WHERE owner_id = ?1 ORDER BY created, id",
            )?;
            let rows = stmt.query_map([owner_id], webhook_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn delete_webhook(&self, id: &str) -> Result<bool> {
        self.with_conn(|conn| Ok(conn.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0))
    }
}

impl TaskStore for SqliteStore {
    // --- tasks ---

    fn create_task(&self, task: &NewTask, code: &str, event: &str) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let o = &task.options;
            // `seq` numbers tasks in order of submission; writes are
            // serialized (one connection, in a transaction), so the next
            // number is free.
            tx.execute(
                "INSERT INTO tasks (id, seq, owner_id, source_id, destination_id, item_count,
                    sync_level, delete_extraneous, preserve_mtime, preserve_mode, skip_source_errors, streams,
                    checksum_algorithm, label, deadline, status, created, bwlimit, notify, on_success,
                    submission_id)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), ?2, ?3, ?4, ?5,
                    ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'ACTIVE', ?15, ?16, ?17, ?18, ?19)",
                params![
                    task.id,
                    task.owner_id,
                    task.source_id,
                    task.destination_id,
                    sql_u64(task.items.len() as u64),
                    sync_level_text(o.sync_level),
                    o.delete,
                    o.preserve_mtime,
                    o.preserve_mode,
                    o.skip_source_errors,
                    o.streams,
                    o.checksum_algorithm.as_str(),
                    task.label,
                    task.deadline,
                    task.created,
                    o.bwlimit.map(sql_u64),
                    task.notify.to_string(),
                    o.on_success,
                    task.submission_id
                ],
            )?;
            write_items(&tx, &task.id, &task.items)?;
            write_filters(&tx, &task.id, &o.filters)?;
            tx.execute(
                "INSERT INTO task_events (task_id, seq, time, code, description) VALUES (?1, 1, ?2, ?3, ?4)",
                params![task.id, task.created, code, event],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {} WHERE t.id = ?1", TASK_COLUMNS),
                    [id],
                    task_row,
                )
                .optional()?)
        })
    }

    fn task_by_submission(&self, owner_id: i64, submission_id: &str) -> Result<Option<TaskRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {} WHERE t.owner_id = ?1 AND t.submission_id = ?2",
                        TASK_COLUMNS
                    ),
                    params![owner_id, submission_id],
                    task_row,
                )
                .optional()?)
        })
    }

    fn tasks_with_prefix(&self, owner_id: i64, prefix: &str, limit: usize) -> Result<Vec<TaskRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} WHERE t.owner_id = ?1 AND substr(t.id, 1, length(?2)) = ?2
                 ORDER BY t.created, t.seq LIMIT ?3",
                TASK_COLUMNS
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![owner_id, prefix, limit], task_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn tasks_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TaskRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} WHERE t.owner_id = ?1 ORDER BY t.created DESC, t.seq DESC LIMIT ?2",
                TASK_COLUMNS
            ))?;
            let rows = stmt.query_map(params![owner_id, limit as i64], task_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    #[cfg(test)]
    fn active_tasks(&self) -> Result<Vec<ActiveTask>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.id, t.source_id, s.display_name, s.revoked, t.destination_id, d.display_name, d.revoked, t.attempt, t.deadline
                 FROM tasks t JOIN endpoints s ON s.id = t.source_id JOIN endpoints d ON d.id = t.destination_id
                 WHERE t.status = 'ACTIVE' ORDER BY t.created, t.seq",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ActiveTask {
                    id: r.get(0)?,
                    source_id: r.get(1)?,
                    source_name: r.get(2)?,
                    source_revoked: r.get::<_, i64>(3)? != 0,
                    destination_id: r.get(4)?,
                    destination_name: r.get(5)?,
                    destination_revoked: r.get::<_, i64>(6)? != 0,
                    attempt: u32::try_from(r.get::<_, i64>(7)?).unwrap_or_default(),
                    deadline: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn task_work(&self, id: &str) -> Result<Option<TaskWork>> {
        self.with_conn(|conn| {
            // One read transaction: the options and the items of one state.
            let tx = conn.transaction()?;
            let Some((sync_level, algorithm, options)) = tx
                .query_row(
                    "SELECT sync_level, checksum_algorithm, delete_extraneous, preserve_mtime, preserve_mode,
                        skip_source_errors, streams, bwlimit, on_success
                     FROM tasks WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, String>(1)?,
                            TransferOptions {
                                sync_level: None,
                                delete: r.get(2)?,
                                preserve_mtime: r.get(3)?,
                                preserve_mode: r.get(4)?,
                                skip_source_errors: r.get(5)?,
                                streams: r.get(6)?,
                                filters: Vec::new(),
                                bwlimit: r.get::<_, Option<i64>>(7)?.map(u64_of),
                                checksum_algorithm: ChecksumAlgorithm::Sha256,
                                on_success: r.get(8)?,
                            },
                        ))
                    },
                )
                .optional()?
            else {
                return Ok(None);
            };
            let checksum_algorithm = ChecksumAlgorithm::parse(&algorithm).ok_or_else(|| {
                StoreError::Internal(format!(
                    "task {id} has an unknown checksum algorithm {algorithm:?}"
                ))
            })?;
            let sync_level = match sync_level {
                None => None,
                Some(text) => Some(SyncLevel::parse(&text).ok_or_else(|| {
                    StoreError::Internal(format!("task {id} has an unknown sync level {text:?}"))
                })?),
            };
            let items = {
                let mut stmt = tx.prepare(
                    "SELECT source, destination, recursive FROM task_items WHERE task_id = ?1 ORDER BY item",
                )?;
                stmt.query_map([id], |r| {
                    Ok(TransferItem {
                        source: WirePath::from_bytes(r.get::<_, Vec<u8>>(0)?),
                        destination: WirePath::from_bytes(r.get::<_, Vec<u8>>(1)?),
                        recursive: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let filters = {
                let mut stmt = tx.prepare(
                    "SELECT action, pattern FROM task_filters WHERE task_id = ?1 ORDER BY rule",
                )?;
                let rows = stmt.query_map([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?;
                let mut filters = Vec::new();
                for row in rows {
                    let (action, pattern) = row?;
                    let action = match action.as_str() {
                        "include" => FilterAction::Include,
                        "exclude" => FilterAction::Exclude,
                        other => {
                            return Err(StoreError::Internal(format!(
                                "task {id} has an unknown filter action {other:?}"
                            )));
                        }
                    };
                    let pattern = WirePath::from_bytes(pattern);
                    filters.push(FilterRule { action, pattern });
                }
                filters
            };
            Ok(Some(TaskWork {
                items,
                options: TransferOptions {
                    sync_level,
                    filters,
                    checksum_algorithm,
                    ..options
                },
            }))
        })
    }

    fn begin_attempt(&self, id: &str, attempt: u32) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                &format!(
                    "UPDATE tasks SET attempt = ?2, nodes = 1, {FOLD_CURRENT} WHERE id = ?1 AND status = 'ACTIVE'"
                ),
                params![id, attempt],
            )? > 0)
        })
    }

    fn spread_attempt(&self, id: &str, attempt: u32, nodes: u32) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE tasks SET nodes = ?3 WHERE id = ?1 AND attempt = ?2 AND status = 'ACTIVE'",
                params![id, attempt, nodes],
            )? > 0)
        })
    }

    fn set_progress(&self, id: &str, attempt: u32, counters: &TaskCounters) -> Result<bool> {
        self.with_conn(|conn| Ok(write_current(conn, id, Some(attempt), counters)? > 0))
    }

    fn end_attempt(&self, id: &str, attempt: u32, fault: Option<&str>) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                &format!(
                    "UPDATE tasks SET {FOLD_CURRENT},
                        faults = faults + ?4, last_fault = COALESCE(?3, last_fault)
                     WHERE id = ?1 AND attempt = ?2 AND status = 'ACTIVE'"
                ),
                params![id, attempt, fault, i64::from(fault.is_some())],
            )? > 0)
        })
    }

    fn note_fault(&self, id: &str, fault: &str) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.execute(
                "UPDATE tasks SET faults = faults + 1, last_fault = ?2 WHERE id = ?1 AND status = 'ACTIVE'",
                params![id, fault],
            )? > 0)
        })
    }

    fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        last: Option<&TaskCounters>,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            if let Some(c) = last {
                write_current(&tx, id, None, c)?;
            }
            let ended = tx.execute(
                &format!(
                    "UPDATE tasks SET {FOLD_CURRENT}, status = ?2, completed = ?3, fatal_error = ?4
                     WHERE id = ?1 AND status = 'ACTIVE'"
                ),
                params![id, status.as_str(), now, error],
            )? > 0;
            tx.commit()?;
            Ok(ended)
        })
    }

    fn add_task_event(
        &self,
        id: &str,
        code: &str,
        description: &str,
        now: i64,
        always: bool,
    ) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let count: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM task_events WHERE task_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let count = u64_of(count);
            let (code, description) = if always || count + 1 < MAX_TASK_EVENTS {
                (code, description)
            } else if count + 1 == MAX_TASK_EVENTS {
                (
                    "EVENTS_TRUNCATED",
                    "too many events: further ones are not recorded, except how the task ends",
                )
            } else {
                return Ok(());
            };
            tx.execute(
                "INSERT INTO task_events (task_id, seq, time, code, description) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, sql_u64(count + 1), now, code, description],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn add_task_bytes_relayed(&self, id: &str, bytes: u64) -> Result<()> {
        self.with_conn(|conn| {
            // Saturating: a counter beyond i64 sticks at the top.
            conn.execute(
                "UPDATE tasks SET bytes_relayed = CASE
                     WHEN bytes_relayed > 9223372036854775807 - ?2 THEN 9223372036854775807
                     ELSE bytes_relayed + ?2 END
                 WHERE id = ?1",
                params![id, sql_u64(bytes)],
            )?;
            Ok(())
        })
    }

    fn task_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, time, code, description FROM task_events WHERE task_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit as i64], |r| {
                Ok(TaskEventRow {
                    seq: u64_of(r.get(0)?),
                    time: r.get(1)?,
                    code: r.get(2)?,
                    description: r.get(3)?,
                })
            })?;
            let mut events: Vec<TaskEventRow> = rows.collect::<rusqlite::Result<_>>()?;
            events.reverse();
            Ok(events)
        })
    }

    fn task_stats(&self) -> Result<Vec<TaskStats>> {
        self.with_conn(|conn| {
            // Each task's totals are the furthest of its ended and running
            // attempts (CASE, not SQLite's scalar max(): one SQL for both
            // backends).
            let mut stmt = conn.prepare(
                "SELECT status, COUNT(*),
                        COALESCE(SUM(CASE WHEN bytes_transferred > cur_bytes_transferred
                            THEN bytes_transferred ELSE cur_bytes_transferred END), 0),
                        COALESCE(SUM(CASE WHEN files_transferred > cur_files_transferred
                            THEN files_transferred ELSE cur_files_transferred END), 0)
                 FROM tasks GROUP BY status ORDER BY status",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u64_of(r.get(1)?),
                    u64_of(r.get(2)?),
                    u64_of(r.get(3)?),
                ))
            })?;
            let mut stats = Vec::new();
            for row in rows {
                let (status, tasks, bytes_transferred, files_transferred) = row?;
                // The CHECK constraint admits no other status.
                if let Some(status) = TaskStatus::parse(&status) {
                    stats.push(TaskStats {
                        status,
                        tasks,
                        bytes_transferred,
                        files_transferred,
                    });
                }
            }
            Ok(stats)
        })
    }
}

const TIMER_COLUMNS: &str = "id, owner_id, submission, label, interval_secs, start, stop_after_runs,
    stop_after_date, run_deadline, created, next_run, runs, skipped, last_task_id, status FROM timers";

fn timer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TimerRow> {
    let status: String = r.get(14)?;
    Ok(TimerRow {
        timer: NewTimer {
            id: r.get(0)?,
            owner_id: r.get(1)?,
            submission: r.get(2)?,
            label: r.get(3)?,
            interval: r.get(4)?,
            start: r.get(5)?,
            stop_after_runs: r.get::<_, Option<i64>>(6)?.map(u64_of),
            stop_after_date: r.get(7)?,
            run_deadline: r.get(8)?,
            created: r.get(9)?,
        },
        next_run: r.get(10)?,
        runs: u64_of(r.get(11)?),
        skipped: u64_of(r.get(12)?),
        last_task_id: r.get(13)?,
        status: if status == "active" {
            TimerStatus::Active
        } else {
            TimerStatus::Finished
        },
    })
}

impl TimerStore for SqliteStore {
    fn create_timer(&self, t: &NewTimer) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO timers (id, owner_id, submission, label, interval_secs, start, stop_after_runs,
                    stop_after_date, run_deadline, created, next_run, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?6, 'active')",
                params![
                    t.id,
                    t.owner_id,
                    t.submission,
                    t.label,
                    t.interval,
                    t.start,
                    t.stop_after_runs.map(sql_u64),
                    t.stop_after_date,
                    t.run_deadline,
                    t.created
                ],
            )
            .map_err(taken("timer id"))?;
            Ok(())
        })
    }

    fn timer(&self, id: &str) -> Result<Option<TimerRow>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {TIMER_COLUMNS} WHERE id = ?1"),
                    [id],
                    timer_row,
                )
                .optional()?)
        })
    }

    fn timers_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TimerRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {TIMER_COLUMNS} WHERE owner_id = ?1 ORDER BY created, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![owner_id, limit as i64], timer_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {TIMER_COLUMNS} WHERE status = 'active' AND next_run <= ?1 ORDER BY next_run, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit as i64], timer_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn claim_timer_run(
        &self,
        id: &str,
        due: i64,
        next: Option<i64>,
        skipped: bool,
    ) -> Result<bool> {
        self.with_conn(|conn| {
            let status = if next.is_some() { "active" } else { "finished" };
            let changed = conn.execute(
                "UPDATE timers SET next_run = ?3, status = ?4, skipped = skipped + ?5
                 WHERE id = ?1 AND status = 'active' AND next_run = ?2",
                params![id, due, next, status, i64::from(skipped)],
            )?;
            Ok(changed == 1)
        })
    }

    fn record_timer_run(&self, id: &str, task_id: &str) -> Result<()> {
        self.with_conn(|conn| {
            let changed = conn.execute(
                "UPDATE timers SET runs = runs + 1, last_task_id = ?2 WHERE id = ?1",
                params![id, task_id],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn add_timer_event(&self, id: &str, code: &str, description: &str, now: i64) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM timer_events WHERE timer_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO timer_events (timer_id, seq, time, code, description) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, last + 1, now, code, description],
            )?;
            tx.execute(
                "DELETE FROM timer_events WHERE timer_id = ?1 AND seq <= ?2",
                params![id, last + 1 - sql_u64(MAX_TIMER_EVENTS)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn timer_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, time, code, description FROM timer_events WHERE timer_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit as i64], |r| {
                Ok(TaskEventRow {
                    seq: u64_of(r.get(0)?),
                    time: r.get(1)?,
                    code: r.get(2)?,
                    description: r.get(3)?,
                })
            })?;
            let mut events: Vec<TaskEventRow> = rows.collect::<rusqlite::Result<_>>()?;
            events.reverse();
            Ok(events)
        })
    }

    fn delete_timer(&self, id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM timer_events WHERE timer_id = ?1", [id])?;
            let deleted = tx.execute("DELETE FROM timers WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(deleted == 1)
        })
    }
}

/// Sets the running attempt's counters of ACTIVE task `id` (only if
/// `attempt` is the running one, when given); returns the rows changed.
fn write_current(
    conn: &Connection,
    id: &str,
    attempt: Option<u32>,
    c: &TaskCounters,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tasks SET cur_files = ?3, cur_files_transferred = ?4, cur_files_skipped = ?5,
            cur_bytes_transferred = ?6, cur_bytes = ?7, cur_bytes_resent = ?8, cur_walk_done = ?9,
            cur_bytes_skipped = ?10
         WHERE id = ?1 AND (?2 IS NULL OR attempt = ?2) AND status = 'ACTIVE'",
        params![
            id,
            attempt,
            sql_u64(c.files),
            sql_u64(c.files_transferred),
            sql_u64(c.files_skipped),
            sql_u64(c.bytes_transferred),
            sql_u64(c.bytes),
            sql_u64(c.bytes_resent),
            c.walk_done,
            sql_u64(c.bytes_skipped),
        ],
    )
}

mod cluster;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, counters, new_task};

    fn store_with_user() -> (SqliteStore, i64) {
        let s = SqliteStore::in_memory().unwrap();
        let uid = s.add_user("alice", "hash", 0).unwrap();
        (s, uid)
    }

    /// A database as a hub of schema `version` left it, with alice and
    /// her endpoints e1 ("laptop") and e2 ("cluster").
    fn database_at(path: &Path, version: usize) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        for migration in &MIGRATIONS[..version] {
            let tx = conn.transaction().unwrap();
            match migration {
                Migration::Sql(sql) => tx.execute_batch(sql).unwrap(),
                Migration::Code(step) => step(&tx, 0).unwrap(),
            }
            tx.commit().unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO users (name, password_hash, created) VALUES ('alice', 'h', 0);
             INSERT INTO endpoints (id, owner_id, display_name, created) VALUES ('e1', 1, 'laptop', 0);
             INSERT INTO endpoints (id, owner_id, display_name, created) VALUES ('e2', 1, 'cluster', 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version as i64],
        )
        .unwrap();
        conn
    }

    #[test]
    fn migrations_are_idempotent_and_refuse_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        SqliteStore::open(&path)
            .unwrap()
            .add_user("a", "h", 0)
            .unwrap();
        assert!(
            SqliteStore::open(&path)
                .unwrap()
                .user_by_name("a")
                .unwrap()
                .is_some()
        );
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer ferry-hub"), "{err}");
    }

    #[test]
    fn sqlite_errors_say_what_a_caller_can_do_about_them() {
        let sqlite = |code| {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
        ] {
            assert!(sqlite(code).is_transient(), "{code}");
        }
        assert!(matches!(
            sqlite(rusqlite::ffi::SQLITE_CORRUPT),
            StoreError::Internal(_)
        ));
    }

    #[test]
    fn a_request_that_crashed_holding_the_database_leaves_it_usable() {
        let (s, _) = store_with_user();
        let s = std::sync::Arc::new(s);
        let held = s.clone();
        std::thread::spawn(move || {
            let _conn = held.lock().unwrap();
            panic!("a request crashed");
        })
        .join()
        .unwrap_err();
        assert!(matches!(
            s.user_by_name("alice"),
            Err(StoreError::Unavailable(_))
        ));
        assert!(s.user_by_name("alice").unwrap().is_some());
    }

    #[test]
    fn migration_three_folds_a_running_attempts_counters_as_they_were_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let conn = database_at(&path, 2);
            conn.execute_batch(
                "INSERT INTO tasks (id, owner_id, source_id, destination_id, items, item_count, options, status,
                     attempt, files, files_transferred, files_skipped, bytes_transferred,
                     cur_files, cur_files_transferred, cur_files_skipped, cur_bytes_transferred, created)
                 VALUES ('t1', 1, 'e1', 'e2', '[]', 1, '{}', 'ACTIVE', 2, 10, 4, 0, 400, 10, 3, 0, 300, 0);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let row = s.task("t1").unwrap().unwrap();
        assert_eq!(row.totals(), counters(10, 7, 0, 700));
        assert_eq!(row.current, TaskCounters::default());
    }

    #[test]
    fn later_migrations_bring_an_existing_database_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        // A database as the first release left it.
        database_at(&path, 1);
        let s = SqliteStore::open(&path).unwrap();
        let version: i64 = s
            .lock()
            .unwrap()
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert!(s.user_by_name("alice").unwrap().is_some());
        assert!(!s.endpoint("e1").unwrap().unwrap().deleted);
        s.create_task(&new_task("t1", 1, 5), "SUBMITTED", "1 item")
            .unwrap();
        let row = s.task("t1").unwrap().unwrap();
        assert_eq!(
            (row.source_name.as_str(), row.destination_name.as_str()),
            ("laptop", "cluster")
        );
        assert_eq!(row.status, TaskStatus::Active);
    }

    #[test]
    fn the_audit_log_takes_over_the_record_of_sharing_changes() {
        let audit = MIGRATIONS
            .iter()
            .position(
                |m| matches!(m, Migration::Sql(sql) if sql.contains("CREATE TABLE audit_events")),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        database_at(&path, audit)
            .execute_batch(
                "INSERT INTO share_events (id, time, actor_id, endpoint_id, action, detail)
                 VALUES ('b', 7, 1, 'e1', 'share_deleted', 'permission p1'),
                        ('a', 5, 1, 'e1', 'share_created', '/~/d r with identity bob (permission p1)'),
                        ('c', 9, NULL, 'e1', 'share_refused', '/x: no')",
            )
            .unwrap();
        let s = SqliteStore::open(&path).unwrap();
        let moved: Vec<(i64, String, String, String)> = s
            .audit_events("e1", 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.time, e.identity, e.action, e.detail))
            .collect();
        assert_eq!(
            moved,
            [
                (
                    5,
                    "alice".into(),
                    "permission_create".into(),
                    "/~/d r with identity bob (permission p1)".into()
                ),
                (
                    7,
                    "alice".into(),
                    "permission_delete".into(),
                    "permission p1".into()
                ),
                (
                    9,
                    String::new(),
                    "permission_refused".into(),
                    "/x: no".into()
                ),
            ]
        );
        let left: i64 = s
            .lock()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'share_events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "one place, not two");
    }

    #[test]
    fn migration_five_moves_json_tasks_into_columns_and_rows() {
        use ferry_proto::task::SyncLevel;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let item = |source: &[u8], destination: &[u8], recursive| TransferItem {
            source: WirePath::from_bytes(source),
            destination: WirePath::from_bytes(destination),
            recursive,
        };
        let items = vec![
            item(
                b"/data/r\xe9sum\xe9/\xff\xfe",
                b"/in/caf\xc3\xa9 100%",
                true,
            ),
            item(b"/data/plain.txt", b"/in/plain.txt", false),
            item(b"", b"/in/%25 not an escape", false),
        ];
        let options = TransferOptions {
            sync_level: Some(SyncLevel::Mtime),
            delete: true,
            preserve_mtime: false,
            preserve_mode: true,
            skip_source_errors: true,
            streams: Some(8),
            checksum_algorithm: ChecksumAlgorithm::Sha256,
            ..TransferOptions::default()
        };
        {
            // Schema 4, with tasks as hubs before schema 5 stored them: the
            // wire types' JSON, as task_service wrote it.
            let conn = database_at(&path, 4);
            let insert = "INSERT INTO tasks (id, owner_id, source_id, destination_id, items, item_count, options, label, status, created)
                          VALUES (?1, 1, 'e1', 'e2', ?2, ?3, ?4, ?5, ?6, ?7)";
            conn.execute(
                insert,
                params![
                    "t1",
                    serde_json::to_string(&items).unwrap(),
                    3,
                    serde_json::to_string(&options).unwrap(),
                    "",
                    "ACTIVE",
                    5
                ],
            )
            .unwrap();
            // What older tests and hand-made rows hold: defaults left out.
            conn.execute(
                insert,
                params!["t2", "[]", 0, "{}", None::<String>, "SUCCEEDED", 5],
            )
            .unwrap();
            // A damaged row: an ACTIVE task that could never start.
            conn.execute(
                insert,
                params!["t3", "[{\"source\":", 1, "{}", "x", "ACTIVE", 6],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO task_events (task_id, seq, time, code, description) VALUES ('t3', 1, 6, 'SUBMITTED', 'x')",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let work = s.task_work("t1").unwrap().unwrap();
        assert_eq!(work.items, items, "path bytes survive, non-UTF-8 ones too");
        assert_eq!(work.options, options);
        let row = s.task("t1").unwrap().unwrap();
        assert_eq!(
            (row.status, row.item_count, row.label.as_deref()),
            (TaskStatus::Active, 3, Some(""))
        );
        assert_eq!(
            s.task_work("t2").unwrap().unwrap(),
            TaskWork {
                items: Vec::new(),
                options: TransferOptions::default()
            }
        );
        assert_eq!(s.task("t2").unwrap().unwrap().status, TaskStatus::Succeeded);
        let damaged = s.task("t3").unwrap().unwrap();
        assert_eq!(damaged.status, TaskStatus::Failed);
        assert!(
            damaged
                .fatal_error
                .as_deref()
                .unwrap()
                .contains("unreadable"),
            "{damaged:?}"
        );
        let events = s.task_events("t3", 10).unwrap();
        assert_eq!(
            events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(),
            ["SUBMITTED", "FAILED"]
        );
        assert_eq!(
            s.active_tasks()
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            ["t1"]
        );
        // A task submitted now comes after the migrated ones of its second.
        s.create_task(&new_task("a-new", 1, 5), "SUBMITTED", "x")
            .unwrap();
        let ids: Vec<String> = s
            .tasks_with_prefix(1, "", 10)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["t1", "t2", "a-new", "t3"]);
        let conn = s.lock().unwrap();
        assert!(
            conn.prepare("SELECT items FROM tasks").is_err(),
            "the JSON columns are gone"
        );
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64, "migrated to the newest");
    }

    #[test]
    fn tasks_stored_before_the_checksum_algorithm_column_are_sha256_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let conn = database_at(&path, MIGRATIONS.len() - 1);
            conn.execute(
                "INSERT INTO tasks (id, seq, owner_id, source_id, destination_id, item_count, status, created)
                 VALUES ('old', 1, 1, 'e1', 'e2', 0, 'ACTIVE', 5)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let work = s.task_work("old").unwrap().unwrap();
        assert_eq!(work.options.checksum_algorithm, ChecksumAlgorithm::Sha256);
        assert_eq!(
            s.task("old").unwrap().unwrap().checksum_algorithm,
            ChecksumAlgorithm::Sha256
        );
        let mut task = new_task("new", 1, 6);
        task.options.checksum_algorithm = ChecksumAlgorithm::Blake3;
        s.create_task(&task, "SUBMITTED", "x").unwrap();
        assert_eq!(
            s.task("new").unwrap().unwrap().checksum_algorithm,
            ChecksumAlgorithm::Blake3
        );
        let conn = s.lock().unwrap();
        assert!(
            conn.execute(
                "UPDATE tasks SET checksum_algorithm = 'md5' WHERE id = 'new'",
                []
            )
            .is_err(),
            "only algorithms the endpoints know"
        );
    }

    /// SQL in `source` (this file's code, tests and comments aside) that
    /// only SQLite understands: what a PostgreSQL backend could not share.
    fn sqlite_only(source: &str) -> Vec<String> {
        let code = source
            .split(concat!("#[cfg(test)]\n", "mod tests {"))
            .next()
            .unwrap_or_default();
        let (literals, code) = literals_of(code);
        let mut found = Vec::new();
        if code.to_lowercase().contains("rowid") {
            found.push("rowid (an explicit integer column, or INSERT ... RETURNING)".to_string());
        }
        for literal in &literals {
            let sql = literal
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            for (construct, instead) in [
                ("insert or ", "INSERT ... ON CONFLICT"),
                ("replace into", "INSERT ... ON CONFLICT DO UPDATE"),
                ("autoincrement", "INTEGER PRIMARY KEY"),
                ("ifnull(", "COALESCE"),
                ("group_concat(", "an aggregate in Rust"),
                ("strftime(", "times as Unix seconds passed in"),
                ("datetime(", "times as Unix seconds passed in"),
            ] {
                if let Some(at) = sql.find(construct) {
                    found.push(format!(
                        "{construct:?} (use {instead}) in {:?}",
                        near(&sql, at)
                    ));
                }
            }
            for function in ["max", "min"] {
                if let Some(at) = call_with_two_arguments(&sql, function) {
                    found.push(format!(
                        "scalar {function}(a, b) (use CASE WHEN) in {:?}",
                        near(&sql, at)
                    ));
                }
            }
        }
        found
    }

    /// The string literals of Rust `source`, and the source without its
    /// line comments.
    fn literals_of(source: &str) -> (Vec<String>, String) {
        let b = source.as_bytes();
        let find = |from: usize, what: &[u8]| {
            (from..b.len())
                .find(|&j| b[j..].starts_with(what))
                .unwrap_or(b.len())
        };
        let (mut literals, mut code, mut i) = (Vec::new(), Vec::new(), 0);
        while i < b.len() {
            if b[i..].starts_with(b"//") {
                i = find(i, b"\n");
            } else if b[i..].starts_with(b"r#\"") {
                let end = find(i + 3, b"\"#");
                literals.push(String::from_utf8_lossy(&b[i + 3..end]).into_owned());
                code.extend_from_slice(&b[i..(end + 2).min(b.len())]);
                i = end + 2;
            } else if b[i] == b'"' {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                literals.push(String::from_utf8_lossy(&b[i + 1..j.min(b.len())]).into_owned());
                code.extend_from_slice(&b[i..(j + 1).min(b.len())]);
                i = j + 1;
            } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
                // A char literal such as '\\' (not a lifetime).
                let end = find(i + 2, b"'");
                code.extend_from_slice(&b[i..(end + 1).min(b.len())]);
                i = end + 1;
            } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
                code.extend_from_slice(&b[i..i + 3]);
                i += 3;
            } else {
                code.push(b[i]);
                i += 1;
            }
        }
        (literals, String::from_utf8_lossy(&code).into_owned())
    }

    /// Where `sql` calls `function` with two or more arguments.
    fn call_with_two_arguments(sql: &str, function: &str) -> Option<usize> {
        sql.match_indices(&format!("{function}("))
            .map(|(at, _)| at)
            .find(|&at| {
                let word_start = at == 0
                    || !sql[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                let mut depth = 0;
                for c in sql[at + function.len()..].chars() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 1 => return false,
                        ')' => depth -= 1,
                        ',' if depth == 1 => return word_start,
                        _ => {}
                    }
                }
                false
            })
    }

    /// The statement around byte `at`, for a message.
    fn near(sql: &str, at: usize) -> String {
        let before: String = sql[..at].chars().rev().take(30).collect();
        let after: String = sql[at..].chars().take(50).collect();
        format!("...{}{after}...", before.chars().rev().collect::<String>())
    }

    #[test]
    fn the_sql_here_is_portable() {
        let found = sqlite_only(include_str!("sqlite.rs"));
        assert!(found.is_empty(), "SQLite-only SQL in sqlite.rs: {found:#?}");
    }

    #[test]
    fn the_portability_scan_finds_each_sqlite_only_construct() {
        let module = |body: &str| format!("{body}\n#[cfg(test)]\nmod tests {{ rowid }}\n");
        for planted in [
            r#"conn.execute("INSERT OR IGNORE INTO users (name) VALUES (?1)", [n])"#,
            r#"conn.execute("insert or replace into users (name) values (?1)", [n])"#,
            r#"Ok(conn.last_insert_rowid())"#,
            r#"const C: &str = "SELECT id FROM tasks ORDER BY created, rowid";"#,
            "const C: &str = r#\"UPDATE t SET a = MAX(a,\n    b)\"#;",
            r#"format!("UPDATE t SET a = min(a, (SELECT COUNT(*) FROM u)) WHERE x = '\\'")"#,
        ] {
            assert!(!sqlite_only(&module(planted)).is_empty(), "{planted}");
        }
        for fine in [
            r#"conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM task_events", [], f)"#,
            r#"conn.execute("INSERT INTO t (a) VALUES (?1) ON CONFLICT DO NOTHING", [a])"#,
            "let n = a.max(b); // rowid was here\nlet c = '\\\\'; let s: &'static str = \"x\";",
        ] {
            assert_eq!(sqlite_only(&module(fine)), Vec::<String>::new(), "{fine}");
        }
    }

    /// A store call that must wait (here, for the connection another
    /// request's long transaction holds) leaves the runtime's other tasks
    /// running, even with a single worker thread.
    #[test]
    fn a_store_call_that_waits_does_not_stall_the_runtime() {
        let (s, _) = store_with_user();
        let s = std::sync::Arc::new(s);
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let s = s.clone();
            std::thread::spawn(move || {
                let _conn = s.lock().unwrap();
                held_tx.send(()).unwrap();
                // Generous: only a stalled runtime takes this long, and
                // then the test ends (failing) instead of hanging.
                release_rx
                    .recv_timeout(std::time::Duration::from_secs(20))
                    .is_ok()
            })
        };
        held.recv().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let found = runtime.block_on(async move {
            let (waiting_tx, waiting) = tokio::sync::oneshot::channel::<()>();
            let store = s.clone();
            let slow = tokio::spawn(async move {
                waiting_tx.send(()).unwrap();
                store.user_by_name("alice")
            });
            // Runs only if the one worker is not stuck in the store call.
            let other = tokio::spawn(async move {
                waiting.await.unwrap();
                let _ = release.send(());
            });
            other.await.unwrap();
            slow.await.unwrap()
        });
        assert!(
            holder.join().unwrap(),
            "the runtime's other task could not run while the store call waited"
        );
        assert_eq!(found.unwrap().unwrap().name, "alice");
    }

    #[test]
    fn store_calls_work_wherever_the_hub_makes_them() {
        let (s, _) = store_with_user();
        let s = std::sync::Arc::new(s);
        // A current-thread runtime, where block_in_place would panic.
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(
            current
                .block_on(async { s.user_by_name("alice") })
                .unwrap()
                .is_some()
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // Its block_on thread, a worker, and a blocking-pool thread.
        assert!(
            multi
                .block_on(async { s.user_by_name("alice") })
                .unwrap()
                .is_some()
        );
        let (a, b) = (s.clone(), s.clone());
        multi.block_on(async move {
            let on_worker = tokio::spawn(async move { a.user_by_name("alice") });
            let on_blocking = tokio::task::spawn_blocking(move || b.user_by_name("alice"));
            assert!(on_worker.await.unwrap().unwrap().is_some());
            assert!(on_blocking.await.unwrap().unwrap().is_some());
        });
    }

    #[test]
    fn sqlite_in_memory_passes_the_conformance_suite() {
        conformance::run(&|| Box::new(SqliteStore::in_memory().unwrap()));
    }

    #[test]
    fn sqlite_on_disk_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let next = std::sync::atomic::AtomicUsize::new(0);
        conformance::run(&|| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(SqliteStore::open(&dir.path().join(format!("hub{n}.db"))).unwrap())
        });
        let path = dir.path().join("reopened.db");
        conformance::reopen(&|| Box::new(SqliteStore::open(&path).unwrap()));
    }
}
