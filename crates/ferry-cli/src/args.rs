//! The command line as clap sees it, after [`crate::legacy`] rewrote the
//! contract's one-dash spellings.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const HELP_TEMPLATE: &str = "\
{before-help}{name} {version}: {about}

Usage:
  ferry -setup [KEY] [--name NAME] [--hub URL] [--hub-ca FILE] [--force]
  ferry -start [-detach] [-restrict-paths SPEC] [-debug|-trace]
  ferry -stop | -status [--json] | -pause | -unpause
  ferry paths check PATH [--json]
  ferry login --hub URL [--hub-ca FILE]
  ferry endpoint create --personal NAME | endpoint search [QUERY]
  ferry ls [-l] EP:PATH | mkdir EP:PATH | rename EP:OLD NEW | rm [-r] EP:PATH
  ferry -version | -help
Every command takes -dir DIR (or env FERRY_DIR; default ~/.ferry).

Endpoint commands:
  -setup     Register this machine as an endpoint with your hub (once)
  -start     Run the endpoint daemon (foreground; -detach to background it)
  -stop      Stop the daemon gracefully; returns once it has exited
  -status    Hub connection and transfer activity (exit 3: not running)
  -pause     Stop taking data work until -unpause
  -unpause   Take data work again
  paths      Explain what config-paths allows: ferry paths check PATH

