//! The PostgreSQL backend: a small pool of connections (the synchronous
//! `postgres` client), numbered migrations of its own applied in order at
//! open, and the same contract as the SQLite backend
//! (`store::conformance`).
//!
//! Chosen by `database = "postgres://USER@HOST/DB"` in `hub.toml`. Its
//! queries are the SQLite backend's, in PostgreSQL's spelling (`$1`
//! placeholders, native booleans, `GREATEST`), plus the row locks that one
//! connection behind a mutex gave SQLite for free: a code, a setup key or a
//! task's event numbering is read and written under `FOR UPDATE` (or `FOR
//! NO KEY UPDATE`), and numbers that SQLite counted with `MAX() + 1`
//! (users' ids, tasks' order of submission) come from identity columns.
//!
//! Each connection's client runs its own small tokio runtime, which must
//! not be entered from inside another: every call leaves the caller's
//! runtime first ([`off_the_runtime`]), under `block_in_place` on a
//! multi-threaded runtime (the hub's worker hands its other tasks on, as
//! with SQLite), on a scoped thread of its own on a current-thread runtime,
//! directly outside any runtime (the admin verbs).

use super::*;
use ::postgres::config::SslMode;
use ::postgres::error::SqlState;
use ::postgres::{Client, GenericClient, NoTls, Row};
use ferry_proto::filter::{FilterAction, FilterRule};
use ferry_proto::share::ShareMode;
use ferry_proto::task::{ChecksumAlgorithm, SyncLevel};
use ferry_proto::wire_path::WirePath;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Connections a store keeps open at most.
const POOL_SIZE: usize = 8;
/// How long a call waits for a free connection before it says the
/// database is unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// How long opening a connection may take, unless the URL's
/// `connect_timeout` says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock that keeps two hubs opening one database from
/// migrating it at once (the bytes of "ferryhub").
const MIGRATION_LOCK: i64 = 0x6665_7272_7968_7562;

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        // The error and its causes ("error connecting to server:
        // Connection refused"; a server's "ERROR: ..." with its detail).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let said = cause.to_string();
            if !text.contains(&said) {
                text = format!("{text}: {said}");
            }
            source = cause.source();
        }
        match e.code() {
            Some(code) => match classify(code.code()) {
                Class::Conflict => StoreError::Conflict { what: "key" },
                Class::NotFound => StoreError::NotFound,
                Class::Transient => StoreError::Unavailable(text),
                Class::Other => StoreError::Internal(text),
            },
            // No SQLSTATE: the connection closed, or could not be made
            // (refused, timed out, reset), or a value did not convert.
            None if e.is_closed() || io_error(&e) => StoreError::Unavailable(text),
            None => StoreError::Internal(text),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Conflict,
    NotFound,
    Transient,
    Other,
}

/// What a SQLSTATE means to a caller.
fn classify(code: &str) -> Class {
    if code == SqlState::UNIQUE_VIOLATION.code() {
        return Class::Conflict;
    }
    if code == SqlState::FOREIGN_KEY_VIOLATION.code() {
        return Class::NotFound;
    }
    let transient = [
        "08",    // connection exception
        "53",    // insufficient resources: disk full, out of memory, too many connections
        "40001", // serialization failure
        "40P01", // deadlock detected
        "55P03", // lock not available
        "57014", // query canceled (a statement timeout)
        "57P01", // admin shutdown
        "57P02", // crash shutdown
        "57P03", // cannot connect now (starting up)
        "58030", // I/O error
    ];
    if transient.iter().any(|prefix| code.starts_with(prefix)) {
        Class::Transient
    } else {
        Class::Other
    }
}

/// Whether `e` comes from the network (refused, reset, timed out), not
/// from what was said over it: TLS that does not verify is an
/// `InvalidData` I/O error, and no retry changes it.
fn io_error(e: &::postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            );
        }
        source = cause.source();
    }
    false
}

/// A write's error, naming what a unique-key conflict is about.
fn taken(what: &'static str) -> impl FnOnce(::postgres::Error) -> StoreError {
    move |e| match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict { what },
        other => other,
    }
}

/// Each entry migrates the schema from its index to index + 1; the
/// numbers are this backend's own (its schema 1 holds what SQLite's
/// schema 5 does, its 2, 3 and 4 what SQLite's 6, 7 and 8 add). An entry,
/// once released, keeps its meaning.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    user_id BIGINT NOT NULL REFERENCES users(id),
    scopes TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE auth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    redirect_uri TEXT NOT NULL,
    challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    user_id BIGINT NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    grant_id TEXT NOT NULL
);
CREATE INDEX tokens_grant ON tokens(grant_id);
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    display_name TEXT NOT NULL,
    created BIGINT NOT NULL,
    cert_sha256 TEXT,
    registered BIGINT,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (owner_id, display_name)
);
CREATE TABLE setup_keys (
    key_hash TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    expires BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    source_id TEXT NOT NULL REFERENCES endpoints(id),
    destination_id TEXT NOT NULL REFERENCES endpoints(id),
    item_count BIGINT NOT NULL,
    sync_level TEXT CHECK (sync_level IN ('exists', 'size', 'mtime', 'checksum')),
    delete_extraneous BOOLEAN NOT NULL DEFAULT FALSE,
    preserve_mtime BOOLEAN NOT NULL DEFAULT TRUE,
    preserve_mode BOOLEAN NOT NULL DEFAULT TRUE,
    skip_source_errors BOOLEAN NOT NULL DEFAULT FALSE,
    streams BIGINT,
    label TEXT,
    deadline BIGINT,
    status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUCCEEDED', 'FAILED', 'CANCELED')),
    attempt BIGINT NOT NULL DEFAULT 0,
    files BIGINT NOT NULL DEFAULT 0,
    files_transferred BIGINT NOT NULL DEFAULT 0,
    files_skipped BIGINT NOT NULL DEFAULT 0,
    bytes_transferred BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    bytes_resent BIGINT NOT NULL DEFAULT 0,
    walk_done BOOLEAN NOT NULL DEFAULT FALSE,
    bytes_skipped BIGINT NOT NULL DEFAULT 0,
    cur_files BIGINT NOT NULL DEFAULT 0,
    cur_files_transferred BIGINT NOT NULL DEFAULT 0,
    cur_files_skipped BIGINT NOT NULL DEFAULT 0,
    cur_bytes_transferred BIGINT NOT NULL DEFAULT 0,
    cur_bytes BIGINT NOT NULL DEFAULT 0,
    cur_bytes_resent BIGINT NOT NULL DEFAULT 0,
    cur_walk_done BOOLEAN NOT NULL DEFAULT FALSE,
    cur_bytes_skipped BIGINT NOT NULL DEFAULT 0,
    faults BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    completed BIGINT,
    last_fault TEXT,
    fatal_error TEXT
);
CREATE INDEX tasks_owner ON tasks(owner_id, created);
CREATE INDEX tasks_active ON tasks(status) WHERE status = 'ACTIVE';
CREATE TABLE task_items (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    item BIGINT NOT NULL,
    source BYTEA NOT NULL,
    destination BYTEA NOT NULL,
    recursive BOOLEAN NOT NULL,
    PRIMARY KEY (task_id, item)
);
CREATE TABLE task_events (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
"#,
    // Schema 2 (SQLite's 6): tokens a user made for scripts, named so
    // they can tell them apart on the account page and revoke one.
    r#"
CREATE TABLE personal_tokens (
    grant_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    label TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_id);
"#,
    // Schema 3 (SQLite's 7): sharing. Groups, permissions on endpoint
    // paths (raw bytes), the permission each side of a grantee's task
    // acts under, and the record of changes.
    r#"
CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    created BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);
CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    path BYTEA NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('r', 'rw')),
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('identity', 'group', 'all_authenticated', 'anonymous')),
    grantee_user BIGINT REFERENCES users(id),
    grantee_group TEXT REFERENCES user_groups(id),
    expires BIGINT,
    created BIGINT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id)
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
    time BIGINT NOT NULL,
    actor_id BIGINT,
    endpoint_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX share_events_endpoint ON share_events(endpoint_id, time);
"#,
    // Schema 4 (SQLite's 8): a task's `--include`/`--exclude` rules, in
    // order (patterns as raw bytes), and its `--bwlimit` (bytes per second).
    r#"
ALTER TABLE tasks ADD COLUMN bwlimit BIGINT;
CREATE TABLE task_filters (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    rule BIGINT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('include', 'exclude')),
    pattern BYTEA NOT NULL,
    PRIMARY KEY (task_id, rule)
);
"#,
    // Schema 5 (SQLite's 9): a task's digest algorithm; tasks stored
    // before had none, which means SHA-256.
    r#"
ALTER TABLE tasks ADD COLUMN checksum_algorithm TEXT NOT NULL DEFAULT 'sha256'
    CHECK (checksum_algorithm IN ('sha256', 'blake3'));
"#,
    // Timers (the SQLite twin says what they hold).
    r#"
CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    submission TEXT NOT NULL,
    label TEXT,
    interval_secs BIGINT NOT NULL,
    start BIGINT NOT NULL,
    stop_after_runs BIGINT,
    stop_after_date BIGINT,
    run_deadline BIGINT,
    created BIGINT NOT NULL,
    next_run BIGINT,
    runs BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    last_task_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'finished'))
);
CREATE INDEX timers_due ON timers(status, next_run);
CREATE TABLE timer_events (
    timer_id TEXT NOT NULL REFERENCES timers(id),
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (timer_id, seq)
);
"#,
    // The audit log (as SQLite's migration of the same change): it takes
    // over the record of sharing changes, whose rows move here.
    r#"
CREATE TABLE audit_events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    time BIGINT NOT NULL,
    endpoint_id TEXT NOT NULL,
    actor_id BIGINT,
    identity TEXT NOT NULL,
    action TEXT NOT NULL,
    path BYTEA,
    task_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_endpoint ON audit_events(endpoint_id, time);
CREATE INDEX audit_events_time ON audit_events(time);
ALTER TABLE permissions ADD COLUMN expiry_recorded BOOLEAN NOT NULL DEFAULT FALSE;
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
    ORDER BY s.time, s.id COLLATE "C";
DROP TABLE share_events;
"#,
    // Notifications (SQLite's twin): a user's e-mail address; a task's
    // `--notify` set and the last news told of it; users' webhooks.
    r#"
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE tasks ADD COLUMN notify TEXT NOT NULL DEFAULT 'succeeded,failed';
ALTER TABLE tasks ADD COLUMN notified TEXT;
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks(owner_id);
"#,
    // The SQLite twin's: the hook a task asks its destination to run once
    // its files landed (`--on-success NAME`).
    r#"
