//! `ferry transfer` and `ferry task show|wait|list|cancel|events`: submit
//! tasks to the hub and follow them, with a progress line on a terminal.

use crate::args::{
    ChecksumAlgorithmArg, SyncLevelArg, TaskCommand, TransferArgs, TransferOptionArgs,
};
use crate::hub::session;
use crate::terminal::{escape, escape_bytes};
use crate::{Invocation, UsageError, client_runtime};
use anyhow::{Context, bail};
use ferry_proto::filter::FilterSet;
use ferry_proto::human::{self, clock, utc_seconds};
use ferry_proto::task::{
    ChecksumAlgorithm, SubmitTask, SubmittedTask, SyncLevel, TaskEvent, TaskInfo, TaskStatus,
    TransferItem, TransferOptions,
};
use ferry_proto::wire_path::WirePath;
use ferry_setup::hub_client::{Auth, HubClient, HubError};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Largest batch file read.
const MAX_BATCH: u64 = 16 * 1024 * 1024;
/// How long following a task tolerates an unreachable hub (a restart).
const HUB_GONE_FOR: Duration = Duration::from_secs(120);
/// The rate shown is measured over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Times `ferry transfer` sends its submission when the hub cannot be
/// reached (or its answer is lost on the way).
const SUBMIT_ATTEMPTS: u32 = 4;

/// Submits `submit` under one submission id, again when the hub cannot be
/// reached: however many of the tries arrive, the hub makes one task and
/// answers each with it.
async fn submit_task(
    client: &HubClient,
    token: &str,
    submit: &SubmitTask,
) -> Result<SubmittedTask, HubError> {
    let mut backoff =
        ferry_proto::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
    loop {
        match client
            .post_json("/api/v1/tasks", submit, Auth::Bearer(token))
            .await
        {
            Err(HubError::Unreachable { reason, .. })
                if backoff.failures() + 1 < SUBMIT_ATTEMPTS =>
            {
                let wait = backoff.on_failure(uuid::Uuid::new_v4().as_u64_pair().0);
                tracing::debug!(%reason, ?wait, "submitting again with the same submission id");
                tokio::time::sleep(wait).await;
            }
            answer => return answer,
        }
    }
}

