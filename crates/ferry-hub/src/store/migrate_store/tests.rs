//! Tests of `migrate-store`: a hub's state moves from SQLite to
//! PostgreSQL exactly (non-UTF-8 paths included), and the PostgreSQL
//! store then answers as the SQLite one did.

use super::*;
use crate::store::postgres::tests::test_server;
use crate::store::{
    AccountStore, AuditRow, AuditStore, AuthCodeRow, ClientKind, ClientRow, Grantee, NewTask,
    NewTimer, OidcCodeRow, PermissionRow, PostgresStore, ShareStore, Storage, TaskStore, TokenKind,
    TokenRow, TransferItem, TransferOptions,
};
use ferry_proto::filter::FilterRule;
use ferry_proto::notify::NotifyEvents;
use ferry_proto::share::ShareMode;
use ferry_proto::task::{SyncLevel, TaskCounters, TaskStatus};
use ferry_proto::wire_path::WirePath;

fn item(source: &[u8], destination: &[u8], recursive: bool) -> TransferItem {
    TransferItem {
        source: WirePath::from_bytes(source.to_vec()),
        destination: WirePath::from_bytes(destination.to_vec()),
        recursive,
    }
}

/// A hub's worth of state: two users, a client, codes, tokens (one a
/// personal token), a session, endpoints (one renamed, one deleted, one
/// revoked), a used setup key, tasks with non-UTF-8 paths in every state
/// (one with filter rules and a bandwidth cap), with events; a group with
/// a member, permissions (to the group, to a user, an expired one to
/// everyone) with a task acting under one, and the sharing record.
fn populate(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash-a", 1).unwrap();
    let bob = s.add_user("bob", "hash-b", 2).unwrap();
    s.add_client(
        &ClientRow {
            client_id: "svc-1".into(),
            name: "robot".into(),
            secret_hash: Some("sh".into()),
            user_id: bob,
            scopes: "transfer".into(),
            kind: ClientKind::Admin,
            owner_id: None,
            redirect_uris: vec![],
        },
        3,
    )
    .unwrap();
    s.add_client(
        &ClientRow {
            client_id: "portal-1".into(),
            name: "portal".into(),
            secret_hash: Some("ph".into()),
            user_id: alice,
            scopes: String::new(),
            kind: ClientKind::Portal,
            owner_id: Some(alice),
            redirect_uris: vec!["https://a.example/cb".into(), "https://b.example/cb".into()],
        },
        3,
    )
    .unwrap();
    s.put_consent(bob, "portal-1", "openid transfer", 3)
        .unwrap();
    s.put_auth_code(&AuthCodeRow {
        code_hash: "code".into(),
        client_id: "ferry-cli".into(),
        user_id: alice,
        redirect_uri: "http://localhost/cb".into(),
        challenge: "ch".into(),
        scope: "transfer".into(),
        expires: 9_000_000_000,
    })
    .unwrap();
    s.take_auth_code("code", 4).unwrap();
    s.put_oidc_code(&OidcCodeRow {
        code_hash: "code".into(),
        nonce: Some("n0nce".into()),
        auth_time: 3,
        expires: 9_000_000_000,
    })
    .unwrap();
    for (hash, kind, grant) in [
        ("tok-a", TokenKind::Access, "g1"),
        ("tok-r", TokenKind::Refresh, "g1"),
        ("tok-old", TokenKind::Access, "g0"),
    ] {
        s.put_token(&TokenRow {
            token_hash: hash.into(),
            kind,
            user_id: alice,
            user_name: "alice".into(),
            client_id: "ferry-cli".into(),
            scope: "transfer setup".into(),
            expires: 9_000_000_000,
            grant_id: grant.into(),
        })
        .unwrap();
    }
    s.revoke_grant("g0").unwrap();
    s.put_token(&TokenRow {
        token_hash: "tok-pat".into(),
        kind: TokenKind::Access,
        user_id: alice,
        user_name: "alice".into(),
        client_id: "ferry-cli".into(),
        scope: "transfer".into(),
        expires: 9_000_000_000,
        grant_id: "pat-1".into(),
    })
    .unwrap();
    s.put_personal_token("pat-1", alice, "nightly ☾", 5)
        .unwrap();
    s.put_session("sess", alice, "csrf", 9_000_000_000).unwrap();
    for (id, owner, name) in [
        ("e1", alice, "laptop"),
        ("e2", alice, "cluster"),
        ("e3", alice, "old"),
        ("e4", bob, "laptop"),
    ] {
        s.create_endpoint(id, owner, name, 10).unwrap();
    }
    s.set_endpoint_cert("e1", "aa", 11).unwrap();
    s.rename_endpoint("e2", "hpc").unwrap();
    s.delete_endpoint("e3").unwrap();
    s.revoke_endpoint("e4").unwrap();
    s.put_setup_key("key", "e1", 9_000_000_000).unwrap();
    s.take_setup_key("key", 12).unwrap();
    s.add_endpoint_node("e2", "node-2", "nodekey", 9_000_000_000, 13)
        .unwrap();
    s.take_setup_key("nodekey", 14).unwrap();
    s.set_node_cert("e2", "node-2", "bb", 14).unwrap();
    s.add_endpoint_node("e2", "dtn3", "nodekey3", 9_000_000_000, 15)
        .unwrap();
    let options = TransferOptions {
        sync_level: Some(SyncLevel::Checksum),
        delete: true,
        preserve_mtime: false,
        preserve_mode: true,
        skip_source_errors: true,
        streams: Some(u32::MAX),
        // Order kept, pattern bytes exact.
        filters: vec![
            FilterRule::include(&b"keep\xff*"[..]),
            FilterRule::exclude("*.tmp"),
            FilterRule::exclude("*"),
        ],
        bwlimit: Some(i64::MAX as u64),
        checksum_algorithm: ferry_proto::task::ChecksumAlgorithm::Blake3,
        on_success: Some("slurm".into()),
    };
    for (n, id) in ["zz-running", "mm-done", "aa-failed"].iter().enumerate() {
        s.create_task(
            &NewTask {
                submission_id: None,
                id: (*id).into(),
                owner_id: alice,
                source_id: "e1".into(),
                destination_id: "e2".into(),
                items: vec![
                    item(
                        b"/data/r\xe9sum\xe9/\xff\xfe",
                        b"/in/caf\xc3\xa9 100%",
                        true,
                    ),
                    item(b"", b"/in/%25 not an escape\n", false),
                    item("/données/数据".as_bytes(), b"/in/\x80", false),
                ],
                options: if n == 0 {
                    options.clone()
                } else {
                    TransferOptions::default()
                },
                label: [Some("ünïcode ✓"), None, Some("")][n].map(String::from),
                deadline: [Some(i64::MAX), None, Some(-1)][n],
                // One second for all three: their order is their seq.
                created: 20,
                notify: [NotifyEvents::DEFAULT, NotifyEvents::NONE, NotifyEvents::ALL][n],
            },
            "SUBMITTED",
            "3 items",
        )
        .unwrap();
        s.begin_attempt(id, 1).unwrap();
        s.set_progress(
            id,
            1,
            &TaskCounters {
                files: 3,
                files_transferred: 2,
                bytes_transferred: u64::MAX,
                walk_done: true,
                ..TaskCounters::default()
            },
        )
        .unwrap();
        s.add_task_event(id, "FAULT", "attempt 1: connection reset", 21, false)
            .unwrap();
    }
    s.end_attempt("zz-running", 1, Some("reset")).unwrap();
    s.finish_task("mm-done", TaskStatus::Succeeded, None, None, 30)
        .unwrap();
    s.add_task_event("mm-done", "SUCCEEDED", "done", 30, true)
        .unwrap();
    s.finish_task("aa-failed", TaskStatus::Failed, None, Some("deadline"), 31)
        .unwrap();

    s.create_group("grp-1", "lab", alice, 40).unwrap();
    s.add_group_member("grp-1", bob).unwrap();
    let permission = |id: &str, path: &[u8], mode, grantee, expires| PermissionRow {
        id: id.into(),
        endpoint_id: "e1".into(),
        path: path.to_vec(),
        mode,
        grantee,
        expires,
        created: 41,
        created_by: alice,
    };
    for p in [
        permission(
            "p-lab",
            b"/data/r\xe9sum\xe9",
            ShareMode::ReadWrite,
            Grantee::Group {
                group_id: "grp-1".into(),
                name: String::new(),
            },
            Some(9_000_000_000),
        ),
        permission(
            "p-bob",
            b"/data/plain",
            ShareMode::Read,
            Grantee::Identity {
                user_id: bob,
                name: String::new(),
            },
            None,
        ),
        permission(
            "p-all",
            b"/",
            ShareMode::Read,
            Grantee::AllAuthenticated,
            Some(42),
        ),
    ] {
        s.put_permission(&p).unwrap();
    }
    s.put_task_grant("zz-running", "source", "p-lab").unwrap();
    s.record_audit(&[
        audit(41, Some(alice), "permission_create", None, None),
        audit(
            43,
            None,
            "read",
            Some(b"/data/r\xe9sum\xe9"),
            Some("zz-running"),
        ),
    ])
    .unwrap();

    s.create_timer(&NewTimer {
        id: "timer-1".into(),
        owner_id: alice,
        submission: r#"{"source_endpoint":"e1","destination_endpoint":"e2","items":[]}"#.into(),
        label: Some("nightly".into()),
        interval: 86_400,
        start: 50,
        stop_after_runs: Some(7),
        stop_after_date: None,
        run_deadline: Some(3600),
        created: 49,
    })
    .unwrap();
    assert!(
        s.claim_timer_run("timer-1", 50, Some(86_450), false)
            .unwrap()
    );
    s.record_timer_run("timer-1", "mm-done").unwrap();
    s.add_timer_event("timer-1", "RUN", "run 1: task mm-done", 50)
        .unwrap();
    s.link_identity("alice@example.edu", alice, "campus", 50)
        .unwrap();
    s.note_login_identity("sess", "alice@example.edu", 51)
        .unwrap();
    s.note_login_identity("sess", "alice@hub.local", 49)
        .unwrap();
    assert!(
        s.set_allowed_domains("e1", &["example.edu".into(), "example.org".into()])
            .unwrap()
    );
}

