//! Tests of the PostgreSQL backend: the conformance suite and its own
//! checks (runtimes, locks, migrations, lost connections) against the
//! server `FERRY_TEST_POSTGRES` names, each store in a fresh schema; and
//! the checks that need no server (URLs, error classes).

use super::*;
use crate::store::conformance::{self, new_task};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Says, where the person running the tests sees it, that this test did
/// not run, and why (as `ferry_tests::skip` does for the workspace's tests).
fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("(a test)");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
}

/// The server the tests use: `FERRY_TEST_POSTGRES`. Without it the test
/// says SKIPPED and gets `None`, unless `FERRY_REQUIRE_POSTGRES=1` (as in
/// CI), which makes that a failure.
pub(crate) fn test_server() -> Option<Schemas> {
    match std::env::var("FERRY_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(Schemas {
            server: DatabaseUrl::parse(&url, Path::new(".")).unwrap(),
            made: Mutex::new(Vec::new()),
        }),
        _ => {
            assert!(
                std::env::var("FERRY_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "FERRY_REQUIRE_POSTGRES=1 but FERRY_TEST_POSTGRES does not name a server"
            );
            skip(
                "no PostgreSQL server: set FERRY_TEST_POSTGRES=postgres://USER:PASSWORD@HOST:PORT/DB (`bash .ci/postgres.sh start` starts one)",
            );
            None
        }
    }
}

/// Fresh schemas on the test server, so that tests and test runs sharing
/// one database never meet; dropped, with what they hold, with this.
pub(crate) struct Schemas {
    server: DatabaseUrl,
    made: Mutex<Vec<String>>,
}

impl Schemas {
    /// A new, empty schema, and the server's URL whose tables live there.
    pub(crate) fn fresh(&self) -> DatabaseUrl {
        let name = self.fresh_schema();
        self.server.in_schema(&name)
    }

    /// A new, empty schema's name.
    pub(crate) fn fresh_schema(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "ferry_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = self.server.connect().unwrap();
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        self.made.lock().unwrap().push(name.clone());
        name
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        if made.is_empty() {
            return;
        }
        if let Ok(mut client) = self.server.connect() {
            for name in made {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        }
    }
}

fn open(url: &DatabaseUrl) -> PostgresStore {
    PostgresStore::open(url).unwrap()
}

#[test]
fn postgres_passes_the_conformance_suite() {
    let Some(schemas) = test_server() else {
        return;
    };
    conformance::run(&|| Box::new(open(&schemas.fresh())));
    let url = schemas.fresh();
    conformance::reopen(&|| Box::new(open(&url)));
}

/// An instance's renewals rewrite no task row (each row's version stays
/// the one its claim wrote), and a sweep hears of a change whose
/// transaction was still open when the sweep before it read.
#[test]
fn renewals_rewrite_no_task_and_a_sweep_misses_no_late_commit() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    let s = open(&url);
    let uid = s.add_user("alice", "h", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    for (n, id) in ["t1", "t2"].into_iter().enumerate() {
        s.create_task(&new_task(id, uid, n as i64), "SUBMITTED", "x")
            .unwrap();
    }
    let first = s.claim_changes("a", 100, 110, None).unwrap();
    assert_eq!(first.held.len(), 2, "{first:?}");
    let mut sql = url.connect().unwrap();
    let versions = |sql: &mut Client| -> Vec<String> {
        sql.query("SELECT xmin::TEXT FROM tasks ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = versions(&mut sql);
    let mut since = first.next;
    for now in [105, 114, 123] {
        let sweep = s.claim_changes("a", now, now + 10, Some(since)).unwrap();
        assert!(!sweep.whole && sweep.ended.is_empty(), "{sweep:?}");
        since = sweep.next;
    }
    assert_eq!(versions(&mut sql), before, "a renewal rewrote a task");
    // A cancel whose transaction is open across a sweep.
    let mut tx = sql.transaction().unwrap();
    tx.execute("UPDATE tasks SET status = 'FAILED' WHERE id = 't1'", &[])
        .unwrap();
    let during = s.claim_changes("a", 124, 134, Some(since)).unwrap();
    assert!(during.ended.is_empty(), "{during:?}");
    tx.commit().unwrap();
    let after = s.claim_changes("a", 125, 135, Some(during.next)).unwrap();
    assert_eq!(after.ended, ["t1"], "{after:?}");
}

#[test]
fn migrations_are_idempotent_and_refuse_a_newer_schema() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    open(&url).add_user("a", "h", 0).unwrap();
    assert!(open(&url).user_by_name("a").unwrap().is_some());
    url.connect()
        .unwrap()
        .execute("UPDATE schema_version SET version = 99", &[])
        .unwrap();
    let err = PostgresStore::open(&url).unwrap_err().to_string();
    assert!(err.contains("newer ferry-hub"), "{err}");
    if let Some(password) = url.config.get_password() {
        let password = String::from_utf8_lossy(password);
        assert!(!err.contains(&*password), "the password shows: {err}");
    }
}

/// A database a hub made at schema 1 (before personal tokens, sharing,
/// filters and bandwidth caps) is brought up to date at open, its tasks
/// reading back with no filter rules and no cap.
#[test]
fn later_migrations_bring_a_schema_one_database_up_to_date() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    {
        let mut client = url.connect().unwrap();
        client.batch_execute(MIGRATIONS[0]).unwrap();
        client
            .batch_execute(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version (version) VALUES (1);
                 INSERT INTO users (name, password_hash, created) VALUES ('alice', 'h', 0);
                 INSERT INTO endpoints (id, owner_id, display_name, created) VALUES ('e1', 1, 'a', 0), ('e2', 1, 'b', 0);
                 INSERT INTO tasks (id, owner_id, source_id, destination_id, item_count, status, created)
                     VALUES ('old', 1, 'e1', 'e2', 0, 'ACTIVE', 5);",
            )
            .unwrap();
    }
    let s = open(&url);
    let work = s.task_work("old").unwrap().unwrap();
    assert_eq!(
        (work.options.filters.len(), work.options.bwlimit),
        (0, None)
    );
    let alice = s.user_by_name("alice").unwrap().unwrap().id;
    s.put_session("sess", alice, "c", 100).unwrap();
    assert_eq!(s.sessions_of(alice, 0).unwrap().len(), 1);
    s.create_group("g1", "lab", alice, 0).unwrap();
    s.put_task_grant("old", "source", "p1").unwrap();
    let version: i64 = url
        .connect()
        .unwrap()
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, MIGRATIONS.len() as i64, "migrated to the newest");
}