pub fn transfer(inv: &Invocation, args: TransferArgs) -> anyhow::Result<ExitCode> {
    let submit = SubmitTask {
        submission_id: Some(uuid::Uuid::new_v4().to_string()),
        ..submission(&args.source, &args.destination, args.options)?
    };
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let submitted = submit_task(&client, &token, &submit).await?;
        if !args.wait {
            if args.json.json {
                outln!("{}", serde_json::to_string(&submitted)?);
            } else {
                outln!("Task ID: {}", submitted.task_id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if !args.json.json {
            outln!("Task ID: {}", submitted.task_id);
            std::io::stdout().flush()?;
        }
        let mut follower = Follower::new(inv, client, token);
        let info = match follower.follow(&submitted.task_id, None).await? {
            Followed::Ended(info) | Followed::TimedOut(info) => info,
            Followed::Interrupted => return Ok(interrupted(&submitted.task_id)),
        };
        if args.json.json {
            outln!("{}", serde_json::to_string(&info)?);
        } else {
            outln!("Status: {} ({})", info.status, summary(&info));
        }
        Ok(ended(&info))
    })
}

/// The task `SRC DST [options]` submits: what `ferry transfer` sends, and
/// what each run of `ferry timer create transfer` does.
pub(crate) fn submission(
    source: &OsStr,
    destination: &OsStr,
    args: TransferOptionArgs,
) -> anyhow::Result<SubmitTask> {
    let batch = args.batch.is_some();
    let (source_ep, source_path) = endpoint_and_path(source, batch)?;
    let (destination_ep, destination_path) = endpoint_and_path(destination, batch)?;
    let items = match &args.batch {
        Some(file) => {
            let text = read_batch(file)?;
            parse_batch(
                &text,
                source_path.as_ref(),
                destination_path.as_ref(),
                args.recursive,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
        None => vec![TransferItem {
            // Both are present without --batch: endpoint_and_path insists.
            source: source_path.unwrap_or_default(),
            destination: destination_path.unwrap_or_default(),
            recursive: args.recursive,
        }],
    };
    // The hub checks the same; said here first, as bad usage.
    if !args.filters.is_empty() && !args.recursive && !batch {
        return Err(UsageError(
            "--include/--exclude choose among what -r finds; add -r to transfer a directory".into(),
        )
        .into());
    }
    FilterSet::new(&args.filters).map_err(|e| UsageError(e.to_string()))?;
    let deadline = args.deadline.map(|d| d.after(now()));
    Ok(SubmitTask {
        submission_id: None,
        source_endpoint: source_ep,
        destination_endpoint: destination_ep,
        items,
        options: TransferOptions {
            sync_level: args.sync_level.map(sync_level),
            delete: args.delete,
            preserve_mtime: true,
            preserve_mode: true,
            skip_source_errors: args.skip_source_errors,
            streams: args.streams,
            filters: args.filters,
            bwlimit: args.bwlimit,
            on_success: args.on_success,
            // Always sent: a hub reads a submission without it as SHA-256.
            checksum_algorithm: match args.checksum_algorithm {
                ChecksumAlgorithmArg::Sha256 => ChecksumAlgorithm::Sha256,
                ChecksumAlgorithmArg::Blake3 => ChecksumAlgorithm::Blake3,
            },
        },
        label: args.label,
        deadline,
        notify: args.notify,
    })
}

fn sync_level(arg: SyncLevelArg) -> SyncLevel {
    match arg {
        SyncLevelArg::Exists => SyncLevel::Exists,
        SyncLevelArg::Size => SyncLevel::Size,
        SyncLevelArg::Mtime => SyncLevel::Mtime,
        SyncLevelArg::Checksum => SyncLevel::Checksum,
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `EP:PATH`, split at the first colon, the path kept as bytes. With
/// `--batch` the path (even the colon) may be left out.
fn endpoint_and_path(target: &OsStr, batch: bool) -> anyhow::Result<(String, Option<WirePath>)> {
    let bytes = target.as_bytes();
    let (endpoint, path) = match bytes.iter().position(|b| *b == b':') {
        Some(colon) => (&bytes[..colon], &bytes[colon + 1..]),
        None if batch => (bytes, &b""[..]),
        None => bail!("{target:?} is not EP:PATH (e.g. laptop:/~/data)"),
    };
    let endpoint = std::str::from_utf8(endpoint).context("the endpoint name is not valid text")?;
    if endpoint.is_empty() {
        bail!("{target:?} names no endpoint before the ':'");
    }
    if path.is_empty() && !batch {
        bail!("{target:?} has no path after the ':' (use EP:/~/ for the home directory)");
    }
    let path = (!path.is_empty()).then(|| WirePath::from_bytes(path));
    Ok((endpoint.to_string(), path))
}

fn read_batch(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().take(MAX_BATCH + 1).read_to_end(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_BATCH + 1).read_to_end(&mut text))
    };
    read.with_context(|| format!("cannot read the batch file {}", file.display()))?;
    if text.len() as u64 > MAX_BATCH {
        bail!(
            "the batch file {} is larger than {} MiB; split it into several tasks",
            file.display(),
            MAX_BATCH >> 20
        );
    }
    Ok(text)
}

/// The items of a batch file: `SRC_PATH DST_PATH` per line, `-r` or
/// `--recursive` anywhere on it, `#` comments, shell-style quotes. Relative
/// paths go under the bases.
fn parse_batch(
    text: &[u8],
    source_base: Option<&WirePath>,
    destination_base: Option<&WirePath>,
    recursive: bool,
) -> Result<Vec<TransferItem>, String> {
    let mut items = Vec::new();
    for (number, line) in text.split(|b| *b == b'\n').enumerate() {
        let number = number + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut item_recursive = recursive;
        let mut paths = Vec::new();
        for (word, quoted) in split_words(line).map_err(|e| format!("line {number}: {e}"))? {
            match (word.as_slice(), quoted) {
                (b"-r" | b"--recursive", false) => item_recursive = true,
                ([b'-', ..], false) => {
                    return Err(format!(
                        "line {number}: unknown option {:?} (only -r/--recursive; quote a path that starts with -)",
                        String::from_utf8_lossy(&word)
                    ));
                }
                _ => paths.push(word),
            }
        }
        match paths.len() {
            0 => continue,
            2 => {}
            n => {
                return Err(format!(
                    "line {number}: expected SRC_PATH DST_PATH, found {n} path{}",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
        let mut paths = paths.into_iter();
        let (source, destination) = match (paths.next(), paths.next()) {
            (Some(s), Some(d)) => (s, d),
            _ => continue,
        };
        items.push(TransferItem {
            source: under(source_base, source, "source", number)?,
            destination: under(destination_base, destination, "destination", number)?,
            recursive: item_recursive,
        });
    }
    if items.is_empty() {
        return Err("the batch file lists no transfers".into());
    }
    Ok(items)
}

fn under(
    base: Option<&WirePath>,
    path: Vec<u8>,
    which: &str,
    number: usize,
) -> Result<WirePath, String> {
    if path.first() == Some(&b'/') {
        return Ok(WirePath::from_bytes(path));
    }
    let Some(base) = base else {
        return Err(format!(
            "line {number}: the {which} path {:?} is relative, but the command line gives no {which} path to start from (EP:PATH)",
            String::from_utf8_lossy(&path)
        ));
    };
    let mut joined = base.as_bytes().to_vec();
    if joined.last() != Some(&b'/') {
        joined.push(b'/');
    }
    joined.extend_from_slice(&path);
    Ok(WirePath::from_bytes(joined))
}

/// Splits a line into words as a shell would: blanks separate, '...' is
/// literal, "..." honours \" and \\, a backslash escapes the next byte, and
/// `#` at the start of a word begins a comment. Each word says whether any
/// of it was quoted (so a quoted "-r" is a path).
fn split_words(line: &[u8]) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() || line[i] == b'#' {
            break;
        }
        let mut word = Vec::new();
        let mut quoted = false;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            match line[i] {
                b'\'' => {
                    quoted = true;
                    let end = line[i + 1..]
                        .iter()
                        .position(|b| *b == b'\'')
                        .ok_or("unterminated ' quote")?;
                    word.extend_from_slice(&line[i + 1..i + 1 + end]);
                    i += end + 2;
                }
                b'"' => {
                    quoted = true;
                    i += 1;
                    loop {
                        match line.get(i) {
                            None => return Err("unterminated \" quote".into()),
                            Some(b'"') => break,
                            Some(b'\\') if matches!(line.get(i + 1), Some(b'"' | b'\\')) => {
                                word.push(line[i + 1]);
                                i += 2;
                            }
                            Some(b) => {
                                word.push(*b);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                }
                b'\\' => {
                    let next = line.get(i + 1).ok_or("a \\ ends the line")?;
                    word.push(*next);
                    i += 2;
                }
                b => {
                    word.push(b);
                    i += 1;
                }
            }
        }
        words.push((word, quoted));
    }
    Ok(words)
}

// --- following a task ---

enum Followed {
    Ended(TaskInfo),
    TimedOut(TaskInfo),
    /// Ctrl-C: the user stopped following; the task runs on.
    Interrupted,
}

/// The shell's code for a command ended by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// Ctrl-C stops the following, not the task: says so, and how to follow
/// it again or cancel it.
fn interrupted(task_id: &str) -> ExitCode {
    eprintln!(
        "ferry: stopped following task {task_id}; it runs on. Follow it again with `ferry task wait {task_id}`, cancel it with `ferry task cancel {task_id}`"
    );
    ExitCode::from(EXIT_INTERRUPTED)
}

/// Exit code of an ended task: 0 only for SUCCEEDED, with the reason on
/// stderr otherwise.
fn ended(info: &TaskInfo) -> ExitCode {
    if info.status == TaskStatus::Succeeded {
        return ExitCode::SUCCESS;
    }
    let why = info
        .fatal_error
        .as_deref()
        .or(info.last_fault.as_deref())
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    eprintln!(
        "ferry: task {} {}{}",
        info.task_id,
        info.status,
        escape(&why)
    );
    ExitCode::FAILURE
}

struct Follower<'a> {
    inv: &'a Invocation,
    client: HubClient,
    token: String,
}

impl<'a> Follower<'a> {
    fn new(inv: &'a Invocation, client: HubClient, token: String) -> Self {
        Self { inv, client, token }
    }

    /// The task, once it has ended or `wait` has passed (the hub holds
    /// the answer so the end is seen at once).
    async fn show(&mut self, id: &str, wait: Duration) -> Result<TaskInfo, HubError> {
        let path = format!("/api/v1/tasks/{id}");
        let wait_ms = wait.as_millis().to_string();
        self.client
            .get_json(&path, &[("wait_ms", &wait_ms)], Auth::Bearer(&self.token))
            .await
    }

    /// Follows the task until it ends, `timeout` passes or the user
    /// presses Ctrl-C.
    async fn follow(&mut self, id: &str, timeout: Option<Duration>) -> anyhow::Result<Followed> {
        let terminal = std::io::stderr().is_terminal();
        tokio::select! {
            followed = self.poll_until_end(id, timeout, terminal) => followed,
            _ = tokio::signal::ctrl_c() => {
                Bar::new(terminal).clear();
                Ok(Followed::Interrupted)
            }
        }
    }

    /// Polls until the task ends or `timeout` passes. Rides out a hub that
    /// is briefly away (a restart) and a token that expires on the way.
    async fn poll_until_end(
        &mut self,
        id: &str,
        timeout: Option<Duration>,
        terminal: bool,
    ) -> anyhow::Result<Followed> {
        let poll = if terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(1)
        };
        let started = Instant::now();
        let mut bar = Bar::new(terminal);
        let mut gone_since: Option<Instant> = None;
        let mut renewed = false;
        let mut last: Option<TaskInfo> = None;
        loop {
            let asked = Instant::now();
            let wait = match timeout {
                Some(limit) => poll.min(limit.saturating_sub(started.elapsed())),
                None => poll,
            };
            match self.show(id, wait).await {
                Ok(info) => {
                    gone_since = None;
                    renewed = false;
                    if info.status.is_final() {
                        bar.finish(&info, started.elapsed());
                        return Ok(Followed::Ended(info));
                    }
                    bar.draw(&info, None);
                    last = Some(info);
                }
                Err(HubError::Api { status: 401, .. }) if !renewed => {
                    renewed = true;
                    let (client, token) = session(self.inv).await?;
                    (self.client, self.token) = (client, token);
                    continue;
                }
                Err(e @ (HubError::Unreachable { .. } | HubError::Protocol { .. })) => {
                    let since = *gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > HUB_GONE_FOR {
                        bar.clear();
                        return Err(e.into());
                    }
                    if let Some(info) = &last {
                        bar.draw(info, Some("the hub is not answering; retrying"));
                    }
                }
                Err(e) => {
                    bar.clear();
                    return Err(e.into());
                }
            }
            if let Some(limit) = timeout {
                if started.elapsed() >= limit {
                    bar.clear();
                    let info = match last {
                        Some(info) => info,
                        None => self.show(id, Duration::ZERO).await?,
                    };
                    return Ok(Followed::TimedOut(info));
                }
            }
            // Paces the loop when the hub answered early (an error, or a hub
            // that does not hold answers).
            tokio::time::sleep(poll.saturating_sub(asked.elapsed())).await;
        }
    }
}

/// The progress line on stderr, redrawn in place; nothing when stderr is
/// not a terminal.
struct Bar {
    terminal: bool,
    /// (when, bytes transferred) of recent polls, for the rate.
    samples: VecDeque<(Instant, u64)>,
}

impl Bar {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            samples: VecDeque::new(),
        }
    }

    fn put(&self, line: &str) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        }
    }

    fn clear(&self) {
        self.put("");
    }

    fn draw(&mut self, info: &TaskInfo, note: Option<&str>) {
        if !self.terminal {
            return;
        }
        let now = Instant::now();
        self.samples.push_back((now, info.bytes_transferred));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let line = match note.or(info.waiting_for.as_deref()) {
            Some(waiting) => format!("{}  waiting: {waiting}", info.status),
            None => progress_line(info, byte_rate(&self.samples)),
        };
        self.put(&line);
    }

    fn finish(&mut self, info: &TaskInfo, took: Duration) {
        if self.terminal {
            self.put(&format!(
                "{}  {} in {}",
                info.status,
                summary(info),
                clock(took.as_secs())
            ));
            eprintln!();
        }
    }
}

/// Bytes per second over the samples.
fn byte_rate(samples: &VecDeque<(Instant, u64)>) -> f64 {
    match (samples.front(), samples.back()) {
        (Some(first), Some(last)) if last.0 > first.0 => {
            let secs = last.0.duration_since(first.0).as_secs_f64();
            last.1.saturating_sub(first.1) as f64 / secs
        }
        _ => 0.0,
    }
}

/// How much of a task is done, in bytes and in files (skipped files are
/// done too), and the fraction it makes: by bytes, as `rsync
/// --info=progress2` and `rclone -P` count (files say little when one
/// of them is most of the data), by files when there are no bytes.
struct Done {
    bytes: u64,
    files: u64,
    fraction: f64,
}

impl Done {
    fn of(info: &TaskInfo) -> Done {
        let bytes = info
            .bytes_transferred
            .saturating_add(info.bytes_skipped)
            .min(info.bytes);
        let files = info
            .files_transferred
            .saturating_add(info.files_skipped)
            .min(info.files);
        let fraction = if info.bytes > 0 {
            bytes as f64 / info.bytes as f64
        } else if info.files > 0 {
            files as f64 / info.files as f64
        } else {
            0.0
        };
        Done {
            bytes,
            files,
            fraction,
        }
    }
}

/// `ACTIVE [######--------------]  31%  1.2 GiB/3.9 GiB  45.3 MiB/s  ETA 0:59  37/120 files`.
/// The source is walked as a stream: until it has seen every item the
/// totals are what it saw so far, and the line says so instead of
/// drawing a bar or an ETA it cannot know.
fn progress_line(info: &TaskInfo, byte_rate: f64) -> String {
    const WIDTH: usize = 20;
    let done = Done::of(info);
    let mut line = info.status.to_string();
    if info.walk_done {
        let filled = ((done.fraction * WIDTH as f64) as usize).min(WIDTH);
        line.push_str(&format!(
            " [{}{}] {:>3}%  {}/{}  {}/s",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            (done.fraction * 100.0).floor() as u64,
            human::bytes(done.bytes),
            human::bytes(info.bytes),
            human::bytes(byte_rate as u64),
        ));
        if byte_rate > 0.0 && info.bytes > done.bytes {
            let eta = ((info.bytes - done.bytes) as f64 / byte_rate).ceil() as u64;
            line.push_str(&format!("  ETA {}", clock(eta)));
        }
        line.push_str(&format!("  {}/{} files", done.files, info.files));
    } else {
        line.push_str(&format!(
            "  counting  {} of {} seen so far  {}/s  {}/{} files seen",
            human::bytes(done.bytes),
            human::bytes(info.bytes),
            human::bytes(byte_rate as u64),
            done.files,
            info.files,
        ));
    }
    if info.faults > 0 {
        line.push_str(&format!("  faults: {}", info.faults));
    }
    line
}

fn summary(info: &TaskInfo) -> String {
    let mut line = format!(
        "{} transferred, {} skipped, {}",
        crate::plural(info.files_transferred, "file"),
        info.files_skipped,
        human::bytes(info.bytes_transferred),
    );
    if info.bytes_resent > 0 {
        line.push_str(&format!(
            " (and {} resent)",
            human::bytes(info.bytes_resent)
        ));
    }
    line.push_str(&format!(", {}", crate::plural(info.faults, "fault")));
    line
}

// --- ferry task ... ---

/// A task id, or a prefix of one the hub resolves, goes into a URL path:
/// only what a UUID is made of.
fn task_id(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        bail!(
            "{id:?} is not a task id (a UUID as `ferry transfer` printed it, or its first 4 or more characters)"
        );
    }
    Ok(id)
}

