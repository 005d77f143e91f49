//! `ferry-hub`: accounts, the OAuth2 provider, the endpoint registry and its
//! CA, the control channel endpoints dial, the task scheduler, and the REST
//! API the CLI uses.
//!
//! The admin verbs (`init`, `user add`, `endpoint create`, `token create`,
//! ...) work on the state dir directly, also while `serve` runs (SQLite in
//! WAL mode lets them share the database; PostgreSQL is a server).

mod api;
mod app;
mod apps;
mod audit;
mod authz;
/// Measures the scheduler's claims on PostgreSQL (`bench/hub-scale.sh`):
/// public only for the `claim_scale` example, which is not the hub.
#[doc(hidden)]
pub mod bench;
mod capability;
mod cluster;
mod control;
mod endpoints;
mod files;
mod grants;
mod https_files;
mod identities;
mod links;
mod metrics;
mod notify;
mod oauth;
mod oidc;
mod oidc_provider;
mod openapi;
mod page_auth;
mod pages;
mod pki;
mod relay;
mod rendezvous;
#[cfg(test)]
mod route_walk;
mod secrets;
mod server;
mod session;
mod sharing;
mod state;
mod store;
mod task_service;
mod tasks;
mod timers;
mod web;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use state::HubDir;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-hub",
    version,
    about = "the ferry hub: login, endpoint registry, task orchestration",
    after_help = "Start a hub:\n  ferry-hub init --dir /var/lib/ferry-hub --url https://hub.example.org:8443\n  echo 'a password' | ferry-hub user add alice --password-stdin\n  ferry-hub serve\nEvery verb takes --dir DIR (default: env FERRY_HUB_DIR, else /var/lib/ferry-hub)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct DirArg {
    /// The hub's state dir.
    #[arg(
        long,
        env = "FERRY_HUB_DIR",
        default_value = "/var/lib/ferry-hub",
        value_name = "DIR",
        global = true
    )]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state dir: config, CAs, server certificate, database, signing key.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// The URL endpoints and users reach the hub at (its host goes in the certificate).
        #[arg(long, value_name = "https://HOST:PORT")]
        url: String,
        /// Print where the CA is and its fingerprint as JSON (keys `ca_cert`, `ca_fingerprint`).
        #[arg(long)]
        json: bool,
    },
    /// Serve the web pages, the REST API and the control channel until SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DirArg,
        /// Listen here instead of the config's `listen`, e.g. 127.0.0.1:8443.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Manage login accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Mint access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Register OAuth clients for automation (client_credentials).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Copy this hub's state from its SQLite file into an empty PostgreSQL
    /// database, and check the copy. Stop `ferry-hub serve` first: what it
    /// writes afterwards would stay behind in the SQLite file.
    MigrateStore {
        #[command(flatten)]
        dir: DirArg,
        /// The PostgreSQL database, as hub.toml's `database` will name it.
        #[arg(long, value_name = "postgres://USER@HOST/DB")]
        to: String,
        /// Print each table's rows and checksum as JSON (keys `database`, `tables`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a login account; the password is read from stdin.
    Add {
        /// The account's login name.
        name: String,
        #[command(flatten)]
        dir: DirArg,
        /// Where task notifications (`ferry transfer --notify`) are e-mailed.
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// Create an endpoint and a one-time setup key for `ferry -setup KEY`.
    Create {
        #[command(flatten)]
        dir: DirArg,
        /// The account that will own the endpoint.
        #[arg(long, value_name = "NAME")]
        owner: String,
        /// The endpoint's display name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Seconds until the setup key expires.
        #[arg(long, value_name = "SECS", default_value_t = endpoints::SETUP_KEY_TTL)]
        expires: i64,
        /// Print the endpoint's id and setup key as JSON (keys `id`, `setup_key`).
        #[arg(long)]
        json: bool,
    },
    /// Revoke an endpoint: its certificate stops working at once.
    Revoke {
        #[command(flatten)]
        dir: DirArg,
        /// The endpoint's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print an access token for FERRY_TOKEN.
    Create {
        #[command(flatten)]
        dir: DirArg,
        /// The account the token acts as.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 12 * 3600)]
        expires: i64,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a confidential client that acts as USER; prints its id and secret.
    Add {
        #[command(flatten)]
        dir: DirArg,
        /// A name for the client, e.g. the service using it.
        name: String,
        /// The account the client acts as (its tasks and endpoints).
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Print the client's id and secret as JSON (keys `client_id`, `client_secret`).
        #[arg(long)]
        json: bool,
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-hub: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause whose
/// text is already there.
fn one_line(e: &anyhow::Error) -> String {
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
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { dir, url, json } => {
            let done = state::init(&HubDir::new(&dir.dir)?, &url)?;
            if json {
                println!("{}", serde_json::to_string(&done)?);
            } else {
                println!("initialized hub state in {}", done.dir);
                println!("CA certificate: {}", done.ca_cert);
                println!("CA fingerprint (SHA-256): {}", done.ca_fingerprint);
                println!(
                    "next: ferry-hub user add NAME --password-stdin --dir {}; ferry-hub serve --dir {}",
                    done.dir, done.dir
                );
            }
            Ok(())
        }
        Command::Serve { dir, listen } => server::serve(HubDir::new(&dir.dir)?, listen),
        Command::User(UserCommand::Add {
            name, dir, email, ..
        }) => {
            let store = HubDir::new(&dir.dir)?.open_store()?;
            check_user_name(&name)?;
            if let Some(email) = &email {
                notify::parse_address(email)
                    .map_err(|e| anyhow::anyhow!("--email {email:?}: {e}"))?;
            }
            let password = read_password()?;
            let hash = secrets::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            let id = store
                .add_user(&name, &hash, grants::now())
                .map_err(|e| match e {
                    store::StoreError::Conflict { .. } => {
                        anyhow::anyhow!("user {name:?} already exists")
                    }
                    e => e.into(),
                })?;
            if let Some(email) = &email {
                store.set_user_email(id, Some(email))?;
            }
            println!("user {name} added");
            Ok(())
        }
        Command::Endpoint(EndpointCommand::Create {
            dir,
            owner,
            name,
            expires,
            json,
        }) => {
            let hub = HubDir::new(&dir.dir)?;
            let config = hub.load_config()?;
            let store = hub.open_store()?;
            let owner = user(&*store, &owner)?;
            let ca_sha = server::tls_ca_sha256(&hub, &config)?;
            let created =
                endpoints::create(&*store, &config.url, ca_sha, owner.id, &name, expires)?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!("Endpoint ID: {}", created.id);
                println!("Setup Key: {}", created.setup_key);
            }
            Ok(())
        }
        Command::Endpoint(EndpointCommand::Revoke { dir, id }) => {
            let store = HubDir::new(&dir.dir)?.open_store()?;
            endpoints::revoke(&*store, &id)?;
            println!("endpoint {id} revoked; its daemon is disconnected within one heartbeat");
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            dir,
            user: name,
            expires,
        }) => {
            let store = HubDir::new(&dir.dir)?.open_store()?;
            let account = user(&*store, &name)?;
            if expires <= 0 {
                bail!("--expires must be positive");
            }
            // A personal token like those users make on their account
            // page, so it is listed there and they can revoke it.
            let who = grants::Principal {
                user_id: account.id,
                user_name: account.name.clone(),
                client_id: grants::PERSONAL_CLIENT.into(),
                scopes: Vec::new(),
                sign_in: Default::default(),
            };
            let token = grants::create_personal(
                &*store,
                &who,
                "made with ferry-hub token create",
                expires,
            )?;
            println!("{}", token.access_token);
            Ok(())
        }
        Command::MigrateStore { dir, to, json } => {
            migrate_store(&HubDir::new(&dir.dir)?, &to, json)
        }
        Command::Client(ClientCommand::Add {
            dir,
            name,
            user: account,
            json,
        }) => {
            let store = HubDir::new(&dir.dir)?.open_store()?;
            let account = user(&*store, &account)?;
            let client_id = format!("svc-{}", uuid::Uuid::new_v4());
            let secret = secrets::random_token(32).context("no randomness")?;
            store.add_client(
                &store::ClientRow {
                    client_id: client_id.clone(),
                    name,
                    secret_hash: Some(secrets::token_hash(&secret)),
                    user_id: account.id,
                    scopes: ferry_proto::api::SCOPE_TRANSFER.to_string(),
                    kind: store::ClientKind::Admin,
                    owner_id: None,
                    redirect_uris: vec![],
                },
                grants::now(),
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "client_id": client_id, "client_secret": secret })
                );
            } else {
                println!("Client ID: {client_id}");
                println!("Client Secret: {secret}");
            }
            Ok(())
        }
    }
}