ALTER TABLE tasks ADD COLUMN on_success TEXT;
"#,
    // Identities linked to accounts, the identities each sign-in
    // authenticated and when, and endpoints' allowed identity domains
    // (SQLite's twin: the identities migration).
    r#"
CREATE TABLE identities (
    identity TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    provider TEXT NOT NULL,
    linked_at BIGINT NOT NULL
);
CREATE INDEX identities_user ON identities(user_id);
CREATE TABLE login_identities (
    login_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    authenticated_at BIGINT NOT NULL,
    PRIMARY KEY (login_id, identity)
);
ALTER TABLE endpoints ADD COLUMN allowed_domains TEXT NOT NULL DEFAULT '';
"#,
    // What an OpenID Connect request adds to its code (SQLite's twin:
    // the oidc_codes migration).
    r#"
CREATE TABLE oidc_codes (
    code_hash TEXT PRIMARY KEY,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
"#,
    // The SQLite twin's: a task submission's client-made id, once per owner.
    r#"
ALTER TABLE tasks ADD COLUMN submission_id TEXT;
CREATE UNIQUE INDEX tasks_submission ON tasks(owner_id, submission_id);
"#,
    // Apps on ferry (SQLite's twin: the apps migration): each client's
    // kind, owner and a portal's redirect URIs; users' consents to apps.
    r#"
ALTER TABLE clients ADD COLUMN kind TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE clients ADD COLUMN owner_id BIGINT REFERENCES users(id);
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_owner ON clients(owner_id);
CREATE TABLE consents (
    user_id BIGINT NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
"#,
    // Hub instances sharing the database: task claims and their leases,
    // live instances, which instance holds each endpoint's control link,
    // and the keys they share (SQLite's twin: the hub instances migration).
    r#"
ALTER TABLE tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE tasks ADD COLUMN lease_until BIGINT;
CREATE TABLE hub_instances (
    id TEXT PRIMARY KEY,
    lease_until BIGINT NOT NULL
);
CREATE TABLE control_links (
    endpoint_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    since BIGINT NOT NULL
);
CREATE TABLE hub_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // SQLite's schema 19: relayed bytes.
    "ALTER TABLE tasks ADD COLUMN bytes_relayed BIGINT NOT NULL DEFAULT 0;",
    // Links (SQLite's twin: the links migration).
    r#"
CREATE TABLE links (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    path BYTEA NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id),
    created BIGINT NOT NULL,
    expires BIGINT,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    max_bytes BIGINT,
    bytes_served BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX links_creator ON links(created_by);
"#,
    // Hub instances calling each other, and failed sign-ins shared by
    // them (SQLite's twin: the hub messages migration).
    r#"
CREATE TABLE hub_messages (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    to_instance TEXT NOT NULL,
    payload TEXT NOT NULL,
    taken BOOLEAN NOT NULL DEFAULT FALSE,
    reply TEXT,
    created BIGINT NOT NULL,
    deadline BIGINT NOT NULL
);
CREATE INDEX hub_messages_to ON hub_messages(to_instance, taken);
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);
ALTER TABLE control_links ADD COLUMN data_address TEXT;
ALTER TABLE control_links ADD COLUMN relay BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE control_links ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;
"#,
    // Transfer nodes (SQLite's twin: the endpoint nodes migration).
    r#"
CREATE TABLE endpoint_nodes (
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    name TEXT NOT NULL,
    cert_sha256 TEXT,
    created BIGINT NOT NULL,
    registered BIGINT,
    PRIMARY KEY (endpoint_id, name)
);
ALTER TABLE setup_keys ADD COLUMN node TEXT;
"#,
    // Task nodes (SQLite's twin: the task nodes migration).
    "ALTER TABLE tasks ADD COLUMN nodes BIGINT NOT NULL DEFAULT 1;",
    // A claim held by its instance's lease, and each task's change mark
    // (SQLite's twin: the change marks migration). The mark is the id of
    // the transaction that wrote the row (`txid_current()`): a reader
    // that starts from the oldest transaction still open at its last read
    // (`txid_snapshot_xmin`) misses no change, however late it commits.
    // The default is set after the column is added, so existing rows are
    // not rewritten.
    r#"
ALTER TABLE tasks ADD COLUMN changed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ALTER COLUMN changed SET DEFAULT txid_current();
CREATE INDEX tasks_changed ON tasks(changed);
CREATE INDEX tasks_claims ON tasks(claimed_by) WHERE status = 'ACTIVE';
CREATE INDEX tasks_active_source ON tasks(source_id, claimed_by) WHERE status = 'ACTIVE';
CREATE INDEX tasks_active_destination ON tasks(destination_id, claimed_by) WHERE status = 'ACTIVE';
CREATE OR REPLACE FUNCTION ferry_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed := txid_current();
    RETURN NEW;
END
$$;
CREATE TRIGGER tasks_changed BEFORE UPDATE OF status, claimed_by ON tasks FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.claimed_by IS DISTINCT FROM NEW.claimed_by)
    EXECUTE PROCEDURE ferry_task_changed();
"#,
    // Node links (SQLite's twin: the node links migration).
    r#"
CREATE TABLE node_links (
    endpoint_id TEXT NOT NULL,
    node TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    since BIGINT NOT NULL,
    data_address TEXT,
    features TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (endpoint_id, node)
);
"#,
];

/// Brings the schema up to date, in the caller's transaction; refuses a
/// database from a newer ferry-hub.
pub(super) fn migrate(tx: &mut ::postgres::Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let version: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    let done = usize::try_from(version)
        .map_err(|_| StoreError::Internal(format!("schema version {version}")))?;
    if done == MIGRATIONS.len() {
        return Ok(());
    }
    for sql in &MIGRATIONS[done..] {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM schema_version", &[])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&known],
    )?;
    Ok(())
}

/// A `database` URL as ferry-hub reads it: what rust-postgres parses, plus
/// libpq's `sslrootcert=FILE` (relative to the state dir) and its
/// `sslmode=verify-full` / `verify-ca`, which here mean `require`.
///
/// TLS is used when the URL says `sslmode=require` (or a `verify-*`), and
/// then the server's certificate and name are always verified, against
/// `sslrootcert` or the system's CA bundle; without it (`disable`, or the
/// default `prefer`) the connection is plain, as over a Unix socket or
/// loopback.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub(super) config: ::postgres::Config,
    root_cert: Option<PathBuf>,
    shown: String,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.shown).finish()
    }
}

impl DatabaseUrl {
    /// Parses `url`; a relative `sslrootcert` is resolved against `base`.
    pub fn parse(url: &str, base: &Path) -> anyhow::Result<Self> {
        let shown = redacted(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("database {shown:?} is not a postgres://USER@HOST/DB URL");
        }
        let (head, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslrootcert" => root_cert = Some(base.join(percent_decode(value)?)),
                "sslmode" if value == "verify-full" || value == "verify-ca" => {
                    kept.push("sslmode=require".to_string())
                }
                _ => kept.push(pair.to_string()),
            }
        }
        let rebuilt = if kept.is_empty() {
            head.to_string()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        let mut config: ::postgres::Config = rebuilt
            .parse()
            .map_err(|e| anyhow::anyhow!("database {shown}: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ferry-hub");
        }
        if root_cert.is_some() && config.get_ssl_mode() != SslMode::Require {
            anyhow::bail!("database {shown}: sslrootcert needs sslmode=require (or verify-full)");
        }
        Ok(Self {
            config,
            root_cert,
            shown,
        })
    }

    /// The URL with its password hidden, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// This database in another schema: its tables are made and found
    /// there (`search_path`).
    #[cfg(test)]
    pub fn in_schema(&self, schema: &str) -> Self {
        let mut other = self.clone();
        other.config.options(&format!("-c search_path={schema}"));
        other
    }

    /// One connection of its own, outside any pool (see [`Self::tls`]).
    pub(crate) fn connect(&self) -> anyhow::Result<Client> {
        let client = match self.tls()? {
            Some(tls) => self.config.connect(tls),
            None => self.config.connect(NoTls),
        };
        client.map_err(|e| anyhow::anyhow!("database {}: {}", self.shown, StoreError::from(e)))
    }

    fn tls(&self) -> anyhow::Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
        if self.config.get_ssl_mode() != SslMode::Require {
            return Ok(None);
        }
        use rustls_pki_types::pem::PemObject;
        let bundle = match &self.root_cert {
            Some(path) => path.clone(),
            None => system_ca_bundle().ok_or_else(|| {
                anyhow::anyhow!(
                    "database {}: sslmode=require, but no sslrootcert= and no system CA bundle found",
                    self.shown
                )
            })?,
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&bundle)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", bundle.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
            // A bundle may hold certificates rustls cannot use; the rest still count.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            anyhow::bail!("{} holds no usable CA certificate", bundle.display());
        }
        let config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(ferry_tls::provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| anyhow::anyhow!("TLS to the database: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
}

/// The system's CA bundle: `SSL_CERT_FILE`, or where Debian, Red Hat and
/// others keep it.
fn system_ca_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("bad %-escape in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("{text:?} is not UTF-8"))
}

/// `url` with the password (in its user part or a `password=` parameter)
/// replaced by `***`.
pub fn redacted(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => match user.split_once(':') {
                    Some((name, _)) => format!("{name}:***@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{out}?{}", pairs.join("&"));
    }
    out
}

/// Runs `work` where a blocking call may run: under `block_in_place` on a
/// multi-threaded runtime, on a scoped thread of its own on a
/// current-thread runtime (whose thread must not start another runtime),
/// directly outside any runtime.
fn off_the_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        Ok(_) => std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => work(),
    }
}

/// Open connections, and how many exist (idle or lent).
struct Idle {
    clients: Vec<Client>,
    open: usize,
}

struct Pool {
    url: DatabaseUrl,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    idle: Mutex<Idle>,
    freed: Condvar,
}

impl Pool {
    fn connect(&self) -> Result<Client> {
        let config = &self.url.config;
        let client = match &self.tls {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        };
        client.map_err(StoreError::from)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Idle>> {
        self.idle.lock().map_err(|_| {
            self.idle.clear_poison();
            StoreError::Unavailable("a request crashed holding the connection pool".into())
        })
    }

    /// An idle connection, or a new one while fewer than [`POOL_SIZE`]
    /// are open, or the first one freed within [`POOL_WAIT`].
    fn get(&self) -> Result<Lent<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut idle = self.lock()?;
        loop {
            while let Some(client) = idle.clients.pop() {
                if !client.is_closed() {
                    return Ok(Lent {
                        pool: self,
                        client: Some(client),
                    });
                }
                idle.open -= 1;
            }
            if idle.open < POOL_SIZE {
                idle.open += 1;
                drop(idle);
                return match self.connect() {
                    Ok(client) => Ok(Lent {
                        pool: self,
                        client: Some(client),
                    }),
                    Err(e) => {
                        self.lock()?.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "all {POOL_SIZE} connections to the database are busy"
                )));
            }
            idle = match self.freed.wait_timeout(idle, deadline - now) {
                Ok((guard, _)) => guard,
                Err(_) => return Err(StoreError::Unavailable("connection pool poisoned".into())),
            };
        }
    }
}