/// As on SQLite: the audit log's migration moves the record of sharing
/// changes into it, under the audit log's words, and drops the old table.
#[test]
fn the_audit_log_takes_over_the_record_of_sharing_changes() {
    let Some(schemas) = test_server() else {
        return;
    };
    let audit = MIGRATIONS
        .iter()
        .position(|sql| sql.contains("CREATE TABLE audit_events"))
        .unwrap();
    let url = schemas.fresh();
    {
        let mut client = url.connect().unwrap();
        for sql in &MIGRATIONS[..audit] {
            client.batch_execute(sql).unwrap();
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version (version) VALUES ({audit});
                 INSERT INTO users (name, password_hash, created) VALUES ('alice', 'h', 0);
                 INSERT INTO share_events (id, time, actor_id, endpoint_id, action, detail)
                     VALUES ('b', 7, 1, 'e1', 'share_deleted', 'permission p1'),
                            ('a', 5, 1, 'e1', 'share_created', 'created'),
                            ('c', 9, NULL, 'e1', 'share_refused', 'no');"
            ))
            .unwrap();
    }
    let s = open(&url);
    let moved: Vec<(i64, String, String)> = s
        .audit_events("e1", 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.time, e.identity, e.action))
        .collect();
    assert_eq!(
        moved,
        [
            (5, "alice".into(), "permission_create".into()),
            (7, "alice".into(), "permission_delete".into()),
            (9, String::new(), "permission_refused".into()),
        ]
    );
    // New events take ids after the moved ones.
    s.record_audit(&[crate::store::AuditRow {
        time: 10,
        endpoint_id: "e1".into(),
        actor_id: None,
        identity: "alice".into(),
        action: "ls".into(),
        path: None,
        task_id: None,
        detail: String::new(),
    }])
    .unwrap();
    assert_eq!(s.audit_events("e1", 0, 10).unwrap().len(), 4);
    let left: bool = url
        .connect()
        .unwrap()
        .query_one("SELECT to_regclass('share_events') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!left, "one place, not two");
}

#[test]
fn store_calls_work_wherever_the_hub_makes_them() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    // Outside any runtime: the admin verbs.
    let s = Arc::new(open(&url));
    s.add_user("alice", "h", 0).unwrap();
    // A current-thread runtime, where neither block_in_place nor the
    // client's own runtime may run on the runtime's thread; and a store
    // opened and dropped (its connections closed) there.
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let found = current.block_on(async {
        let other = open(&url);
        let found = other.user_by_name("alice");
        drop(other);
        found
    });
    assert!(found.unwrap().is_some());
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
    // The last reference dropped on a worker.
    multi.block_on(async move { tokio::spawn(async move { drop(s) }).await.unwrap() });
}

