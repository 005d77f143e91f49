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
                    "SELECT l.endpoint_id, l.instance_id, l.since, l.data_address, l.relay, l.paused
                     FROM control_links l JOIN hub_instances i ON i.id = l.instance_id
                     WHERE l.instance_id <> $1 AND i.lease_until >= $2
                       AND l.endpoint_id IN (
                           SELECT source_id FROM tasks WHERE status = 'ACTIVE' AND claimed_by = $1
                           UNION SELECT destination_id FROM tasks WHERE status = 'ACTIVE' AND claimed_by = $1)
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
}