/// A connection lent by the pool; back to it when dropped, unless it is
/// closed or the call panicked with it.
struct Lent<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let keep = !client.is_closed() && !std::thread::panicking();
        if let Ok(mut idle) = self.pool.idle.lock() {
            if keep {
                idle.clients.push(client);
            } else {
                idle.open -= 1;
            }
        }
        self.pool.freed.notify_one();
    }
}

/// The PostgreSQL backend.
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.pool.url.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a client blocks on its own runtime.
        let clients = match self.pool.idle.get_mut() {
            Ok(idle) => std::mem::take(&mut idle.clients),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().clients),
        };
        off_the_runtime(move || drop(clients));
    }
}

impl PostgresStore {
    /// Connects (a first connection, to migrate the schema and so see that
    /// the database answers) and keeps up to [`POOL_SIZE`] connections.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Self> {
        let store = Self {
            pool: Pool {
                tls: url.tls()?,
                url: url.clone(),
                idle: Mutex::new(Idle {
                    clients: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
            },
        };
        store
            .with_client(|client| {
                let mut tx = client.transaction()?;
                migrate(&mut tx)?;
                tx.commit()?;
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("database {}: {e}", url.shown))?;
        Ok(store)
    }

    /// Runs `f` with a connection from the pool, off the caller's runtime:
    /// the one way in.
    fn with_client<T: Send>(&self, f: impl FnOnce(&mut Client) -> Result<T> + Send) -> Result<T> {
        off_the_runtime(|| {
            let mut client = self.pool.get()?;
            f(&mut client)
        })
    }
}

const TIMER_COLUMNS: &str = "id, owner_id, submission, label, interval_secs, start, stop_after_runs,
    stop_after_date, run_deadline, created, next_run, runs, skipped, last_task_id, status FROM timers";

fn timer_row(r: &Row) -> Result<TimerRow> {
    let status: String = r.try_get(14)?;
    Ok(TimerRow {
        timer: NewTimer {
            id: r.try_get(0)?,
            owner_id: r.try_get(1)?,
            submission: r.try_get(2)?,
            label: r.try_get(3)?,
            interval: r.try_get(4)?,
            start: r.try_get(5)?,
            stop_after_runs: r.try_get::<_, Option<i64>>(6)?.map(u64_of),
            stop_after_date: r.try_get(7)?,
            run_deadline: r.try_get(8)?,
            created: r.try_get(9)?,
        },
        next_run: r.try_get(10)?,
        runs: u64_of(r.try_get(11)?),
        skipped: u64_of(r.try_get(12)?),
        last_task_id: r.try_get(13)?,
        status: if status == "active" {
            TimerStatus::Active
        } else {
            TimerStatus::Finished
        },
    })
}

impl TimerStore for PostgresStore {
    fn create_timer(&self, t: &NewTimer) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO timers (id, owner_id, submission, label, interval_secs, start, stop_after_runs,
                    stop_after_date, run_deadline, created, next_run, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6, 'active')",
                &[
                    &t.id,
                    &t.owner_id,
                    &t.submission,
                    &t.label,
                    &t.interval,
                    &t.start,
                    &t.stop_after_runs.map(sql_u64),
                    &t.stop_after_date,
                    &t.run_deadline,
                    &t.created,
                ],
            )
            .map_err(taken("timer id"))?;
            Ok(())
        })
    }

    fn timer(&self, id: &str) -> Result<Option<TimerRow>> {
        self.with_client(|c| {
            c.query_opt(&format!("SELECT {TIMER_COLUMNS} WHERE id = $1"), &[&id])?
                .map(|r| timer_row(&r))
                .transpose()
        })
    }

    fn timers_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TimerRow>> {
        self.with_client(|c| {
            c.query(
                &format!(
                    "SELECT {TIMER_COLUMNS} WHERE owner_id = $1 ORDER BY created, id LIMIT $2"
                ),
                &[&owner_id, &(limit as i64)],
            )?
            .iter()
            .map(timer_row)
            .collect()
        })
    }

    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRow>> {
        self.with_client(|c| {
            c.query(
                &format!(
                    "SELECT {TIMER_COLUMNS} WHERE status = 'active' AND next_run <= $1 ORDER BY next_run, id LIMIT $2"
                ),
                &[&now, &(limit as i64)],
            )?
            .iter()
            .map(timer_row)
            .collect()
        })
    }

    fn claim_timer_run(
        &self,
        id: &str,
        due: i64,
        next: Option<i64>,
        skipped: bool,
    ) -> Result<bool> {
        self.with_client(|c| {
            let status = if next.is_some() { "active" } else { "finished" };
            // One statement: of two hubs that read the same due time, the
            // row lock lets one update it and the other then finds
            // `next_run` moved on.
            let changed = c.execute(
                "UPDATE timers SET next_run = $3, status = $4, skipped = skipped + $5
                 WHERE id = $1 AND status = 'active' AND next_run = $2",
                &[&id, &due, &next, &status, &i64::from(skipped)],
            )?;
            Ok(changed == 1)
        })
    }

    fn record_timer_run(&self, id: &str, task_id: &str) -> Result<()> {
        self.with_client(|c| {
            let changed = c.execute(
                "UPDATE timers SET runs = runs + 1, last_task_id = $2 WHERE id = $1",
                &[&id, &task_id],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn add_timer_event(&self, id: &str, code: &str, description: &str, now: i64) -> Result<()> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // The timer's row, locked: two events of one timer take turns
            // for the next number.
            tx.execute(
                "SELECT 1 FROM timers WHERE id = $1 FOR NO KEY UPDATE",
                &[&id],
            )?;
            let last: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM timer_events WHERE timer_id = $1",
                    &[&id],
                )?
                .try_get(0)?;
            tx.execute(
                "INSERT INTO timer_events (timer_id, seq, time, code, description) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &(last + 1), &now, &code, &description],
            )?;
            tx.execute(
                "DELETE FROM timer_events WHERE timer_id = $1 AND seq <= $2",
                &[&id, &(last + 1 - sql_u64(MAX_TIMER_EVENTS))],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn timer_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>> {
        self.with_client(|c| {
            let mut events = c
                .query(
                    "SELECT seq, time, code, description FROM timer_events WHERE timer_id = $1 ORDER BY seq DESC LIMIT $2",
                    &[&id, &(limit as i64)],
                )?
                .iter()
                .map(|r| {
                    Ok(TaskEventRow {
                        seq: u64_of(r.try_get(0)?),
                        time: r.try_get(1)?,
                        code: r.try_get(2)?,
                        description: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            events.reverse();
            Ok(events)
        })
    }

    fn delete_timer(&self, id: &str) -> Result<bool> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM timer_events WHERE timer_id = $1", &[&id])?;
            let deleted = tx.execute("DELETE FROM timers WHERE id = $1", &[&id])?;
            tx.commit()?;
            Ok(deleted == 1)
        })
    }
}

/// Counters beyond i64 stick at the top.
fn sql_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
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

/// The text a filter rule's action is stored as.
fn filter_action_text(action: FilterAction) -> &'static str {
    match action {
        FilterAction::Include => "include",
        FilterAction::Exclude => "exclude",
    }
}

/// Folds the running attempt's counters into the task's (each at the
/// furthest either reached: see [`TaskCounters`]) and clears them.
const FOLD_CURRENT: &str = "files = GREATEST(files, cur_files),
    files_transferred = GREATEST(files_transferred, cur_files_transferred),
    files_skipped = GREATEST(files_skipped, cur_files_skipped),
    bytes_transferred = GREATEST(bytes_transferred, cur_bytes_transferred),
    bytes = GREATEST(bytes, cur_bytes),
    bytes_resent = GREATEST(bytes_resent, cur_bytes_resent),
    walk_done = walk_done OR cur_walk_done,
    bytes_skipped = GREATEST(bytes_skipped, cur_bytes_skipped),
    cur_files = 0, cur_files_transferred = 0, cur_files_skipped = 0, cur_bytes_transferred = 0,
    cur_bytes = 0, cur_bytes_resent = 0, cur_walk_done = FALSE, cur_bytes_skipped = 0";

const ENDPOINT_COLUMNS: &str = "e.id, e.owner_id, u.name, e.display_name, e.created, e.cert_sha256, e.revoked, e.deleted, e.allowed_domains FROM endpoints e JOIN users u ON u.id = e.owner_id";

fn endpoint_row(r: &Row) -> Result<EndpointRow> {
    Ok(EndpointRow {
        id: r.try_get(0)?,
        owner_id: r.try_get(1)?,
        owner_name: r.try_get(2)?,
        display_name: r.try_get(3)?,
        created: r.try_get(4)?,
        cert_sha256: r.try_get(5)?,
        revoked: r.try_get(6)?,
        deleted: r.try_get(7)?,
        allowed_domains: split_domains(&r.try_get::<_, String>(8)?),
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

fn task_row(r: &Row) -> Result<TaskRow> {
    let status: String = r.try_get(9)?;
    let counters = |first: usize, more: usize| -> Result<TaskCounters> {
        Ok(TaskCounters {
            files: u64_of(r.try_get(first)?),
            files_transferred: u64_of(r.try_get(first + 1)?),
            files_skipped: u64_of(r.try_get(first + 2)?),
            bytes_transferred: u64_of(r.try_get(first + 3)?),
            bytes: u64_of(r.try_get(more)?),
            bytes_resent: u64_of(r.try_get(more + 1)?),
            walk_done: r.try_get(more + 2)?,
            bytes_skipped: u64_of(r.try_get(more + 3)?),
        })
    };
    Ok(TaskRow {
        id: r.try_get(0)?,
        owner_id: r.try_get(1)?,
        source_id: r.try_get(2)?,
        source_name: r.try_get(3)?,
        destination_id: r.try_get(4)?,
        destination_name: r.try_get(5)?,
        item_count: u64_of(r.try_get(6)?),
        label: r.try_get(7)?,
        on_success: r.try_get(33)?,
        deadline: r.try_get(8)?,
        // The CHECK constraints admit nothing else.
        checksum_algorithm: ChecksumAlgorithm::parse(&r.try_get::<_, String>(32)?)
            .unwrap_or(ChecksumAlgorithm::Sha256),
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
        attempt: u32::try_from(r.try_get::<_, i64>(10)?).unwrap_or_default(),
        done: counters(11, 24)?,
        current: counters(15, 28)?,
        faults: u64_of(r.try_get(19)?),
        created: r.try_get(20)?,
        completed: r.try_get(21)?,
        last_fault: r.try_get(22)?,
        fatal_error: r.try_get(23)?,
        bytes_relayed: u64_of(r.try_get(34)?),
        nodes: u32::try_from(r.try_get::<_, i64>(35)?).unwrap_or(1),
    })
}

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

fn user_row(r: &Row) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        password_hash: r.try_get(2)?,
    })
}

impl AccountStore for PostgresStore {
    // --- users ---

    fn add_user(&self, name: &str, password_hash: &str, now: i64) -> Result<i64> {
        self.with_client(|c| {
            let row = c
                .query_one(
                    "INSERT INTO users (name, password_hash, created) VALUES ($1, $2, $3) RETURNING id",
                    &[&name, &password_hash, &now],
                )
                .map_err(taken("user name"))?;
            Ok(row.try_get(0)?)
        })
    }

    fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT id, name, password_hash FROM users WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(user_row)
            .transpose()
        })
    }

    fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT id, name, password_hash FROM users WHERE id = $1",
                &[&id],
            )?
            .as_ref()
            .map(user_row)
            .transpose()
        })
    }

    // --- OAuth clients ---

    fn add_client(&self, client: &ClientRow, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO clients (client_id, name, secret_hash, user_id, scopes, created, kind, owner_id, redirect_uris) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[&client.client_id, &client.name, &client.secret_hash, &client.user_id, &client.scopes, &now, &client.kind.as_str(), &client.owner_id, &client.redirect_uris.join("\n")],
            )
            .map_err(taken("client id"))?;
            Ok(())
        })
    }

    fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"),
                &[&client_id],
            )?
            .map(|r| client_row(&r))
            .transpose()
        })
    }

    // --- authorization codes ---

    fn put_auth_code(&self, code: &AuthCodeRow) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, challenge, scope, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&code.code_hash, &code.client_id, &code.user_id, &code.redirect_uri, &code.challenge, &code.scope, &code.expires],
            )?;
            Ok(())
        })
    }

    fn take_auth_code(&self, code_hash: &str, now: i64) -> Result<CodeUse> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // Locked, so two redemptions of one code cannot both find it fresh.
            let row = tx.query_opt(
                "SELECT code_hash, client_id, user_id, redirect_uri, challenge, scope, expires, used
                 FROM auth_codes WHERE code_hash = $1 FOR UPDATE",
                &[&code_hash],
            )?;
            let outcome = match row {
                None => CodeUse::Unknown,
                Some(r) if r.try_get::<_, bool>(7)? => {
                    // The code's grant id is the code hash itself.
                    tx.execute(
                        "UPDATE tokens SET revoked = TRUE WHERE grant_id = $1",
                        &[&code_hash],
                    )?;
                    CodeUse::Reused
                }
                Some(r) => {
                    let row = AuthCodeRow {
                        code_hash: r.try_get(0)?,
                        client_id: r.try_get(1)?,
                        user_id: r.try_get(2)?,
                        redirect_uri: r.try_get(3)?,
                        challenge: r.try_get(4)?,
                        scope: r.try_get(5)?,
                        expires: r.try_get(6)?,
                    };
                    if row.expires < now {
                        CodeUse::Expired
                    } else {
                        tx.execute(
                            "UPDATE auth_codes SET used = TRUE WHERE code_hash = $1",
                            &[&code_hash],
                        )?;
                        CodeUse::Fresh(row)
                    }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn put_oidc_code(&self, row: &OidcCodeRow) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO oidc_codes (code_hash, nonce, auth_time, expires) VALUES ($1, $2, $3, $4)",
                &[&row.code_hash, &row.nonce, &row.auth_time, &row.expires],
            )?;
            Ok(())
        })
    }

    fn oidc_code(&self, code_hash: &str) -> Result<Option<OidcCodeRow>> {
        self.with_client(|c| {
            Ok(c.query_opt(
                "SELECT code_hash, nonce, auth_time, expires FROM oidc_codes WHERE code_hash = $1",
                &[&code_hash],
            )?
            .map(|r| OidcCodeRow {
                code_hash: r.get(0),
                nonce: r.get(1),
                auth_time: r.get(2),
                expires: r.get(3),
            }))
        })
    }

    // --- tokens ---

    fn put_token(&self, token: &TokenRow) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO tokens (token_hash, kind, user_id, client_id, scope, expires, grant_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&token.token_hash, &token.kind.as_str(), &token.user_id, &token.client_id, &token.scope, &token.expires, &token.grant_id],
            )?;
            Ok(())
        })
    }

    fn token(&self, token_hash: &str, kind: TokenKind, now: i64) -> Result<Option<TokenRow>> {
        self.with_client(|c| {
            let Some(r) = c.query_opt(
                "SELECT t.token_hash, t.user_id, u.name, t.client_id, t.scope, t.expires, t.grant_id
                 FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = $1 AND t.kind = $2 AND NOT t.revoked AND t.expires >= $3",
                &[&token_hash, &kind.as_str(), &now],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(TokenRow {
                token_hash: r.try_get(0)?,
                kind,
                user_id: r.try_get(1)?,
                user_name: r.try_get(2)?,
                client_id: r.try_get(3)?,
                scope: r.try_get(4)?,
                expires: r.try_get(5)?,
                grant_id: r.try_get(6)?,
            }))
        })
    }

    fn token_was_revoked(&self, token_hash: &str) -> Result<Option<String>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT grant_id FROM tokens WHERE token_hash = $1 AND revoked",
                &[&token_hash],
            )?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(StoreError::from)
        })
    }

    fn revoke_token(&self, token_hash: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE tokens SET revoked = TRUE WHERE token_hash = $1",
                &[&token_hash],
            )?;
            Ok(())
        })
    }

    fn revoke_live_token(&self, token_hash: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE tokens SET revoked = TRUE WHERE token_hash = $1 AND NOT revoked",
                &[&token_hash],
            )? > 0)
        })
    }

    fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE tokens SET revoked = TRUE WHERE grant_id = $1",
                &[&grant_id],
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
        self.with_client(|c| {
            c.execute(
                "INSERT INTO personal_tokens (grant_id, user_id, label, created) VALUES ($1, $2, $3, $4)",
                &[&grant_id, &user_id, &label, &created],
            )?;
            Ok(())
        })
    }

    fn personal_tokens(&self, user_id: i64, now: i64) -> Result<Vec<PersonalTokenRow>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "SELECT p.grant_id, p.label, t.scope, p.created, t.expires
                     FROM personal_tokens p JOIN tokens t ON t.grant_id = p.grant_id
                     WHERE p.user_id = $1 AND t.user_id = $1 AND t.kind = 'access'
                       AND NOT t.revoked AND t.expires >= $2
                     ORDER BY p.created DESC, p.grant_id COLLATE \"C\"",
                    &[&user_id, &now],
                )?,
                |r| {
                    Ok(PersonalTokenRow {
                        grant_id: r.try_get(0)?,
                        label: r.try_get(1)?,
                        scope: r.try_get(2)?,
                        created: r.try_get(3)?,
                        expires: r.try_get(4)?,
                    })
                },
            )
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
        self.with_client(|c| {
            c.execute(
                "INSERT INTO sessions (session_hash, user_id, csrf, expires) VALUES ($1, $2, $3, $4)",
                &[&session_hash, &user_id, &csrf, &expires],
            )?;
            Ok(())
        })
    }

    fn session(&self, session_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        self.with_client(|c| {
            let Some(r) = c.query_opt(
                "SELECT s.user_id, u.name, s.csrf, s.expires FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.session_hash = $1 AND s.expires >= $2",
                &[&session_hash, &now],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(SessionRow {
                user_id: r.try_get(0)?,
                user_name: r.try_get(1)?,
                csrf: r.try_get(2)?,
                expires: r.try_get(3)?,
            }))
        })
    }

    fn delete_session(&self, session_hash: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "DELETE FROM sessions WHERE session_hash = $1",
                &[&session_hash],
            )?;
            Ok(())
        })
    }

    fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionListing>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "SELECT session_hash, expires FROM sessions WHERE user_id = $1 AND expires >= $2
                     ORDER BY expires DESC, session_hash COLLATE \"C\"",
                    &[&user_id, &now],
                )?,
                |r| {
                    Ok(SessionListing {
                        session_hash: r.try_get(0)?,
                        expires: r.try_get(1)?,
                    })
                },
            )
        })
    }

    fn end_other_sessions(&self, user_id: i64, keep: &str) -> Result<u64> {
        self.with_client(|c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE user_id = $1 AND session_hash <> $2",
                &[&user_id, &keep],
            )?)
        })
    }

    fn purge_expired(&self, now: i64) -> Result<()> {
        self.with_client(|c| {
            let day_ago = now - 86_400;
            c.execute("DELETE FROM sessions WHERE expires < $1", &[&now])?;
            c.execute("DELETE FROM auth_codes WHERE expires < $1", &[&day_ago])?;
            c.execute("DELETE FROM oidc_codes WHERE expires < $1", &[&day_ago])?;
            c.execute("DELETE FROM tokens WHERE expires < $1", &[&day_ago])?;
            c.execute(
                "DELETE FROM login_identities WHERE authenticated_at < $1",
                &[&(now - LOGIN_IDENTITY_KEPT)],
            )?;
            Ok(())
        })
    }
}

