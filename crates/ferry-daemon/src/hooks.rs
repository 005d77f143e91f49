//! Work after a transfer: the `[hooks.NAME]` commands of `endpoint.toml`,
//! run when a task that names one (`--on-success NAME`) has landed here.
//!
//! The hub only names a hook; the command is the owner's, from this
//! endpoint's own file, run without a shell as the daemon's user (the
//! endpoint's owner), once per task: a marker in the state dir's `hooks/`
//! is made before it starts, so a task whose success the hub heard late
//! (and retried) does not run it twice, nor does a restart. Its end and
//! its last lines of output go to the hub as a `hook` task report.

use ferry_endpoint::{EndpointDir, EndpointIdentity, Hook};
use ferry_mover::{Hooks, Landed, Report};
use ferry_proto::task::{HookEnd, MAX_HOOK_LINE, MAX_HOOK_LINES, TaskReport};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// How long the output of a hook that ended is still read: a child it
/// left behind may hold its pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// A configured hook whose program was found.
#[derive(Debug, Clone)]
struct Ready {
    program: PathBuf,
    hook: Hook,
}

/// This endpoint's hooks and where their runs are marked.
#[derive(Debug)]
pub(crate) struct EndpointHooks {
    hooks: BTreeMap<String, Ready>,
    markers: PathBuf,
    home: PathBuf,
    reports: mpsc::UnboundedSender<Report>,
    /// Tasks whose hook runs now (the marker says "started"; this says
    /// "not finished", for a clean log line on a duplicate).
    running: Mutex<std::collections::BTreeSet<String>>,
}

/// The hooks `endpoint.toml` configures, each program found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Configured(BTreeMap<String, Ready>);

impl Configured {
    /// Reads and checks `endpoint.toml`'s hooks, finding each program
    /// (an absolute path, or a name on the daemon's `PATH`) now, so a
    /// mistake refuses the start with one line instead of failing a task.
    /// They are read once: a changed hook takes a restart.
    pub(crate) fn load(dir: &EndpointDir) -> Result<Self, String> {
        let file = dir.identity_file();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let configured =
            EndpointIdentity::hooks_in(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut hooks = BTreeMap::new();
        for (name, hook) in configured {
            let program = find_program(&hook.command[0], &path)
                .map_err(|why| format!("{}: [hooks.{name}]: {why}", file.display()))?;
            hooks.insert(name, Ready { program, hook });
        }
        Ok(Self(hooks))
    }
}

impl EndpointHooks {
    pub(crate) fn new(
        configured: Configured,
        dir: &EndpointDir,
        home: PathBuf,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        for (name, ready) in &configured.0 {
            tracing::info!(hook = %name, program = %ready.program.display(), timeout_secs = ready.hook.timeout_secs, "hook configured");
        }
        Self {
            hooks: configured.0,
            markers: dir.state_dir().join("hooks"),
            home,
            reports,
            running: Mutex::default(),
        }
    }

    /// The names a task may give `--on-success` (for the hub's hello).
    pub(crate) fn names(&self) -> Vec<String> {
        self.hooks.keys().cloned().collect()
    }
}

/// `program` as the hook will run it: absolute and executable.
fn find_program(program: &str, path: &std::ffi::OsStr) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.starts_with('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| {
            format!("{program:?} is not on the daemon's PATH; give the program's absolute path")
        })
}

impl Hooks for EndpointHooks {
    fn refuse(&self, name: &str, for_grantee: bool) -> Option<String> {
        match self.hooks.get(name) {
            None => Some(format!(
                "the destination endpoint has no hook named '{name}' (--on-success); its endpoint.toml configures {}",
                ferry_proto::task::hook_list(&self.names())
            )),
            Some(ready) if for_grantee && !ready.hook.grantees => Some(format!(
                "the destination's hook '{name}' runs only for its owner's own tasks (grantees = true in its [hooks.{name}] allows shared tasks)"
            )),
            Some(_) => None,
        }
    }

