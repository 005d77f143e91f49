//! The command line as clap sees it, after [`crate::legacy`] rewrote the
//! contract's one-dash spellings.

use clap::{Args, Parser, Subcommand};
use ferry_proto::filter::{FilterAction, FilterRule};
use ferry_proto::wire_path::WirePath;
use std::path::PathBuf;

const HELP_TEMPLATE: &str = "\
{before-help}{name} {version}: {about}

Usage:
  ferry -setup [KEY] [--name NAME] [--hub URL] [--hub-ca FILE] [--force]
  ferry -start [-detach] [-restrict-paths SPEC] [-debug|-trace]
  ferry -stop | -status [--json] | -pause | -unpause | -reload
  ferry paths check PATH [--json]
  ferry login --hub URL [--hub-ca FILE]
  ferry endpoint create --personal NAME | endpoint search [QUERY]
  ferry endpoint update EP [--display-name NAME] [--allowed-domains D1,D2]
  ferry endpoint delete EP | whoami [--linked-identities]
  ferry ls [-l] EP:PATH | mkdir EP:PATH | rename EP:OLD NEW | rm [-r] EP:PATH
  ferry transfer SRC_EP:PATH DST_EP:PATH [-r] [--sync-level LEVEL] [--wait] ...
  ferry task show|wait|cancel|events ID | task list
  ferry timer create transfer SRC_EP:PATH DST_EP:PATH --interval WHEN ...
  ferry timer list | timer show|delete ID
  ferry -version | -help
Every command takes -dir DIR (or env FERRY_DIR; default ~/.ferry).

Endpoint commands:
  -setup     Register this machine as an endpoint with your hub (once)
  -start     Run the endpoint daemon (foreground; -detach to background it)
  -stop      Stop the daemon gracefully; returns once it has exited
  -status    Hub connection and transfer activity (exit 3: not running)
  -pause     Stop taking data work until -unpause
  -unpause   Take data work again
  -reload    Re-read config-paths in the running daemon (as SIGHUP does)
  paths      Explain what config-paths allows: ferry paths check PATH

