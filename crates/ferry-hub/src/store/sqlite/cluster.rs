//! `ClusterStore` on SQLite. A SQLite database has one hub instance (the
//! file is local to it), so a plain compare-and-set in one transaction is
//! enough: the claims exist so the scheduler runs the same code on both
//! backends.

use super::*;

impl ClusterStore for SqliteStore {
    fn claim_tasks(&self, instance: &str, now: i64, lease_until: i64) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE tasks SET claimed_by = ?1, lease_until = ?3
                 WHERE status = 'ACTIVE'
                   AND (claimed_by IS NULL OR claimed_by = ?1 OR lease_until IS NULL OR lease_until < ?2)",
                params![instance, now, lease_until],
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
            let released = conn.execute(
                "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                 WHERE claimed_by IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
                params![instance],
            )?;
            Ok(released as u64)
        })
    }
}
