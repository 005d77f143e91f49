//! The hub's state: accounts, OAuth clients, codes, tokens, sessions,
//! endpoints and setup keys.
//!
//! [`Store`] is the storage interface: plain methods on plain rows, times as
//! Unix seconds passed in, every secret stored only as a hash. The SQLite
//! backend (WAL, embedded) is the default; the interface is narrow enough
//! that a PostgreSQL one can follow. Schema changes are numbered migrations
//! applied in order at open.

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "the database is from a newer ferry-hub (schema {found}, this build knows {known}); upgrade ferry-hub"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the database lock was poisoned by a crashed request")]
    Poisoned,
}

type Result<T> = std::result::Result<T, StoreError>;

/// Each entry migrates the schema from its index to index + 1.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
    /// The account a confidential client acts as.
    pub user_id: i64,
    pub scopes: String,
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
    fn as_str(self) -> &'static str {
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupKeyUse {
    Fresh { endpoint_id: String },
    Used,
    Expired,
    Unknown,
}

/// The SQLite backend.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
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
        let mut conn = self.lock()?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
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
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            tx.execute("DELETE FROM schema_version", [])?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    // --- users ---

    pub fn add_user(&self, name: &str, password_hash: &str, now: i64) -> Result<i64> {
        let conn = self.lock()?;
        match conn.execute(
            "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)",
            params![name, password_hash, now],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "user {name:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let conn = self.lock()?;
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
    }

    pub fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let conn = self.lock()?;
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
    }

    // --- OAuth clients ---

    pub fn add_client(&self, client: &ClientRow, now: i64) -> Result<()> {
        let conn = self.lock()?;
        match conn.execute(
            "INSERT INTO clients (client_id, name, secret_hash, user_id, scopes, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![client.client_id, client.name, client.secret_hash, client.user_id, client.scopes, now],
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("client {:?} already exists", client.client_id))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT client_id, name, secret_hash, user_id, scopes FROM clients WHERE client_id = ?1",
                [client_id],
                |r| {
                    Ok(ClientRow {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        secret_hash: r.get(2)?,
                        user_id: r.get(3)?,
                        scopes: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    // --- authorization codes ---

    pub fn put_auth_code(&self, code: &AuthCodeRow) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, challenge, scope, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![code.code_hash, code.client_id, code.user_id, code.redirect_uri, code.challenge, code.scope, code.expires],
        )?;
        Ok(())
    }

    /// Marks a code used and returns it, atomically; a second redemption
    /// revokes every token the first one produced.
    pub fn take_auth_code(&self, code_hash: &str, now: i64) -> Result<CodeUse> {
        let mut conn = self.lock()?;
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
    }

    // --- tokens ---

    pub fn put_token(&self, token: &TokenRow) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO tokens (token_hash, kind, user_id, client_id, scope, expires, grant_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![token.token_hash, token.kind.as_str(), token.user_id, token.client_id, token.scope, token.expires, token.grant_id],
        )?;
        Ok(())
    }

    /// A live (unexpired, unrevoked) token of this kind.
    pub fn token(&self, token_hash: &str, kind: TokenKind, now: i64) -> Result<Option<TokenRow>> {
        let conn = self.lock()?;
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
    }

    /// Whether a token with this hash was ever issued and is now revoked
    /// (a replayed refresh token).
    pub fn token_was_revoked(&self, token_hash: &str) -> Result<Option<String>> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT grant_id FROM tokens WHERE token_hash = ?1 AND revoked = 1",
                [token_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn revoke_token(&self, token_hash: &str) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1",
            [token_hash],
        )?;
        Ok(())
    }

    /// Revokes a token if it is still unrevoked; `false` when another
    /// request revoked it first, so two concurrent refreshes cannot both
    /// rotate the same refresh token.
    pub fn revoke_live_token(&self, token_hash: &str) -> Result<bool> {
        let conn = self.lock()?;
        Ok(conn.execute(
            "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1 AND revoked = 0",
            [token_hash],
        )? > 0)
    }

    pub fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE tokens SET revoked = 1 WHERE grant_id = ?1",
            [grant_id],
        )?;
        Ok(())
    }

    // --- browser sessions ---

    pub fn put_session(
        &self,
        session_hash: &str,
        user_id: i64,
        csrf: &str,
        expires: i64,
    ) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO sessions (session_hash, user_id, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
            params![session_hash, user_id, csrf, expires],
        )?;
        Ok(())
    }

    pub fn session(&self, session_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT s.user_id, u.name, s.csrf, s.expires FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.session_hash = ?1 AND s.expires >= ?2",
                params![session_hash, now],
                |r| Ok(SessionRow { user_id: r.get(0)?, user_name: r.get(1)?, csrf: r.get(2)?, expires: r.get(3)? }),
            )
            .optional()?)
    }

    pub fn delete_session(&self, session_hash: &str) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "DELETE FROM sessions WHERE session_hash = ?1",
            [session_hash],
        )?;
        Ok(())
    }

    // --- endpoints ---

    pub fn create_endpoint(
        &self,
        id: &str,
        owner_id: i64,
        display_name: &str,
        now: i64,
    ) -> Result<()> {
        let conn = self.lock()?;
        match conn.execute(
            "INSERT INTO endpoints (id, owner_id, display_name, created) VALUES (?1, ?2, ?3, ?4)",
            params![id, owner_id, display_name, now],
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "you already have an endpoint named {display_name:?}; choose another name"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    const ENDPOINT_COLUMNS: &str = "e.id, e.owner_id, u.name, e.display_name, e.created, e.cert_sha256, e.revoked FROM endpoints e JOIN users u ON u.id = e.owner_id";

    fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
        Ok(EndpointRow {
            id: r.get(0)?,
            owner_id: r.get(1)?,
            owner_name: r.get(2)?,
            display_name: r.get(3)?,
            created: r.get(4)?,
            cert_sha256: r.get(5)?,
            revoked: r.get::<_, i64>(6)? != 0,
        })
    }

    pub fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {} WHERE e.id = ?1", Self::ENDPOINT_COLUMNS),
                [id],
                Self::endpoint_row,
            )
            .optional()?)
    }

    pub fn endpoint_by_name(
        &self,
        owner_id: i64,
        display_name: &str,
    ) -> Result<Option<EndpointRow>> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {} WHERE e.owner_id = ?1 AND e.display_name = ?2",
                    Self::ENDPOINT_COLUMNS
                ),
                params![owner_id, display_name],
                Self::endpoint_row,
            )
            .optional()?)
    }

    /// Endpoints owned by `owner_id` (or everyone's when `None`), whose name
    /// or id contains `query`, oldest first, at most `limit`.
    pub fn search_endpoints(
        &self,
        owner_id: Option<i64>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<EndpointRow>> {
        let conn = self.lock()?;
        let pattern = format!(
            "%{}%",
            query
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut stmt = conn.prepare(&format!(
            "SELECT {} WHERE (?1 IS NULL OR e.owner_id = ?1) AND (e.display_name LIKE ?2 ESCAPE '\\' OR e.id LIKE ?2 ESCAPE '\\')
             ORDER BY e.created, e.id LIMIT ?3",
            Self::ENDPOINT_COLUMNS
        ))?;
        let rows = stmt.query_map(params![owner_id, pattern, limit as i64], Self::endpoint_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records the certificate an endpoint registered; an older one no longer
    /// authenticates.
    pub fn set_endpoint_cert(&self, id: &str, cert_sha256: &str, now: i64) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE endpoints SET cert_sha256 = ?2, registered = ?3 WHERE id = ?1",
            params![id, cert_sha256, now],
        )?;
        Ok(())
    }

    pub fn revoke_endpoint(&self, id: &str) -> Result<bool> {
        let conn = self.lock()?;
        Ok(conn.execute("UPDATE endpoints SET revoked = 1 WHERE id = ?1", [id])? > 0)
    }

    // --- setup keys ---

    pub fn put_setup_key(&self, key_hash: &str, endpoint_id: &str, expires: i64) -> Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO setup_keys (key_hash, endpoint_id, expires) VALUES (?1, ?2, ?3)",
            params![key_hash, endpoint_id, expires],
        )?;
        Ok(())
    }

    /// Uses a setup key, atomically: it works once, before it expires.
    pub fn take_setup_key(&self, key_hash: &str, now: i64) -> Result<SetupKeyUse> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let row: Option<(String, i64, bool)> = tx
            .query_row(
                "SELECT endpoint_id, expires, used FROM setup_keys WHERE key_hash = ?1",
                [key_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
            )
            .optional()?;
        let outcome = match row {
            None => SetupKeyUse::Unknown,
            Some((_, _, true)) => SetupKeyUse::Used,
            Some((_, expires, false)) if expires < now => SetupKeyUse::Expired,
            Some((endpoint_id, _, false)) => {
                tx.execute(
                    "UPDATE setup_keys SET used = 1 WHERE key_hash = ?1",
                    [key_hash],
                )?;
                SetupKeyUse::Fresh { endpoint_id }
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Drops expired sessions, codes and tokens (kept a day for replay detection).
    pub fn purge_expired(&self, now: i64) -> Result<()> {
        let conn = self.lock()?;
        let day_ago = now - 86_400;
        conn.execute("DELETE FROM sessions WHERE expires < ?1", [now])?;
        conn.execute("DELETE FROM auth_codes WHERE expires < ?1", [day_ago])?;
        conn.execute("DELETE FROM tokens WHERE expires < ?1", [day_ago])?;
        Ok(())
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_user() -> (Store, i64) {
        let s = Store::in_memory().unwrap();
        let uid = s.add_user("alice", "hash", 0).unwrap();
        (s, uid)
    }

    #[test]
    fn migrations_are_idempotent_and_refuse_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        Store::open(&path).unwrap().add_user("a", "h", 0).unwrap();
        assert!(
            Store::open(&path)
                .unwrap()
                .user_by_name("a")
                .unwrap()
                .is_some()
        );
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer ferry-hub"), "{err}");
    }

    #[test]
    fn users_are_unique() {
        let (s, _) = store_with_user();
        assert!(matches!(
            s.add_user("alice", "h", 0),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn a_code_works_once_and_its_replay_revokes_its_tokens() {
        let (s, uid) = store_with_user();
        let code = AuthCodeRow {
            code_hash: "c".into(),
            client_id: "ferry-cli".into(),
            user_id: uid,
            redirect_uri: "r".into(),
            challenge: "x".into(),
            scope: "transfer".into(),
            expires: 100,
        };
        s.put_auth_code(&code).unwrap();
        assert_eq!(s.take_auth_code("c", 200).unwrap(), CodeUse::Expired);
        assert_eq!(
            s.take_auth_code("c", 50).unwrap(),
            CodeUse::Fresh(code.clone())
        );
        let token = TokenRow {
            token_hash: "t".into(),
            kind: TokenKind::Access,
            user_id: uid,
            user_name: "alice".into(),
            client_id: "ferry-cli".into(),
            scope: "transfer".into(),
            expires: 1000,
            grant_id: "c".into(),
        };
        s.put_token(&token).unwrap();
        assert_eq!(s.token("t", TokenKind::Access, 50).unwrap(), Some(token));
        assert_eq!(s.token("t", TokenKind::Refresh, 50).unwrap(), None);
        assert_eq!(s.take_auth_code("c", 50).unwrap(), CodeUse::Reused);
        assert_eq!(
            s.token("t", TokenKind::Access, 50).unwrap(),
            None,
            "replay must revoke"
        );
        assert_eq!(s.take_auth_code("nope", 50).unwrap(), CodeUse::Unknown);
    }

    #[test]
    fn setup_keys_work_once_before_expiry() {
        let (s, uid) = store_with_user();
        s.create_endpoint("e1", uid, "laptop", 0).unwrap();
        s.put_setup_key("k", "e1", 100).unwrap();
        assert_eq!(s.take_setup_key("k", 200).unwrap(), SetupKeyUse::Expired);
        assert_eq!(
            s.take_setup_key("k", 10).unwrap(),
            SetupKeyUse::Fresh {
                endpoint_id: "e1".into()
            }
        );
        assert_eq!(s.take_setup_key("k", 10).unwrap(), SetupKeyUse::Used);
        assert_eq!(s.take_setup_key("other", 10).unwrap(), SetupKeyUse::Unknown);
    }

    #[test]
    fn endpoint_names_are_unique_per_owner_and_searchable() {
        let (s, uid) = store_with_user();
        let bob = s.add_user("bob", "h", 0).unwrap();
        s.create_endpoint("e1", uid, "laptop", 1).unwrap();
        s.create_endpoint("e2", bob, "laptop", 2).unwrap();
        assert!(matches!(
            s.create_endpoint("e3", uid, "laptop", 3),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.search_endpoints(Some(uid), "", 10).unwrap().len(), 1);
        assert_eq!(s.search_endpoints(None, "lap", 10).unwrap().len(), 2);
        assert_eq!(
            s.search_endpoints(None, "%", 10).unwrap().len(),
            0,
            "LIKE wildcards are escaped"
        );
        assert_eq!(s.endpoint_by_name(bob, "laptop").unwrap().unwrap().id, "e2");
        assert!(s.revoke_endpoint("e1").unwrap());
        assert!(s.endpoint("e1").unwrap().unwrap().revoked);
    }
}