Hub commands (log in first, or set FERRY_TOKEN and FERRY_HUB):
  login      Log in to a hub; logout forgets it
  endpoint   create --personal NAME: a setup key for another machine;
             search [QUERY]: your endpoints and whether they are connected
  ls, mkdir, rename, rm
             File operations on an endpoint, as EP:PATH (PATH absolute,
             or /~/... for the endpoint owner's home)

Getting started on a cluster node:
  ferry -setup           # once: log in to the hub, name this endpoint
  ferry -start &         # run the daemon while you work
  ferry -status          # Hub: connected / Transfer Status: idle
  ferry -stop            # when done

Which paths transfers may reach is set in DIR/config-paths, one
PATH,SHARING,RW rule per line (default: ~/,0,1). See `ferry paths check`.

Exit codes: 0 ok, 1 failed (reason on stderr), 2 bad usage, 3 not running.
{after-help}";

/// ferry: the endpoint daemon for moving research data.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "the endpoint daemon for moving research data",
    help_template = HELP_TEMPLATE,
    arg_required_else_help = true,
    disable_help_subcommand = true,
    subcommand_required = true
)]
pub struct Cli {
    /// The endpoint's config dir (default ~/.ferry).
    #[arg(long, global = true, env = "FERRY_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this machine as an endpoint with a hub.
    #[command(
        override_usage = "ferry -setup [KEY] [--name NAME] [--hub URL] [--hub-ca FILE] [--force] [-dir DIR]"
    )]
    Setup(SetupArgs),
    /// Run the endpoint daemon in the foreground until stopped.
    #[command(
        override_usage = "ferry -start [-dir DIR] [-detach] [-restrict-paths SPEC] [-debug|-trace]"
    )]
    Start(StartArgs),
    /// Stop the daemon gracefully; returns after it has exited.
    #[command(override_usage = "ferry -stop [-dir DIR]")]
    Stop,
    /// Show hub connection and transfer activity; exit 3 if not running.
    #[command(override_usage = "ferry -status [-dir DIR] [--json]")]
    Status(JsonArg),
    /// Stop taking data work and checkpoint what runs.
    #[command(override_usage = "ferry -pause [-dir DIR]")]
    Pause,
    /// Resume data work after -pause.
    #[command(override_usage = "ferry -unpause [-dir DIR]")]
    Unpause,
    /// Inspect the path policy (config-paths).
    #[command(subcommand)]
    Paths(PathsCommand),
    /// Log in to a hub (the same paste-the-code flow as -setup).
    Login(LoginArgs),
    /// Forget the saved login.
    Logout,
    /// Create and find endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// List a directory on an endpoint: ferry ls EP:PATH.
    Ls {
        /// ENDPOINT:PATH; the endpoint by id or by your display name for it,
        /// PATH absolute or starting with /~/ (the endpoint owner's home).
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
        /// Long listing: type, permissions, size, modification time.
        #[arg(short = 'l')]
        long: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Create a directory on an endpoint.
    Mkdir {
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
    },
    /// Rename (move) a file or directory within an endpoint.
    Rename {
        #[arg(value_name = "EP:OLD")]
        source: std::ffi::OsString,
        /// The new path on the same endpoint (EP: prefix optional).
        #[arg(value_name = "NEW")]
        destination: std::ffi::OsString,
    },
    /// Remove a file (or, with -r, a directory tree) on an endpoint.
    Rm {
        /// Remove directories and their contents.
        #[arg(short = 'r', long = "recursive")]
        recursive: bool,
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The hub's URL, e.g. https://hub.example.org:8443.
    #[arg(long, value_name = "URL", env = "FERRY_HUB")]
    pub hub: String,
    /// CA certificate to trust for a hub with a self-signed certificate.
    #[arg(long = "hub-ca", value_name = "FILE", env = "FERRY_HUB_CA")]
    pub hub_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint and print a one-time setup key for `ferry -setup KEY`.
    Create {
        /// A personal endpoint with this display name.
        #[arg(long, value_name = "NAME")]
        personal: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List endpoints: id, name, owner, and whether connected now.
    Search {
        /// Only endpoints whose name or id contains this.
        query: Option<String>,
        #[arg(long = "filter-scope", value_enum, default_value = "my-endpoints")]
        filter_scope: FilterScopeArg,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FilterScopeArg {
    MyEndpoints,
    SharedWithMe,
    All,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// A one-time setup key (from `ferry endpoint create` or the hub's
    /// admin); with it, setup asks nothing.
    #[arg(value_name = "KEY")]
    pub key: Option<String>,
    /// The same, spelled as Globus Connect Personal does.
    #[arg(long = "setup-key", value_name = "KEY", conflicts_with = "key")]
    pub setup_key: Option<String>,
    /// The hub's URL, e.g. https://hub.example.org:8443 (a setup key may carry it).
    #[arg(long, value_name = "URL", env = "FERRY_HUB")]
    pub hub: Option<String>,
    /// CA certificate to trust for a hub with a self-signed certificate.
    #[arg(long = "hub-ca", value_name = "FILE", env = "FERRY_HUB_CA")]
    pub hub_ca: Option<PathBuf>,
    /// The endpoint's display name (asked for when not given).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Register anew over an existing setup in this dir.
    #[arg(long)]
    pub force: bool,
    /// Accepted for Globus Connect Personal compatibility; ferry never opens a GUI.
    #[arg(long = "no-gui")]
    pub no_gui: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Run in the background; return once the daemon is ready.
    #[arg(long)]
    pub detach: bool,
    /// Allow only these paths, ignoring config-paths: comma-separated,
    /// each optionally prefixed R (read-only), W/RW (read-write) or N (deny),
    /// e.g. `R~/data,/scratch/me,N~/data/private`.
    #[arg(long = "restrict-paths", value_name = "SPEC")]
    pub restrict_paths: Option<String>,
    /// Log at debug level.
    #[arg(long, conflicts_with = "trace")]
    pub debug: bool,
    /// Log at trace level (very verbose).
    #[arg(long)]
    pub trace: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// One JSON document on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PathsCommand {
    /// Explain which config-paths line allows or denies PATH, and whether
    /// read-only. Uses the running daemon's policy source when one answers.
    /// Exit 0 if the path is reachable, 1 if it is denied.
    Check {
        /// An absolute path (relative paths are taken from the current directory).
        path: PathBuf,
        /// Check against this -restrict-paths SPEC instead of config-paths.
        #[arg(long = "restrict-paths", value_name = "SPEC")]
        restrict_paths: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