fn audit(
    time: i64,
    actor_id: Option<i64>,
    action: &str,
    path: Option<&[u8]>,
    task_id: Option<&str>,
) -> AuditRow {
    AuditRow {
        time,
        endpoint_id: "e1".into(),
        actor_id,
        identity: "alice".into(),
        action: action.into(),
        path: path.map(<[u8]>::to_vec),
        task_id: task_id.map(str::to_string),
        detail: "lab rw".into(),
    }
}

/// What the hub asks a store, answered by `s`, as one comparable text.
fn answers(s: &dyn Storage) -> String {
    let mut out = Vec::new();
    for name in ["alice", "bob", "carol"] {
        out.push(format!("{:?}", s.user_by_name(name).unwrap()));
    }
    out.push(format!("{:?}", s.client("svc-1").unwrap()));
    for (hash, kind) in [
        ("tok-a", TokenKind::Access),
        ("tok-r", TokenKind::Refresh),
        ("tok-old", TokenKind::Access),
    ] {
        out.push(format!("{:?}", s.token(hash, kind, 100).unwrap()));
        out.push(format!("{:?}", s.token_was_revoked(hash).unwrap()));
    }
    out.push(format!(
        "{:?}",
        s.token("tok-pat", TokenKind::Access, 100).unwrap()
    ));
    out.push(format!("{:?}", s.personal_tokens(1, 100).unwrap()));
    out.push(format!("{:?}", s.session("sess", 100).unwrap()));
    out.push(format!("{:?}", s.sessions_of(1, 100).unwrap()));
    for id in ["e1", "e2", "e3", "e4"] {
        out.push(format!("{:?}", s.endpoint(id).unwrap()));
    }
    out.push(format!("{:?}", s.search_endpoints(None, "", 100).unwrap()));
    out.push(format!("{:?}", s.endpoint_by_name(1, "hpc").unwrap()));
    out.push(format!("{:?}", s.revoked_endpoints(10).unwrap()));
    out.push(format!("{:?}", s.tasks_of(1, 10).unwrap()));
    out.push(format!("{:?}", s.tasks_with_prefix(1, "", 10).unwrap()));
    out.push(format!("{:?}", s.active_tasks().unwrap()));
    for id in ["zz-running", "mm-done", "aa-failed"] {
        out.push(format!("{:?}", s.task_work(id).unwrap()));
        out.push(format!("{:?}", s.task_events(id, 100).unwrap()));
    }
    out.push(format!("{:?}", s.group_by_name("lab").unwrap()));
    for user in [1, 2] {
        out.push(format!("{:?}", s.groups_of(user).unwrap()));
        out.push(format!("{:?}", s.permissions_for(user, "e1", 100).unwrap()));
        out.push(format!("{:?}", s.shared_with(user, "", 100, 10).unwrap()));
    }
    for id in ["p-lab", "p-bob", "p-all"] {
        out.push(format!("{:?}", s.permission(id).unwrap()));
    }
    out.push(format!("{:?}", s.endpoint_permissions("e1", 100).unwrap()));
    out.push(format!("{:?}", s.task_grants("zz-running").unwrap()));
    out.push(format!(
        "{:?}",
        s.active_tasks_of_permission("p-lab").unwrap()
    ));
    out.push(format!("{:?}", s.audit_events("e1", 0, 10).unwrap()));
    out.push(format!("{:?}", s.timers_of(1, 10).unwrap()));
    out.push(format!("{:?}", s.timer_events("timer-1", 10).unwrap()));
    out.push(format!("{:?}", s.identities_of(1).unwrap()));
    out.push(format!("{:?}", s.identity("alice@example.edu").unwrap()));
    out.push(format!("{:?}", s.login_identities("sess").unwrap()));
    out.push(format!("{:?}", s.oidc_code("code").unwrap()));
    out.join("\n")
}