impl EndpointStore for PostgresStore {
    // --- endpoints ---

    fn create_endpoint(&self, id: &str, owner_id: i64, display_name: &str, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO endpoints (id, owner_id, display_name, created) VALUES ($1, $2, $3, $4)",
                &[&id, &owner_id, &display_name, &now],
            )
            .map_err(taken("endpoint name"))?;
            Ok(())
        })
    }

    fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} WHERE e.id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(endpoint_row)
            .transpose()
        })
    }

    fn endpoint_by_name(&self, owner_id: i64, display_name: &str) -> Result<Option<EndpointRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} WHERE e.owner_id = $1 AND e.display_name = $2 AND NOT e.deleted"
                ),
                &[&owner_id, &display_name],
            )?
            .as_ref()
            .map(endpoint_row)
            .transpose()
        })
    }

    fn search_endpoints(
        &self,
        owner_id: Option<i64>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<EndpointRow>> {
        self.with_client(|c| {
            let pattern = contains_pattern(query);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            // Ids in byte order (COLLATE "C"), as SQLite orders them.
            rows(
                c.query(
                    &format!(
                        "SELECT {ENDPOINT_COLUMNS} WHERE ($1::BIGINT IS NULL OR e.owner_id = $1) AND NOT e.deleted
                         AND (lower(e.display_name) LIKE lower($2) ESCAPE '\\' OR lower(e.id) LIKE lower($2) ESCAPE '\\')
                         ORDER BY e.created, e.id COLLATE \"C\" LIMIT $3"
                    ),
                    &[&owner_id, &pattern, &limit],
                )?,
                endpoint_row,
            )
        })
    }

    fn set_endpoint_cert(&self, id: &str, cert_sha256: &str, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE endpoints SET cert_sha256 = $2, registered = $3 WHERE id = $1",
                &[&id, &cert_sha256, &now],
            )?;
            Ok(())
        })
    }

    fn rename_endpoint(&self, id: &str, display_name: &str) -> Result<bool> {
        self.with_client(|c| {
            let n = c
                .execute(
                    "UPDATE endpoints SET display_name = $2 WHERE id = $1 AND NOT deleted",
                    &[&id, &display_name],
                )
                .map_err(taken("endpoint name"))?;
            Ok(n > 0)
        })
    }

    fn delete_endpoint(&self, id: &str) -> Result<DeleteOutcome> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // Locked first: a task being created on it (whose foreign key
            // shares the lock) commits before, or waits until after.
            let live = tx.query_opt(
                "SELECT id FROM endpoints WHERE id = $1 AND NOT deleted FOR UPDATE",
                &[&id],
            )?;
            if live.is_none() {
                return Ok(DeleteOutcome::Missing);
            }
            let active: Vec<String> = tx
                .query(
                    "SELECT id FROM tasks WHERE status = 'ACTIVE' AND (source_id = $1 OR destination_id = $1)
                     ORDER BY created, seq",
                    &[&id],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            if !active.is_empty() {
                return Ok(DeleteOutcome::Busy(active));
            }
            tx.execute(
                "UPDATE endpoints SET deleted = TRUE, revoked = TRUE, display_name = display_name || ' (deleted ' || id || ')'
                 WHERE id = $1",
                &[&id],
            )?;
            tx.commit()?;
            Ok(DeleteOutcome::Deleted)
        })
    }

    fn revoke_endpoint(&self, id: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute("UPDATE endpoints SET revoked = TRUE WHERE id = $1", &[&id])? > 0)
        })
    }

    fn revoked_endpoint_count(&self) -> Result<u64> {
        self.with_client(|c| {
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM endpoints WHERE revoked", &[])?
                .try_get(0)?;
            Ok(u64_of(n))
        })
    }

    fn revoked_endpoints(&self, limit: usize) -> Result<Vec<String>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            Ok(c.query(
                "SELECT id FROM endpoints WHERE revoked ORDER BY created DESC, id COLLATE \"C\" LIMIT $1",
                &[&limit],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
        })
    }

    // --- setup keys ---

    fn put_setup_key(&self, key_hash: &str, endpoint_id: &str, expires: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO setup_keys (key_hash, endpoint_id, expires) VALUES ($1, $2, $3)",
                &[&key_hash, &endpoint_id, &expires],
            )?;
            Ok(())
        })
    }

    fn take_setup_key(&self, key_hash: &str, now: i64) -> Result<SetupKeyUse> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt(
                "SELECT endpoint_id, expires, used, node FROM setup_keys WHERE key_hash = $1 FOR UPDATE",
                &[&key_hash],
            )?;
            let outcome = match row {
                None => SetupKeyUse::Unknown,
                Some(r) => {
                    let (endpoint_id, expires, used, node): (String, i64, bool, Option<String>) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                    if used {
                        SetupKeyUse::Used { endpoint_id, node }
                    } else if expires < now {
                        SetupKeyUse::Expired { endpoint_id, node }
                    } else {
                        tx.execute(
                            "UPDATE setup_keys SET used = TRUE WHERE key_hash = $1",
                            &[&key_hash],
                        )?;
                        SetupKeyUse::Fresh { endpoint_id, node }
                    }
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
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO endpoint_nodes (endpoint_id, name, created) VALUES ($1, $2, $3)",
                &[&endpoint_id, &name, &now],
            )
            .map_err(taken("node name"))?;
            tx.execute(
                "INSERT INTO setup_keys (key_hash, endpoint_id, expires, node) VALUES ($1, $2, $3, $4)",
                &[&key_hash, &endpoint_id, &expires, &name],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn endpoint_nodes(&self, endpoint_id: &str) -> Result<Vec<NodeRow>> {
        self.with_client(|c| {
            c.query(
                "SELECT endpoint_id, name, cert_sha256, created, registered FROM endpoint_nodes
                 WHERE endpoint_id = $1 ORDER BY created, name",
                &[&endpoint_id],
            )?
            .iter()
            .map(|r| {
                Ok(NodeRow {
                    endpoint_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    cert_sha256: r.try_get(2)?,
                    created: r.try_get(3)?,
                    registered: r.try_get(4)?,
                })
            })
            .collect()
        })
    }

    fn set_node_cert(
        &self,
        endpoint_id: &str,
        name: &str,
        cert_sha256: &str,
        now: i64,
    ) -> Result<bool> {
        self.with_client(|c| {
            let n = c.execute(
                "UPDATE endpoint_nodes SET cert_sha256 = $3, registered = $4 WHERE endpoint_id = $1 AND name = $2",
                &[&endpoint_id, &name, &cert_sha256, &now],
            )?;
            Ok(n > 0)
        })
    }

    fn remove_endpoint_node(&self, endpoint_id: &str, name: &str) -> Result<bool> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM endpoint_nodes WHERE endpoint_id = $1 AND name = $2",
                &[&endpoint_id, &name],
            )?;
            tx.execute(
                "UPDATE setup_keys SET used = TRUE WHERE endpoint_id = $1 AND node = $2",
                &[&endpoint_id, &name],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }
}