Hub commands (log in first, or set FERRY_TOKEN and FERRY_HUB):
  login      Log in to a hub; logout forgets it
  endpoint   create --personal NAME: a setup key for another machine;
             search [QUERY]: your endpoints and whether they are connected;
             update EP --display-name NAME: rename; --allowed-domains:
             require an identity from those domains; delete EP
  whoami     Your identity (user@domain); --linked-identities: all of them
  ls, mkdir, rename, rm
             File operations on an endpoint, as EP:PATH (PATH absolute,
             or /~/... for the endpoint owner's home)
  transfer   Copy files between two endpoints as a task the hub runs to
             the end, through faults and offline endpoints (ferry transfer -h)
  task       Follow tasks: show, wait, list, cancel, events
  timer      Recurring transfers, each run a task: create transfer, list,
             show, delete (ferry timer create transfer -h)

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
    /// Make the running daemon re-read config-paths (as SIGHUP does) and
    /// say how it went; a bad file keeps the policy in force.
    #[command(override_usage = "ferry -reload [-dir DIR]")]
    Reload,
    /// Inspect the path policy (config-paths).
    #[command(subcommand)]
    Paths(PathsCommand),
    /// Log in to a hub (the same paste-the-code flow as -setup).
    Login(LoginArgs),
    /// Forget the saved login.
    Logout,
    /// Create, find, rename and delete endpoints.
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
    /// Download one file over HTTPS through the hub (no endpoint needed
    /// here); a partial LOCAL.part from an interrupted run is resumed.
    #[command(override_usage = "ferry get EP:PATH [LOCAL|-]")]
    Get {
        /// ENDPOINT:PATH of the file, PATH absolute or starting with /~/.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
        /// Where to write it (default: its name, here; a folder: its name
        /// in that folder); - for stdout.
        #[arg(value_name = "LOCAL")]
        local: Option<std::ffi::OsString>,
    },
    /// Upload one file over HTTPS through the hub (no endpoint needed
    /// here); run it again after an interruption and it continues.
    #[command(override_usage = "ferry put LOCAL EP:PATH")]
    Put {
        /// The local file to upload.
        #[arg(value_name = "LOCAL")]
        local: std::ffi::OsString,
        /// ENDPOINT:PATH it lands at (replacing what is there once
        /// complete); a PATH ending in / is a folder: the file's name in it.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
    },
    /// Create a directory on an endpoint.
    Mkdir {
        /// ENDPOINT:PATH of the directory to create.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
    },
    /// Rename (move) a file or directory within an endpoint.
    Rename {
        /// ENDPOINT:PATH of what to rename.
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
        /// ENDPOINT:PATH of what to remove.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
    },
    /// Submit a transfer task: ferry transfer SRC_EP:PATH DST_EP:PATH.
    #[command(after_help = TRANSFER_HELP)]
    Transfer(TransferArgs),
    /// Follow and manage transfer tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Groups of users to share with.
    #[command(subcommand)]
    Group(GroupCommand),
    /// HTTPS URLs anyone holding them may download a shared path through.
    #[command(subcommand, after_help = LINK_HELP)]
    Link(LinkCommand),
    /// Recurring transfers: each run an ordinary task.
    #[command(subcommand)]
    Timer(TimerCommand),
    /// URLs the hub POSTs news of your tasks to, signed (HMAC-SHA256).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Apps you registered on the hub (OAuth clients: native apps, portals,
    /// service accounts), and the apps you let act for you.
    #[command(subcommand, after_help = APP_HELP)]
    App(AppCommand),
    /// Who you are on the hub: your identity (user@domain) and, with
    /// --linked-identities, every identity linked to your account.
    Whoami {
        /// Also list every identity linked to your account and which of
        /// them this login authenticated, and when.
        #[arg(long = "linked-identities")]
        linked_identities: bool,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TimerCommand {
    /// Create a timer.
    #[command(subcommand)]
    Create(TimerCreateCommand),
    /// Your timers: id, interval, next run, runs, status.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// A timer's schedule, its runs and what happened to them.
    Show {
        /// The timer's id, as `ferry timer create` printed it.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Delete a timer: no more runs (a run already started goes on).
    Delete {
        /// The timer's id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TimerCreateCommand {
    /// A transfer run every --interval, each run a task of its own.
    #[command(after_help = TIMER_HELP)]
    Transfer(Box<TimerTransferArgs>),
}

const TIMER_HELP: &str = "\
Each run is an ordinary task (`ferry task list` shows it, labelled with
the timer), submitted by the hub as you at its due time and checked then
as a `ferry transfer` of yours would be. A run due while the previous one
is still ACTIVE is skipped, and `ferry timer show ID` says so. Runs keep
to the times start + k * interval; after the hub was down across several
of them, one run makes up for them all.

WHEN for --start and --stop-after-date: a time from now (90m, 2h, 1d) or
an RFC 3339 time (2026-12-01T02:00:00Z). --deadline is each run's, as a
time from the run's start (2h).

Examples:
  ferry timer create transfer lab:/~/results cluster:/scratch/me/results -r --interval 1d --start 2026-12-01T02:00:00Z --sync-level mtime
  ferry timer create transfer lab:/~/log.txt laptop:/~/log.txt --interval 10m --stop-after-runs 6
  ferry timer list
  ferry timer delete ID";

#[derive(Debug, Args)]
pub struct TimerTransferArgs {
    /// The source endpoint (id or your display name for it) and path;
    /// with --batch, the base that relative paths in the file start from.
    #[arg(value_name = "SRC_EP:PATH")]
    pub source: std::ffi::OsString,
    /// The destination endpoint and path (base for --batch).
    #[arg(value_name = "DST_EP:PATH")]
    pub destination: std::ffi::OsString,
    /// Time between runs: 30s, 10m, 1h, 1d (at least 3 seconds, at most a year).
    #[arg(long, value_name = "WHEN", value_parser = parse_interval)]
    pub interval: i64,
    /// The first run: a time from now (90m, 1d) or an RFC 3339 time;
    /// default now.
    #[arg(long, value_name = "WHEN", value_parser = parse_deadline)]
    pub start: Option<DeadlineArg>,
    /// End the timer after N runs.
    #[arg(
        long = "stop-after-runs",
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "stop_after_date"
    )]
    pub stop_after_runs: Option<u64>,
    /// End the timer before the first run due after WHEN (a time from
    /// now, or an RFC 3339 time).
    #[arg(long = "stop-after-date", value_name = "WHEN", value_parser = parse_deadline)]
    pub stop_after_date: Option<DeadlineArg>,
    #[command(flatten)]
    pub options: TransferOptionArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `--interval WHEN`: a span (30s, 10m, 1h, 1d) within what a timer may have.
pub fn parse_interval(text: &str) -> Result<i64, String> {
    use ferry_proto::task::{MAX_TIMER_INTERVAL, MIN_TIMER_INTERVAL};
    let usage = || {
        format!(
            "{text:?} is not an interval: use 30s, 10m, 1h or 1d, between {MIN_TIMER_INTERVAL} seconds and {} days",
            MAX_TIMER_INTERVAL / 86_400
        )
    };
    match parse_deadline(text) {
        Ok(DeadlineArg::In(secs)) if (MIN_TIMER_INTERVAL..=MAX_TIMER_INTERVAL).contains(&secs) => {
            Ok(secs)
        }
        _ => Err(usage()),
    }
}

/// What sort of app to register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppType {
    /// A program on the user's computer: public (no secret), PKCE,
    /// redirected to a loopback address (any port) or the hub's code page.
    Native,
    /// A web portal: a secret, exact redirect URIs, codes and refresh.
    Portal,
    /// A service account: a secret, client credentials; acts as itself.
    Service,
}

impl AppType {
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Native => "native",
            AppType::Portal => "portal",
            AppType::Service => "service",
        }
    }
}