#[test]
fn a_hub_moves_to_postgres_exactly_and_answers_the_same() {
    let Some(schemas) = test_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    populate(&sqlite);
    let expected = answers(&sqlite);
    let url = schemas.fresh();
    let copied = sqlite_to_postgres(&path, &url).unwrap();
    let rows = |table: &str| copied.iter().find(|c| c.table == table).unwrap().rows;
    assert_eq!(copied.len(), TABLES.len());
    assert_eq!(
        (
            rows("users"),
            rows("endpoints"),
            rows("tasks"),
            rows("task_items")
        ),
        (2, 4, 3, 9)
    );
    assert_eq!(rows("task_events"), 3 + 3 + 1);
    assert_eq!((rows("timers"), rows("timer_events")), (1, 1));
    assert_eq!(
        (
            rows("personal_tokens"),
            rows("user_groups"),
            rows("group_members"),
            rows("permissions"),
            rows("task_grants"),
            rows("audit_events"),
            rows("task_filters"),
            rows("identities"),
            rows("login_identities"),
        ),
        (1, 1, 1, 3, 1, 2, 3, 1, 2)
    );

    let pg = PostgresStore::open(&url).unwrap();
    assert_eq!(answers(&pg), expected);
    // The paths came across as bytes, the filter rules in their order.
    let work = pg.task_work("zz-running").unwrap().unwrap();
    assert_eq!(
        work.items[0].source.as_bytes(),
        b"/data/r\xe9sum\xe9/\xff\xfe"
    );
    assert_eq!(work.options.filters[0].pattern.as_bytes(), b"keep\xff*");
    assert_eq!(work.options.bwlimit, Some(i64::MAX as u64));
    // Sharing answers as it did: bob reaches e1 through the group and
    // by name, the expired permission to everyone no longer.
    let reach: Vec<String> = pg
        .permissions_for(2, "e1", 100)
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(reach, ["p-bob", "p-lab"]);
    assert_eq!(pg.personal_tokens(1, 100).unwrap()[0].label, "nightly ☾");
    // New rows continue after the copied ones: ids, order of submission.
    let carol = pg.add_user("carol", "h", 40).unwrap();
    assert_eq!(carol, 3);
    pg.create_task(
        &crate::store::conformance::new_task("bb-new", 1, 20),
        "SUBMITTED",
        "x",
    )
    .unwrap();
    let ids: Vec<String> = pg
        .tasks_with_prefix(1, "", 10)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["zz-running", "mm-done", "aa-failed", "bb-new"]);
    pg.record_audit(&[audit(50, Some(carol), "ls", Some(b"/"), None)])
        .unwrap();
    assert_eq!(pg.audit_events("e1", 0, 10).unwrap().len(), 3);

    // The SQLite file is left as it was.
    drop(sqlite);
    assert_eq!(answers(&SqliteStore::open(&path).unwrap()), expected);
}