const PERMISSION_COLUMNS: &str = "p.id, p.endpoint_id, p.path, p.mode, p.grantee_kind, p.grantee_user, u.name, p.grantee_group, g.name, p.expires, p.created, p.created_by
     FROM permissions p LEFT JOIN users u ON u.id = p.grantee_user LEFT JOIN user_groups g ON g.id = p.grantee_group";

fn permission_row(r: &Row) -> Result<PermissionRow> {
    let id: String = r.try_get(0)?;
    let mode: String = r.try_get(3)?;
    let kind: String = r.try_get(4)?;
    let bad = |what: String| StoreError::Internal(format!("permission {id}: {what}"));
    let grantee = match kind.as_str() {
        "identity" => Grantee::Identity {
            user_id: r
                .try_get::<_, Option<i64>>(5)?
                .ok_or_else(|| bad("identity without a user".into()))?,
            name: r.try_get::<_, Option<String>>(6)?.unwrap_or_default(),
        },
        "group" => Grantee::Group {
            group_id: r
                .try_get::<_, Option<String>>(7)?
                .ok_or_else(|| bad("group without an id".into()))?,
            name: r.try_get::<_, Option<String>>(8)?.unwrap_or_default(),
        },
        "all_authenticated" => Grantee::AllAuthenticated,
        "anonymous" => Grantee::Anonymous,
        other => return Err(bad(format!("grantee kind {other:?}"))),
    };
    Ok(PermissionRow {
        endpoint_id: r.try_get(1)?,
        path: r.try_get(2)?,
        mode: ShareMode::parse(&mode).ok_or_else(|| bad(format!("mode {mode:?}")))?,
        grantee,
        expires: r.try_get(9)?,
        created: r.try_get(10)?,
        created_by: r.try_get(11)?,
        id,
    })
}

/// The live permissions that reach user $1 at $2 (`p.` in scope): theirs,
/// their groups', everyone signed in's (as SQLite's `REACHES_USER`).
const REACHES_USER: &str = "(p.expires IS NULL OR p.expires >= $2) AND (
       (p.grantee_kind = 'identity' AND p.grantee_user = $1)
    OR (p.grantee_kind = 'group' AND p.grantee_group IN (SELECT group_id FROM group_members WHERE user_id = $1))
    OR p.grantee_kind = 'all_authenticated')";

/// `query` as a `LIKE` pattern that finds it anywhere, literally.
fn contains_pattern(query: &str) -> String {
    format!(
        "%{}%",
        query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// A stored notification set; one this hub cannot read (written by a
/// newer one) tells nothing rather than failing the task's end.
fn notify_events(text: &str) -> NotifyEvents {
    NotifyEvents::parse(text).unwrap_or(NotifyEvents::NONE)
}

fn webhook_row(r: &Row) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: r.try_get(0)?,
        owner_id: r.try_get(1)?,
        url: r.try_get(2)?,
        events: notify_events(r.try_get::<_, &str>(3)?),
        secret: r.try_get(4)?,
        created: r.try_get(5)?,
    })
}

impl NotifyStore for PostgresStore {
    fn set_user_email(&self, user_id: i64, email: Option<&str>) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE users SET email = $2 WHERE id = $1",
                &[&user_id, &email],
            )? > 0)
        })
    }

    fn user_email(&self, user_id: i64) -> Result<Option<String>> {
        self.with_client(|c| {
            Ok(
                c.query_opt("SELECT email FROM users WHERE id = $1", &[&user_id])?
                    .map(|r| r.try_get::<_, Option<String>>(0))
                    .transpose()?
                    .flatten(),
            )
        })
    }

    fn claim_task_notice(&self, task_id: &str, notice: &str) -> Result<Option<NotifyEvents>> {
        self.with_client(|c| {
            Ok(c.query_opt(
                "UPDATE tasks SET notified = $2 WHERE id = $1 AND notified IS DISTINCT FROM $2
                 RETURNING notify",
                &[&task_id, &notice],
            )?
            .map(|r| r.try_get::<_, String>(0))
            .transpose()?
            .map(|text| notify_events(&text)))
        })
    }

    fn rearm_task_notice(&self, task_id: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE tasks SET notified = NULL WHERE id = $1 AND notified = 'INACTIVE'",
                &[&task_id],
            )?;
            Ok(())
        })
    }

    fn put_webhook(&self, w: &WebhookRow) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO webhooks (id, owner_id, url, events, secret, created)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &w.id,
                    &w.owner_id,
                    &w.url,
                    &w.events.to_string(),
                    &w.secret,
                    &w.created,
                ],
            )
            .map_err(taken("webhook id"))?;
            Ok(())
        })
    }

    fn webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT id, owner_id, url, events, secret, created FROM webhooks WHERE id = $1",
                &[&id],
            )?
            .as_ref()
            .map(webhook_row)
            .transpose()
        })
    }

    fn webhooks_of(&self, owner_id: i64) -> Result<Vec<WebhookRow>> {
        self.with_client(|c| {
            c.query(
                "SELECT id, owner_id, url, events, secret, created FROM webhooks
                 WHERE owner_id = $1 ORDER BY created, id",
                &[&owner_id],
            )?
            .iter()
            .map(webhook_row)
            .collect()
        })
    }

    fn delete_webhook(&self, id: &str) -> Result<bool> {
        self.with_client(|c| Ok(c.execute("DELETE FROM webhooks WHERE id = $1", &[&id])? > 0))
    }
}

