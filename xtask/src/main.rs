//! Project chores (man pages, completions, packages): `cargo xtask --help`.
//!
//! Everything a package ships besides the binaries is made here from the
//! files under `packaging/` and `systemd/` and from the clap definitions
//! (`ferry_cli::command()`, `ferry_hub::command()`), so the packages, the
//! tarball and CI all use one recipe. `.ci/packaging.sh` drives it.

mod completions;
mod dist;
mod man;
mod roff;
mod spelling;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "ferry's project chores: man pages, completions, packages"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Render ferry(1), ferry-hub(8) and config-paths(5) into DIR.
    Man {
        #[arg(long, value_name = "DIR", default_value = "target/dist/man")]
        out: PathBuf,
    },
    /// Check that the hand-written completions of `ferry` cover its clap
    /// definition, then write bash, zsh and fish completions for `ferry` and
    /// `ferry-hub` into DIR/{bash,zsh,fish}.
    Completions {
        #[arg(long, value_name = "DIR", default_value = "target/dist/completions")]
        out: PathBuf,
    },
    /// Build the binaries, then the relocatable tarball and the .deb in DIR.
    Dist {
        /// Cargo profile for the binaries: `release` for real packages,
        /// `dev` for a quick check.
        #[arg(long, default_value = "release")]
        profile: String,
        /// Build for this target triple (e.g. x86_64-unknown-linux-musl for
        /// static binaries); the host's by default.
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
        /// Use the binaries already built for this profile and target.
        #[arg(long)]
        no_build: bool,
        /// Make only the tarball.
        #[arg(long)]
        no_deb: bool,
        #[arg(long, value_name = "DIR", default_value = "target/dist")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Man { out } => man::write_all(&from_root(&out)),
        Task::Completions { out } => completions::write_all(&from_root(&out)),
        Task::Dist {
            profile,
            target,
            no_build,
            no_deb,
            out,
        } => dist::run(&dist::Options {
            profile,
            target,
            build: !no_build,
            deb: !no_deb,
            out: from_root(&out),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A relative path is taken from the workspace root, as `cargo xtask` runs
/// from anywhere in the workspace.
fn from_root(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root().join(path)
    }
}

/// The version every artifact carries: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Reads a file under the workspace root, saying which on failure.
pub fn read_root_file(relative: &str) -> Result<String> {
    let path = root().join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a file, creating its parent dirs.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// SOURCE_DATE_EPOCH, else the last commit's time, else now: dates in the
/// man pages and file times in the packages do not depend on the build.
pub fn source_date_epoch() -> u64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return epoch;
    }
    std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}
