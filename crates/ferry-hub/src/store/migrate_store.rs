//! `ferry-hub migrate-store`: moves a hub's state from its SQLite file
//! into an empty PostgreSQL database, checked.
//!
//! One PostgreSQL transaction does it all: the schema (this build's
//! PostgreSQL migrations), every table's rows (binary `COPY`, in the order
//! their foreign keys need), the identity columns moved past the copied
//! ids, and then the check: each table's row count and a SHA-256 over its
//! rows, read back from PostgreSQL, must equal those read from SQLite.
//! Only then does it commit, so a copy that fails or does not match leaves
//! the target empty. SQLite is read in one read transaction (a consistent
//! snapshot, even if something writes to it meanwhile; the hub should be
//! stopped all the same, or what it writes afterwards stays behind).

use super::postgres::{DatabaseUrl, migrate};
use super::{SqliteStore, StoreError};
use ::postgres::binary_copy::BinaryCopyInWriter;
use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::{ToSql, Type};
use anyhow::{Context, bail};
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The SQLite schema whose tables [`TABLES`] lists.
const SQLITE_SCHEMA: i64 = 25;

/// Columns each backend fills its own way, not copied: a task's change
/// mark is a counter in SQLite and a transaction id in PostgreSQL, whose
/// default marks each copied row as written by the copy.
const NOT_COPIED: &[(&str, &str)] = &[("tasks", "changed")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    /// An INTEGER 0/1 in SQLite, a BOOLEAN in PostgreSQL.
    Bool,
    Text,
    Bytes,
}

use Kind::*;

/// A table and its columns, in an order where every foreign key points
/// at a table before it. Both backends name the columns alike.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// A column filled from an identity sequence, moved past the copied rows.
    identity: Option<&'static str>,
}