/// The columns [`client_row`] reads, in its order.
const CLIENT_COLUMNS: &str =
    "client_id, name, secret_hash, user_id, scopes, kind, owner_id, redirect_uris";

fn client_row(r: &Row) -> Result<ClientRow> {
    let kind: String = r.try_get(5)?;
    let uris: String = r.try_get(7)?;
    Ok(ClientRow {
        client_id: r.try_get(0)?,
        name: r.try_get(1)?,
        secret_hash: r.try_get(2)?,
        user_id: r.try_get(3)?,
        scopes: r.try_get(4)?,
        kind: ClientKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown client kind {kind:?}")))?,
        owner_id: r.try_get(6)?,
        redirect_uris: split_uris(&uris),
    })
}

impl AppStore for PostgresStore {
    fn add_service_account(
        &self,
        account: &str,
        password_hash: &str,
        client: &ClientRow,
        now: i64,
    ) -> Result<i64> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let user_id: i64 = tx
                .query_one(
                    "INSERT INTO users (name, password_hash, created) VALUES ($1, $2, $3) RETURNING id",
                    &[&account, &password_hash, &now],
                )
                .map_err(taken("user name"))?
                .try_get(0)?;
            tx.execute(
                "INSERT INTO clients (client_id, name, secret_hash, user_id, scopes, created, kind, owner_id, redirect_uris) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[&client.client_id, &client.name, &client.secret_hash, &user_id, &client.scopes, &now, &client.kind.as_str(), &client.owner_id, &client.redirect_uris.join("\n")],
            )
            .map_err(taken("client id"))?;
            tx.commit()?;
            Ok(user_id)
        })
    }

    fn clients_of(&self, owner_id: i64) -> Result<Vec<ClientRow>> {
        self.with_client(|c| {
            c.query(
                &format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE owner_id = $1 ORDER BY created, client_id COLLATE \"C\""
                ),
                &[&owner_id],
            )?
            .iter()
            .map(client_row)
            .collect()
        })
    }

    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE clients SET secret_hash = $2 WHERE client_id = $1 AND secret_hash IS NOT NULL",
                &[&client_id, &secret_hash],
            )? > 0)
        })
    }

    fn delete_client(&self, client_id: &str) -> Result<bool> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "UPDATE tokens SET revoked = TRUE WHERE client_id = $1",
                &[&client_id],
            )?;
            tx.execute("DELETE FROM auth_codes WHERE client_id = $1", &[&client_id])?;
            tx.execute("DELETE FROM consents WHERE client_id = $1", &[&client_id])?;
            let n = tx.execute("DELETE FROM clients WHERE client_id = $1", &[&client_id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn put_consent(&self, user_id: i64, client_id: &str, scope: &str, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO consents (user_id, client_id, scope, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, created = excluded.created",
                &[&user_id, &client_id, &scope, &now],
            )?;
            Ok(())
        })
    }

    fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
                &[&user_id, &client_id],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
        })
    }

    fn consents_of(&self, user_id: i64) -> Result<Vec<ConsentRow>> {
        self.with_client(|c| {
            c.query(
                "SELECT c.client_id, k.name, c.scope, c.created FROM consents c
                 JOIN clients k ON k.client_id = c.client_id
                 WHERE c.user_id = $1 ORDER BY c.created, c.client_id COLLATE \"C\"",
                &[&user_id],
            )?
            .iter()
            .map(|r| {
                Ok(ConsentRow {
                    client_id: r.try_get(0)?,
                    client_name: r.try_get(1)?,
                    scope: r.try_get(2)?,
                    created: r.try_get(3)?,
                })
            })
            .collect()
        })
    }

    fn revoke_consent(&self, user_id: i64, client_id: &str) -> Result<bool> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM consents WHERE user_id = $1 AND client_id = $2",
                &[&user_id, &client_id],
            )?;
            tx.execute(
                "UPDATE tokens SET revoked = TRUE WHERE user_id = $1 AND client_id = $2",
                &[&user_id, &client_id],
            )?;
            tx.execute(
                "DELETE FROM auth_codes WHERE user_id = $1 AND client_id = $2",
                &[&user_id, &client_id],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }
}

impl IdentityStore for PostgresStore {
    fn link_identity(&self, identity: &str, user_id: i64, provider: &str, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO identities (identity, user_id, provider, linked_at) VALUES ($1, $2, $3, $4)",
                &[&identity, &user_id, &provider, &now],
            )
            .map_err(taken("identity"))?;
            Ok(())
        })
    }

    fn identity(&self, identity: &str) -> Result<Option<IdentityRow>> {
        self.with_client(|c| {
            c.query_opt(
                "SELECT identity, user_id, provider, linked_at FROM identities WHERE identity = $1",
                &[&identity],
            )?
            .map(|r| identity_row(&r))
            .transpose()
        })
    }

    fn identities_of(&self, user_id: i64) -> Result<Vec<IdentityRow>> {
        self.with_client(|c| {
            c.query(
                "SELECT identity, user_id, provider, linked_at FROM identities WHERE user_id = $1
                 ORDER BY linked_at, identity COLLATE \"C\"",
                &[&user_id],
            )?
            .iter()
            .map(identity_row)
            .collect()
        })
    }

    fn note_login_identity(&self, login_id: &str, identity: &str, at: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO login_identities (login_id, identity, authenticated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (login_id, identity) DO UPDATE SET authenticated_at = excluded.authenticated_at",
                &[&login_id, &identity, &at],
            )?;
            Ok(())
        })
    }

    fn login_identities(&self, login_id: &str) -> Result<Vec<(String, i64)>> {
        self.with_client(|c| {
            c.query(
                "SELECT identity, authenticated_at FROM login_identities WHERE login_id = $1
                 ORDER BY authenticated_at, identity COLLATE \"C\"",
                &[&login_id],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn set_allowed_domains(&self, endpoint_id: &str, domains: &[String]) -> Result<bool> {
        self.with_client(|c| {
            let n = c.execute(
                "UPDATE endpoints SET allowed_domains = $2 WHERE id = $1 AND NOT deleted",
                &[&endpoint_id, &domains.join(",")],
            )?;
            Ok(n > 0)
        })
    }
}

fn identity_row(r: &Row) -> Result<IdentityRow> {
    Ok(IdentityRow {
        identity: r.try_get(0)?,
        user_id: r.try_get(1)?,
        provider: r.try_get(2)?,
        linked_at: r.try_get(3)?,
    })
}

impl ShareStore for PostgresStore {
    fn create_group(&self, id: &str, name: &str, owner_id: i64, now: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO user_groups (id, name, owner_id, created) VALUES ($1, $2, $3, $4)",
                &[&id, &name, &owner_id, &now],
            )
            .map_err(taken("group name"))?;
            Ok(())
        })
    }

    fn group_by_name(&self, name: &str) -> Result<Option<GroupRow>> {
        self.with_client(|c| {
            let Some(r) = c.query_opt(
                "SELECT g.id, g.name, g.owner_id, u.name FROM user_groups g JOIN users u ON u.id = g.owner_id WHERE g.name = $1",
                &[&name],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(GroupRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                owner_id: r.try_get(2)?,
                owner_name: r.try_get(3)?,
            }))
        })
    }

    fn add_group_member(&self, group_id: &str, user_id: i64) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&group_id, &user_id],
            )? == 1)
        })
    }

    fn remove_group_member(&self, group_id: &str, user_id: i64) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                &[&group_id, &user_id],
            )? == 1)
        })
    }

    fn groups_of(&self, user_id: i64) -> Result<Vec<GroupListing>> {
        self.with_client(|c| {
            // One statement, so the groups and their members are of one
            // state: a row per (group, member), a group without members
            // once with no member; names in byte order, as SQLite's.
            let found = c.query(
                "SELECT g.id, g.name, o.name, mu.name
                 FROM user_groups g JOIN users o ON o.id = g.owner_id
                 LEFT JOIN group_members m ON m.group_id = g.id
                 LEFT JOIN users mu ON mu.id = m.user_id
                 WHERE g.owner_id = $1 OR g.id IN (SELECT group_id FROM group_members WHERE user_id = $1)
                 ORDER BY g.name COLLATE \"C\", mu.name COLLATE \"C\"",
                &[&user_id],
            )?;
            let mut listed: Vec<(String, GroupListing)> = Vec::new();
            for r in &found {
                let id: String = r.try_get(0)?;
                let member: Option<String> = r.try_get(3)?;
                if listed.last().is_none_or(|(last, _)| *last != id) {
                    listed.push((
                        id,
                        GroupListing {
                            name: r.try_get(1)?,
                            owner_name: r.try_get(2)?,
                            members: Vec::new(),
                        },
                    ));
                }
                if let (Some(member), Some((_, group))) = (member, listed.last_mut()) {
                    group.members.push(member);
                }
            }
            Ok(listed.into_iter().map(|(_, group)| group).collect())
        })
    }

    fn put_permission(&self, p: &PermissionRow) -> Result<()> {
        let (user, group) = match &p.grantee {
            Grantee::Identity { user_id, .. } => (Some(*user_id), None),
            Grantee::Group { group_id, .. } => (None, Some(group_id.as_str())),
            Grantee::AllAuthenticated | Grantee::Anonymous => (None, None),
        };
        self.with_client(|c| {
            c.execute(
                "INSERT INTO permissions (id, endpoint_id, path, mode, grantee_kind, grantee_user, grantee_group, expires, created, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &p.id,
                    &p.endpoint_id,
                    &p.path,
                    &p.mode.as_str(),
                    &p.grantee.kind(),
                    &user,
                    &group,
                    &p.expires,
                    &p.created,
                    &p.created_by,
                ],
            )?;
            Ok(())
        })
    }

    fn permission(&self, id: &str) -> Result<Option<PermissionRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!("SELECT {PERMISSION_COLUMNS} WHERE p.id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(permission_row)
            .transpose()
        })
    }

    fn endpoint_permissions(&self, endpoint_id: &str, now: i64) -> Result<Vec<PermissionRow>> {
        self.with_client(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {PERMISSION_COLUMNS} WHERE p.endpoint_id = $1 AND (p.expires IS NULL OR p.expires >= $2)
                         ORDER BY p.created, p.id COLLATE \"C\""
                    ),
                    &[&endpoint_id, &now],
                )?,
                permission_row,
            )
        })
    }

    fn delete_permission(&self, endpoint_id: &str, id: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "DELETE FROM permissions WHERE endpoint_id = $1 AND id = $2",
                &[&endpoint_id, &id],
            )? == 1)
        })
    }

    fn permissions_for(
        &self,
        user_id: i64,
        endpoint_id: &str,
        now: i64,
    ) -> Result<Vec<PermissionRow>> {
        self.with_client(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {PERMISSION_COLUMNS} WHERE p.endpoint_id = $3 AND {REACHES_USER}
                         ORDER BY p.created, p.id COLLATE \"C\""
                    ),
                    &[&user_id, &now, &endpoint_id],
                )?,
                permission_row,
            )
        })
    }

    fn shared_with(
        &self,
        user_id: i64,
        query: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<EndpointRow>> {
        self.with_client(|c| {
            let pattern = contains_pattern(query);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            rows(
                c.query(
                    &format!(
                        "SELECT {ENDPOINT_COLUMNS} WHERE NOT e.deleted AND e.owner_id <> $1
                         AND (lower(e.display_name) LIKE lower($3) ESCAPE '\\' OR lower(e.id) LIKE lower($3) ESCAPE '\\')
                         AND e.id IN (SELECT p.endpoint_id FROM permissions p WHERE {REACHES_USER})
                         ORDER BY e.created, e.id COLLATE \"C\" LIMIT $4"
                    ),
                    &[&user_id, &now, &pattern, &limit],
                )?,
                endpoint_row,
            )
        })
    }

    fn put_task_grant(&self, task_id: &str, side: &str, permission_id: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO task_grants (task_id, side, permission_id) VALUES ($1, $2, $3)",
                &[&task_id, &side, &permission_id],
            )?;
            Ok(())
        })
    }

    fn task_grants(&self, task_id: &str) -> Result<Vec<(String, String)>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "SELECT side, permission_id FROM task_grants WHERE task_id = $1 ORDER BY side COLLATE \"C\"",
                    &[&task_id],
                )?,
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
        })
    }

    fn active_tasks_of_permission(&self, permission_id: &str) -> Result<Vec<String>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "SELECT t.id FROM task_grants g JOIN tasks t ON t.id = g.task_id
                     WHERE g.permission_id = $1 AND t.status = 'ACTIVE' ORDER BY t.seq",
                    &[&permission_id],
                )?,
                |r| Ok(r.try_get(0)?),
            )
        })
    }

    fn put_link(&self, l: &LinkRow) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO links (id, token_hash, endpoint_id, path, created_by, created, expires, deleted, max_bytes, bytes_served)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &l.id,
                    &l.token_hash,
                    &l.endpoint_id,
                    &l.path,
                    &l.created_by,
                    &l.created,
                    &l.expires,
                    &l.deleted,
                    &l.max_bytes,
                    &l.bytes_served,
                ],
            )?;
            Ok(())
        })
    }

    fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE token_hash = $1"),
                &[&token_hash],
            )?
            .as_ref()
            .map(link_row)
            .transpose()
        })
    }

    fn links_of(&self, user_id: i64) -> Result<Vec<LinkRow>> {
        self.with_client(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {LINK_COLUMNS} FROM links WHERE created_by = $1 AND NOT deleted ORDER BY created, id"
                    ),
                    &[&user_id],
                )?,
                link_row,
            )
        })
    }

    fn delete_link(&self, user_id: i64, id: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE links SET deleted = TRUE WHERE id = $1 AND created_by = $2 AND NOT deleted",
                &[&id, &user_id],
            )? == 1)
        })
    }

    fn charge_link(&self, id: &str, bytes: i64) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE links SET bytes_served = bytes_served + $2
                 WHERE id = $1 AND (max_bytes IS NULL OR bytes_served + $2 <= max_bytes)",
                &[&id, &bytes],
            )? == 1)
        })
    }
}

