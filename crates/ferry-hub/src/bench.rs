//! The scheduler's task claims at scale on PostgreSQL, measured on the
//! store code the hub runs (`bench/hub-scale.sh`, through the
//! `claim_scale` example): not a test, and no part of `serve`.
//!
//! The hub has no per-task claim: every instance's scheduler sweeps every
//! [`tasks::TICK`], and a sweep is one `ClusterStore::claim_changes` (renew
//! the instance's lease, take every free ACTIVE task, read what changed
//! since the last sweep; everything on the first). So this measures,
//! at each queue depth (ACTIVE tasks whose endpoints never connect, as
//! tasks queued for offline endpoints wait) and with 1 and K instances
//! (each its own [`PostgresStore`] and connection pool, as K processes
//! would have, and its own instance id):
//!
//! - take-up: every claim released, the K instances claim at once, each
//!   at most once a tick, until the whole queue is held: claims per
//!   second of the batch claim;
//! - steady state: the K instances sweep as `tasks::run` does (one sweep
//!   per tick, or back to back when a sweep outlasts the tick) while new
//!   tasks are submitted through `TaskStore::create_task` at a fixed rate;
//!   per sweep its time, per new task the time from its insert until an
//!   instance's sweep returned it held.
//!
//! The queue is filled in bulk with SQL (a copy of one task made through
//! the store, `INSERT ... SELECT` over `generate_series`, its columns read
//! from the catalog so the copy follows the schema), then `ANALYZE`d as
//! autovacuum would soon do.

use crate::store::{
    AccountStore, ClusterStore, DatabaseUrl, EndpointStore, NewTask, PostgresStore, TaskStore,
};
use crate::{cluster, grants, tasks};
use anyhow::bail;
use ferry_proto::task::{TransferItem, TransferOptions};
use ferry_proto::wire_path::WirePath;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Tasks the bulk fill inserts per statement, between progress lines.
const FILL_CHUNK: usize = 10_000;
/// Take-up gives up after this long: the claim no longer keeps up.
const TAKE_UP_LIMIT: Duration = Duration::from_secs(300);
/// Prefix of the ids of the tasks submitted during the steady phase.
const NEW: &str = "scale-new-";

/// What to measure.
#[derive(Debug, Clone)]
pub struct ClaimBench {
    /// The database, as `hub.toml`'s `database` names it; must hold no
    /// ACTIVE task when the bench starts.
    pub database: String,
    /// Queue depths, reached one after the other (the queue only grows).
    pub depths: Vec<usize>,
    /// Instance counts to measure at each depth.
    pub instances: Vec<usize>,
    /// How long each steady phase lasts.
    pub steady: Duration,
    /// New tasks submitted per second during a steady phase.
    pub rate: u32,
}