const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("password_hash", Text),
            ("created", Int),
            ("email", Text),
        ],
        identity: Some("id"),
    },
    Table {
        name: "clients",
        columns: &[
            ("client_id", Text),
            ("name", Text),
            ("secret_hash", Text),
            ("user_id", Int),
            ("scopes", Text),
            ("created", Int),
            ("kind", Text),
            ("owner_id", Int),
            ("redirect_uris", Text),
        ],
        identity: None,
    },
    Table {
        name: "consents",
        columns: &[
            ("user_id", Int),
            ("client_id", Text),
            ("scope", Text),
            ("created", Int),
        ],
        identity: None,
    },
    Table {
        name: "auth_codes",
        columns: &[
            ("code_hash", Text),
            ("client_id", Text),
            ("user_id", Int),
            ("redirect_uri", Text),
            ("challenge", Text),
            ("scope", Text),
            ("expires", Int),
            ("used", Bool),
        ],
        identity: None,
    },
    Table {
        name: "tokens",
        columns: &[
            ("token_hash", Text),
            ("kind", Text),
            ("user_id", Int),
            ("client_id", Text),
            ("scope", Text),
            ("expires", Int),
            ("revoked", Bool),
            ("grant_id", Text),
        ],
        identity: None,
    },
    Table {
        name: "personal_tokens",
        columns: &[
            ("grant_id", Text),
            ("user_id", Int),
            ("label", Text),
            ("created", Int),
        ],
        identity: None,
    },
    Table {
        name: "sessions",
        columns: &[
            ("session_hash", Text),
            ("user_id", Int),
            ("csrf", Text),
            ("expires", Int),
        ],
        identity: None,
    },
    Table {
        name: "endpoints",
        columns: &[
            ("id", Text),
            ("owner_id", Int),
            ("display_name", Text),
            ("created", Int),
            ("cert_sha256", Text),
            ("registered", Int),
            ("revoked", Bool),
            ("deleted", Bool),
            ("allowed_domains", Text),
        ],
        identity: None,
    },
    Table {
        name: "setup_keys",
        columns: &[
            ("key_hash", Text),
            ("endpoint_id", Text),
            ("expires", Int),
            ("used", Bool),
            ("node", Text),
        ],
        identity: None,
    },
    Table {
        name: "endpoint_nodes",
        columns: &[
            ("endpoint_id", Text),
            ("name", Text),
            ("cert_sha256", Text),
            ("created", Int),
            ("registered", Int),
        ],
        identity: None,
    },
    Table {
        name: "user_groups",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("owner_id", Int),
            ("created", Int),
        ],
        identity: None,
    },
    Table {
        name: "group_members",
        columns: &[("group_id", Text), ("user_id", Int)],
        identity: None,
    },
    Table {
        name: "permissions",
        columns: &[
            ("id", Text),
            ("endpoint_id", Text),
            ("path", Bytes),
            ("mode", Text),
            ("grantee_kind", Text),
            ("grantee_user", Int),
            ("grantee_group", Text),
            ("expires", Int),
            ("created", Int),
            ("created_by", Int),
            ("expiry_recorded", Bool),
        ],
        identity: None,
    },
    Table {
        name: "tasks",
        columns: &[
            ("id", Text),
            ("seq", Int),
            ("owner_id", Int),
            ("source_id", Text),
            ("destination_id", Text),
            ("item_count", Int),
            ("sync_level", Text),
            ("delete_extraneous", Bool),
            ("preserve_mtime", Bool),
            ("preserve_mode", Bool),
            ("skip_source_errors", Bool),
            ("streams", Int),
            ("label", Text),
            ("deadline", Int),
            ("status", Text),
            ("attempt", Int),
            ("files", Int),
            ("files_transferred", Int),
            ("files_skipped", Int),
            ("bytes_transferred", Int),
            ("bytes", Int),
            ("bytes_resent", Int),
            ("walk_done", Bool),
            ("bytes_skipped", Int),
            ("cur_files", Int),
            ("cur_files_transferred", Int),
            ("cur_files_skipped", Int),
            ("cur_bytes_transferred", Int),
            ("cur_bytes", Int),
            ("cur_bytes_resent", Int),
            ("cur_walk_done", Bool),
            ("cur_bytes_skipped", Int),
            ("faults", Int),
            ("created", Int),
            ("completed", Int),
            ("last_fault", Text),
            ("fatal_error", Text),
            ("bwlimit", Int),
            ("checksum_algorithm", Text),
            ("notify", Text),
            ("notified", Text),
            ("on_success", Text),
            ("submission_id", Text),
            ("claimed_by", Text),
            ("lease_until", Int),
            ("bytes_relayed", Int),
            ("nodes", Int),
        ],
        identity: Some("seq"),
    },
    Table {
        name: "task_items",
        columns: &[
            ("task_id", Text),
            ("item", Int),
            ("source", Bytes),
            ("destination", Bytes),
            ("recursive", Bool),
        ],
        identity: None,
    },
    Table {
        name: "task_filters",
        columns: &[
            ("task_id", Text),
            ("rule", Int),
            ("action", Text),
            ("pattern", Bytes),
        ],
        identity: None,
    },
    Table {
        name: "task_events",
        columns: &[
            ("task_id", Text),
            ("seq", Int),
            ("time", Int),
            ("code", Text),
            ("description", Text),
        ],
        identity: None,
    },
    Table {
        name: "task_grants",
        columns: &[("task_id", Text), ("side", Text), ("permission_id", Text)],
        identity: None,
    },
    Table {
        name: "audit_events",
        columns: &[
            ("id", Int),
            ("time", Int),
            ("endpoint_id", Text),
            ("actor_id", Int),
            ("identity", Text),
            ("action", Text),
            ("path", Bytes),
            ("task_id", Text),
            ("detail", Text),
        ],
        identity: Some("id"),
    },
    Table {
        name: "timers",
        columns: &[
            ("id", Text),
            ("owner_id", Int),
            ("submission", Text),
            ("label", Text),
            ("interval_secs", Int),
            ("start", Int),
            ("stop_after_runs", Int),
            ("stop_after_date", Int),
            ("run_deadline", Int),
            ("created", Int),
            ("next_run", Int),
            ("runs", Int),
            ("skipped", Int),
            ("last_task_id", Text),
            ("status", Text),
        ],
        identity: None,
    },
    Table {
        name: "timer_events",
        columns: &[
            ("timer_id", Text),
            ("seq", Int),
            ("time", Int),
            ("code", Text),
            ("description", Text),
        ],
        identity: None,
    },
    Table {
        name: "webhooks",
        columns: &[
            ("id", Text),
            ("owner_id", Int),
            ("url", Text),
            ("events", Text),
            ("secret", Text),
            ("created", Int),
        ],
        identity: None,
    },
    Table {
        name: "identities",
        columns: &[
            ("identity", Text),
            ("user_id", Int),
            ("provider", Text),
            ("linked_at", Int),
        ],
        identity: None,
    },
    Table {
        name: "login_identities",
        columns: &[
            ("login_id", Text),
            ("identity", Text),
            ("authenticated_at", Int),
        ],
        identity: None,
    },
    Table {
        name: "oidc_codes",
        columns: &[
            ("code_hash", Text),
            ("nonce", Text),
            ("auth_time", Int),
            ("expires", Int),
        ],
        identity: None,
    },
    Table {
        name: "hub_instances",
        columns: &[("id", Text), ("lease_until", Int)],
        identity: None,
    },
    Table {
        name: "node_links",
        columns: &[
            ("endpoint_id", Text),
            ("node", Text),
            ("instance_id", Text),
            ("since", Int),
            ("data_address", Text),
            ("features", Text),
        ],
        identity: None,
    },
    Table {
        name: "control_links",
        columns: &[
            ("endpoint_id", Text),
            ("instance_id", Text),
            ("since", Int),
            ("data_address", Text),
            ("relay", Bool),
            ("paused", Bool),
        ],
        identity: None,
    },
    Table {
        name: "hub_secrets",
        columns: &[("name", Text), ("value", Text)],
        identity: None,
    },
    Table {
        name: "links",
        columns: &[
            ("id", Text),
            ("token_hash", Text),
            ("endpoint_id", Text),
            ("path", Bytes),
            ("created_by", Int),
            ("created", Int),
            ("expires", Int),
            ("deleted", Bool),
            ("max_bytes", Int),
            ("bytes_served", Int),
        ],
        identity: None,
    },
    // Transient (a call between instances lives seconds), copied all the
    // same: a hub being moved is stopped, so what is left is expired and
    // the first instance's sweep deletes it.
    Table {
        name: "hub_messages",
        columns: &[
            ("id", Int),
            ("to_instance", Text),
            ("payload", Text),
            ("taken", Bool),
            ("reply", Text),
            ("created", Int),
            ("deadline", Int),
        ],
        identity: Some("id"),
    },
    Table {
        name: "login_failures",
        columns: &[("key", Text), ("window_start", Int), ("count", Int)],
        identity: None,
    },
];

