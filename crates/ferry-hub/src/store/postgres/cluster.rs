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

/// An ACTIVE task as a sweep reads it: whether `$1` holds it, then the
/// columns of [`ActiveTask`].
const SWEPT: &str = "SELECT t.id, t.status = 'ACTIVE', t.claimed_by IS NOT DISTINCT FROM $1,
    t.source_id, s.display_name, s.revoked, t.destination_id, d.display_name, d.revoked, t.attempt, t.deadline
    FROM tasks t JOIN endpoints s ON s.id = t.source_id JOIN endpoints d ON d.id = t.destination_id";

/// Renews `instance`'s lease and claims for it (`ClusterStore::claim_changes`),
/// in the caller's transaction; whether its lease had ended before (or it
/// had none), so that what it held may be another instance's now.
fn claim(
    tx: &mut ::postgres::Transaction<'_>,
    instance: &str,
    now: i64,
    lease_until: i64,
) -> Result<bool> {
    // Its own row locked first: an instance taking this one's tasks
    // locks that row too (below), so the two never overlap. It either
    // took them and deleted the row, and this one finds no lease; or it
    // skips the row this one holds, and this one renews in time.
    let before: Option<i64> = tx
        .query_opt(
            "SELECT lease_until FROM hub_instances WHERE id = $1 FOR UPDATE",
            &[&instance],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    tx.execute(
        "INSERT INTO hub_instances (id, lease_until) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
        &[&instance, &lease_until],
    )?;
    // Instances whose lease ended died: their tasks are free and their
    // rows go (a row another claim locked is that one's to handle).
    let dead = rows(
        tx.query(
            "DELETE FROM hub_instances WHERE id IN (
                SELECT id FROM hub_instances WHERE lease_until < $1 AND id <> $2
                FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&now, &instance],
        )?,
        |r| Ok(r.try_get::<_, String>(0)?),
    )?;
    if !dead.is_empty() {
        tx.execute(
            "UPDATE tasks SET claimed_by = NULL WHERE status = 'ACTIVE' AND claimed_by = ANY($1)",
            &[&dead],
        )?;
    }
    // The source went to another instance: that one drives it now. The
    // links (few) first, then this instance's tasks of those sources by
    // index: a join left to the planner scanned every task held.
    let elsewhere = rows(
        tx.query(
            "SELECT l.endpoint_id FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
             WHERE l.instance_id <> $1 AND i.lease_until >= $2",
            &[&instance, &now],
        )?,
        |r| Ok(r.try_get::<_, String>(0)?),
    )?;
    if !elsewhere.is_empty() {
        tx.execute(
            "UPDATE tasks SET claimed_by = NULL
             WHERE status = 'ACTIVE' AND source_id = ANY($2) AND claimed_by = $1",
            &[&instance, &elsewhere],
        )?;
    }
    // A row another transaction holds is skipped, not waited for: free, it
    // is claimed at the next sweep.
    tx.execute(
        &format!(
            "WITH free AS (
                SELECT id FROM tasks
                WHERE status = 'ACTIVE' AND claimed_by IS NULL AND NOT {SOURCE_ELSEWHERE}
                FOR UPDATE SKIP LOCKED
             )
             UPDATE tasks SET claimed_by = $1 FROM free WHERE tasks.id = free.id"
        ),
        &[&instance, &now],
    )?;
    Ok(before.is_none_or(|until| until < now))
}

impl ClusterStore for PostgresStore {
    fn claim_changes(
        &self,
        instance: &str,
        now: i64,
        lease_until: i64,
        since: Option<i64>,
    ) -> Result<ClaimChanges> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            // Every transaction that had not committed when this statement
            // ran has an id from here on, and the rows it writes carry it
            // (`tasks.changed`): the next call reads them, whenever they
            // commit.
            let next: i64 = tx
                .query_one("SELECT txid_snapshot_xmin(txid_current_snapshot())", &[])?
                .try_get(0)?;
            let lapsed = claim(&mut tx, instance, now, lease_until)?;
            let since = since.filter(|_| !lapsed);
            let found = match since {
                Some(since) => tx.query(
                    &format!("{SWEPT} WHERE t.changed >= $2"),
                    &[&instance, &since],
                )?,
                None => tx.query(&format!("{SWEPT} WHERE t.status = 'ACTIVE'"), &[&instance])?,
            };
            let mut out = ClaimChanges {
                whole: since.is_none(),
                next,
                ..ClaimChanges::default()
            };
            for r in found {
                let id: String = r.try_get(0)?;
                if !r.try_get::<_, bool>(1)? {
                    out.ended.push(id);
                } else if !r.try_get::<_, bool>(2)? {
                    out.elsewhere.push(id);
                } else {
                    out.held.push(ActiveTask {
                        id,
                        source_id: r.try_get(3)?,
                        source_name: r.try_get(4)?,
                        source_revoked: r.try_get(5)?,
                        destination_id: r.try_get(6)?,
                        destination_name: r.try_get(7)?,
                        destination_revoked: r.try_get(8)?,
                        attempt: u32::try_from(r.try_get::<_, i64>(9)?).unwrap_or_default(),
                        deadline: r.try_get(10)?,
                    });
                }
            }
            tx.commit()?;
            Ok(out)
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
                "DELETE FROM node_links WHERE $1::TEXT IS NULL OR instance_id = $1",
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

