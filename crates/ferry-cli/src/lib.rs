//! `ferry`: the endpoint's command line, as a library so packaging tools can
//! render man pages and completions from the same clap definition.
//!
//! Parsing happens in two phases (as ripgrep does): [`legacy`] rewrites the
//! contract's one-dash spellings, then clap parses [`args::Cli`]. Each verb
//! lives in its own module and returns the exit code; errors become one
//! line on stderr and exit 1.

/// `println!` that returns the write's error instead of panicking, so a
/// reader that went away (`ferry task list | head -1`) ends the command
/// quietly (see [`is_broken_pipe`]) rather than with a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod apps;
pub mod args;
mod detach;
mod endpoint;
mod https;
mod hub;
mod legacy;
mod paths;
mod share;
mod terminal;
mod timer;
mod transfer;
mod webhook;

use anyhow::Context;
use args::{Cli, Command, PathsCommand};
use clap::{CommandFactory, FromArgMatches};
use ferry_endpoint::{EndpointDir, user_home};
use std::process::ExitCode;

/// Exit code for `-status` when no daemon answers.
const EXIT_NOT_RUNNING: u8 = 3;
const EXIT_USAGE: u8 = 2;

/// The clap definition of `ferry`, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs `ferry` with these arguments (program name first); returns the
/// process's exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> ExitCode {
    let mut command = Cli::command();
    let args = match legacy::rewrite(args, &command) {
        Ok(args) => args,
        Err(unknown) => {
            eprintln!("ferry: {unknown}\nTry `ferry -help`.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cli = match command.try_get_matches_from_mut(args).and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        args::order_filters(&m, &mut cli);
        Ok(cli)
    }) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    match run(cli) {
        Ok(code) => code,
        // The reader of our output is gone: nothing left to say, and
        // nobody to say it to (as cat, ls and grep do).
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The hub's advice (`ferry login`) cannot help while the variable
        // overrides the saved login.
        Err(e) if token_refused(&e) && std::env::var_os("FERRY_TOKEN").is_some() => {
            eprintln!(
                "ferry: the hub refused the access token in FERRY_TOKEN (invalid or expired); set a fresh one, or unset FERRY_TOKEN to use the login saved by `ferry login`"
            );
            ExitCode::FAILURE
        }
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("ferry: {}\nTry `ferry -help`.", one_line(&e));
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("ferry: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// What every verb needs: where the config dir is and whose home `~` is.
#[derive(Debug)]
pub struct Invocation {
    pub dir: EndpointDir,
    pub home: std::path::PathBuf,
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = user_home()?;
    let dir =
        EndpointDir::resolve(cli.dir.as_deref(), &home).context("cannot use the config dir")?;
    let ctx = Invocation { dir, home };
    match cli.command {
        Command::Setup(args) => endpoint::setup(&ctx, args),
        Command::Start(args) => endpoint::start(ctx, args),
        Command::Stop => endpoint::stop(&ctx),
        Command::Status(args) => endpoint::status(&ctx, args.json),
        Command::Pause => endpoint::pause(&ctx, true),
        Command::Unpause => endpoint::pause(&ctx, false),
        Command::Reload => endpoint::reload(&ctx),
        Command::Paths(PathsCommand::Check {
            path,
            restrict_paths,
            json,
        }) => paths::check(&ctx, &path, restrict_paths, json.json),
        Command::Login(args) => hub::login(&ctx, args),
        Command::Logout => hub::logout(&ctx),
        Command::Endpoint(command) => hub::endpoint(&ctx, command),
        Command::Ls { target, long, json } => hub::ls(&ctx, &target, long, json.json),
        Command::Get { target, local } => https::get(&ctx, &target, local.as_ref()),
        Command::Put { local, target } => https::put(&ctx, &local, &target),
        Command::Mkdir { target } => hub::mkdir(&ctx, &target),
        Command::Rename {
            source,
            destination,
        } => hub::rename(&ctx, &source, &destination),
        Command::Rm { recursive, target } => hub::rm(&ctx, &target, recursive),
        Command::Transfer(args) => transfer::transfer(&ctx, args),
        Command::Task(command) => transfer::task(&ctx, command),
        Command::Group(command) => share::group(&ctx, command),
        Command::Link(command) => share::link(&ctx, command),
        Command::Timer(command) => timer::timer(&ctx, command),
        Command::Webhook(command) => webhook::webhook(&ctx, command),
        Command::App(command) => apps::app(&ctx, command),
        Command::Whoami {
            linked_identities,
            json,
        } => hub::whoami(&ctx, linked_identities, json.json),
    }
}

/// A mistake in how a command was typed, found after clap parsed it (an
/// `EP:PATH` without a colon, say): exit 2 like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Count and noun: `1 file`, `2 files`.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn token_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ferry_setup::hub_client::HubError>(),
            Some(ferry_setup::hub_client::HubError::Api { status: 401, .. })
        )
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (many errors print their source in their own text).
/// Causes may quote a peer or the hub, so control characters are escaped.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    terminal::escape(&line).into_owned()
}

/// A small runtime for talking to the daemon; the daemon builds its own.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