const APP_HELP: &str = "\
A portal or service account's secret is shown once, by create and
rotate-secret: keep it. A service account acts as itself, with the identity
create prints (CLIENT_ID@clients.DOMAIN): share an endpoint with it by
`ferry endpoint permission create EP:PATH --permissions r --identity IDENTITY`.
Deleting an app revokes every token it holds.

Scopes an app may ask for: openid, profile, email, transfer, offline_access
(a refresh token), my-endpoints, shared-with-me, endpoint:setup.

Examples:
  ferry app create 'Lab portal' --type portal --redirect-uri https://portal.example.org/callback
  ferry app create nightly-sync --type service --json
  ferry app list
  ferry app rotate-secret CLIENT_ID
  ferry app consents
  ferry app revoke CLIENT_ID";

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app; prints its client id (and secret, once).
    Create {
        /// The app's name, as the consent page shows it to users.
        #[arg(value_name = "NAME")]
        name: String,
        /// native, portal or service.
        #[arg(long = "type", value_name = "TYPE", value_enum)]
        kind: AppType,
        /// A portal's redirect URI (https://, or http:// to a loopback
        /// address); repeat for several. Compared exactly.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// The apps you registered.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// One of your apps.
    Show {
        /// The app's client id, as `ferry app list` shows it.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// A new secret for a portal or service account; the old one stops
    /// working at once. Prints the new one, once.
    #[command(name = "rotate-secret")]
    RotateSecret {
        /// The app's client id.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Delete one of your apps; every token it holds stops working.
    Delete {
        /// The app's client id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// The apps you let act for you, and what you let them do.
    Consents {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Take back what you let an app do: its tokens for you stop working
    /// at once, and it must ask you again.
    Revoke {
        /// The app's client id, as `ferry app consents` shows it.
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Have the hub POST news of your tasks to URL; prints the secret that
    /// signs them, once.
    Add {
        /// Where to POST: an http:// or https:// URL.
        #[arg(value_name = "URL")]
        url: String,
        /// Which news: a comma-separated list of succeeded, failed,
        /// inactive (default: all three), or on (succeeded and failed).
        #[arg(long, value_name = "EVENTS", value_parser = parse_notify)]
        events: Option<ferry_proto::notify::NotifyEvents>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Your webhooks.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop POSTing to a webhook.
    Delete {
        /// The webhook's id, as `ferry webhook list` shows it.
        #[arg(value_name = "ID")]
        id: String,
    },
}

const TRANSFER_HELP: &str = "\
The hub runs the task to the end: it retries faults, waits for an endpoint
that is offline, and resumes from what the destination already committed.
It prints `Task ID: <UUID>`; follow it with `ferry task show|wait|events`.

Paths are absolute on their endpoint; /~/ starts at the endpoint owner's home.
With -r the contents of the source directory land in the destination
directory. Modification times and permissions are kept.

--deadline WHEN: the task fails if it has not completed by then. WHEN is a
time from now (`3600`, `3600s`, `90m`, `2h`, `1d`) or an RFC 3339 time
(`2026-12-01T18:00:00Z`, `2026-12-01T19:00:00+01:00`).

--batch FILE (`-` reads stdin): many items in one task. One item per line,
`SRC_PATH DST_PATH`, with `-r` (or `--recursive`) anywhere on the line for a
directory; `#` starts a comment; quote paths with spaces ('a b' or \"a b\").
Relative paths are taken under SRC_EP:PATH and DST_EP:PATH given on the
command line (then just SRC_EP and DST_EP are enough if every path is
absolute).

Filters (--include PATTERN, --exclude PATTERN, repeatable, as in rsync):
they apply to what -r finds beneath the source directory (an item named
itself is always sent). Each entry is tried against the patterns in the
order given; the first that matches decides; an entry none matches is
sent. An excluded directory is not looked into at all, so
  --include '*.csv' --exclude '*'
sends the csv files at the top only; --include '*/' first makes it look in
every directory (empty ones are made too). With --delete, an excluded
destination entry is never deleted. In a PATTERN:
  *        any bytes but /          **     any bytes, / too
  ?        one byte but /           [a-z]  one byte of a set ([!a-z]: not)
  \\X       X itself
  NAME/    (a trailing /) matches directories only
  a/b, /a  (a / before the end) matches the whole path from the source
           directory, not just the name: logs/*.gz is logs/x.gz only
Names are matched as bytes (names that are not UTF-8 too); at most 64
patterns of at most 256 bytes.

--bwlimit RATE caps the task's data rate (bytes per second, K, M, G are
powers of 1000: 500K, 10M); all its streams share it. An endpoint's own
cap is `bwlimit = \"RATE\"` in its endpoint.toml (re-read on SIGHUP).

--on-success NAME runs the destination's hook NAME once every file
landed: a command its owner configured as [hooks.NAME] in the
destination's endpoint.toml (the hub only names it). The task succeeds
when the data landed; the hook's exit status and last output lines
follow as HOOK_SUCCEEDED or HOOK_FAILED in `ferry task events`
(docs/hpc.md: land data, then submit the analysis job).

Examples:
  ferry transfer laptop:/~/data/run7 cluster:/scratch/me/run7 -r --wait
  ferry transfer laptop:/~/data cluster:/scratch/me --batch files.txt
  ferry transfer laptop:/~/big.h5 cluster:/~/big.h5 --sync-level checksum --deadline 2h
  ferry transfer laptop:/~/run7 cluster:/scratch/me/run7 -r --exclude '*.tmp' --exclude 'scratch/'
  ferry transfer laptop:/~/run7 cluster:/~/csv -r --include '*/' --include '*.csv' --exclude '*'
  ferry transfer laptop:/~/big.h5 cluster:/~/big.h5 --bwlimit 10M
  ferry transfer laptop:/~/run7 cluster:/scratch/me/run7 -r --on-success analyse";

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The source endpoint (id or your display name for it) and path;
    /// with --batch, the base that relative paths in the file start from.
    #[arg(value_name = "SRC_EP:PATH")]
    pub source: std::ffi::OsString,
    /// The destination endpoint and path (base for --batch).
    #[arg(value_name = "DST_EP:PATH")]
    pub destination: std::ffi::OsString,
    #[command(flatten)]
    pub options: TransferOptionArgs,
    /// Show progress and return when the task ends: exit 0 only if it SUCCEEDED.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// What a transfer copies and how: every option of `ferry transfer` but
/// following it, shared with `ferry timer create transfer` so that each
/// option exists, and means the same, in one place.
#[derive(Debug, Args)]
pub struct TransferOptionArgs {
    /// The source is a directory: its contents land in the destination directory.
    #[arg(short = 'r', long = "recursive")]
    pub recursive: bool,
    /// Skip files already at the destination: when they exist, have the
    /// same size, the same size and modification time, or the same content.
    #[arg(long = "sync-level", value_enum, value_name = "LEVEL")]
    pub sync_level: Option<SyncLevelArg>,
    /// Delete destination files that the source does not have (with -r).
    #[arg(long)]
    pub delete: bool,
    /// A label to recognise the task by in `ferry task list`.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Fail the task if it has not completed by then: 3600s, 90m, 2h, 1d
    /// from now, or an RFC 3339 time such as 2026-12-01T18:00:00Z.
    #[arg(long, value_name = "WHEN", value_parser = parse_deadline)]
    pub deadline: Option<DeadlineArg>,
    /// Report unreadable source files as events and go on, instead of failing.
    #[arg(long = "skip-source-errors")]
    pub skip_source_errors: bool,
    /// Read many `SRC_PATH DST_PATH [-r]` items from FILE (- for stdin).
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// How both endpoints hash each 4 MiB chunk and each file, to verify
    /// every byte and to compare contents for --sync-level checksum:
    /// blake3 (the default, about twice as fast a core) or sha256 (for a
    /// site whose policy names SHA-256). Either verifies everything; the
    /// README says how to reproduce a file's digest with b3sum or
    /// sha256sum. With an endpoint that runs an older ferry, sha256.
    #[arg(
        long = "checksum-algorithm",
        value_enum,
        value_name = "ALGORITHM",
        default_value = "blake3"
    )]
    pub checksum_algorithm: ChecksumAlgorithmArg,
    /// Parallel data streams (1-64), fixed for the whole task. By default
    /// the source starts from the sizes of the files it is about to send
    /// and adds streams (up to 16) while that raises the throughput it
    /// measures, as on a long or lossy path.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub streams: Option<u32>,
    /// Send what matches PATTERN (with -r), even if a later --exclude
    /// matches it too. Repeatable; see "Filters" below.
    #[arg(long, value_name = "PATTERN", action = clap::ArgAction::Append)]
    pub include: Vec<std::ffi::OsString>,
    /// Leave out what matches PATTERN (with -r); an excluded directory is
    /// not looked into, and --delete never deletes what is excluded.
    #[arg(long, value_name = "PATTERN", action = clap::ArgAction::Append)]
    pub exclude: Vec<std::ffi::OsString>,
    /// Every --include and --exclude in the order given (filled from the
    /// parsed command line by [`order_filters`]: order is their meaning).
    #[arg(skip)]
    pub filters: Vec<FilterRule>,
    /// Cap the task's data rate: bytes per second with an optional K, M
    /// or G (powers of 1000), e.g. 500K, 10M; at least 10K.
    #[arg(long, value_name = "RATE", value_parser = parse_bwlimit)]
    pub bwlimit: Option<u64>,
    /// E-mail you when the task ends: on (succeeded and failed, the
    /// default), off, or a list of succeeded, failed, inactive. Needs an
    /// address on your account and an SMTP relay on the hub.
    #[arg(long, value_name = "on|off|EVENTS", value_parser = parse_notify)]
    pub notify: Option<ferry_proto::notify::NotifyEvents>,
    /// Once every file landed, run the destination's hook NAME (a
    /// command its owner configured as [hooks.NAME] in its endpoint.toml).
    #[arg(long = "on-success", value_name = "NAME", value_parser = parse_hook_name)]
    pub on_success: Option<String>,
}

/// `--notify` and `--events`, as ferry-proto spells them.
pub fn parse_notify(text: &str) -> Result<ferry_proto::notify::NotifyEvents, String> {
    ferry_proto::notify::NotifyEvents::parse(text).map_err(|e| e.to_string())
}

/// `--on-success NAME`, as the hub and the endpoint check it.
pub fn parse_hook_name(text: &str) -> Result<String, String> {
    ferry_proto::task::check_hook_name(text).map(|()| text.to_string())
}

/// `--bwlimit RATE`, as ferry-proto spells rates.
pub fn parse_bwlimit(text: &str) -> Result<u64, String> {
    ferry_proto::rate::parse_rate(text).map_err(|e| e.to_string())
}

/// Puts a `ferry transfer`'s `--include` and `--exclude` into one list in
/// the order they were given: clap keeps each option's values apart, and
/// their indices on the command line are what says which came first.
pub fn order_filters(matches: &clap::ArgMatches, cli: &mut Cli) {
    let (args, sub) = match (&mut cli.command, matches.subcommand()) {
        (Command::Transfer(args), Some(("transfer", sub))) => (&mut args.options, sub),
        (
            Command::Timer(TimerCommand::Create(TimerCreateCommand::Transfer(args))),
            Some(("timer", sub)),
        ) => match sub.subcommand().and_then(|(_, create)| create.subcommand()) {
            Some(("transfer", sub)) => (&mut args.options, sub),
            _ => return,
        },
        _ => return,
    };
    let mut rules = Vec::new();
    for (id, action) in [
        ("include", FilterAction::Include),
        ("exclude", FilterAction::Exclude),
    ] {
        if let (Some(values), Some(indices)) = (sub.get_raw(id), sub.indices_of(id)) {
            for (value, index) in values.zip(indices) {
                let pattern = WirePath::from(value);
                rules.push((index, FilterRule { action, pattern }));
            }
        }
    }
    rules.sort_by_key(|(index, _)| *index);
    args.filters = rules.into_iter().map(|(_, rule)| rule).collect();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksumAlgorithmArg {
    Sha256,
    Blake3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncLevelArg {
    #[value(alias = "0")]
    Exists,
    #[value(alias = "1")]
    Size,
    #[value(alias = "2")]
    Mtime,
    #[value(alias = "3")]
    Checksum,
}

/// When a task must have completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineArg {
    /// Seconds from now.
    In(i64),
    /// Unix seconds.
    At(i64),
}

impl DeadlineArg {
    /// Unix seconds, a length of time counted forward from `now`.
    pub fn after(self, now: i64) -> i64 {
        match self {
            DeadlineArg::In(secs) => now.saturating_add(secs),
            DeadlineArg::At(at) => at,
        }
    }
    /// Unix seconds, a length of time counted back from `now` (`--since 1h`).
    pub fn before(self, now: i64) -> i64 {
        match self {
            DeadlineArg::In(secs) => now.saturating_sub(secs),
            DeadlineArg::At(at) => at,
        }
    }
}

/// `3600`, `3600s`, `90m`, `2h`, `1d`, or an RFC 3339 time.
pub fn parse_deadline(text: &str) -> Result<DeadlineArg, String> {
    parse_when(text).ok_or_else(|| {
        format!(
            "{text:?} is not a deadline: use a time from now (3600s, 90m, 2h, 1d) or an RFC 3339 time (2026-12-01T18:00:00Z)"
        )
    })
}

/// `--since WHEN`: the same forms, a length of time meaning that long ago
/// ([`DeadlineArg::before`]).
pub fn parse_since(text: &str) -> Result<DeadlineArg, String> {
    parse_when(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: use how long ago (3600s, 90m, 2h, 7d) or an RFC 3339 time (2026-12-01T18:00:00Z)"
        )
    })
}

fn parse_when(text: &str) -> Option<DeadlineArg> {
    if text.contains(['-', ':']) {
        return parse_rfc3339(text).map(DeadlineArg::At);
    }
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|n| *n > 0 && digits.bytes().all(|b| b.is_ascii_digit()))?;
    n.checked_mul(scale).map(DeadlineArg::In)
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |i: usize| i64::from(digits[i] - b'0');
            let (h, m) = (d(0) * 10 + d(1), d(2) * 10 + d(3));
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// A task's status and counters.
    Show {
        /// The task's id, as `ferry transfer` printed it, or a unique
        /// prefix of it (4 characters at least).
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Wait until a task ends, with progress on a terminal. Exit 0 if it
    /// SUCCEEDED; 1 if it FAILED, was CANCELED or the timeout passed.
    Wait {
        /// The task's id, or a unique prefix of it.
        #[arg(value_name = "ID")]
        id: String,
        /// Give up after SECS seconds (the task goes on).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Your tasks, newest first.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Cancel a task: both endpoints stop its data work.
    Cancel {
        /// The task's id, or a unique prefix of it.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// What happened to a task: starts, faults, waits, skipped files, its end.
    Events {
        /// The task's id, or a unique prefix of it.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The hub's URL, e.g. https://hub.example.org:8443 (a site's module
    /// may set FERRY_HUB).
    #[arg(long, value_name = "URL", env = "FERRY_HUB")]
    pub hub: Option<String>,
    /// CA certificate to trust for a hub with its own CA (`ferry-hub init`
    /// printed where it is; the hub's admin gives it).
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
        /// Whose endpoints: your own, those shared with you, or both.
        #[arg(long = "filter-scope", value_enum, default_value = "my-endpoints")]
        filter_scope: FilterScopeArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Change one of your endpoints: give it a new display name, or
    /// require an identity from given domains for every access to it.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        /// The new display name (unique among your endpoints, no ':').
        #[arg(long = "display-name", value_name = "NAME", group = "change")]
        display_name: Option<String>,
        /// Every access to the endpoint (yours too) then needs a login
        /// that authenticated an identity from one of these domains
        /// recently (comma-separated); an empty value clears the policy.
        #[arg(long = "allowed-domains", value_name = "D1,D2", group = "change")]
        allowed_domains: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Share a folder of your endpoint with a user, a group or everyone
    /// signed in; list and delete what you shared.
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Who did what on one of your endpoints: listings, reads and writes
    /// (by you, your grantees and their tasks), sharing changes, refusals.
    #[command(after_help = AUDIT_HELP)]
    Audit {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        /// Only events since WHEN: how long ago (90m, 2h, 7d) or an RFC
        /// 3339 time; default: all the hub keeps.
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<DeadlineArg>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Delete one of your endpoints: its machine can no longer connect
    /// (as if revoked). Refused while tasks are ACTIVE on it.
    Delete {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one endpoint: its id, name, owner, whether connected, and each
    /// of its machines (nodes) and whether it is connected.
    Show {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add a machine (a transfer node) to one of your endpoints and print
    /// a one-time setup key: `ferry -setup KEY` on a machine that shares
    /// the endpoint's filesystem and config-paths makes it that node.
    AddNode {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        /// The node's name: 1 to 32 lowercase letters, digits or '-';
        /// default: the next free node-2, node-3, ...
        #[arg(long, value_name = "NODE")]
        name: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List an endpoint's machines (nodes), primary first, and whether
    /// each is connected.
    Nodes {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Remove a node from one of your endpoints: its machine's certificate
    /// is refused from then on, and its daemon stops dialling.
    RemoveNode {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        /// The node's name (`ferry endpoint nodes EP`).
        #[arg(value_name = "NODE")]
        node: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Share EP:PATH (and everything beneath it). The endpoint itself must
    /// allow it: PATH must lie under a config-paths line whose SHARING
    /// flag is 1, and the endpoint must be connected to confirm it.
    #[command(after_help = PERMISSION_HELP)]
    Create {
        /// The endpoint (id or your name for it) and the folder to share.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
        /// r: list and copy from it; rw: also write, mkdir, rename, rm.
        #[arg(long, value_name = "r|rw", value_parser = ["r", "rw"])]
        permissions: String,
        #[command(flatten)]
        grantee: GranteeArgs,
        /// When access ends: a time from now (90m, 2h, 30d) or an RFC
        /// 3339 time; default: until deleted.
        #[arg(long, value_name = "WHEN", value_parser = parse_deadline)]
        expires: Option<DeadlineArg>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// What you shared on an endpoint, with each permission's id.
    List {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop sharing: access ends at once, and tasks that use the
    /// permission fail with an event that says why.
    Delete {
        /// The endpoint: its id or your display name for it.
        #[arg(value_name = "EP")]
        endpoint: String,
        /// The permission's id (`ferry endpoint permission list EP`).
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

const AUDIT_HELP: &str = "\
One line per event, oldest first: time (UTC), who, what, the task, the path.
Actions: ls, read, write, mkdir, rename, delete, link; permission_create,
permission_delete, permission_expire, permission_refused (the endpoint
would not share the path); refused (a grantee's request was refused). A task's reads and
writes are its items' paths, recorded when its data first flows; each
endpoint's own log (target ferry::served) names every file it served.
The hub keeps events for audit_retention_days (hub.toml, default 90).";

const PERMISSION_HELP: &str = "\
Examples:
  ferry endpoint permission create lab:/~/project/results --permissions r --identity bob
  ferry endpoint permission create lab:/~/project/results --permissions rw --group lab --expires 30d
  ferry endpoint permission list lab

Bob then finds the endpoint with `ferry endpoint search --filter-scope shared-with-me`
and names it by its id: `ferry ls ID:/~/project/results`.";

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Make an HTTPS URL that anyone holding it can GET EP:PATH (a file,
    /// or a folder as an index page) through, read-only, until it expires
    /// or you delete it. PATH must lie under a config-paths line whose
    /// SHARING flag is 1, and the endpoint must be connected to confirm it.
    Create {
        /// The endpoint (id or your name for it) and the path to share.
        #[arg(value_name = "EP:PATH")]
        target: std::ffi::OsString,
        /// When the link stops working: a time from now (90m, 2h, 30d) or
        /// an RFC 3339 time; default: until deleted.
        #[arg(long, value_name = "WHEN", value_parser = parse_deadline)]
        expires: Option<DeadlineArg>,
        /// Most bytes the link serves in all; then it answers 410 Gone.
        #[arg(long = "max-bytes", value_name = "BYTES")]
        max_bytes: Option<u64>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Your links: id, endpoint, URL, expiry, bytes served and path.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Delete one of your links: its URL answers 410 Gone from now on.
    Delete {
        /// The link's id (`ferry link list`).
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

const LINK_HELP: &str = "\
Examples:
  ferry link create lab:/~/public/results.tar --expires 7d
  curl -O https://hub.example.org/l/TOKEN
  ferry link list
  ferry link delete ID

Anyone holding the URL can read through it: treat it as a secret. Range
requests are honoured; a folder's URL answers an index of its entries.";

/// Whom a permission is for: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GranteeArgs {
    /// A user of this hub, by name.
    #[arg(long, value_name = "USER")]
    pub identity: Option<String>,
    /// A group (`ferry group create`).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Everyone signed in to this hub.
    #[arg(long = "all-authenticated")]
    pub all_authenticated: bool,
    /// Anyone holding a link (read-only; links only).
    #[arg(long)]
    pub anonymous: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group you manage (names: letters, digits, '.', '_', '-').
    Create {
        /// The group's name, unique on the hub.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add or remove members of a group you manage.
    #[command(subcommand)]
    Member(GroupMemberCommand),
    /// The groups you manage or belong to, with their members.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupMemberCommand {
    /// Add USER to GROUP.
    Add {
        /// A group you manage.
        #[arg(value_name = "GROUP")]
        group: String,
        /// A user of this hub, by name.
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Remove USER from GROUP: what was shared with the group is theirs no more.
    Remove {
        /// A group you manage.
        #[arg(value_name = "GROUP")]
        group: String,
        /// A member of it, by name.
        #[arg(value_name = "USER")]
        user: String,
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
    /// The hub's URL, e.g. https://hub.example.org:8443. A setup key names
    /// its hub, over FERRY_HUB (--hub still overrides it).
    #[arg(long, value_name = "URL", env = "FERRY_HUB")]
    pub hub: Option<String>,
    /// CA certificate to trust for a hub with its own CA (`ferry-hub init`
    /// printed where it is; the hub's admin gives it). With a setup key,
    /// FERRY_HUB_CA is not used: the key names the CA to trust.
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

    fn parsed(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
        order_filters(&matches, &mut cli);
        Ok(cli)
    }

    #[test]
    fn filters_keep_the_order_they_were_given_in_across_both_options() {
        let cli = parsed(&[
            "ferry",
            "transfer",
            "a:/x",
            "b:/y",
            "-r",
            "--exclude",
            "*.tmp",
            "--include",
            "keep.tmp",
            "--exclude=scratch/",
            "--include",
            "*",
        ])
        .unwrap();
        let Command::Transfer(args) = cli.command else {
            panic!("not a transfer")
        };
        assert_eq!(
            args.options.filters,
            [
                FilterRule::exclude("*.tmp"),
                FilterRule::include("keep.tmp"),
                FilterRule::exclude("scratch/"),
                FilterRule::include("*"),
            ]
        );
    }

    #[test]
    fn bwlimit_takes_a_rate_and_refuses_anything_else_as_bad_usage() {
        let cli = parsed(&["ferry", "transfer", "a:/x", "b:/y", "--bwlimit", "10M"]).unwrap();
        let Command::Transfer(args) = cli.command else {
            panic!("not a transfer")
        };
        assert_eq!(args.options.bwlimit, Some(10_000_000));
        for bad in ["fast", "1K", "10MB"] {
            let e = parsed(&["ferry", "transfer", "a:/x", "b:/y", "--bwlimit", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn intervals_are_spans_within_bounds() {
        assert_eq!(parse_interval("30s"), Ok(30));
        assert_eq!(parse_interval("10m"), Ok(600));
        assert_eq!(parse_interval("1h"), Ok(3600));
        assert_eq!(parse_interval("1d"), Ok(86_400));
        assert_eq!(parse_interval("3"), Ok(3));
        for bad in ["", "0", "2s", "367d", "2026-11-23T01:01:01Z", "1w", "-5m"] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_timer_takes_every_transfer_option_in_order() {
        let cli = parsed(&[
            "ferry",
            "timer",
            "create",
            "transfer",
            "a:/x",
            "b:/y",
            "-r",
            "--interval",
            "1h",
            "--stop-after-runs",
            "3",
            "--exclude",
            "*.tmp",
            "--include",
            "keep.tmp",
            "--bwlimit",
            "10M",
            "--sync-level",
            "mtime",
            "--delete",
        ])
        .unwrap();
        let Command::Timer(TimerCommand::Create(TimerCreateCommand::Transfer(args))) = cli.command
        else {
            panic!("not a timer")
        };
        assert_eq!((args.interval, args.stop_after_runs), (3600, Some(3)));
        let o = &args.options;
        assert!(o.recursive && o.delete);
        assert_eq!(
            (o.bwlimit, o.sync_level),
            (Some(10_000_000), Some(SyncLevelArg::Mtime))
        );
        assert_eq!(
            o.filters,
            [
                FilterRule::exclude("*.tmp"),
                FilterRule::include("keep.tmp")
            ]
        );
        let both = parsed(&[
            "ferry",
            "timer",
            "create",
            "transfer",
            "a:/x",
            "b:/y",
            "--interval",
            "1h",
            "--stop-after-runs",
            "3",
            "--stop-after-date",
            "1d",
        ]);
        assert_eq!(both.unwrap_err().exit_code(), 2);
        let missing = parsed(&["ferry", "timer", "create", "transfer", "a:/x", "b:/y"]);
        assert_eq!(missing.unwrap_err().exit_code(), 2);
    }

    #[test]
    fn deadlines_parse_as_durations_or_rfc3339_times() {
        assert_eq!(parse_deadline("3600"), Ok(DeadlineArg::In(3600)));
        assert_eq!(parse_deadline("3600s"), Ok(DeadlineArg::In(3600)));
        assert_eq!(parse_deadline("90m"), Ok(DeadlineArg::In(5400)));
        assert_eq!(parse_deadline("2h"), Ok(DeadlineArg::In(7200)));
        assert_eq!(parse_deadline("1d"), Ok(DeadlineArg::In(86_400)));
        assert_eq!(
            parse_deadline("2026-11-23T01:01:01Z"),
            Ok(DeadlineArg::At(1_795_392_000 + 3_661))
        );
        assert_eq!(
            parse_deadline("2026-11-23T02:01:01.250+01:00"),
            Ok(DeadlineArg::At(1_795_392_000 + 3_661))
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        // `--since` reads the same forms, a length of time as that long ago.
        assert_eq!(parse_since("1h").map(|w| w.before(10_000)), Ok(6_400));
        assert_eq!(parse_deadline("1h").map(|w| w.after(10_000)), Ok(13_600));
        assert_eq!(
            parse_since("2026-11-23T01:01:01Z").map(|w| w.before(0)),
            Ok(1_795_392_000 + 3_661)
        );
        assert!(
            parse_since("yesterday")
                .unwrap_err()
                .contains("how long ago")
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00-00:30"), Some(1800));
        for bad in [
            "",
            "0",
            "-5",
            "10x",
            "h",
            "1.5h",
            "2026-02-30T00:00:00Z",
            "2026-11-23T01:01:01",
            "2026-11-23 25:00:00Z",
            "99999999999999999d",
            "2026-11-23T01:01:01+1:00",
        ] {
            assert!(parse_deadline(bad).is_err(), "{bad:?}");
        }
    }
}