pub fn task(inv: &Invocation, command: TaskCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        match command {
            TaskCommand::Show { id, json } => {
                let id = task_id(&id)?;
                let info: TaskInfo = client
                    .get_json(&format!("/api/v1/tasks/{id}"), &[("items", "true")], auth)
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&info)?);
                } else {
                    print_task(&info)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            TaskCommand::Wait { id, timeout } => {
                let id = task_id(&id)?.to_string();
                let mut follower = Follower::new(inv, client, token);
                match follower
                    .follow(&id, timeout.map(Duration::from_secs))
                    .await?
                {
                    Followed::Ended(info) => Ok(ended(&info)),
                    Followed::Interrupted => Ok(interrupted(&id)),
                    Followed::TimedOut(info) => {
                        eprintln!(
                            "ferry: task {} is still {} after {}s; it goes on (ferry task show {})",
                            info.task_id,
                            info.status,
                            timeout.unwrap_or_default(),
                            info.task_id
                        );
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            TaskCommand::List { json } => {
                let tasks: Vec<TaskInfo> = client.get_all("/api/v1/tasks", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&tasks)?);
                } else {
                    print_tasks(&tasks)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            TaskCommand::Cancel { id } => {
                let id = task_id(&id)?;
                let info: TaskInfo = client
                    .post_json(
                        &format!("/api/v1/tasks/{id}/cancel"),
                        &serde_json::json!({}),
                        auth,
                    )
                    .await?;
                outln!("Task {} {}", info.task_id, info.status);
                Ok(ExitCode::SUCCESS)
            }
            TaskCommand::Events { id, json } => {
                let id = task_id(&id)?;
                let events: Vec<TaskEvent> = client
                    .get_all(&format!("/api/v1/tasks/{id}/events"), &[], auth)
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&events)?);
                } else {
                    for e in &events {
                        outln!(
                            "{}  {:<16} {}",
                            utc_seconds(e.time),
                            escape(&e.code),
                            escape(&e.description)
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn print_task(info: &TaskInfo) -> std::io::Result<()> {
    let endpoint = |name: &str, id: &str| format!("{name} ({id})");
    let mut rows: Vec<(&str, String)> = vec![
        ("Task ID", info.task_id.clone()),
        ("Label", info.label.clone().unwrap_or_else(|| "-".into())),
        ("Status", info.status.to_string()),
        (
            "Source",
            endpoint(&info.source_endpoint_name, &info.source_endpoint),
        ),
        (
            "Destination",
            endpoint(&info.destination_endpoint_name, &info.destination_endpoint),
        ),
        ("Items", info.item_count.to_string()),
        (
            "Checksum",
            info.checksum_algorithm
                .map_or_else(|| "-".into(), |a| a.to_string()),
        ),
        ("Files", info.files.to_string()),
        ("Files Transferred", info.files_transferred.to_string()),
        ("Files Skipped", info.files_skipped.to_string()),
        (
            "Bytes",
            format!(
                "{} ({}){}",
                info.bytes,
                human::bytes(info.bytes),
                if info.walk_done || info.status != TaskStatus::Active {
                    ""
                } else {
                    ", counting"
                }
            ),
        ),
        (
            "Bytes Transferred",
            format!(
                "{} ({})",
                info.bytes_transferred,
                human::bytes(info.bytes_transferred)
            ),
        ),
        (
            "Bytes Resent",
            format!(
                "{} ({})",
                info.bytes_resent,
                human::bytes(info.bytes_resent)
            ),
        ),
        ("Progress", {
            let done = Done::of(info);
            format!(
                "{:.0}% ({} of {}, {} of {})",
                (done.fraction * 100.0).floor(),
                human::bytes(done.bytes),
                human::bytes(info.bytes),
                done.files,
                crate::plural(info.files, "file")
            )
        }),
        ("Faults", info.faults.to_string()),
        ("Attempts", info.attempt.to_string()),
        ("Created", utc_seconds(info.created)),
    ];
    if info.nodes > 1 {
        rows.push(("Nodes", format!("{} per endpoint", info.nodes)));
    }
    if info.bytes_relayed > 0 {
        rows.push((
            "Bytes Relayed",
            format!(
                "{} ({}, encrypted, through the hub)",
                info.bytes_relayed,
                human::bytes(info.bytes_relayed)
            ),
        ));
    }
    if !info.filters.is_empty() {
        rows.push(("Filters", filter_flags(&info.filters)));
    }
    if let Some(rate) = info.bwlimit {
        rows.push((
            "Bandwidth Limit",
            format!("{}B/s", ferry_proto::rate::format_rate(rate)),
        ));
    }
    if let Some(hook) = &info.on_success {
        rows.push(("On Success", format!("hook '{hook}' (see task events)")));
    }
    if let Some(t) = info.completed {
        rows.push(("Completed", utc_seconds(t)));
    }
    if let Some(t) = info.deadline {
        rows.push(("Deadline", utc_seconds(t)));
    }
    if let Some(w) = &info.waiting_for {
        rows.push(("Waiting For", w.clone()));
    }
    if let Some(f) = &info.last_fault {
        rows.push(("Last Fault", f.clone()));
    }
    if let Some(e) = &info.fatal_error {
        rows.push(("Error", e.clone()));
    }
    for (key, value) in rows {
        outln!("{:<19}{}", format!("{key}:"), escape(&value));
    }
    if let Some(items) = &info.items {
        print_items(info, items)?;
    }
    Ok(())
}

/// A task's filters as the flags that made them: `--include '*.csv'
/// --exclude '*'` (the caller escapes the line for the terminal).
fn filter_flags(filters: &[ferry_proto::filter::FilterRule]) -> String {
    filters
        .iter()
        .map(|rule| {
            let flag = match rule.action {
                ferry_proto::filter::FilterAction::Include => "--include",
                ferry_proto::filter::FilterAction::Exclude => "--exclude",
            };
            format!(
                "{flag} '{}'",
                String::from_utf8_lossy(rule.pattern.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Items `task show` prints; `--json` has them all.
const ITEMS_SHOWN: usize = 20;

/// Each item as `SRC_EP:PATH -> DST_EP:PATH`. Paths are bytes and go out
/// as bytes (as `ferry ls` writes names), escaped for the terminal.
fn print_items(info: &TaskInfo, items: &[TransferItem]) -> std::io::Result<()> {
    let (source, destination) = (
        escape(&info.source_endpoint_name),
        escape(&info.destination_endpoint_name),
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "Paths:")?;
    for item in items.iter().take(ITEMS_SHOWN) {
        write!(out, "  {source}:")?;
        out.write_all(&escape_bytes(item.source.as_bytes()))?;
        write!(out, " -> {destination}:")?;
        out.write_all(&escape_bytes(item.destination.as_bytes()))?;
        writeln!(out, "{}", if item.recursive { " (-r)" } else { "" })?;
    }
    if items.len() > ITEMS_SHOWN {
        writeln!(
            out,
            "  ... and {} more (`--json` lists them all)",
            items.len() - ITEMS_SHOWN
        )?;
    }
    Ok(())
}

fn print_tasks(tasks: &[TaskInfo]) -> std::io::Result<()> {
    outln!(
        "{:<36} | {:<9} | {:<30} | {:>7} | {:>10} | Label",
        "Task ID",
        "Status",
        "Source -> Destination",
        "Files",
        "Bytes"
    );
    for t in tasks {
        let route = format!(
            "{} -> {}",
            escape(&t.source_endpoint_name),
            escape(&t.destination_endpoint_name)
        );
        outln!(
            "{:<36} | {:<9} | {:<30} | {:>7} | {:>10} | {}",
            t.task_id,
            t.status.as_str(),
            route,
            t.files_transferred + t.files_skipped,
            human::bytes(t.bytes_transferred),
            escape(t.label.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wp(s: &str) -> WirePath {
        WirePath::from_bytes(s)
    }

    fn item(s: &str, d: &str, r: bool) -> TransferItem {
        TransferItem {
            source: wp(s),
            destination: wp(d),
            recursive: r,
        }
    }

    #[test]
    fn targets_split_at_the_first_colon_and_batch_may_leave_out_the_path() {
        let (ep, path) = endpoint_and_path(OsStr::new("laptop:/~/a:b"), false).unwrap();
        assert_eq!((ep.as_str(), path), ("laptop", Some(wp("/~/a:b"))));
        assert!(endpoint_and_path(OsStr::new("laptop"), false).is_err());
        assert!(endpoint_and_path(OsStr::new("laptop:"), false).is_err());
        assert!(endpoint_and_path(OsStr::new(":/x"), true).is_err());
        assert_eq!(
            endpoint_and_path(OsStr::new("laptop"), true).unwrap(),
            ("laptop".to_string(), None)
        );
        assert_eq!(
            endpoint_and_path(OsStr::new("laptop:"), true).unwrap(),
            ("laptop".to_string(), None)
        );
        let odd = OsStr::from_bytes(b"ep:/x/\xff");
        assert_eq!(
            endpoint_and_path(odd, false).unwrap().1.unwrap().as_bytes(),
            b"/x/\xff"
        );
    }

    #[test]
    fn batch_lines_become_items_under_the_bases() {
        let text = b"# results of run 7\n\
            a.h5 b.h5\n\
            -r raw /scratch/raw   # a directory\n\
            'with space' \"other \\\"q\\\" \"  --recursive\r\n\
            \n\
            /abs/x rel/y\n\
            name\\ with\\ escapes '-r'\n";
        let items = parse_batch(text, Some(&wp("/~/data")), Some(&wp("/dst/")), false).unwrap();
        assert_eq!(
            items,
            [
                item("/~/data/a.h5", "/dst/b.h5", false),
                item("/~/data/raw", "/scratch/raw", true),
                item("/~/data/with space", "/dst/other \"q\" ", true),
                item("/abs/x", "/dst/rel/y", false),
                item("/~/data/name with escapes", "/dst/-r", false),
            ]
        );
        // The command line's -r applies to every line.
        let all = parse_batch(b"a b\n", Some(&wp("/s")), Some(&wp("/d")), true).unwrap();
        assert!(all[0].recursive);
        // Bytes pass through untouched.
        let odd = parse_batch(b"/x/\xff /y/\xfe\n", None, None, false).unwrap();
        assert_eq!(odd[0].source.as_bytes(), b"/x/\xff");
    }

    #[test]
    fn bad_batch_lines_say_which_and_why() {
        let err = |text: &[u8], base: Option<&WirePath>| {
            parse_batch(text, base, base, false).unwrap_err()
        };
        assert!(
            err(b"a b\nonly-one\n", Some(&wp("/b")))
                .starts_with("line 2: expected SRC_PATH DST_PATH, found 1 path")
        );
        assert!(err(b"a b c\n", Some(&wp("/b"))).contains("found 3 paths"));
        assert!(err(b"a b --sync\n", Some(&wp("/b"))).contains("unknown option"));
        assert!(err(b"'a b\n", Some(&wp("/b"))).contains("unterminated"));
        assert!(err(b"rel /abs\n", None).contains("relative"));
        assert!(err(b"# nothing\n\n", None).contains("lists no transfers"));
    }

    fn info(files: u64, transferred: u64, skipped: u64, bytes: u64) -> TaskInfo {
        TaskInfo {
            task_id: "t".into(),
            status: TaskStatus::Active,
            label: None,
            source_endpoint: "s".into(),
            source_endpoint_name: "laptop".into(),
            destination_endpoint: "d".into(),
            destination_endpoint_name: "cluster".into(),
            files,
            files_transferred: transferred,
            files_skipped: skipped,
            bytes_transferred: bytes,
            bytes: 0,
            bytes_skipped: 0,
            bytes_resent: 0,
            bytes_relayed: 0,
            walk_done: true,
            faults: 0,
            attempt: 1,
            nodes: 1,
            item_count: 1,
            checksum_algorithm: None,
            on_success: None,
            filters: Vec::new(),
            bwlimit: None,
            created: 0,
            completed: None,
            deadline: None,
            last_fault: None,
            fatal_error: None,
            waiting_for: None,
            items: None,
        }
    }

    #[test]
    fn the_progress_line_counts_bytes_first_then_files() {
        // 301 of 302 files are there, but the last one is most of the data.
        let mut big_last = info(302, 301, 0, 300 << 20);
        big_last.bytes = 6 << 30;
        let line = progress_line(&big_last, 100.0 * 1048576.0);
        assert_eq!(
            line,
            "ACTIVE [--------------------]   4%  300.0 MiB/6.0 GiB  100.0 MiB/s  ETA 0:59  301/302 files"
        );
        // Skipped files are done too.
        let mut synced = info(10, 1, 9, 100);
        synced.bytes = 1000;
        synced.bytes_skipped = 900;
        assert!(
            progress_line(&synced, 0.0).contains("[####################] 100%  1000 B/1000 B"),
            "{}",
            progress_line(&synced, 0.0)
        );
        // Before the walk is over there is no total to draw against.
        let mut walking = info(1, 0, 0, 2 << 30);
        walking.bytes = 6 << 30;
        walking.walk_done = false;
        assert_eq!(
            progress_line(&walking, 0.0),
            "ACTIVE  counting  2.0 GiB of 6.0 GiB seen so far  0 B/s  0/1 files seen"
        );
        let empty = progress_line(&info(0, 0, 0, 0), 0.0);
        assert_eq!(
            empty,
            "ACTIVE [--------------------]   0%  0 B/0 B  0 B/s  0/0 files"
        );
        // Whatever the counters say, the bar never overflows.
        let mut over = info(10, 10, 5, 10);
        over.bytes = 1;
        assert!(progress_line(&over, 0.0).contains("[####################] 100%"));
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(human::bytes(512), "512 B");
        assert_eq!(human::bytes(1536), "1.5 KiB");
        assert_eq!(human::bytes(u64::MAX), "16.0 EiB");
        assert_eq!(clock(42), "0:42");
        assert_eq!(clock(3723), "1:02:03");
        assert_eq!(
            utc_seconds(1_795_392_000 + 3_661),
            "2026-11-23 01:01:01 UTC"
        );
        assert!(task_id("0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11").is_ok());
        assert!(task_id("../etc").is_err());
        assert!(task_id("").is_err());
    }
}
