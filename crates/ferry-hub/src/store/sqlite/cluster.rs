//! `ClusterStore` on SQLite. A SQLite database has one hub instance (the
//! file is local to it), so a plain compare-and-set in one transaction is
//! enough: the claims exist so the scheduler runs the same code on both
//! backends.

use super::*;

/// A task whose source's control link another live instance holds
/// (`?1`: this instance, `?2`: now); the same rule as PostgreSQL's.
const SOURCE_ELSEWHERE: &str =
    "EXISTS (SELECT 1 FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
    WHERE l.endpoint_id = tasks.source_id AND l.instance_id <> ?1 AND i.lease_until >= ?2)";

impl ClusterStore for SqliteStore {
    fn claim_tasks(&self, instance: &str, now: i64, lease_until: i64) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO hub_instances (id, lease_until) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
                params![instance, lease_until],
            )?;
            tx.execute(
                &format!(
                    "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                     WHERE status = 'ACTIVE' AND claimed_by = ?1 AND {SOURCE_ELSEWHERE}"
                ),
                params![instance, now],
            )?;
            tx.execute(
                &format!(
                    "UPDATE tasks SET claimed_by = ?1, lease_until = ?3
                     WHERE status = 'ACTIVE'
                       AND (claimed_by IS NULL OR lease_until IS NULL OR lease_until < ?2
                            OR (claimed_by = ?1 AND lease_until < ?4))
                       AND NOT {SOURCE_ELSEWHERE}"
                ),
                params![instance, now, lease_until, super::super::renew_before(now, lease_until)],
            )?;
            let held = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM tasks
                     WHERE status = 'ACTIVE' AND claimed_by = ?1 AND lease_until >= ?2 ORDER BY seq",
                )?;
                stmt.query_map(params![instance, now], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?
            };
            tx.commit()?;
            Ok(held)
        })
    }

    fn release_task_claims(&self, instance: Option<&str>) -> Result<u64> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let released = tx.execute(
                "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                 WHERE claimed_by IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
                params![instance],
            )?;
            tx.execute(
                "DELETE FROM control_links WHERE ?1 IS NULL OR instance_id = ?1",
                params![instance],
            )?;
            tx.execute(
                "DELETE FROM hub_instances WHERE ?1 IS NULL OR id = ?1",
                params![instance],
            )?;
            tx.commit()?;
            Ok(released as u64)
        })
    }

    fn set_control_link(&self, endpoint_id: &str, instance: &str, since: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO control_links (endpoint_id, instance_id, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (endpoint_id) DO UPDATE SET instance_id = excluded.instance_id, since = excluded.since",
                params![endpoint_id, instance, since],
            )?;
            Ok(())
        })
    }

    fn drop_control_link(&self, endpoint_id: &str, instance: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "DELETE FROM control_links WHERE endpoint_id = ?1 AND instance_id = ?2",
                params![endpoint_id, instance],
            )?;
            Ok(())
        })
    }

    fn shared_key(&self, name: &str, candidate: &str) -> Result<String> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO hub_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )?;
            Ok(conn.query_row(
                "SELECT value FROM hub_secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?)
        })
    }
}