#[test]
fn migrate_store_copies_only_into_an_empty_database() {
    let Some(schemas) = test_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    populate(&SqliteStore::open(&path).unwrap());
    let url = schemas.fresh();
    sqlite_to_postgres(&path, &url).unwrap();
    let err = sqlite_to_postgres(&path, &url).unwrap_err().to_string();
    assert!(err.contains("is not empty"), "{err}");
    // A database a PostgreSQL hub already uses is not empty either; and
    // a refused copy leaves what was there alone.
    let used = schemas.fresh();
    PostgresStore::open(&used)
        .unwrap()
        .add_user("zed", "h", 0)
        .unwrap();
    let err = sqlite_to_postgres(&path, &used).unwrap_err().to_string();
    assert!(err.contains("users"), "{err}");
    let pg = PostgresStore::open(&used).unwrap();
    assert!(pg.user_by_name("zed").unwrap().is_some());
    assert!(pg.user_by_name("alice").unwrap().is_none());
}

/// The verb as an admin runs it: a hub made by `init`, moved, then opened
/// through `hub.toml`'s `database`.
#[test]
fn the_migrate_store_verb_moves_a_hub_that_then_opens_on_postgres() {
    let Some(schemas) = test_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = crate::state::HubDir::new(&dir.path().join("hub")).unwrap();
    crate::state::init(&hub, "https://127.0.0.1:8443").unwrap();
    populate(&*hub.open_store().unwrap());
    let url = schemas.fresh();
    // The fresh schema rides in the URL, as a deployment may choose one.
    let schema = url
        .config
        .get_options()
        .unwrap()
        .trim_start_matches("-c search_path=")
        .to_string();
    let to = format!(
        "{}?options=-c%20search_path%3D{schema}",
        std::env::var("FERRY_TEST_POSTGRES").unwrap()
    );
    let run = |args: &[&str]| {
        let mut all = vec!["ferry-hub".into(), "migrate-store".into()];
        all.extend(args.iter().map(std::ffi::OsString::from));
        crate::main_with_args(all)
    };
    let dir_arg = hub.root().to_str().unwrap().to_string();
    assert_eq!(
        run(&["--dir", &dir_arg, "--to", &to]),
        std::process::ExitCode::SUCCESS
    );
    let config = std::fs::read_to_string(hub.config()).unwrap();
    std::fs::write(
        hub.config(),
        format!("database = {}\n{config}", toml::Value::String(to.clone())),
    )
    .unwrap();
    let store = hub.open_store().unwrap();
    assert!(format!("{store:?}").contains("PostgresStore"), "{store:?}");
    assert_eq!(
        answers(&*store),
        answers(&SqliteStore::open(&hub.database()).unwrap())
    );
    // Once moved, there is nothing more to move.
    assert_eq!(
        run(&["--dir", &dir_arg, "--to", &to]),
        std::process::ExitCode::FAILURE
    );
}

/// The copy knows the SQLite schema this build makes, every table and
/// column of it: what a new migration adds cannot be left behind. (No
/// server needed: the SQLite side is checked before connecting, so the
/// copy gets as far as a port where nothing listens.)
#[test]
fn the_copy_knows_every_table_and_column_of_the_current_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    drop(SqliteStore::open(&path).unwrap());
    let nowhere = DatabaseUrl::parse(
        "postgres://ferry@127.0.0.1:1/ferry?connect_timeout=5",
        dir.path(),
    )
    .unwrap();
    let err = format!("{:#}", sqlite_to_postgres(&path, &nowhere).unwrap_err());
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(
        !err.contains("schema") && !err.contains("does not copy") && !err.contains("columns"),
        "{err}"
    );
    // A column the copy does not know is refused, naming it.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE tasks ADD COLUMN surprise INTEGER")
        .unwrap();
    let err = sqlite_to_postgres(&path, &nowhere).unwrap_err().to_string();
    assert!(err.contains("surprise"), "{err}");
}
