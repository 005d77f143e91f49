//! Where the daemon's logs go: stderr in the foreground, `ferry.log` when
//! detached, the journal when systemd started us with stderr on it. In the
//! foreground on a terminal (`ferry -start &` on a login node) the
//! terminal is the user's, shared with their next commands: it gets
//! warnings and errors only, and the full log goes to `ferry.log`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The destination chosen at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
    Journald,
    /// Warnings and errors to the terminal on stderr, everything to the file.
    TerminalAndFile(PathBuf),
}

impl LogTarget {
    /// The journal when our stderr is the stream systemd handed us (the
    /// documented `JOURNAL_STREAM` check); on a terminal, unless the user
    /// asked for `-debug`/`-trace`, warnings there and the rest in `log`;
    /// else stderr.
    pub fn for_foreground(log: PathBuf, level: Level) -> Self {
        if stderr_is_journal() {
            LogTarget::Journald
        } else if std::io::stderr().is_terminal() && level <= Level::INFO {
            LogTarget::TerminalAndFile(log)
        } else {
            LogTarget::Stderr
        }
    }
}

fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// Installs the global subscriber. `FERRY_LOG` (an `EnvFilter` spec)
/// overrides the level from `-debug`/`-trace`.
pub fn init(target: &LogTarget, level: Level) -> std::io::Result<()> {
    let filter = EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level.as_str().to_ascii_lowercase()));
    let registry = tracing_subscriber::registry().with(filter);
    match target {
        LogTarget::Stderr => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::stderr().is_terminal()),
                )
                .try_init()
                .ok();
        }
        LogTarget::File(path) => {
            let file = open_log(path)?;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(Mutex::new(file)),
                )
                .try_init()
                .ok();
        }
        LogTarget::TerminalAndFile(path) => {
            let file = open_log(path)?;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::stderr().is_terminal())
                        .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
                )
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(Mutex::new(file)),
                )
                .try_init()
                .ok();
        }
        LogTarget::Journald => match tracing_journald::layer() {
            Ok(journal) => {
                registry.with(journal).try_init().ok();
            }
            Err(_) => {
                registry
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_writer(std::io::stderr)
                            .with_ansi(std::io::stderr().is_terminal()),
                    )
                    .try_init()
                    .ok();
            }
        },
    }
    Ok(())
}