    fn control_link(&self, endpoint_id: &str, now: i64) -> Result<Option<String>> {
        self.with_client(|c| {
            Ok(c.query_opt(
                "SELECT l.instance_id FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
                 WHERE l.endpoint_id = $1 AND i.lease_until >= $2",
                &[&endpoint_id, &now],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
        })
    }

    fn post_message(
        &self,
        to_instance: &str,
        payload: &str,
        now: i64,
        deadline: i64,
    ) -> Result<i64> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO hub_messages (to_instance, payload, created, deadline) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&to_instance, &payload, &now, &deadline],
                )?
                .try_get(0)?;
            // Wakes the addressee's listener, if it has one, at commit.
            tx.execute("SELECT pg_notify($1, '')", &[&super::super::messages_channel(to_instance)])?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn take_messages(&self, instance: &str, now: i64, max: usize) -> Result<Vec<InstanceMessage>> {
        self.with_client(|c| {
            rows(
                c.query(
                    "WITH next AS (
                        SELECT id FROM hub_messages
                        WHERE to_instance = $1 AND NOT taken AND deadline >= $2
                        ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED
                     )
                     UPDATE hub_messages m SET taken = TRUE FROM next WHERE m.id = next.id
                     RETURNING m.id, m.payload, m.deadline",
                    &[&instance, &now, &(max as i64)],
                )?,
                |r| {
                    Ok(InstanceMessage {
                        id: r.try_get(0)?,
                        payload: r.try_get(1)?,
                        deadline: r.try_get(2)?,
                    })
                },
            )
            .map(|mut v: Vec<InstanceMessage>| {
                v.sort_by_key(|m| m.id);
                v
            })
        })
    }

    fn answer_message(&self, id: i64, reply: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE hub_messages SET reply = $2 WHERE id = $1",
                &[&id, &reply],
            )?;
            Ok(())
        })
    }

    fn message_reply(&self, id: i64) -> Result<Option<String>> {
        self.with_client(|c| {
            Ok(
                c.query_opt("SELECT reply FROM hub_messages WHERE id = $1", &[&id])?
                    .map(|r| r.try_get::<_, Option<String>>(0))
                    .transpose()?
                    .flatten(),
            )
        })
    }

    fn drop_message(&self, id: i64) -> Result<()> {
        self.with_client(|c| {
            c.execute("DELETE FROM hub_messages WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn purge_messages(&self, now: i64, logins_before: i64) -> Result<u64> {
        self.with_client(|c| {
            let messages = c.execute("DELETE FROM hub_messages WHERE deadline < $1", &[&now])?;
            let logins = c.execute(
                "DELETE FROM login_failures WHERE window_start < $1",
                &[&logins_before],
            )?;
            Ok(messages + logins)
        })
    }

    fn add_login_failure(&self, key: &str, now: i64, window: i64) -> Result<u32> {
        self.with_client(|c| {
            let count: i64 = c
                .query_one(
                    "INSERT INTO login_failures (key, window_start, count) VALUES ($1, $2, 1)
                     ON CONFLICT (key) DO UPDATE SET
                        count = CASE WHEN login_failures.window_start > $2::BIGINT - $3::BIGINT THEN login_failures.count + 1 ELSE 1 END,
                        window_start = CASE WHEN login_failures.window_start > $2::BIGINT - $3::BIGINT THEN login_failures.window_start ELSE $2 END
                     RETURNING count",
                    &[&key, &now, &window],
                )?
                .try_get(0)?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<Option<(u32, i64)>> {
        self.with_client(|c| {
            let row = c.query_opt(
                "SELECT count, window_start FROM login_failures WHERE key = $1 AND window_start > $2::BIGINT - $3::BIGINT",
                &[&key, &now, &window],
            )?;
            match row {
                Some(r) => {
                    let count: i64 = r.try_get(0)?;
                    Ok(Some((u32::try_from(count).unwrap_or(u32::MAX), r.try_get(1)?)))
                }
                None => Ok(None),
            }
        })
    }

    fn clear_login_failures(&self, key: &str) -> Result<()> {
        self.with_client(|c| {
            c.execute("DELETE FROM login_failures WHERE key = $1", &[&key])?;
            Ok(())
        })
    }

    fn listen_for_messages(&self, instance: &str, wake: Box<dyn Fn() + Send>) {
        let channel = super::super::messages_channel(instance);
        let (url, tls) = (self.pool.url.clone(), self.pool.tls.clone());
        let spawned = std::thread::Builder::new()
            .name("hub-messages-listen".into())
            .spawn(move || {
                loop {
                    let client = match &tls {
                        Some(tls) => url.config.connect(tls.clone()),
                        None => url.config.connect(NoTls),
                    };
                    let heard = client.and_then(|mut client| {
                        client.batch_execute(&format!("LISTEN {channel}"))?;
                        // A message left while this one was not listening.
                        wake();
                        let mut notifications = client.notifications();
                        let mut heard = notifications.blocking_iter();
                        while let Some(_notification) = ::postgres::fallible_iterator::FallibleIterator::next(&mut heard)? {
                            wake();
                        }
                        Ok(())
                    });
                    if let Err(e) = heard {
                        tracing::debug!(error = %StoreError::from(e), "listening for hub messages failed; polling meanwhile");
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot listen for hub messages; polling instead");
        }
    }

    fn set_link_details(
        &self,
        endpoint_id: &str,
        instance: &str,
        link: &LinkDetails,
    ) -> Result<()> {
        self.with_client(|c| {
            c.execute(
                "UPDATE control_links SET data_address = $3, relay = $4, paused = $5
                 WHERE endpoint_id = $1 AND instance_id = $2",
                &[
                    &endpoint_id,
                    &instance,
                    &link.data_address,
                    &link.relay,
                    &link.paused,
                ],
            )?;
            Ok(())
        })
    }

    fn remote_links(&self, instance: &str, now: i64) -> Result<Vec<RemoteLink>> {
        self.with_client(|c| {
            rows(
                c.query(
                    // From the links (few) to the tasks, not the other
                    // way: this runs at every sweep.
                    "SELECT l.endpoint_id, l.instance_id, l.since, l.data_address, l.relay, l.paused
                     FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
                     WHERE l.instance_id <> $1 AND i.lease_until >= $2
                       AND (EXISTS (SELECT 1 FROM tasks t WHERE t.status = 'ACTIVE'
                                    AND t.source_id = l.endpoint_id AND t.claimed_by = $1)
                            OR EXISTS (SELECT 1 FROM tasks t WHERE t.status = 'ACTIVE'
                                       AND t.destination_id = l.endpoint_id AND t.claimed_by = $1))
                     ORDER BY l.endpoint_id",
                    &[&instance, &now],
                )?,
                |r| {
                    Ok(RemoteLink {
                        endpoint_id: r.try_get(0)?,
                        instance: r.try_get(1)?,
                        since: r.try_get(2)?,
                        details: LinkDetails {
                            data_address: r.try_get(3)?,
                            relay: r.try_get(4)?,
                            paused: r.try_get(5)?,
                        },
                    })
                },
            )
        })
    }

    fn task_claim(&self, task_id: &str) -> Result<Option<String>> {
        self.with_client(|c| {
            Ok(c.query_opt(
                "SELECT claimed_by FROM tasks WHERE id = $1 AND status = 'ACTIVE'",
                &[&task_id],
            )?
            .map(|r| r.try_get::<_, Option<String>>(0))
            .transpose()?
            .flatten())
        })
    }

    fn sync_node_links(
        &self,
        endpoint_id: &str,
        instance: &str,
        nodes: &[NodeLinkRow],
    ) -> Result<()> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
            tx.execute(
                "DELETE FROM node_links WHERE endpoint_id = $1 AND instance_id = $2 AND NOT (node = ANY($3))",
                &[&endpoint_id, &instance, &names],
            )?;
            for n in nodes {
                tx.execute(
                    "INSERT INTO node_links (endpoint_id, node, instance_id, since, data_address, features)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (endpoint_id, node) DO UPDATE SET instance_id = EXCLUDED.instance_id,
                         since = EXCLUDED.since, data_address = EXCLUDED.data_address, features = EXCLUDED.features",
                    &[&endpoint_id, &n.node, &instance, &n.since, &n.data_address, &n.features.join(" ")],
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
        self.with_client(|c| {
            c.query(
                "SELECT l.node, l.instance_id, l.since, l.data_address, l.features
                 FROM node_links l JOIN hub_instances i ON i.id = l.instance_id
                 WHERE l.endpoint_id = $1 AND l.instance_id <> $2 AND i.lease_until >= $3
                 ORDER BY l.since, l.node",
                &[&endpoint_id, &instance, &now],
            )?
            .iter()
            .map(|r| {
                Ok(NodeLinkRow {
                    endpoint_id: endpoint_id.to_string(),
                    node: r.try_get(0)?,
                    instance: r.try_get(1)?,
                    since: r.try_get(2)?,
                    data_address: r.try_get(3)?,
                    features: split_features(r.try_get::<_, &str>(4)?),
                })
            })
            .collect()
        })
    }
}
