//! `ClusterStore` on PostgreSQL, where several hub instances share the
//! database: a claim locks the rows it takes with `FOR UPDATE SKIP
//! LOCKED`, so two instances claiming at once split the free tasks and
//! neither waits on the other's rows.

use super::*;

/// A task whose source's control link another live instance holds
/// (`$1`: this instance, `$2`: now); the same rule as SQLite's.
const SOURCE_ELSEWHERE: &str =
    "EXISTS (SELECT 1 FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
    WHERE l.endpoint_id = tasks.source_id AND l.instance_id <> $1 AND i.lease_until >= $2)";

impl ClusterStore for PostgresStore {
    fn claim_tasks(&self, instance: &str, now: i64, lease_until: i64) -> Result<Vec<String>> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO hub_instances (id, lease_until) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                &[&instance, &lease_until],
            )?;
            // The source went to another instance: that one drives it now.
            tx.execute(
                &format!(
                    "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                     WHERE status = 'ACTIVE' AND claimed_by = $1 AND {SOURCE_ELSEWHERE}"
                ),
                &[&instance, &now],
            )?;
            // A row another transaction holds is skipped, not waited for:
            // free, it is claimed at the next sweep; ours (a write on the
            // task, say its end), its lease is renewed then.
            tx.execute(
                &format!(
                    "WITH free AS (
                        SELECT id FROM tasks
                        WHERE status = 'ACTIVE'
                          AND (claimed_by IS NULL OR lease_until IS NULL OR lease_until < $2
                               OR (claimed_by = $1 AND lease_until < $4))
                          AND NOT {SOURCE_ELSEWHERE}
                        FOR UPDATE SKIP LOCKED
                     )
                     UPDATE tasks SET claimed_by = $1, lease_until = $3
                     FROM free WHERE tasks.id = free.id"
                ),
                &[&instance, &now, &lease_until, &super::super::renew_before(now, lease_until)],
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
            let mut tx = c.transaction()?;
            let released = tx.execute(
                "UPDATE tasks SET claimed_by = NULL, lease_until = NULL
                 WHERE claimed_by IS NOT NULL AND ($1::TEXT IS NULL OR claimed_by = $1)",
                &[&instance],
            )?;
            tx.execute(
                "DELETE FROM control_links WHERE $1::TEXT IS NULL OR instance_id = $1",
                &[&instance],
            )?;
            tx.execute(
                "DELETE FROM hub_instances WHERE $1::TEXT IS NULL OR id = $1",
                &[&instance],
            )?;
            tx.commit()?;
            Ok(released)
        })
    }

    fn set_control_link(&self, endpoint_id: &str, instance: &str, since: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO control_links (endpoint_id, instance_id, since) VALUES ($1, $2, $3)
                 ON CONFLICT (endpoint_id) DO UPDATE SET instance_id = EXCLUDED.instance_id, since = EXCLUDED.since",
                &[&endpoint_id, &instance, &since],
            )?;
            Ok(())
        })
    }

    fn drop_control_link(&self, endpoint_id: &str, instance: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "DELETE FROM control_links WHERE endpoint_id = $1 AND instance_id = $2",
                &[&endpoint_id, &instance],
            )?;
            Ok(())
        })
    }

    fn shared_key(&self, name: &str, candidate: &str) -> Result<String> {
        self.with_client(|c| {
            // Two instances starting at once: the second insert does
            // nothing, and both read the first's key.
            c.execute(
                "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )?;
            Ok(c
                .query_one("SELECT value FROM hub_secrets WHERE name = $1", &[&name])?
                .try_get(0)?)
        })
    }
}
