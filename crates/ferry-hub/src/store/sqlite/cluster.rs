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

/// An ACTIVE task as a sweep reads it: whether `?1` holds it, then the
/// columns of [`ActiveTask`].
const SWEPT: &str = "SELECT t.id, t.status = 'ACTIVE', t.claimed_by IS NOT NULL AND t.claimed_by = ?1,
    t.source_id, s.display_name, s.revoked, t.destination_id, d.display_name, d.revoked, t.attempt, t.deadline
    FROM tasks t JOIN endpoints s ON s.id = t.source_id JOIN endpoints d ON d.id = t.destination_id";

/// Renews `instance`'s lease and claims for it (`ClusterStore::claim_changes`),
/// in the caller's transaction; whether its lease had ended before (or it
/// had none), so that what it held may be another instance's now.
fn claim(tx: &Transaction<'_>, instance: &str, now: i64, lease_until: i64) -> Result<bool> {
    let before: Option<i64> = tx
        .query_row(
            "SELECT lease_until FROM hub_instances WHERE id = ?1",
            params![instance],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        "INSERT INTO hub_instances (id, lease_until) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
        params![instance, lease_until],
    )?;
    // Instances whose lease ended died: their tasks are free and their
    // rows go.
    tx.execute(
        "UPDATE tasks SET claimed_by = NULL WHERE status = 'ACTIVE' AND claimed_by IN (
            SELECT id FROM hub_instances WHERE lease_until < ?1)",
        params![now],
    )?;
    tx.execute(
        "DELETE FROM hub_instances WHERE lease_until < ?1",
        params![now],
    )?;
    // The source went to another instance: that one drives it now. The
    // links (few) first, then this instance's tasks of each source by
    // index.
    let elsewhere: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT l.endpoint_id FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
             WHERE l.instance_id <> ?1 AND i.lease_until >= ?2",
        )?;
        stmt.query_map(params![instance, now], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for source in &elsewhere {
        tx.execute(
            "UPDATE tasks SET claimed_by = NULL
             WHERE status = 'ACTIVE' AND source_id = ?1 AND claimed_by = ?2",
            params![source, instance],
        )?;
    }
    tx.execute(
        &format!(
            "UPDATE tasks SET claimed_by = ?1
             WHERE status = 'ACTIVE' AND claimed_by IS NULL AND NOT {SOURCE_ELSEWHERE}"
        ),
        params![instance, now],
    )?;
    Ok(before.is_none_or(|until| until < now))
}

fn swept(r: &rusqlite::Row<'_>) -> rusqlite::Result<(bool, bool, ActiveTask)> {
    Ok((
        r.get::<_, i64>(1)? != 0,
        r.get::<_, i64>(2)? != 0,
        ActiveTask {
            id: r.get(0)?,
            source_id: r.get(3)?,
            source_name: r.get(4)?,
            source_revoked: r.get::<_, i64>(5)? != 0,
            destination_id: r.get(6)?,
            destination_name: r.get(7)?,
            destination_revoked: r.get::<_, i64>(8)? != 0,
            attempt: u32::try_from(r.get::<_, i64>(9)?).unwrap_or_default(),
            deadline: r.get(10)?,
        },
    ))
}

