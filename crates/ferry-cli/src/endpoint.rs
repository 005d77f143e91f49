//! The endpoint verbs: `-setup`, `-start`, `-stop`, `-status`, `-pause`,
//! `-unpause`, `-reload`.

use crate::args::{SetupArgs, StartArgs};
use crate::hub::Terminal;
use crate::{EXIT_NOT_RUNNING, Invocation, client_runtime, detach};
use anyhow::{Context as _, bail};
use ferry_daemon::local_api::{ClientError, call};
use ferry_daemon::logging::{self, LogTarget};
use ferry_daemon::{Daemon, DaemonLock, LockState, PolicyChoice};
use ferry_proto::local_api::{Request, Response, StatusReport};
use ferry_setup::hub_client::HubError;
use ferry_setup::login::Credentials;
use ferry_setup::register::{self, RegisterError, SetupRequest};
use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a request to the daemon may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long `-stop` waits for the daemon to checkpoint and exit.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

pub fn setup(ctx: &Invocation, args: SetupArgs) -> anyhow::Result<ExitCode> {
    let key = args.key.or(args.setup_key);
    // A key names its hub and the CA to trust: the site's defaults in
    // FERRY_HUB and FERRY_HUB_CA give way to it (--hub and --hub-ca do not).
    let (hub, hub_ca) = if key.is_some() {
        (
            args.hub
                .filter(|hub| !from_env(Some(hub.as_ref()), "FERRY_HUB")),
            args.hub_ca
                .filter(|ca| !from_env(Some(ca.as_os_str()), "FERRY_HUB_CA")),
        )
    } else {
        (args.hub, args.hub_ca)
    };
    let hub_from_env = from_env(hub.as_deref().map(OsStr::new), "FERRY_HUB");
    let ca_from_env = from_env(hub_ca.as_deref().map(Path::as_os_str), "FERRY_HUB_CA");
    let request = SetupRequest {
        key,
        hub,
        hub_ca,
        name: args.name,
        force: args.force,
    };
    let credentials = Credentials::default_path(&ctx.home);
    let registered = match client_runtime()?.block_on(register::setup(
        &ctx.dir,
        request,
        &mut Terminal,
        &credentials,
    )) {
        Ok(registered) => registered,
        Err(e) => {
            let note = if hub_from_env && e.hub_error().is_some_and(HubError::is_about_address) {
                Some(HUB_FROM_ENV)
            } else if ca_from_env
                && matches!(
                    e,
                    RegisterError::ReadCa { .. } | RegisterError::Hub(HubError::Tls(_))
                )
            {
                Some(CA_FROM_ENV)
            } else {
                None
            };
            return refused(e.is_usage(), note, e.into());
        }
    };
    match &registered.node {
        Some(node) => outln!("joined endpoint {} as node {node}", registered.id),
        None => outln!("registered new endpoint, id: {}", registered.id),
    }
    if registered.wrote_config_paths {
        outln!(
            "wrote {} allowing your home directory (~/,0,1); edit it to change what transfers may reach",
            ctx.dir.config_paths().display()
        );
    }
    outln!("setup completed successfully");
    Ok(ExitCode::SUCCESS)
}

/// Whether `value`, as clap filled it in, is what the environment variable
/// `var` holds (clap takes --hub and --hub-ca from FERRY_HUB and
/// FERRY_HUB_CA when they are not given).
pub(crate) fn from_env(value: Option<&OsStr>, var: &str) -> bool {
    value.is_some_and(|value| std::env::var_os(var).is_some_and(|set| set == value))
}

pub(crate) const HUB_FROM_ENV: &str = "the hub URL came from FERRY_HUB";
pub(crate) const CA_FROM_ENV: &str = "the CA file came from FERRY_HUB_CA";

