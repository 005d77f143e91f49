//! `ferry -start -detach`: fork into the background and return once the
//! daemon is ready, or with the reason it could not start.
//!
//! Every check that can refuse a start already ran in the foreground
//! ([`Daemon::prepare`]), so most errors print straight to the terminal.
//! What can still fail after the fork travels back over a pipe: the child
//! writes `ready PID` or `error MESSAGE` and the parent prints it.

use anyhow::{Context, bail};
use daemonize::{Daemonize, Outcome};
use ferry_daemon::Daemon;
use ferry_daemon::logging::{self, LogTarget};
use ferry_endpoint::EndpointDir;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the parent waits for the daemon to report.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The process umask, read without leaving it changed, so a detached daemon
/// creates files as the foreground one would.
fn current_umask() -> u32 {
    use nix::sys::stat::{Mode, umask};
    let old = umask(Mode::from_bits_truncate(0o077));
    umask(old);
    old.bits()
}

pub fn run(daemon: Daemon, dir: &EndpointDir, level: tracing::Level) -> anyhow::Result<ExitCode> {
    let log_path = dir.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open the log {}", log_path.display()))?;
    let (read_end, write_end) = nix::unistd::pipe().context("cannot create a pipe")?;
    let outcome = Daemonize::new()
        .working_directory("/")
        .umask(current_umask())
        .stdout(log.try_clone().context("cannot duplicate the log handle")?)
        .stderr(log)
        .execute();
    match outcome {
        Outcome::Parent(Err(e)) => bail!("cannot detach: {e}"),
        Outcome::Parent(Ok(_)) => {
            daemon.hand_over_to_forked_child();
            drop(write_end);
            wait_for_child(File::from(read_end), &log_path)
        }
        Outcome::Child(result) => {
            drop(read_end);
            let report = Arc::new(Mutex::new(Some(File::from(write_end))));
            let code = match result {
                Err(e) => Err(anyhow::anyhow!("cannot detach: {e}")),
                Ok(_) => serve_detached(daemon, &log_path, level, report.clone()),
            };
            if let Err(e) = &code {
                tracing::error!("{e:#}");
                if let Some(mut pipe) = report.lock().ok().and_then(|mut p| p.take()) {
                    let _ = writeln!(pipe, "error {e:#}");
                }
            }
            Ok(if code.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn serve_detached(
    mut daemon: Daemon,
    log_path: &std::path::Path,
    level: tracing::Level,
    report: Arc<Mutex<Option<File>>>,
) -> anyhow::Result<()> {
    daemon
        .adopt_after_fork()
        .context("cannot record the daemon's pid")?;
    logging::init(&LogTarget::File(log_path.to_path_buf()), level)
        .context("cannot set up logging")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(daemon.run(move |pid| {
        if let Some(mut pipe) = report.lock().ok().and_then(|mut p| p.take()) {
            let _ = writeln!(pipe, "ready {pid}");
        }
    }))?;
    Ok(())
}

fn wait_for_child(mut pipe: File, log_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let Ok(text) = rx.recv_timeout(READY_WITHIN) else {
        bail!(
            "the daemon did not report ready within {}s; see {}",
            READY_WITHIN.as_secs(),
            log_path.display()
        );
    };
    let line = text.lines().next().unwrap_or_default();
    if let Some(pid) = line.strip_prefix("ready ") {
        outln!("ferry started (pid {pid}); log: {}", log_path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(message) = line.strip_prefix("error ") {
        bail!("{message}");
    }
    bail!(
        "the daemon exited while starting; see {}",
        log_path.display()
    )
}