const LINK_COLUMNS: &str = "id, token_hash, endpoint_id, path, created_by, created, expires, deleted, max_bytes, bytes_served";

fn link_row(r: &Row) -> Result<LinkRow> {
    Ok(LinkRow {
        id: r.try_get(0)?,
        token_hash: r.try_get(1)?,
        endpoint_id: r.try_get(2)?,
        path: r.try_get(3)?,
        created_by: r.try_get(4)?,
        created: r.try_get(5)?,
        expires: r.try_get(6)?,
        deleted: r.try_get(7)?,
        max_bytes: r.try_get(8)?,
        bytes_served: r.try_get(9)?,
    })
}

impl AuditStore for PostgresStore {
    fn record_audit(&self, events: &[AuditRow]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO audit_events (time, endpoint_id, actor_id, identity, action, path, task_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )?;
            for e in events {
                tx.execute(
                    &insert,
                    &[
                        &e.time,
                        &e.endpoint_id,
                        &e.actor_id,
                        &e.identity,
                        &e.action,
                        &e.path,
                        &e.task_id,
                        &e.detail,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn audit_events(&self, endpoint_id: &str, since: i64, limit: usize) -> Result<Vec<AuditRow>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut newest_first = rows(
                c.query(
                    "SELECT time, endpoint_id, actor_id, identity, action, path, task_id, detail FROM audit_events
                     WHERE endpoint_id = $1 AND time >= $2 ORDER BY time DESC, id DESC LIMIT $3",
                    &[&endpoint_id, &since, &limit],
                )?,
                |r| {
                    Ok(AuditRow {
                        time: r.try_get(0)?,
                        endpoint_id: r.try_get(1)?,
                        actor_id: r.try_get(2)?,
                        identity: r.try_get(3)?,
                        action: r.try_get(4)?,
                        path: r.try_get(5)?,
                        task_id: r.try_get(6)?,
                        detail: r.try_get(7)?,
                    })
                },
            )?;
            newest_first.reverse();
            Ok(newest_first)
        })
    }

    fn prune_audit(&self, before: i64, limit: usize) -> Result<u64> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            Ok(c.execute(
                "DELETE FROM audit_events WHERE id IN
                 (SELECT id FROM audit_events WHERE time < $1 ORDER BY time LIMIT $2)",
                &[&before, &limit],
            )?)
        })
    }

    fn unrecorded_expiries(&self, now: i64, limit: usize) -> Result<Vec<PermissionRow>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            rows(
                c.query(
                    &format!(
                        "SELECT {PERMISSION_COLUMNS} WHERE p.expires < $1 AND NOT p.expiry_recorded
                         ORDER BY p.expires, p.id COLLATE \"C\" LIMIT $2"
                    ),
                    &[&now, &limit],
                )?,
                permission_row,
            )
        })
    }

    fn record_expiry(&self, permission_id: &str, event: &AuditRow) -> Result<bool> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let marked = tx.execute(
                "UPDATE permissions SET expiry_recorded = TRUE WHERE id = $1 AND NOT expiry_recorded",
                &[&permission_id],
            )?;
            if marked > 0 {
                let e = event;
                tx.execute(
                    "INSERT INTO audit_events (time, endpoint_id, actor_id, identity, action, path, task_id, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&e.time, &e.endpoint_id, &e.actor_id, &e.identity, &e.action, &e.path, &e.task_id, &e.detail],
                )?;
            }
            tx.commit()?;
            Ok(marked > 0)
        })
    }
}

impl TaskStore for PostgresStore {
    // --- tasks ---