/// One value of a row, as both databases give it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Int(v) => v,
            Value::Bool(v) => v,
            Value::Text(v) => v,
            Value::Bytes(v) => v,
        }
    }

    /// Its bytes for the checksum: a tag, then a length and the data.
    fn hash_into(&self, hasher: &mut Sha256) {
        let (tag, data): (u8, Option<Vec<u8>>) = match self {
            Value::Int(v) => (1, v.map(|n| n.to_be_bytes().to_vec())),
            Value::Bool(v) => (2, v.map(|b| vec![u8::from(b)])),
            Value::Text(v) => (3, v.as_ref().map(|t| t.as_bytes().to_vec())),
            Value::Bytes(v) => (4, v.clone()),
        };
        hasher.update([tag]);
        match data {
            None => hasher.update([0]),
            Some(data) => {
                hasher.update([1]);
                hasher.update((data.len() as u64).to_be_bytes());
                hasher.update(&data);
            }
        }
    }
}

fn sqlite_value(
    table: &str,
    column: &str,
    kind: Kind,
    value: ValueRef<'_>,
) -> anyhow::Result<Value> {
    let odd = || anyhow::anyhow!("{table}.{column} holds {value:?}, not {kind:?}");
    Ok(match (kind, value) {
        (Int, ValueRef::Null) => Value::Int(None),
        (Bool, ValueRef::Null) => Value::Bool(None),
        (Text, ValueRef::Null) => Value::Text(None),
        (Bytes, ValueRef::Null) => Value::Bytes(None),
        (Int, ValueRef::Integer(n)) => Value::Int(Some(n)),
        (Bool, ValueRef::Integer(n)) => Value::Bool(Some(n != 0)),
        (Text, ValueRef::Text(t)) => {
            Value::Text(Some(String::from_utf8(t.to_vec()).map_err(|_| odd())?))
        }
        (Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Value::Bytes(Some(b.to_vec())),
        _ => return Err(odd()),
    })
}

fn postgres_value(row: &::postgres::Row, i: usize, kind: Kind) -> Result<Value, ::postgres::Error> {
    Ok(match kind {
        Int => Value::Int(row.try_get(i)?),
        Bool => Value::Bool(row.try_get(i)?),
        Text => Value::Text(row.try_get(i)?),
        Bytes => Value::Bytes(row.try_get(i)?),
    })
}

fn pg_type(kind: Kind) -> Type {
    match kind {
        Int => Type::INT8,
        Bool => Type::BOOL,
        Text => Type::TEXT,
        Bytes => Type::BYTEA,
    }
}

/// A table's rows, summed up: how many, and a SHA-256 over each row's
/// digest in sorted order (so the order either database returns them in
/// does not matter).
#[derive(Debug, Default)]
struct Tally {
    rows: Vec<[u8; 32]>,
}

impl Tally {
    fn add(&mut self, row: &[Value]) {
        let mut hasher = Sha256::new();
        for value in row {
            value.hash_into(&mut hasher);
        }
        self.rows.push(hasher.finalize().into());
    }

    fn finish(mut self) -> (u64, String) {
        self.rows.sort_unstable();
        let mut hasher = Sha256::new();
        for row in &self.rows {
            hasher.update(row);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        (self.rows.len() as u64, hex)
    }
}

/// What was copied, table by table: rows and checksum, equal on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    pub table: String,
    pub rows: u64,
    pub sha256: String,
}

/// Copies the hub's SQLite database at `sqlite` into the empty PostgreSQL
/// database `url` names, and checks the copy (see the module's doc).
pub fn sqlite_to_postgres(sqlite: &Path, url: &DatabaseUrl) -> anyhow::Result<Vec<Copied>> {
    // Brings the file to this build's schema (and refuses a newer one).
    drop(SqliteStore::open(sqlite)?);
    let mut from = rusqlite::Connection::open_with_flags(
        sqlite,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", sqlite.display()))?;
    let snapshot = from.transaction()?;
    let version: i64 =
        snapshot.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
    if version != SQLITE_SCHEMA {
        bail!(
            "{} has schema {version}; this ferry-hub copies schema {SQLITE_SCHEMA}",
            sqlite.display()
        );
    }

    // The SQLite schema has no tables this copy does not know.
    let tables: Vec<String> = {
        let mut stmt = snapshot.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> 'schema_version' ORDER BY name",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let unknown: Vec<&String> = tables
        .iter()
        .filter(|t| !TABLES.iter().any(|k| k.name == t.as_str()))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{} has tables this ferry-hub does not copy: {unknown:?}",
            sqlite.display()
        );
    }
    // Nor columns: each table's are the ones copied.
    for table in TABLES {
        let mut stmt = snapshot.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY name")?;
        let mut found: Vec<String> = stmt
            .query_map([table.name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        found.retain(|c| !NOT_COPIED.contains(&(table.name, c.as_str())));
        found.sort();
        let mut known: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        known.sort_unstable();
        if found != known {
            bail!(
                "{}: table {} has columns {found:?}; this ferry-hub copies {known:?}",
                sqlite.display(),
                table.name
            );
        }
    }

    let mut client = url.connect()?;
    let mut tx = client.transaction().map_err(StoreError::from)?;
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .and_then(|r| r.try_get(0))
        .map_err(StoreError::from)?;
    let Some(schema) = schema else {
        bail!(
            "database {}: no schema to create tables in (its search_path names none that exists)",
            url.shown()
        );
    };
    let existing: Vec<String> = tx
        .query(
            "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .map_err(StoreError::from)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)?;
    if !existing.is_empty() {
        bail!(
            "database {} is not empty (schema {schema} has tables: {}); migrate-store copies only into an empty one",
            url.shown(),
            existing.join(", ")
        );
    }
    migrate(&mut tx)?;

    let mut copied = Vec::new();
    for table in TABLES {
        let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        let list = columns.join(", ");
        let mut source = Tally::default();
        {
            let sink = tx
                .copy_in(&format!(
                    "COPY {} ({list}) FROM STDIN (FORMAT binary)",
                    table.name
                ))
                .map_err(StoreError::from)?;
            let types: Vec<Type> = table.columns.iter().map(|(_, k)| pg_type(*k)).collect();
            let mut writer = BinaryCopyInWriter::new(sink, &types);
            let mut stmt = snapshot.prepare(&format!("SELECT {list} FROM {}", table.name))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let values = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (column, kind))| {
                        sqlite_value(table.name, column, *kind, row.get_ref(i)?)
                    })
                    .collect::<anyhow::Result<Vec<Value>>>()?;
                source.add(&values);
                let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::sql).collect();
                writer
                    .write(&refs)
                    .map_err(StoreError::from)
                    .with_context(|| format!("copying {}", table.name))?;
            }
            writer
                .finish()
                .map_err(StoreError::from)
                .with_context(|| format!("copying {}", table.name))?;
        }
        if let Some(column) = table.identity {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', '{column}'), COALESCE((SELECT MAX({column}) FROM {0}), 0) + 1, false)",
                    table.name
                ),
                &[],
            )
            .map_err(StoreError::from)?;
        }
        // Read back what PostgreSQL now holds, as the hub will read it.
        let mut target = Tally::default();
        let mut back = tx
            .query_raw(
                &format!("SELECT {list} FROM {}", table.name),
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )
            .map_err(StoreError::from)?;
        while let Some(row) = back.next().map_err(StoreError::from)? {
            let values = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| postgres_value(&row, i, *kind))
                .collect::<Result<Vec<Value>, _>>()
                .map_err(StoreError::from)?;
            target.add(&values);
        }
        drop(back);
        let (rows, sha256) = source.finish();
        let (copied_rows, copied_sha256) = target.finish();
        if (rows, &sha256) != (copied_rows, &copied_sha256) {
            bail!(
                "the copy of {} does not match: SQLite has {rows} rows (sha256 {sha256}), PostgreSQL {copied_rows} (sha256 {copied_sha256}); nothing was committed",
                table.name
            );
        }
        copied.push(Copied {
            table: table.name.to_string(),
            rows,
            sha256,
        });
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(copied)
}

#[cfg(test)]
mod tests;
