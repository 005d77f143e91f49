//! `ferry-hub`: accounts, OAuth2, the endpoint registry and CA, task
//! orchestration.
//!
//! Only the command line exists so far: every verb of the contract parses,
//! and says plainly that it is not available in this build.

use clap::{Parser, Subcommand};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verb = match cli.command {
        Command::Init { .. } => "init",
        Command::Serve { .. } => "serve",
    };
    eprintln!("ferry-hub: `{verb}` is not available in this build yet; the hub is being built");
    ExitCode::FAILURE
}