    fn create_task(&self, task: &NewTask, code: &str, event: &str) -> Result<()> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let o = &task.options;
            // `seq`, the order of submission, comes from its identity column.
            tx.execute(
                "INSERT INTO tasks (id, owner_id, source_id, destination_id, item_count,
                    sync_level, delete_extraneous, preserve_mtime, preserve_mode, skip_source_errors, streams,
                    label, deadline, status, created, bwlimit, checksum_algorithm, notify, on_success,
                    submission_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'ACTIVE', $14, $15, $16, $17, $18, $19)",
                &[
                    &task.id,
                    &task.owner_id,
                    &task.source_id,
                    &task.destination_id,
                    &sql_u64(task.items.len() as u64),
                    &sync_level_text(o.sync_level),
                    &o.delete,
                    &o.preserve_mtime,
                    &o.preserve_mode,
                    &o.skip_source_errors,
                    &o.streams.map(i64::from),
                    &task.label,
                    &task.deadline,
                    &task.created,
                    &o.bwlimit.map(sql_u64),
                    &o.checksum_algorithm.as_str(),
                    &task.notify.to_string(),
                    &o.on_success,
                    &task.submission_id,
                ],
            )?;
            // All items in one statement, numbered from 0 in their order.
            let sources: Vec<&[u8]> = task.items.iter().map(|i| i.source.as_bytes()).collect();
            let destinations: Vec<&[u8]> =
                task.items.iter().map(|i| i.destination.as_bytes()).collect();
            let recursive: Vec<bool> = task.items.iter().map(|i| i.recursive).collect();
            tx.execute(
                "INSERT INTO task_items (task_id, item, source, destination, recursive)
                 SELECT $1, n - 1, s, d, r FROM unnest($2::BYTEA[], $3::BYTEA[], $4::BOOLEAN[]) WITH ORDINALITY AS i(s, d, r, n)",
                &[&task.id, &sources, &destinations, &recursive],
            )?;
            // The filter rules likewise, numbered from 0 in their order.
            if !o.filters.is_empty() {
                let actions: Vec<&str> = o.filters.iter().map(|f| filter_action_text(f.action)).collect();
                let patterns: Vec<&[u8]> = o.filters.iter().map(|f| f.pattern.as_bytes()).collect();
                tx.execute(
                    "INSERT INTO task_filters (task_id, rule, action, pattern)
                     SELECT $1, n - 1, a, p FROM unnest($2::TEXT[], $3::BYTEA[]) WITH ORDINALITY AS f(a, p, n)",
                    &[&task.id, &actions, &patterns],
                )?;
            }
            tx.execute(
                "INSERT INTO task_events (task_id, seq, time, code, description) VALUES ($1, 1, $2, $3, $4)",
                &[&task.id, &task.created, &code, &event],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        self.with_client(|c| {
            c.query_opt(&format!("SELECT {TASK_COLUMNS} WHERE t.id = $1"), &[&id])?
                .as_ref()
                .map(task_row)
                .transpose()
        })
    }

    fn task_by_submission(&self, owner_id: i64, submission_id: &str) -> Result<Option<TaskRow>> {
        self.with_client(|c| {
            c.query_opt(
                &format!("SELECT {TASK_COLUMNS} WHERE t.owner_id = $1 AND t.submission_id = $2"),
                &[&owner_id, &submission_id],
            )?
            .as_ref()
            .map(task_row)
            .transpose()
        })
    }

    fn tasks_with_prefix(&self, owner_id: i64, prefix: &str, limit: usize) -> Result<Vec<TaskRow>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            rows(
                c.query(
                    &format!(
                        "SELECT {TASK_COLUMNS} WHERE t.owner_id = $1 AND substr(t.id, 1, length($2)) = $2
                         ORDER BY t.created, t.seq LIMIT $3"
                    ),
                    &[&owner_id, &prefix, &limit],
                )?,
                task_row,
            )
        })
    }

    fn tasks_of(&self, owner_id: i64, limit: usize) -> Result<Vec<TaskRow>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            rows(
                c.query(
                    &format!(
                        "SELECT {TASK_COLUMNS} WHERE t.owner_id = $1 ORDER BY t.created DESC, t.seq DESC LIMIT $2"
                    ),
                    &[&owner_id, &limit],
                )?,
                task_row,
            )
        })
    }

    #[cfg(test)]
    fn active_tasks(&self) -> Result<Vec<ActiveTask>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "SELECT t.id, t.source_id, s.display_name, s.revoked, t.destination_id, d.display_name, d.revoked, t.attempt, t.deadline
                     FROM tasks t JOIN endpoints s ON s.id = t.source_id JOIN endpoints d ON d.id = t.destination_id
                     WHERE t.status = 'ACTIVE' ORDER BY t.created, t.seq",
                    &[],
                )?,
                |r| {
                    Ok(ActiveTask {
                        id: r.try_get(0)?,
                        source_id: r.try_get(1)?,
                        source_name: r.try_get(2)?,
                        source_revoked: r.try_get(3)?,
                        destination_id: r.try_get(4)?,
                        destination_name: r.try_get(5)?,
                        destination_revoked: r.try_get(6)?,
                        attempt: u32::try_from(r.try_get::<_, i64>(7)?).unwrap_or_default(),
                        deadline: r.try_get(8)?,
                    })
                },
            )
        })
    }

    fn task_work(&self, id: &str) -> Result<Option<TaskWork>> {
        self.with_client(|c| {
            // One snapshot: the options and the items of one state.
            let mut tx = c
                .build_transaction()
                .isolation_level(::postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let Some(r) = tx.query_opt(
                "SELECT sync_level, delete_extraneous, preserve_mtime, preserve_mode, skip_source_errors, streams, bwlimit,
                    checksum_algorithm, on_success
                 FROM tasks WHERE id = $1",
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let sync_level = match r.try_get::<_, Option<String>>(0)? {
                None => None,
                Some(text) => Some(SyncLevel::parse(&text).ok_or_else(|| {
                    StoreError::Internal(format!("task {id} has an unknown sync level {text:?}"))
                })?),
            };
            let streams = match r.try_get::<_, Option<i64>>(5)? {
                None => None,
                Some(n) => Some(u32::try_from(n).map_err(|_| {
                    StoreError::Internal(format!("task {id} has {n} streams"))
                })?),
            };
            let bwlimit = r.try_get::<_, Option<i64>>(6)?.map(u64_of);
            let algorithm: String = r.try_get(7)?;
            let checksum_algorithm = ChecksumAlgorithm::parse(&algorithm).ok_or_else(|| {
                StoreError::Internal(format!(
                    "task {id} has an unknown checksum algorithm {algorithm:?}"
                ))
            })?;
            let filters = tx
                .query(
                    "SELECT action, pattern FROM task_filters WHERE task_id = $1 ORDER BY rule",
                    &[&id],
                )?
                .iter()
                .map(|r| {
                    let action: String = r.try_get(0)?;
                    let action = match action.as_str() {
                        "include" => FilterAction::Include,
                        "exclude" => FilterAction::Exclude,
                        other => {
                            return Err(StoreError::Internal(format!(
                                "task {id} has an unknown filter action {other:?}"
                            )));
                        }
                    };
                    Ok(FilterRule {
                        action,
                        pattern: WirePath::from_bytes(r.try_get::<_, Vec<u8>>(1)?),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let options = TransferOptions {
                sync_level,
                delete: r.try_get(1)?,
                preserve_mtime: r.try_get(2)?,
                preserve_mode: r.try_get(3)?,
                skip_source_errors: r.try_get(4)?,
                streams,
                filters,
                bwlimit,
                checksum_algorithm,
                on_success: r.try_get(8)?,
            };
            let items = tx
                .query(
                    "SELECT source, destination, recursive FROM task_items WHERE task_id = $1 ORDER BY item",
                    &[&id],
                )?
                .iter()
                .map(|r| {
                    Ok(TransferItem {
                        source: WirePath::from_bytes(r.try_get::<_, Vec<u8>>(0)?),
                        destination: WirePath::from_bytes(r.try_get::<_, Vec<u8>>(1)?),
                        recursive: r.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(Some(TaskWork { items, options }))
        })
    }

    fn begin_attempt(&self, id: &str, attempt: u32) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                &format!(
                    "UPDATE tasks SET attempt = $2, nodes = 1, {FOLD_CURRENT} WHERE id = $1 AND status = 'ACTIVE'"
                ),
                &[&id, &i64::from(attempt)],
            )? > 0)
        })
    }

    fn spread_attempt(&self, id: &str, attempt: u32, nodes: u32) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE tasks SET nodes = $3 WHERE id = $1 AND attempt = $2 AND status = 'ACTIVE'",
                &[&id, &i64::from(attempt), &i64::from(nodes)],
            )? > 0)
        })
    }

    fn set_progress(&self, id: &str, attempt: u32, counters: &TaskCounters) -> Result<bool> {
        self.with_client(|c| Ok(write_current(c, id, Some(attempt), counters)? > 0))
    }

    fn end_attempt(&self, id: &str, attempt: u32, fault: Option<&str>) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                &format!(
                    "UPDATE tasks SET {FOLD_CURRENT},
                        faults = faults + $4, last_fault = COALESCE($3, last_fault)
                     WHERE id = $1 AND attempt = $2 AND status = 'ACTIVE'"
                ),
                &[
                    &id,
                    &i64::from(attempt),
                    &fault,
                    &i64::from(fault.is_some()),
                ],
            )? > 0)
        })
    }

    fn note_fault(&self, id: &str, fault: &str) -> Result<bool> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE tasks SET faults = faults + 1, last_fault = $2 WHERE id = $1 AND status = 'ACTIVE'",
                &[&id, &fault],
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
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            if let Some(counters) = last {
                write_current(&mut tx, id, None, counters)?;
            }
            let ended = tx.execute(
                &format!(
                    "UPDATE tasks SET {FOLD_CURRENT}, status = $2, completed = $3, fatal_error = $4
                     WHERE id = $1 AND status = 'ACTIVE'"
                ),
                &[&id, &status.as_str(), &now, &error],
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
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // The task's row, locked: two events of one task take turns
            // for the next number. (No task: the insert's foreign key says so.)
            tx.execute(
                "SELECT 1 FROM tasks WHERE id = $1 FOR NO KEY UPDATE",
                &[&id],
            )?;
            let count: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM task_events WHERE task_id = $1",
                    &[&id],
                )?
                .try_get(0)?;
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
                "INSERT INTO task_events (task_id, seq, time, code, description) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &sql_u64(count + 1), &now, &code, &description],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn add_task_bytes_relayed(&self, id: &str, bytes: u64) -> Result<()> {
        self.with_client(|c| {
            // Saturating: a counter beyond i64 sticks at the top.
            c.execute(
                "UPDATE tasks SET bytes_relayed = CASE
                     WHEN bytes_relayed > 9223372036854775807 - $2 THEN 9223372036854775807
                     ELSE bytes_relayed + $2 END
                 WHERE id = $1",
                &[&id, &sql_u64(bytes)],
            )?;
            Ok(())
        })
    }

    fn task_events(&self, id: &str, limit: usize) -> Result<Vec<TaskEventRow>> {
        self.with_client(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut events = rows(
                c.query(
                    "SELECT seq, time, code, description FROM task_events WHERE task_id = $1 ORDER BY seq DESC LIMIT $2",
                    &[&id, &limit],
                )?,
                |r| {
                    Ok(TaskEventRow {
                        seq: u64_of(r.try_get(0)?),
                        time: r.try_get(1)?,
                        code: r.try_get(2)?,
                        description: r.try_get(3)?,
                    })
                },
            )?;
            events.reverse();
            Ok(events)
        })
    }

    fn task_stats(&self) -> Result<Vec<TaskStats>> {
        self.with_client(|c| {
            // SUM of BIGINT is NUMERIC in PostgreSQL: back to BIGINT, as
            // SQLite's integer sums are.
            let stats = rows(
                c.query(
                    "SELECT status, COUNT(*),
                            COALESCE(SUM(GREATEST(bytes_transferred, cur_bytes_transferred)), 0)::BIGINT,
                            COALESCE(SUM(GREATEST(files_transferred, cur_files_transferred)), 0)::BIGINT
                     FROM tasks GROUP BY status ORDER BY status",
                    &[],
                )?,
                |r| {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        u64_of(r.try_get(1)?),
                        u64_of(r.try_get(2)?),
                        u64_of(r.try_get(3)?),
                    ))
                },
            )?;
            // The CHECK constraint admits no other status.
            Ok(stats
                .into_iter()
                .filter_map(|(status, tasks, bytes_transferred, files_transferred)| {
                    Some(TaskStats {
                        status: TaskStatus::parse(&status)?,
                        tasks,
                        bytes_transferred,
                        files_transferred,
                    })
                })
                .collect())
        })
    }
}

/// Sets the running attempt's counters of ACTIVE task `id` (only if
/// `attempt` is the running one, when given); returns the rows changed.
fn write_current(
    c: &mut impl GenericClient,
    id: &str,
    attempt: Option<u32>,
    n: &TaskCounters,
) -> Result<u64> {
    Ok(c.execute(
        "UPDATE tasks SET cur_files = $3, cur_files_transferred = $4, cur_files_skipped = $5,
            cur_bytes_transferred = $6, cur_bytes = $7, cur_bytes_resent = $8, cur_walk_done = $9,
            cur_bytes_skipped = $10
         WHERE id = $1 AND ($2::BIGINT IS NULL OR attempt = $2) AND status = 'ACTIVE'",
        &[
            &id,
            &attempt.map(i64::from),
            &sql_u64(n.files),
            &sql_u64(n.files_transferred),
            &sql_u64(n.files_skipped),
            &sql_u64(n.bytes_transferred),
            &sql_u64(n.bytes),
            &sql_u64(n.bytes_resent),
            &n.walk_done,
            &sql_u64(n.bytes_skipped),
        ],
    )?)
}

#[cfg(test)]
pub(crate) mod tests;

mod cluster;
