//! The PostgreSQL server of the end-to-end tests: `FERRY_TEST_POSTGRES`
//! (`bash .ci/postgres.sh start` starts one), and a schema of its own for
//! each test.

use crate::{on_path, run_command};
use std::process::Command;

/// The server's URL, or why there is none (no server named, or no
/// `psql`) for the test to `skip` with; with `FERRY_REQUIRE_POSTGRES=1`
/// (as in CI) that is a failure.
pub fn test_server() -> Result<String, &'static str> {
    match std::env::var("FERRY_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() && on_path("psql") => Ok(url),
        _ => {
            assert!(
                std::env::var("FERRY_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "FERRY_REQUIRE_POSTGRES=1 but FERRY_TEST_POSTGRES or psql is missing"
            );
            Err(
                "no PostgreSQL server (FERRY_TEST_POSTGRES=postgres://..., and psql): `bash .ci/postgres.sh start` starts one",
            )
        }
    }
}

/// A schema of its own for a hub the test did not put on a database,
/// when `FERRY_TEST_EVERY_HUB_ON_POSTGRES=1`: the whole suite then runs
/// with every hub on PostgreSQL (`FERRY_TEST_POSTGRES` names the server).
pub fn every_hub() -> Option<Schema> {
    if std::env::var("FERRY_TEST_EVERY_HUB_ON_POSTGRES").as_deref() != Ok("1") {
        return None;
    }
    let server = std::env::var("FERRY_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("FERRY_TEST_EVERY_HUB_ON_POSTGRES=1 needs FERRY_TEST_POSTGRES");
    Some(Schema::create(&server))
}

#[derive(Debug)]
pub struct Schema {
    server: String,
    name: String,
}

impl Schema {
    pub fn create(server: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("ferry_e2e_{}_{nanos}", std::process::id());
        psql(server, &format!("CREATE SCHEMA {name}"));
        Schema {
            server: server.to_string(),
            name,
        }
    }

    /// The server's URL with this schema as the place for the hub's tables.
    pub fn url(&self) -> String {
        let join = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{join}options=-c%20search_path%3D{}",
            self.server, self.name
        )
    }

    /// What `sql` returns in this schema, as `psql -tA` prints it.
    pub fn query(&self, sql: &str) -> String {
        psql(
            &self.server,
            &format!("SET search_path TO {}; {sql}", self.name),
        )
    }

    /// How many rows `table` of this schema holds.
    pub fn count(&self, table: &str) -> u64 {
        psql(
            &self.server,
            &format!("SELECT count(*) FROM {}.{table}", self.name),
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", &self.server, "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}

pub fn psql(server: &str, sql: &str) -> String {
    let out = run_command(
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                server,
                "-c",
            ])
            .arg(sql),
    );
    assert_eq!(out.code, Some(0), "psql {sql}: {out:?}");
    out.stdout
}
