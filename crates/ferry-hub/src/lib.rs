//! `ferry-hub`: accounts, OAuth2, the endpoint registry and CA, task
//! orchestration.
//!
//! Only the command line exists so far: every verb of the contract parses,
//! and says plainly that it is not available in this build.

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-hub",
    version,
    about = "the ferry hub: login, endpoint registry, task orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct DirArg {
    /// The hub's state dir.
    #[arg(
        long,
        env = "FERRY_HUB_DIR",
        default_value = "/var/lib/ferry-hub",
        value_name = "DIR"
    )]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state dir: config, CA, server certificate, database.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// The URL endpoints and users reach the hub at.
        #[arg(long, value_name = "https://HOST:PORT")]
        url: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve until SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DirArg,
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
}

/// The clap definition of `ferry-hub`, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs `ferry-hub` with these arguments (program name first).
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let verb = match cli.command {
        Command::Init { .. } => "init",
        Command::Serve { .. } => "serve",
    };
    eprintln!("ferry-hub: `{verb}` is not available in this build yet; the hub is being built");
    ExitCode::FAILURE
}