impl ClusterStore for SqliteStore {
    fn claim_changes(
        &self,
        instance: &str,
        now: i64,
        lease_until: i64,
        since: Option<i64>,
    ) -> Result<ClaimChanges> {
        self.with_conn(|conn| {
            // Writing from the start: no other writer between the claim and
            // the read of the changes, so `next` misses none.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let lapsed = claim(&tx, instance, now, lease_until)?;
            let since = since.filter(|_| !lapsed);
            // Writers take the write lock in turn and mark a change with
            // the next number (the `tasks_changed` triggers), so one past
            // the highest now is where the next call starts.
            let next: i64 =
                tx.query_row("SELECT COALESCE(MAX(changed), 0) + 1 FROM tasks", [], |r| {
                    r.get(0)
                })?;
            let found = {
                let mut stmt;
                let rows = match since {
                    Some(since) => {
                        stmt = tx.prepare(&format!("{SWEPT} WHERE t.changed >= ?2"))?;
                        stmt.query_map(params![instance, since], swept)?
                    }
                    None => {
                        stmt = tx.prepare(&format!("{SWEPT} WHERE t.status = 'ACTIVE'"))?;
                        stmt.query_map(params![instance], swept)?
                    }
                };
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            let mut out = ClaimChanges {
                whole: since.is_none(),
                next,
                ..ClaimChanges::default()
            };
            for (active, held, task) in found {
                match (active, held) {
                    (false, _) => out.ended.push(task.id),
                    (true, false) => out.elsewhere.push(task.id),
                    (true, true) => out.held.push(task),
                }
            }
            Ok(out)
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
                "DELETE FROM node_links WHERE ?1 IS NULL OR instance_id = ?1",
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

    fn control_link(&self, endpoint_id: &str, now: i64) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT l.instance_id FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
                     WHERE l.endpoint_id = ?1 AND i.lease_until >= ?2",
                    params![endpoint_id, now],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn post_message(
        &self,
        to_instance: &str,
        payload: &str,
        now: i64,
        deadline: i64,
    ) -> Result<i64> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO hub_messages (to_instance, payload, created, deadline) VALUES (?1, ?2, ?3, ?4)",
                params![to_instance, payload, now, deadline],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn take_messages(&self, instance: &str, now: i64, max: usize) -> Result<Vec<InstanceMessage>> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let taken = {
                let mut stmt = tx.prepare(
                    "SELECT id, payload, deadline FROM hub_messages
                     WHERE to_instance = ?1 AND taken = 0 AND deadline >= ?2 ORDER BY id LIMIT ?3",
                )?;
                stmt.query_map(params![instance, now, max as i64], |r| {
                    Ok(InstanceMessage {
                        id: r.get(0)?,
                        payload: r.get(1)?,
                        deadline: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            for m in &taken {
                tx.execute(
                    "UPDATE hub_messages SET taken = 1 WHERE id = ?1",
                    params![m.id],
                )?;
            }
            tx.commit()?;
            Ok(taken)
        })
    }

    fn answer_message(&self, id: i64, reply: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE hub_messages SET reply = ?2 WHERE id = ?1",
                params![id, reply],
            )?;
            Ok(())
        })
    }

    fn message_reply(&self, id: i64) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT reply FROM hub_messages WHERE id = ?1",
                    params![id],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()?
                .flatten())
        })
    }

    fn drop_message(&self, id: i64) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute("DELETE FROM hub_messages WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    fn purge_messages(&self, now: i64, logins_before: i64) -> Result<u64> {
        self.with_conn(|conn| {
            let messages =
                conn.execute("DELETE FROM hub_messages WHERE deadline < ?1", params![now])?;
            let logins = conn.execute(
                "DELETE FROM login_failures WHERE window_start < ?1",
                params![logins_before],
            )?;
            Ok((messages + logins) as u64)
        })
    }

    fn add_login_failure(&self, key: &str, now: i64, window: i64) -> Result<u32> {
        self.with_conn(|conn| {
            let count: i64 = conn.query_row(
                "INSERT INTO login_failures (key, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (key) DO UPDATE SET
                    count = CASE WHEN login_failures.window_start > ?2 - ?3 THEN login_failures.count + 1 ELSE 1 END,
                    window_start = CASE WHEN login_failures.window_start > ?2 - ?3 THEN login_failures.window_start ELSE ?2 END
                 RETURNING count",
                params![key, now, window],
                |r| r.get(0),
            )?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<Option<(u32, i64)>> {
        self.with_conn(|conn| {
            let row: Option<(i64, i64)> = conn
                .query_row(
                    "SELECT count, window_start FROM login_failures WHERE key = ?1 AND window_start > ?2 - ?3",
                    params![key, now, window],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.map(|(count, start)| (u32::try_from(count).unwrap_or(u32::MAX), start)))
        })
    }

    fn clear_login_failures(&self, key: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute("DELETE FROM login_failures WHERE key = ?1", params![key])?;
            Ok(())
        })
    }

    fn set_link_details(
        &self,
        endpoint_id: &str,
        instance: &str,
        link: &LinkDetails,
    ) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE control_links SET data_address = ?3, relay = ?4, paused = ?5
                 WHERE endpoint_id = ?1 AND instance_id = ?2",
                params![
                    endpoint_id,
                    instance,
                    link.data_address,
                    link.relay,
                    link.paused
                ],
            )?;
            Ok(())
        })
    }

    fn remote_links(&self, instance: &str, now: i64) -> Result<Vec<RemoteLink>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT l.endpoint_id, l.instance_id, l.since, l.data_address, l.relay, l.paused
                 FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
                 WHERE l.instance_id <> ?1 AND i.lease_until >= ?2
                   AND l.endpoint_id IN (
                       SELECT source_id FROM tasks WHERE status = 'ACTIVE' AND claimed_by = ?1
                       UNION SELECT destination_id FROM tasks WHERE status = 'ACTIVE' AND claimed_by = ?1)
                 ORDER BY l.endpoint_id",
            )?;
            Ok(stmt
                .query_map(params![instance, now], |r| {
                    Ok(RemoteLink {
                        endpoint_id: r.get(0)?,
                        instance: r.get(1)?,
                        since: r.get(2)?,
                        details: LinkDetails {
                            data_address: r.get(3)?,
                            relay: r.get(4)?,
                            paused: r.get(5)?,
                        },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn task_claim(&self, task_id: &str) -> Result<Option<String>> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT claimed_by FROM tasks WHERE id = ?1 AND status = 'ACTIVE'",
                    params![task_id],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()?
                .flatten())
        })
    }

    fn sync_node_links(
        &self,
        endpoint_id: &str,
        instance: &str,
        nodes: &[NodeLinkRow],
    ) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            {
                let mut held =
                    tx.prepare("SELECT node FROM node_links WHERE endpoint_id = ?1 AND instance_id = ?2")?;
                let gone: Vec<String> = held
                    .query_map(params![endpoint_id, instance], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|node| !nodes.iter().any(|n| n.node == *node))
                    .collect();
                for node in gone {
                    tx.execute(
                        "DELETE FROM node_links WHERE endpoint_id = ?1 AND node = ?2 AND instance_id = ?3",
                        params![endpoint_id, node, instance],
                    )?;
                }
            }
            for n in nodes {
                tx.execute(
                    "INSERT INTO node_links (endpoint_id, node, instance_id, since, data_address, features)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (endpoint_id, node) DO UPDATE SET instance_id = excluded.instance_id,
                         since = excluded.since, data_address = excluded.data_address, features = excluded.features",
                    params![endpoint_id, n.node, instance, n.since, n.data_address, n.features.join(" ")],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn remote_nodes(
        &self,
        endpoint_id: &str,
        instance: &str,
        now: i64,
    ) -> Result<Vec<NodeLinkRow>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT l.node, l.instance_id, l.since, l.data_address, l.features
                 FROM node_links l JOIN hub_instances i ON i.id = l.instance_id
                 WHERE l.endpoint_id = ?1 AND l.instance_id <> ?2 AND i.lease_until >= ?3
                 ORDER BY l.since, l.node",
            )?;
            Ok(stmt
                .query_map(params![endpoint_id, instance, now], |r| {
                    Ok(NodeLinkRow {
                        endpoint_id: endpoint_id.to_string(),
                        node: r.get(0)?,
                        instance: r.get(1)?,
                        since: r.get(2)?,
                        data_address: r.get(3)?,
                        features: split_features(&r.get::<_, String>(4)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