/// A store call that must wait (here, for a table another session holds
/// locked) leaves the runtime's other tasks running, even with a single
/// worker thread.
#[test]
fn a_store_call_that_waits_does_not_stall_the_runtime() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    let s = Arc::new(open(&url));
    s.add_user("alice", "h", 0).unwrap();
    let (held_tx, held) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut client = url.connect().unwrap();
            let mut tx = client.transaction().unwrap();
            tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                .unwrap();
            held_tx.send(()).unwrap();
            // Generous: only a stalled runtime takes this long, and then
            // the test ends (failing) instead of hanging.
            let released = release_rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok();
            tx.rollback().unwrap();
            released
        })
    };
    held.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
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
            // Give the store call time to reach the lock.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
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

/// What one connection behind a mutex gave SQLite, row locks give here:
/// concurrent calls on many connections keep the contract.
#[test]
fn concurrent_calls_keep_the_contract() {
    let Some(schemas) = test_server() else {
        return;
    };
    let s = Arc::new(open(&schemas.fresh()));
    let uid = s.add_user("alice", "h", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    s.put_auth_code(&AuthCodeRow {
        code_hash: "c".into(),
        client_id: "ferry-cli".into(),
        user_id: uid,
        redirect_uri: "r".into(),
        challenge: "x".into(),
        scope: "transfer".into(),
        expires: 100,
    })
    .unwrap();
    s.put_setup_key("k", "e1", 100).unwrap();
    s.create_task(&new_task("t0", uid, 0), "SUBMITTED", "x")
        .unwrap();
    let threads = 12;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let outcomes: Vec<(CodeUse, SetupKeyUse)> = (0..threads)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                s.create_task(&new_task(&format!("t{}", i + 1), uid, 1), "SUBMITTED", "x")
                    .unwrap();
                for n in 0..5 {
                    s.add_task_event("t0", "NOTE", &format!("{i}.{n}"), 1, false)
                        .unwrap();
                }
                (
                    s.take_auth_code("c", 50).unwrap(),
                    s.take_setup_key("k", 50).unwrap(),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let fresh_codes = outcomes
        .iter()
        .filter(|(c, _)| matches!(c, CodeUse::Fresh(_)))
        .count();
    let fresh_keys = outcomes
        .iter()
        .filter(|(_, k)| matches!(k, SetupKeyUse::Fresh { .. }))
        .count();
    assert_eq!((fresh_codes, fresh_keys), (1, 1), "{outcomes:?}");
    let events = s.task_events("t0", 1000).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=1 + 5 * threads as u64).collect::<Vec<_>>()
    );
    assert_eq!(s.tasks_of(uid, 100).unwrap().len(), threads + 1);
}

/// Two hubs on one database, their timer loops at the same due time:
/// one run, not two.
#[test]
fn two_hubs_on_one_database_make_a_timers_run_once() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    crate::timers::tests::two_hubs_make_one_run(Arc::new(open(&url)), Arc::new(open(&url)));
}

/// A connection the server ended (a restart, a failover, an idle
/// timeout) fails at most the call that finds it, as unavailable; the
/// pool replaces it.
#[test]
fn a_connection_the_server_closed_is_replaced() {
    let Some(schemas) = test_server() else {
        return;
    };
    let url = schemas.fresh();
    let s = open(&url);
    s.add_user("alice", "h", 0).unwrap();
    let pid: i32 = s
        .with_client(|c| Ok(c.query_one("SELECT pg_backend_pid()", &[])?.try_get(0)?))
        .unwrap();
    let ended: bool = url
        .connect()
        .unwrap()
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ended);
    match s.user_by_name("alice") {
        Ok(found) => assert!(found.is_some()),
        Err(e) => assert!(e.is_transient(), "{e}"),
    }
    assert!(s.user_by_name("alice").unwrap().is_some());
}

#[test]
fn a_server_that_does_not_answer_is_unavailable() {
    // Nothing listens on port 1 of loopback: refused at once.
    let url = DatabaseUrl::parse("postgres://ferry@127.0.0.1:1/ferry", Path::new(".")).unwrap();
    let Err(e) = url.config.connect(NoTls) else {
        panic!("something answered on 127.0.0.1:1");
    };
    let e = StoreError::from(e);
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("refused"), "says why: {e}");
    let err = PostgresStore::open(&url).unwrap_err().to_string();
    assert!(err.contains("unavailable"), "{err}");
}