    fn landed(&self, landed: Landed) {
        let Some(ready) = self.hooks.get(&landed.hook).cloned() else {
            // Checked when the attempt began; the file cannot change since.
            return;
        };
        match self.claim(&landed.task_id) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(task = %landed.task_id, hook = %landed.hook, "the task's hook already ran (or runs): not again");
                return;
            }
            Err(e) => {
                tracing::warn!(task = %landed.task_id, error = %e, "cannot mark the hook's run; not running it");
                let _ = self.reports.send((
                    landed.task_id.clone(),
                    landed.attempt,
                    TaskReport::Hook {
                        name: landed.hook,
                        ended: HookEnd::NotRun {
                            reason: format!("the endpoint cannot record the run: {e}"),
                        },
                        output: Vec::new(),
                    },
                ));
                return;
            }
        }
        let reports = self.reports.clone();
        let home = self.home.clone();
        tokio::spawn(async move {
            let task = landed.task_id.clone();
            tracing::info!(%task, hook = %landed.hook, "running the task's hook");
            let (ended, output) = run(&ready, &landed, &home).await;
            tracing::info!(%task, hook = %landed.hook, %ended, "the task's hook ended");
            let _ = reports.send((
                task,
                landed.attempt,
                TaskReport::Hook {
                    name: landed.hook,
                    ended,
                    output,
                },
            ));
        });
    }
}

impl EndpointHooks {
    /// Makes the task's marker; `false` if it was there already.
    fn claim(&self, task_id: &str) -> std::io::Result<bool> {
        // A task id is the hub's uuid; anything else cannot be a file name.
        if task_id.is_empty()
            || task_id.len() > 64
            || !task_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(std::io::Error::other("the task id is not a uuid"));
        }
        if let Ok(mut running) = self.running.lock()
            && !running.insert(task_id.to_string())
        {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.markers)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.markers.join(task_id))
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Runs the hook to its end or its timeout; its end and last lines.
async fn run(ready: &Ready, landed: &Landed, home: &Path) -> (HookEnd, Vec<String>) {
    let mut command = tokio::process::Command::new(&ready.program);
    command
        .args(&ready.hook.command[1..])
        .envs(&ready.hook.env)
        .envs(environment(landed))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let reason = format!("cannot start {}: {e}", ready.program.display());
            return (HookEnd::NotRun { reason }, Vec::new());
        }
    };
    let lines = Arc::new(Mutex::new(Tail::default()));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(read_lines(out, lines.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(read_lines(err, lines.clone()));
    }
    let timeout = Duration::from_secs(ready.hook.timeout_secs);
    let ended = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => HookEnd::Exited { code },
                (None, Some(signal)) => HookEnd::Signaled { signal },
                (None, None) => HookEnd::NotRun {
                    reason: "it ended without a status".into(),
                },
            }
        }
        Ok(Err(e)) => HookEnd::NotRun {
            reason: format!("cannot wait for it: {e}"),
        },
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            HookEnd::TimedOut {
                after_secs: ready.hook.timeout_secs,
            }
        }
    };
    let drained = async { while readers.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drained).await;
    readers.abort_all();
    let output = lines.lock().map(|t| t.lines()).unwrap_or_default();
    (ended, output)
}

/// What a hook learns of its task.
fn environment(landed: &Landed) -> Vec<(&'static str, OsString)> {
    let mut paths = Vec::new();
    for (i, p) in landed.destinations.iter().enumerate() {
        if i > 0 {
            paths.push(b'\n');
        }
        paths.extend_from_slice(p.as_os_str().as_bytes());
    }
    let first = landed
        .destinations
        .first()
        .map(|p| p.as_os_str().to_owned())
        .unwrap_or_default();
    let c = landed.counters;
    vec![
        ("FERRY_TASK_ID", landed.task_id.clone().into()),
        ("FERRY_HOOK", landed.hook.clone().into()),
        ("FERRY_DESTINATION_PATH", first),
        (
            "FERRY_DESTINATION_PATHS",
            std::os::unix::ffi::OsStringExt::from_vec(paths),
        ),
        (
            "FERRY_LABEL",
            landed.label.clone().unwrap_or_default().into(),
        ),
        ("FERRY_FILES", c.files.to_string().into()),
        (
            "FERRY_FILES_TRANSFERRED",
            c.files_transferred.to_string().into(),
        ),
        ("FERRY_BYTES", c.bytes.to_string().into()),
        (
            "FERRY_BYTES_TRANSFERRED",
            c.bytes_transferred.to_string().into(),
        ),
    ]
}

