//! `ClusterStore` on PostgreSQL, where several hub instances share the
//! database: a claim locks the rows it takes with `FOR UPDATE SKIP
//! LOCKED`, so two instances claiming at once split the free tasks and
//! neither waits on the other's rows.

use super::*;

impl ClusterStore for PostgresStore {
    fn claim_tasks(&self, instance: &str, now: i64, lease_until: i64) -> Result<Vec<String>> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // A row another transaction holds is skipped, not waited for:
            // free, it is claimed at the next sweep; ours (a write on the
            // task, say its end), its lease is renewed then.
            tx.execute(
                "WITH free AS (
                    SELECT id FROM tasks
                    WHERE status = 'ACTIVE'
                      AND (claimed_by IS NULL OR claimed_by = $1 OR lease_until IS NULL OR lease_until < $2)
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE tasks SET claimed_by = $1, lease_until = $3
                 FROM free WHERE tasks.id = free.id",
                &[&instance, &now, &lease_until],
            )?;
            // Read apart from the update: a task of ours skipped above
            // because a write locked it is still ours while its lease
            // lasts. One whose lease ended is not, even if the row still
            // names us: it was skipped because another instance is taking
            // it over, and that claim commits after this read.
            let held = rows(
                tx.query(
                    "SELECT id FROM tasks
                     WHERE status = 'ACTIVE' AND claimed_by = $1 AND lease_until >= $2 ORDER BY seq",
                    &[&instance, &now],
                )?,
                |r| Ok(r.try_get(0)?),
            )?;
            tx.commit()?;
            Ok(held)
        })
    }

    fn release_task_claims(&self, instance: Option<&str>) -> Result<u64> {
        self.with_client(|c| {
            Ok(c.execute(
                "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                 WHERE claimed_by IS NOT NULL AND ($1::TEXT IS NULL OR claimed_by = $1)",
                &[&instance],
            )?)
        })
    }
}