#[test]
fn sqlstates_say_what_a_caller_can_do_about_them() {
    assert_eq!(classify("23505"), Class::Conflict);
    assert_eq!(classify("23503"), Class::NotFound);
    for transient in [
        "08006", "08001", "40001", "40P01", "53100", "53200", "53300", "57P01", "57P03", "55P03",
        "57014", "58030",
    ] {
        assert_eq!(classify(transient), Class::Transient, "{transient}");
    }
    for other in ["42P01", "42703", "28P01", "3D000", "22P02", "XX000"] {
        assert_eq!(classify(other), Class::Other, "{other}");
    }
}

#[test]
fn database_urls_hide_passwords_and_read_libpq_tls_words() {
    assert_eq!(
        redacted("postgres://ferry:s3cret@db.example:5433/hub?sslmode=require"),
        "postgres://ferry:***@db.example:5433/hub?sslmode=require"
    );
    assert_eq!(
        redacted("postgresql://ferry@db/hub?password=s3cret&application_name=x"),
        "postgresql://ferry@db/hub?password=***&application_name=x"
    );
    assert_eq!(redacted("postgres:///hub"), "postgres:///hub");

    let base = Path::new("/var/lib/ferry-hub");
    let url = DatabaseUrl::parse(
        "postgres://ferry:pw@db.example/hub?sslmode=verify-full&sslrootcert=db%20ca.crt",
        base,
    )
    .unwrap();
    assert_eq!(url.config.get_ssl_mode(), SslMode::Require);
    assert_eq!(
        url.root_cert.as_deref(),
        Some(base.join("db ca.crt").as_path())
    );
    assert_eq!(url.config.get_application_name(), Some("ferry-hub"));
    assert!(url.config.get_connect_timeout().is_some());
    assert!(!format!("{url:?}").contains("pw@"));
    // A missing CA file is named when the store opens.
    let Err(err) = url.tls() else {
        panic!("a CA file that does not exist was read");
    };
    let err = err.to_string();
    assert!(err.contains("db ca.crt"), "{err}");

    let plain = DatabaseUrl::parse("postgres://ferry@%2Frun%2Fpostgresql/hub", base).unwrap();
    assert!(plain.tls().unwrap().is_none(), "TLS only when asked for");

    for (bad, says) in [
        ("sqlite:///var/lib/hub.db", "not a postgres://"),
        ("postgres://ferry:pw@db/hub?sslmode=sometimes", "sslmode"),
        ("postgres://ferry:pw@db/hub?colour=blue", "colour"),
        (
            "postgres://ferry:pw@db/hub?sslrootcert=ca.crt",
            "needs sslmode=require",
        ),
    ] {
        let err = DatabaseUrl::parse(bad, base).unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
        assert!(!err.contains("pw@"), "the password shows: {err}");
    }
}

/// TLS when the URL asks for it, verified: against the CA that issued the
/// server's certificate it connects (and the session is encrypted),
/// against another it is refused, saying why, and not as "try later".
#[test]
fn tls_to_the_server_is_verified() {
    let Some(schemas) = test_server() else {
        return;
    };
    let Some(ca) = std::env::var_os("FERRY_TEST_POSTGRES_CA") else {
        assert!(
            std::env::var("FERRY_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "FERRY_REQUIRE_POSTGRES=1 but FERRY_TEST_POSTGRES_CA does not name the server's CA"
        );
        skip("no FERRY_TEST_POSTGRES_CA: the test server's TLS CA is unknown");
        return;
    };
    let server = std::env::var("FERRY_TEST_POSTGRES").unwrap();
    let join = if server.contains('?') { '&' } else { '?' };
    let schema = schemas.fresh_schema();
    let with_ca = |ca: &Path, mode: &str| {
        DatabaseUrl::parse(
            &format!("{server}{join}sslmode={mode}&sslrootcert={}", ca.display()),
            Path::new("/"),
        )
        .unwrap()
        .in_schema(&schema)
    };
    let s = open(&with_ca(Path::new(&ca), "verify-full"));
    s.add_user("alice", "h", 0).unwrap();
    let encrypted: bool = s
        .with_client(|c| {
            Ok(c.query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?
            .try_get(0)?)
        })
        .unwrap();
    assert!(encrypted);

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.crt");
    std::fs::write(
        &other,
        crate::pki::CertificateAuthority::create("not the server's CA")
            .unwrap()
            .cert_pem,
    )
    .unwrap();
    let wrong = with_ca(&other, "require");
    let tls = wrong.tls().unwrap().unwrap();
    let Err(e) = wrong.config.connect(tls) else {
        panic!("a server whose certificate another CA issued was trusted");
    };
    let e = StoreError::from(e);
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
}