/// Runs the bench, printing progress to stderr; the report.
pub fn claims(b: &ClaimBench) -> anyhow::Result<String> {
    if b.depths.is_empty() || b.instances.is_empty() || b.instances.contains(&0) {
        bail!("give at least one depth and instance counts of at least 1");
    }
    if b.rate == 0 || b.rate > 1000 {
        bail!("the rate of new tasks must be 1 to 1000 a second");
    }
    let url = DatabaseUrl::parse(&b.database, &std::env::current_dir()?)?;
    let store = PostgresStore::open(&url)?;
    let mut sql = url.connect()?;
    // A queue an earlier run left is taken as it is (a second pass over
    // it, say to log its plans); anyone else's tasks would be measured too.
    let (active, others): (i64, i64) = {
        let row = sql.query_one(
            "SELECT count(*), count(*) FILTER (WHERE id NOT LIKE 'scale-%')
             FROM tasks WHERE status = 'ACTIVE'",
            &[],
        )?;
        (row.try_get(0)?, row.try_get(1)?)
    };
    if others > 0 {
        bail!(
            "database {} holds {others} ACTIVE tasks of its own; give the bench an empty database (bash .ci/postgres.sh start)",
            url.shown()
        );
    }
    let run = grants::now();
    let owner = store.add_user(&format!("scale-{run}"), "-", run)?;
    let (source, destination) = (format!("scale-src-{run}"), format!("scale-dst-{run}"));
    store.create_endpoint(&source, owner, &format!("src-{run}"), run)?;
    store.create_endpoint(&destination, owner, &format!("dst-{run}"), run)?;
    let template = task(&format!("scale-0-{run}"), owner, &source, &destination, run);
    store.create_task(&template, "SUBMITTED", "scale bench")?;
    let task_columns = copied_columns(&mut sql, "tasks", "id")?;
    let item_columns = copied_columns(&mut sql, "task_items", "task_id")?;

    let mut report = String::new();
    let _ = writeln!(
        report,
        "claims on PostgreSQL ({}; {} cores; sweep every {} ms, lease {} s)",
        server_version(&mut sql)?,
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        tasks::TICK.as_millis(),
        cluster::LEASE
    );
    let mut filled = usize::try_from(active).unwrap_or(0) + 1;
    let mut depths = b.depths.clone();
    depths.sort_unstable();
    for &depth in &depths {
        if depth > filled {
            eprintln!("filling the queue to {depth} tasks");
            let t0 = Instant::now();
            while filled < depth {
                let upto = depth.min(filled + FILL_CHUNK);
                let mut tx = sql.transaction()?;
                tx.execute(
                    &format!(
                        "INSERT INTO tasks (id, {task_columns})
                         SELECT 'scale-' || g || '-' || $2::TEXT, {task_columns}
                         FROM tasks, generate_series($3::BIGINT, $4::BIGINT) g WHERE id = $1"
                    ),
                    &[
                        &template.id,
                        &run.to_string(),
                        &(filled as i64),
                        &(upto as i64 - 1),
                    ],
                )?;
                tx.execute(
                    &format!(
                        "INSERT INTO task_items (task_id, {item_columns})
                         SELECT 'scale-' || g || '-' || $2::TEXT, {item_columns}
                         FROM task_items, generate_series($3::BIGINT, $4::BIGINT) g WHERE task_id = $1"
                    ),
                    &[&template.id, &run.to_string(), &(filled as i64), &(upto as i64 - 1)],
                )?;
                tx.commit()?;
                filled = upto;
            }
            sql.batch_execute("ANALYZE tasks; ANALYZE task_items")?;
            eprintln!("  filled in {:.1} s", t0.elapsed().as_secs_f64());
        }
        for &k in &b.instances {
            let depth_now: i64 = sql
                .query_one("SELECT count(*) FROM tasks WHERE status = 'ACTIVE'", &[])?
                .try_get(0)?;
            let depth_now = usize::try_from(depth_now).unwrap_or(0);
            eprintln!("{depth_now} queued tasks, {k} instance(s)");
            let instances = (0..k)
                .map(|i| Ok((format!("scale{i}x{run}"), PostgresStore::open(&url)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.release_task_claims(None)?;
            let load = loadavg();
            let mut sweeping: Vec<Sweeping> =
                instances.iter().map(|_| Sweeping::default()).collect();
            let took = take_up(&instances, &mut sweeping, depth_now)?;
            let steady = steady(&instances, &mut sweeping, &store, b, &template, run)?;
            describe(&mut report, depth_now, k, &load, &took, &steady);
            // Whatever the next phase measures starts from no claim.
            store.release_task_claims(None)?;
        }
    }
    Ok(report)
}

fn task(id: &str, owner_id: i64, source: &str, destination: &str, now: i64) -> NewTask {
    NewTask {
        id: id.into(),
        owner_id,
        source_id: source.into(),
        destination_id: destination.into(),
        items: vec![TransferItem {
            source: WirePath::from_bytes(b"/data/in".to_vec()),
            destination: WirePath::from_bytes(b"/data/out".to_vec()),
            recursive: true,
        }],
        options: TransferOptions::default(),
        label: Some("scale bench".into()),
        deadline: None,
        created: now,
        notify: Default::default(),
        submission_id: None,
    }
}

/// The columns of `table` a copy of a row takes over: all but `key`, the
/// identity column `seq` and the change mark `changed` (the copy's own).
fn copied_columns(sql: &mut ::postgres::Client, table: &str, key: &str) -> anyhow::Result<String> {
    let rows = sql.query(
        "SELECT column_name::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    let columns = rows
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        bail!("no table {table} in the database's schema");
    }
    Ok(columns
        .into_iter()
        .filter(|c| c != key && c != "seq" && c != "changed")
        .collect::<Vec<_>>()
        .join(", "))
}

fn server_version(sql: &mut ::postgres::Client) -> anyhow::Result<String> {
    let version: String = sql.query_one("SHOW server_version", &[])?.try_get(0)?;
    Ok(format!("PostgreSQL {version}"))
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The batch claim of a whole queue.
#[derive(Debug)]
struct TakeUp {
    wall: Duration,
    calls: Vec<Duration>,
    /// Tasks each instance held at the end.
    split: Vec<usize>,
}

/// One instance's sweeps, as its scheduler keeps them: where it is in the
/// store's changes and which tasks it holds.
#[derive(Debug, Default)]
struct Sweeping {
    since: Option<i64>,
    held: HashSet<String>,
}

impl Sweeping {
    /// One sweep; the tasks it newly holds.
    fn sweep(&mut self, id: &str, store: &PostgresStore) -> anyhow::Result<Vec<String>> {
        let now = grants::now();
        let changes = store.claim_changes(id, now, now + cluster::LEASE, self.since)?;
        self.since = Some(changes.next);
        if changes.whole {
            self.held.clear();
        }
        for gone in changes.elsewhere.iter().chain(&changes.ended) {
            self.held.remove(gone);
        }
        Ok(changes
            .held
            .into_iter()
            .filter_map(|t| self.held.insert(t.id.clone()).then_some(t.id))
            .collect())
    }
}

fn take_up(
    instances: &[(String, PostgresStore)],
    sweeping: &mut [Sweeping],
    depth: usize,
) -> anyhow::Result<TakeUp> {
    let barrier = Barrier::new(instances.len());
    let held: Vec<AtomicUsize> = instances.iter().map(|_| AtomicUsize::new(0)).collect();
    let calls = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    // When the queue was all held: not when the last claimer returns, which
    // may sleep out a tick first.
    let finished = Mutex::new(None::<Instant>);
    let poisoned = || anyhow::anyhow!("a claimer panicked");
    let start = Instant::now();
    let wall = std::thread::scope(|s| {
        let workers: Vec<_> = instances
            .iter()
            .zip(&held)
            .zip(sweeping.iter_mut())
            .map(|(((id, store), held_here), sweeping)| {
                let (barrier, held, calls, done, finished) =
                    (&barrier, &held, &calls, &done, &finished);
                s.spawn(move || -> anyhow::Result<()> {
                    barrier.wait();
                    let claimed = (|| loop {
                        if done.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let total: usize = held.iter().map(|h| h.load(Ordering::Relaxed)).sum();
                        if start.elapsed() > TAKE_UP_LIMIT {
                            bail!(
                                "the instances held {total} of {depth} tasks after {} s",
                                TAKE_UP_LIMIT.as_secs()
                            );
                        }
                        let t = Instant::now();
                        sweeping.sweep(id, store)?;
                        calls.lock().map_err(|_| poisoned())?.push(t.elapsed());
                        held_here.store(sweeping.held.len(), Ordering::Relaxed);
                        let total: usize = held.iter().map(|h| h.load(Ordering::Relaxed)).sum();
                        if total >= depth {
                            finished
                                .lock()
                                .map_err(|_| poisoned())?
                                .get_or_insert_with(Instant::now);
                            done.store(true, Ordering::Relaxed);
                        } else if let Some(rest) = tasks::TICK.checked_sub(t.elapsed()) {
                            // The next sweep a tick later, as the hub's.
                            std::thread::sleep(rest);
                        }
                    })();
                    // One instance's error ends the others' loops too.
                    done.store(true, Ordering::Relaxed);
                    claimed
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| poisoned())??;
        }
        let end = finished
            .lock()
            .map_err(|_| poisoned())?
            .unwrap_or_else(Instant::now);
        anyhow::Ok(end - start)
    })?;
    let mut calls = calls.into_inner().map_err(|_| poisoned())?;
    calls.sort_unstable();
    Ok(TakeUp {
        wall,
        calls,
        split: held.iter().map(|h| h.load(Ordering::Relaxed)).collect(),
    })
}

/// The steady phase: sweeps as the hub runs them, new tasks coming in.
#[derive(Debug, Default)]
struct Steady {
    sweep: Vec<Duration>,
    /// From a new task's insert until a claim returned it.
    latency: Vec<Duration>,
    submitted: usize,
    insert: Vec<Duration>,
    over_tick: usize,
    elapsed: Duration,
    load_end: String,
}

fn steady(
    instances: &[(String, PostgresStore)],
    sweeping: &mut [Sweeping],
    api: &PostgresStore,
    b: &ClaimBench,
    template: &NewTask,
    run: i64,
) -> anyhow::Result<Steady> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pending = Mutex::new(HashMap::<String, Instant>::new());
    let out = Mutex::new(Steady::default());
    let stop = AtomicBool::new(false);
    let poisoned = || anyhow::anyhow!("a sweeper panicked");
    let t0 = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut workers = Vec::new();
        for ((id, store), sweeping) in instances.iter().zip(sweeping.iter_mut()) {
            let (pending, out, stop) = (&pending, &out, &stop);
            workers.push(s.spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let begin = Instant::now();
                    let held = sweeping.sweep(id, store)?;
                    let end = Instant::now();
                    {
                        let mut pending = pending.lock().map_err(|_| poisoned())?;
                        let mut o = out.lock().map_err(|_| poisoned())?;
                        for id in held.iter().filter(|id| id.starts_with(NEW)) {
                            if let Some(inserted) = pending.remove(id) {
                                o.latency.push(end.saturating_duration_since(inserted));
                            }
                        }
                        o.sweep.push(end - begin);
                        o.over_tick += usize::from(end - begin > tasks::TICK);
                    }
                    // As `tokio::time::interval` in `tasks::run`: the next
                    // sweep a tick after this one began, at once if late.
                    if let Some(rest) = tasks::TICK.checked_sub(begin.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                Ok(())
            }));
        }
        // The API's side: one new task every 1/rate s.
        let every = Duration::from_secs(1) / b.rate;
        let mut next = Instant::now();
        let mut result = Ok(());
        while t0.elapsed() < b.steady {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let id = format!("{NEW}{n}-{run}");
            let task = NewTask {
                id: id.clone(),
                ..template.clone()
            };
            let t = Instant::now();
            pending.lock().map_err(|_| poisoned())?.insert(id, t);
            if let Err(e) = api.create_task(&task, "SUBMITTED", "scale bench") {
                result = Err(anyhow::Error::from(e).context("cannot submit a task"));
                break;
            }
            {
                let mut o = out.lock().map_err(|_| poisoned())?;
                o.insert.push(t.elapsed());
                o.submitted += 1;
            }
            next += every;
            if let Some(rest) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
        // Sweeps go on until what was submitted is claimed, or a lease's
        // length: a task not claimed by then shows as unclaimed.
        let grace = Instant::now() + Duration::from_secs(cluster::LEASE as u64);
        while Instant::now() < grace && !pending.lock().map_err(|_| poisoned())?.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().map_err(|_| poisoned())??;
        }
        result
    })?;
    let mut o = out.into_inner().map_err(|_| poisoned())?;
    o.elapsed = t0.elapsed();
    o.load_end = loadavg();
    for v in [&mut o.sweep, &mut o.latency, &mut o.insert] {
        v.sort_unstable();
    }
    Ok(o)
}

/// The `p`th percentile (nearest rank) of sorted `v`, in milliseconds.
fn ms(v: &[Duration], p: usize) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let rank = (v.len() * p).div_ceil(100).clamp(1, v.len());
    format!("{:.1}", v[rank - 1].as_secs_f64() * 1000.0)
}

fn describe(out: &mut String, depth: usize, k: usize, load: &str, t: &TakeUp, s: &Steady) {
    let _ = writeln!(out, "  queue {depth}, {k} instance(s), load average {load}");
    let _ = writeln!(
        out,
        "    take-up      all {depth} claimed in {:.2} s = {:.0} claims/s; {} claim calls, p50 {} ms, max {} ms; held per instance {:?}",
        t.wall.as_secs_f64(),
        depth as f64 / t.wall.as_secs_f64().max(1e-9),
        t.calls.len(),
        ms(&t.calls, 50),
        ms(&t.calls, 100),
        t.split
    );
    let _ = writeln!(
        out,
        "    sweep        {} sweeps in {:.0} s: claim_changes (the whole sweep) p50 {} / p99 {} ms; {} over the {} ms tick",
        s.sweep.len(),
        s.elapsed.as_secs_f64(),
        ms(&s.sweep, 50),
        ms(&s.sweep, 99),
        s.over_tick,
        tasks::TICK.as_millis()
    );
    let _ = writeln!(
        out,
        "    new tasks    {} submitted ({} ms p50 to insert), {} claimed: insert to claim p50 {} / p99 {} ms; load average after {}",
        s.submitted,
        ms(&s.insert, 50),
        s.latency.len(),
        ms(&s.latency, 50),
        ms(&s.latency, 99),
        s.load_end
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(ms(&v, 50), "50.0");
        assert_eq!(ms(&v, 99), "99.0");
        assert_eq!(ms(&v, 100), "100.0");
        assert_eq!(ms(&v[..1], 99), "1.0");
        assert_eq!(ms(&[], 50), "-");
    }
}