/// `ferry-hub migrate-store`.
fn migrate_store(dir: &HubDir, to: &str, json: bool) -> anyhow::Result<()> {
    let config = dir.load_config()?;
    if let Some(database) = &config.database {
        bail!(
            "this hub already keeps its state in {} (database in {}); migrate-store copies from its SQLite file",
            store::redacted(database),
            dir.config().display()
        );
    }
    if !dir.database().exists() {
        bail!(
            "{} does not exist: nothing to copy",
            dir.database().display()
        );
    }
    let url = store::DatabaseUrl::parse(to, dir.root())?;
    let copied = store::migrate_store::sqlite_to_postgres(&dir.database(), &url)?;
    // It opens as the hub will open it.
    drop(store::PostgresStore::open(&url)?);
    if json {
        println!(
            "{}",
            serde_json::json!({ "database": url.shown(), "tables": copied })
        );
        return Ok(());
    }
    let rows: u64 = copied.iter().map(|c| c.rows).sum();
    for c in &copied {
        println!("{:<12} {:>10} rows  sha256 {}", c.table, c.rows, c.sha256);
    }
    println!(
        "copied {rows} rows in {} tables from {} to {}; counts and checksums match",
        copied.len(),
        dir.database().display(),
        url.shown()
    );
    println!(
        "next: add this line to {} (before any [section]) and start ferry-hub serve; {} stays as it was, a backup:",
        dir.config().display(),
        dir.database().display()
    );
    if url.shown() == to {
        println!("database = {}", toml::Value::String(to.to_string()));
    } else {
        println!(
            "database = {}   # with your password",
            toml::Value::String(url.shown().to_string())
        );
    }
    Ok(())
}

fn user(store: &dyn store::Storage, name: &str) -> anyhow::Result<store::UserRow> {
    store.user_by_name(name)?.with_context(|| {
        format!("no user named {name:?}; add one with `ferry-hub user add {name} --password-stdin`")
    })
}

fn check_user_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        bail!("user name {name:?} is not allowed: use 1 to 64 of A-Z a-z 0-9 . _ - @");
    }
    Ok(())
}

/// One line from stdin, without its line ending; at most 1 KiB.
fn read_password() -> anyhow::Result<String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(1025)
        .read_to_end(&mut buf)
        .context("cannot read the password from stdin")?;
    if buf.len() > 1024 {
        bail!("the password is over 1024 bytes");
    }
    let text = String::from_utf8(buf).context("the password is not UTF-8")?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.len() < 8 {
        bail!("the password must be at least 8 characters");
    }
    Ok(password)
}