/// Ends a refused setup or login. A missing or mistyped hub URL is bad
/// usage: one line, exit 2. Otherwise the error goes up (one line, exit 1).
/// `note` says where a setting came from that the user did not type (a
/// site's module may set FERRY_HUB and FERRY_HUB_CA).
pub(crate) fn refused(
    usage: bool,
    note: Option<&str>,
    error: anyhow::Error,
) -> anyhow::Result<ExitCode> {
    let error = match note {
        Some(note) => anyhow::anyhow!("{error} ({note})"),
        None => error,
    };
    if usage {
        eprintln!("ferry: {}", crate::one_line(&error));
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    Err(error)
}

fn log_level(args: &StartArgs) -> tracing::Level {
    if args.trace {
        tracing::Level::TRACE
    } else if args.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    }
}

pub fn start(ctx: Invocation, args: StartArgs) -> anyhow::Result<ExitCode> {
    let level = log_level(&args);
    let choice = match args.restrict_paths {
        Some(spec) => PolicyChoice::RestrictPaths(spec),
        None => PolicyChoice::ConfigPaths,
    };
    let daemon = Daemon::prepare(ctx.dir.clone(), ctx.home, choice)?;
    if args.detach {
        return detach::run(daemon, &ctx.dir, level);
    }
    let target = LogTarget::for_foreground(ctx.dir.log_file(), level);
    logging::init(&target, level).context("cannot set up logging")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let stop = ctx.dir.command("-stop");
    runtime.block_on(daemon.run(|pid| {
        if let LogTarget::TerminalAndFile(log) = &target {
            eprintln!(
                "ferry: running (pid {pid}); warnings show here, the full log is in {}; stop with `{stop}`",
                log.display()
            );
        }
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon; `None` when none answers.
fn ask(ctx: &Invocation, request: Request) -> anyhow::Result<Option<Response>> {
    let socket = ctx.dir.socket();
    match client_runtime()?.block_on(call(&socket, &request, ANSWER_WITHIN)) {
        Ok(response) => Ok(Some(response)),
        Err(ClientError::NotRunning) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Asks the daemon if one answers; any failure is just "no answer".
pub fn ask_quietly(ctx: &Invocation, request: Request) -> Option<Response> {
    ask(ctx, request).ok().flatten()
}

pub fn stop(ctx: &Invocation) -> anyhow::Result<ExitCode> {
    let lock = ctx.dir.lock_file();
    let LockState::Held { pid } = DaemonLock::probe(&lock)? else {
        outln!("ferry is not running");
        return Ok(ExitCode::SUCCESS);
    };
    let pid_text = pid.map_or_else(|| "unknown pid".to_string(), |p| format!("pid {p}"));
    match ask(ctx, Request::Stop) {
        Ok(Some(Response::Done { .. })) => {}
        Ok(Some(Response::Error { message })) => bail!("the daemon refused to stop: {message}"),
        Ok(Some(other)) => bail!("unexpected answer from the daemon: {other:?}"),
        // The lock is held but the socket does not answer: the daemon is
        // starting or wedged. SIGTERM asks for the same graceful stop.
        Ok(None) | Err(_) => {
            let Some(pid) = pid else {
                bail!(
                    "a daemon holds {} but does not answer and its pid is unknown",
                    lock.display()
                );
            };
            let target =
                nix::unistd::Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
            nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM)
                .with_context(|| format!("cannot signal the daemon (pid {pid})"))?;
        }
    }
    let deadline = Instant::now() + EXIT_WITHIN;
    while Instant::now() < deadline {
        if DaemonLock::probe(&lock)? == LockState::Free {
            // The lock goes a moment before the process does (its runtime
            // winds down): a script that replaces the binary or unloads
            // the module right after `-stop` must find it gone.
            if let Some(pid) = pid {
                while !process_exited(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            outln!("ferry stopped ({pid_text})");
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "the daemon ({pid_text}) did not exit within {}s; it may still be checkpointing. `kill -9` forces it (transfers then resume from their journals)",
        EXIT_WITHIN.as_secs()
    )
}

/// Whether process `pid` has ended: gone, or a zombie its parent has not
/// yet reaped (it runs nothing and holds no file).
fn process_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

fn plural(n: usize, noun: &str) -> String {
    crate::plural(n as u64, noun)
}

fn print_status(report: &StatusReport, dir: &ferry_endpoint::EndpointDir) -> std::io::Result<()> {
    outln!("Hub: {}", report.hub.as_str());
    if report.paused {
        outln!(
            "  data work paused; `{}` resumes it",
            dir.command("-unpause")
        );
    } else if let Some(detail) = &report.hub_detail {
        outln!("  {}", crate::terminal::escape(detail));
    }
    outln!("Transfer Status: {}", report.transfer.as_str());
    if !report.held_tasks.is_empty() {
        let n = report.held_tasks.len();
        outln!(
            "  paused: {} {} until `{}`: {}",
            plural(n, "task"),
            if n == 1 { "waits" } else { "wait" },
            dir.command("-unpause"),
            crate::terminal::escape(&report.held_tasks.join(", "))
        );
    }
    outln!(
        "Endpoint: {} ({})",
        crate::terminal::escape(&report.endpoint_name),
        report.endpoint_id
    );
    // Only a machine that joined an endpoint as one of its nodes says so.
    if let Some(node) = report
        .node
        .as_deref()
        .filter(|n| *n != ferry_proto::api::PRIMARY_NODE)
    {
        outln!("Node: {}", crate::terminal::escape(node));
    }
    outln!("Hub URL: {}", report.hub_url);
    outln!("Config dir: {}", report.config_dir);
    match &report.policy {
        ferry_proto::local_api::PolicySource::ConfigPaths { file, rules } => {
            outln!("Paths: {file} ({})", plural(*rules, "rule"))
        }
        ferry_proto::local_api::PolicySource::RestrictPaths { spec, rules } => {
            outln!(
                "Paths: -restrict-paths {spec} ({}; config-paths ignored)",
                plural(*rules, "rule")
            )
        }
    }
    if let Some(problem) = &report.policy_problem {
        outln!(
            "  config-paths was not reloaded: {}; fix it and run `{}`",
            crate::terminal::escape(problem),
            dir.command("-reload")
        );
    }
    outln!(
        "Daemon: pid {}, up {}s, ferry {}",
        report.pid,
        report.uptime_secs,
        report.version
    );
    Ok(())
}

pub fn status(ctx: &Invocation, json: bool) -> anyhow::Result<ExitCode> {
    let answer = match ask(ctx, Request::Status) {
        Ok(answer) => answer,
        Err(e) => {
            // A daemon that holds the lock but does not answer is, for a
            // script, as good as not running; say what we know.
            eprintln!("ferry: {}", crate::one_line(&e));
            None
        }
    };
    match answer {
        Some(Response::Status(report)) => {
            if json {
                let mut doc = serde_json::to_value(&report)?;
                if let Some(map) = doc.as_object_mut() {
                    map.insert("running".into(), true.into());
                }
                outln!("{doc}");
            } else {
                print_status(&report, &ctx.dir)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Response::Error { message }) => bail!("the daemon refused: {message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => {
            if json {
                outln!("{}", serde_json::json!({ "running": false }));
            } else {
                outln!("ferry is not running");
            }
            if !ctx.dir.looks_set_up() {
                eprintln!(
                    "ferry: {} is not set up as an endpoint; run `{}` first",
                    ctx.dir.root().display(),
                    ctx.dir.command("-setup")
                );
            }
            Ok(ExitCode::from(EXIT_NOT_RUNNING))
        }
    }
}

pub fn pause(ctx: &Invocation, pause: bool) -> anyhow::Result<ExitCode> {
    let request = if pause {
        Request::Pause
    } else {
        Request::Unpause
    };
    match ask(ctx, request)? {
        Some(Response::Done { message }) => {
            outln!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Response::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => bail!(
            "ferry is not running; start it with `{}`",
            ctx.dir.command("-start &")
        ),
    }
}

/// `-reload`: the daemon re-reads config-paths now and answers how it went,
/// so the user learns of a bad line here and not from the log.
pub fn reload(ctx: &Invocation) -> anyhow::Result<ExitCode> {
    match ask(ctx, Request::Reload)? {
        Some(Response::Done { message }) => {
            outln!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Response::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => bail!(
            "ferry is not running; start it with `{}` (it reads config-paths then)",
            ctx.dir.command("-start &")
        ),
    }
}