/// The last [`MAX_HOOK_LINES`] lines, each cut at [`MAX_HOOK_LINE`]
/// bytes: however much a hook writes, this much is kept.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut text = String::from_utf8_lossy(&line[..line.len().min(MAX_HOOK_LINE)]).into_owned();
        while text.len() > MAX_HOOK_LINE {
            text.pop();
        }
        if self.lines.len() == MAX_HOOK_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Splits `from` into lines for `tail`, holding at most one line's
/// [`MAX_HOOK_LINE`] bytes: the rest of a longer line is dropped.
async fn read_lines(mut from: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut line = Vec::with_capacity(256);
    let mut cut = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Ok(mut t) = tail.lock() {
                    t.push(&line);
                }
                line.clear();
                cut = false;
            } else if line.len() < MAX_HOOK_LINE {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    if !line.is_empty() || cut {
        if let Ok(mut t) = tail.lock() {
            t.push(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_cut_short() {
        let mut tail = Tail::default();
        for i in 0..(MAX_HOOK_LINES + 5) {
            tail.push(format!("line {i}\r").as_bytes());
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), MAX_HOOK_LINES);
        assert_eq!(lines[0], "line 5");
        tail.push(&vec![b'x'; MAX_HOOK_LINE * 3]);
        assert_eq!(tail.lines().last().unwrap().len(), MAX_HOOK_LINE);
    }

    #[tokio::test]
    async fn a_long_line_without_an_end_is_read_in_bounded_memory() {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let mut input = vec![b'y'; 100_000];
        input.extend_from_slice(b"\nlast");
        read_lines(&input[..], tail.clone()).await;
        let lines = tail.lock().unwrap().lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_HOOK_LINE);
        assert_eq!(lines[1], "last");
    }

    #[test]
    fn a_task_claims_its_hook_once_even_across_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(tmp.path()), tmp.path()).unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let hooks = EndpointHooks::new(Configured::default(), &dir, tmp.path().into(), tx.clone());
        let task = "0b6f0c2e-5f51-4d1e-9a43-1f0f6c1f1a2b";
        assert!(hooks.claim(task).unwrap());
        assert!(!hooks.claim(task).unwrap(), "a retried attempt");
        let restarted = EndpointHooks::new(Configured::default(), &dir, tmp.path().into(), tx);
        assert!(!restarted.claim(task).unwrap(), "after a restart");
        assert!(restarted.claim("another-task").unwrap());
        assert!(restarted.claim("../escape").is_err());
        assert!(restarted.claim("").is_err());
    }

    #[test]
    fn only_configured_hooks_run_and_only_for_the_owner_unless_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(tmp.path()), tmp.path()).unwrap();
        let ready = |grantees| Ready {
            program: "/bin/true".into(),
            hook: Hook {
                command: vec!["/bin/true".into()],
                timeout_secs: 5,
                env: BTreeMap::new(),
                grantees,
            },
        };
        let configured = Configured(BTreeMap::from([
            ("mine".to_string(), ready(false)),
            ("shared".to_string(), ready(true)),
        ]));
        let (tx, _rx) = mpsc::unbounded_channel();
        let hooks = EndpointHooks::new(configured, &dir, tmp.path().into(), tx);
        assert_eq!(hooks.names(), ["mine", "shared"]);
        assert_eq!(hooks.refuse("mine", false), None);
        assert_eq!(hooks.refuse("shared", true), None);
        let grantee = hooks.refuse("mine", true).unwrap();
        assert!(grantee.contains("grantees = true"), "{grantee}");
        let unknown = hooks.refuse("rm", false).unwrap();
        assert!(
            unknown.contains("no hook named 'rm'") && unknown.contains("hooks 'mine', 'shared'"),
            "{unknown}"
        );
    }

    #[test]
    fn programs_are_found_on_path_or_refused_in_one_line() {
        let path = std::ffi::OsString::from("relative:/bin:/usr/bin");
        assert!(find_program("sh", &path).unwrap().is_absolute());
        assert!(find_program("/bin/sh", &path).is_ok());
        let err = find_program("no-such-program-ferry", &path).unwrap_err();
        assert!(
            err.contains("absolute path") && !err.contains('\n'),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("notes");
        std::fs::write(&plain, "not a program").unwrap();
        let err = find_program(plain.to_str().unwrap(), &path).unwrap_err();
        assert!(err.contains("not an executable file"), "{err}");
        assert!(find_program(dir.path().to_str().unwrap(), &path).is_err());
    }
}
