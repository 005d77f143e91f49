//! The user verbs that talk to the hub's REST API: `login`, `logout`,
//! `endpoint create|search|update|delete|show|add-node|nodes|remove-node`,
//! `ls`, `mkdir`, `rename`, `rm`.

use crate::args::{EndpointCommand, FilterScopeArg, LoginArgs};
use crate::endpoint::{CA_FROM_ENV, HUB_FROM_ENV, from_env, refused};
use crate::terminal::{escape, escape_bytes};
use crate::{Invocation, client_runtime};
use anyhow::{Context, bail};
use ferry_proto::api::{
    AddNode, AddedNode, CreateEndpoint, CreatedEndpoint, EndpointInfo, FsEntry, FsEntryKind, FsOp,
    FsOutcome, NodeInfo, UpdateEndpoint, WhoAmI,
};
use ferry_proto::wire_path::WirePath;
use ferry_setup::hub_client::{Auth, HubClient, HubError, Trust};
use ferry_setup::login::{Credentials, Prompt, interactive_login};
use ferry_tls::certs_from_file;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// Prompts on the terminal: lines to stdout, answers from stdin.
#[derive(Debug)]
pub struct Terminal;

impl Prompt for Terminal {
    fn say(&mut self, line: &str) {
        println!("{line}");
    }
    fn ask(&mut self, prompt: &str) -> std::io::Result<String> {
        print!("{prompt}");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "end of input",
            ));
        }
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// A client and a live token: from FERRY_TOKEN/FERRY_HUB, else the saved login.
pub(crate) async fn session(inv: &Invocation) -> anyhow::Result<(HubClient, String)> {
    if let Some(token) = std::env::var_os("FERRY_TOKEN") {
        let token = token
            .into_string()
            .map_err(|_| anyhow::anyhow!("FERRY_TOKEN is not valid text"))?;
        let hub = std::env::var("FERRY_HUB").map_err(|_| {
            anyhow::anyhow!(
                "FERRY_TOKEN is set but FERRY_HUB is not; set it to the hub's URL (FERRY_HUB=https://HOST:PORT)"
            )
        })?;
        let trust = match std::env::var_os("FERRY_HUB_CA") {
            Some(path) => Trust::Ca(certs_from_file(path.as_ref()).context("FERRY_HUB_CA")?),
            None => Trust::System,
        };
        let client = HubClient::new(&hub, &trust).map_err(|e| {
            let usage = e.is_usage();
            let e = anyhow::Error::new(e);
            if usage { e.context("FERRY_HUB") } else { e }
        })?;
        return Ok((client, token));
    }
    let path = Credentials::default_path(&inv.home);
    let mut creds = Credentials::load(&path)?.ok_or(ferry_setup::login::LoginError::NotLoggedIn)?;
    let token = creds.fresh_token(&path).await?;
    Ok((HubClient::new(&creds.hub, &creds.trust()?)?, token))
}

pub fn login(inv: &Invocation, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let Some(hub) = args.hub else {
        return refused(
            true,
            None,
            anyhow::anyhow!(
                "no hub given: pass --hub https://HOST:PORT, or set FERRY_HUB=https://HOST:PORT (a site's `module load ferry` may set it)"
            ),
        );
    };
    let hub_from_env = from_env(Some(hub.as_ref()), "FERRY_HUB");
    let ca_note = args
        .hub_ca
        .as_deref()
        .filter(|ca| from_env(Some(ca.as_os_str()), "FERRY_HUB_CA"))
        .map(|_| format!(" ({CA_FROM_ENV})"))
        .unwrap_or_default();
    client_runtime()?.block_on(async {
        let (trust, pem) = match &args.hub_ca {
            Some(path) => {
                let pem = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the hub's CA certificate {}{ca_note}",
                        path.display()
                    )
                })?;
                let certs =
                    ferry_tls::certs_from_pem(&pem, &format!("{}{ca_note}", path.display()))?;
                (Trust::Ca(certs), Some(pem))
            }
            None => (Trust::System, None),
        };
        let (client, token) = match interactive_login(&hub, &trust, &mut Terminal).await {
            Ok(done) => done,
            Err(e) => {
                let about_hub = e.hub_error().is_some_and(HubError::is_about_address);
                let note = (hub_from_env && about_hub).then_some(HUB_FROM_ENV);
                return refused(e.is_usage(), note, e.into());
            }
        };
        let path = Credentials::default_path(&inv.home);
        Credentials::from_token(client.base_url(), pem, token).save(&path)?;
        outln!(
            "logged in to {}; credentials saved in {}",
            client.base_url(),
            path.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn logout(inv: &Invocation) -> anyhow::Result<ExitCode> {
    let path = Credentials::default_path(&inv.home);
    match std::fs::remove_file(&path) {
        Ok(()) => outln!("logged out ({} removed)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => outln!("not logged in"),
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry whoami [--linked-identities] [--json]`.
pub fn whoami(inv: &Invocation, linked: bool, json: bool) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let me: WhoAmI = client
            .get_json("/api/v1/whoami", &[], Auth::Bearer(&token))
            .await?;
        if json {
            outln!("{}", serde_json::to_string(&me)?);
            return Ok(ExitCode::SUCCESS);
        }
        outln!("{}", escape(&me.identity));
        if linked {
            for l in &me.linked_identities {
                let this_login = me
                    .session_identities
                    .iter()
                    .find(|s| s.identity == l.identity)
                    .map(|s| {
                        format!(
                            ", signed in {}",
                            ferry_proto::human::utc_minutes(s.authenticated)
                        )
                    })
                    .unwrap_or_default();
                outln!(
                    "  {} ({}{this_login})",
                    escape(&l.identity),
                    escape(&l.provider)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Query-string escaping for an endpoint named in a URL path.
pub(crate) fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn endpoint(inv: &Invocation, command: EndpointCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        match command {
            EndpointCommand::Create { personal, json } => {
                let created: CreatedEndpoint = client
                    .post_json(
                        "/api/v1/endpoints",
                        &CreateEndpoint {
                            display_name: personal,
                        },
                        Auth::Bearer(&token),
                    )
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&created)?);
                } else {
                    outln!("Endpoint ID: {}", created.id);
                    outln!("Setup Key: {}", created.setup_key);
                    outln!(
                        "On the new endpoint's machine, run: ferry -setup {}",
                        created.setup_key
                    );
                }
            }
            EndpointCommand::Search {
                query,
                filter_scope,
                json,
            } => {
                let scope = match filter_scope {
                    FilterScopeArg::MyEndpoints => "my-endpoints",
                    FilterScopeArg::SharedWithMe => "shared-with-me",
                    FilterScopeArg::All => "all",
                };
                let q = query.unwrap_or_default();
                let found: Vec<EndpointInfo> = client
                    .get_all(
                        "/api/v1/endpoints",
                        &[("q", &q), ("filter_scope", scope)],
                        Auth::Bearer(&token),
                    )
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&found)?);
                } else {
                    print_endpoints(&found)?;
                }
            }
            EndpointCommand::Update {
                endpoint,
                display_name,
                allowed_domains,
                json,
            } => {
                let path = format!("/api/v1/endpoints/{}", path_segment(&endpoint));
                let renamed = display_name.is_some();
                let allowed_domains = allowed_domains.map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                });
                let policy_set = allowed_domains.is_some();
                let updated: EndpointInfo = client
                    .patch_json(
                        &path,
                        &UpdateEndpoint {
                            display_name,
                            allowed_domains,
                        },
                        Auth::Bearer(&token),
                    )
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&updated)?);
                } else {
                    if renamed {
                        outln!(
                            "Endpoint {} is now named {}",
                            updated.id,
                            escape(&updated.display_name)
                        );
                    }
                    if policy_set {
                        if updated.allowed_domains.is_empty() {
                            outln!(
                                "Endpoint {} requires no particular identity",
                                escape(&updated.display_name)
                            );
                        } else {
                            outln!(
                                "Endpoint {} now requires an identity from {}",
                                escape(&updated.display_name),
                                escape(&updated.allowed_domains.join(", "))
                            );
                        }
                    }
                }
            }
            EndpointCommand::Permission(command) => {
                crate::share::permission(&client, &token, command).await?;
            }
            EndpointCommand::Audit {
                endpoint,
                since,
                json,
            } => {
                crate::share::audit(&client, &token, &endpoint, since, json.json).await?;
            }
            EndpointCommand::Delete { endpoint, json } => {
                let path = format!("/api/v1/endpoints/{}", path_segment(&endpoint));
                let deleted: EndpointInfo = client.delete_json(&path, Auth::Bearer(&token)).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&deleted)?);
                } else {
                    outln!(
                        "Endpoint {} ({}) deleted; its machine can no longer connect",
                        escape(&deleted.display_name),
                        deleted.id
                    );
                }
            }
            EndpointCommand::Show { endpoint, json } => {
                let path = format!("/api/v1/endpoints/{}", path_segment(&endpoint));
                let shown: EndpointInfo = client.get_json(&path, &[], Auth::Bearer(&token)).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&shown)?);
                } else {
                    outln!("ID: {}", shown.id);
                    outln!("Display Name: {}", escape(&shown.display_name));
                    outln!("Owner: {}", escape(&shown.owner));
                    outln!(
                        "Connected: {}",
                        match (shown.connected, shown.revoked) {
                            (true, _) => "yes",
                            (false, false) => "no",
                            (false, true) => "no (revoked)",
                        }
                    );
                    outln!("Nodes:");
                    print_nodes(&shown.nodes)?;
                }
            }
            EndpointCommand::AddNode {
                endpoint,
                name,
                json,
            } => {
                let path = format!("/api/v1/endpoints/{}/nodes", path_segment(&endpoint));
                let added: AddedNode = client
                    .post_json(&path, &AddNode { name }, Auth::Bearer(&token))
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&added)?);
                } else {
                    outln!("Endpoint ID: {}", added.endpoint_id);
                    outln!("Node: {}", added.node);
                    outln!("Setup Key: {}", added.setup_key);
                    outln!(
                        "On the node's machine (sharing the endpoint's filesystem and config-paths), run: ferry -setup {}",
                        added.setup_key
                    );
                }
            }
            EndpointCommand::Nodes { endpoint, json } => {
                let path = format!("/api/v1/endpoints/{}/nodes", path_segment(&endpoint));
                let nodes: Vec<NodeInfo> =
                    client.get_json(&path, &[], Auth::Bearer(&token)).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&nodes)?);
                } else {
                    print_nodes(&nodes)?;
                }
            }
            EndpointCommand::RemoveNode {
                endpoint,
                node,
                json,
            } => {
                let path = format!(
                    "/api/v1/endpoints/{}/nodes/{}",
                    path_segment(&endpoint),
                    path_segment(&node)
                );
                let left: Vec<NodeInfo> = client.delete_json(&path, Auth::Bearer(&token)).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&left)?);
                } else {
                    outln!(
                        "Node {} removed; its machine can no longer connect",
                        escape(&node)
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One line per node: its name and its link (`connected since TIME`,
/// `not connected[, last seen TIME]`, `not set up yet`).
fn print_nodes(nodes: &[NodeInfo]) -> std::io::Result<()> {
    let width = nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    outln!("{:<width$} | State", "Node");
    for node in nodes {
        let state = match (node.connected, node.registered, node.since, node.last_seen) {
            (true, _, Some(since), _) => {
                format!("connected since {}", ferry_proto::human::utc_seconds(since))
            }
            (true, _, None, _) => "connected".to_string(),
            (false, false, _, _) => "not set up yet".to_string(),
            (false, true, _, Some(seen)) => {
                format!(
                    "not connected, last seen {}",
                    ferry_proto::human::utc_seconds(seen)
                )
            }
            (false, true, _, None) => "not connected".to_string(),
        };
        outln!("{:<width$} | {state}", escape(&node.name));
    }
    Ok(())
}

fn print_endpoints(found: &[EndpointInfo]) -> std::io::Result<()> {
    let name_width = found
        .iter()
        .map(|e| escape(&e.display_name).chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let owner_width = found
        .iter()
        .map(|e| escape(&e.owner).chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    outln!(
        "{:<36} | {:<name_width$} | {:<owner_width$} | Connected",
        "ID",
        "Display Name",
        "Owner"
    );
    for e in found {
        outln!(
            "{:<36} | {:<name_width$} | {:<owner_width$} | {}",
            escape(&e.id),
            escape(&e.display_name),
            escape(&e.owner),
            // Revoked says why it will stay unconnected.
            match (e.connected, e.revoked) {
                (true, _) => "yes",
                (false, false) => "no",
                (false, true) => "no (revoked)",
            }
        );
    }
    Ok(())
}

/// `EP:PATH` split at the first colon; the path stays bytes.
pub(crate) fn split_target(target: &OsString) -> anyhow::Result<(String, WirePath)> {
    let bytes = target.as_bytes();
    let usage = |text: String| anyhow::Error::new(crate::UsageError(text));
    let Some(colon) = bytes.iter().position(|b| *b == b':') else {
        return Err(usage(format!(
            "{target:?} is not EP:PATH (e.g. laptop:/~/data)"
        )));
    };
    let endpoint = std::str::from_utf8(&bytes[..colon])
        .map_err(|_| usage(format!("{target:?}: the endpoint name is not valid text")))?;
    if endpoint.is_empty() {
        return Err(usage(format!(
            "{target:?} names no endpoint before the ':'"
        )));
    }
    let path = &bytes[colon + 1..];
    if path.is_empty() {
        return Err(usage(format!(
            "{target:?} has no path after the ':' (use EP:/~/ for the home directory)"
        )));
    }
    Ok((endpoint.to_string(), WirePath::from_bytes(path)))
}

async fn fs(inv: &Invocation, endpoint: &str, op: FsOp) -> anyhow::Result<FsOutcome> {
    let (client, token) = session(inv).await?;
    let path = format!("/api/v1/endpoints/{}/fs", path_segment(endpoint));
    Ok(client.post_json(&path, &op, Auth::Bearer(&token)).await?)
}

pub fn ls(inv: &Invocation, target: &OsString, long: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (endpoint, path) = split_target(target)?;
    let outcome = client_runtime()?.block_on(fs(inv, &endpoint, FsOp::List { path }))?;
    let FsOutcome::Listing { entries, truncated } = outcome else {
        bail!("unexpected answer from the hub: {outcome:?}");
    };
    if json {
        outln!(
            "{}",
            serde_json::json!({ "entries": entries, "truncated": truncated })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        if long {
            write!(out, "{} ", long_prefix(entry))?;
        }
        // Names are bytes: written as they are (as ls(1) does), but for
        // control characters, which a terminal would obey.
        out.write_all(&escape_bytes(entry.name.as_bytes()))?;
        if entry.kind == FsEntryKind::Dir && !long {
            out.write_all(b"/")?;
        }
        out.write_all(b"\n")?;
    }
    if truncated {
        eprintln!("ferry: listing truncated at {} entries", entries.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn long_prefix(e: &FsEntry) -> String {
    let kind = match e.kind {
        FsEntryKind::Dir => 'd',
        FsEntryKind::Symlink => 'l',
        FsEntryKind::File => '-',
        FsEntryKind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    format!(
        "{kind}{perms} {:>12} {}",
        e.size,
        ferry_proto::human::utc_minutes(e.mtime)
    )
}

fn expect_done(outcome: FsOutcome) -> anyhow::Result<ExitCode> {
    match outcome {
        FsOutcome::Done => Ok(ExitCode::SUCCESS),
        other => bail!("unexpected answer from the hub: {other:?}"),
    }
}

pub fn mkdir(inv: &Invocation, target: &OsString) -> anyhow::Result<ExitCode> {
    let (endpoint, path) = split_target(target)?;
    expect_done(client_runtime()?.block_on(fs(inv, &endpoint, FsOp::Mkdir { path }))?)
}

pub fn rename(
    inv: &Invocation,
    source: &OsString,
    destination: &OsString,
) -> anyhow::Result<ExitCode> {
    let (endpoint, from) = split_target(source)?;
    // NEW may repeat the endpoint (EP:NEW) or be a bare path.
    let to = match split_target(destination) {
        Ok((other, to)) if !destination.as_bytes().starts_with(b"/") => {
            if other != endpoint {
                bail!("rename stays within one endpoint: {endpoint} vs {other}");
            }
            to
        }
        _ => WirePath::from_bytes(destination.as_bytes()),
    };
    expect_done(client_runtime()?.block_on(fs(inv, &endpoint, FsOp::Rename { from, to }))?)
}

pub fn rm(inv: &Invocation, target: &OsString, recursive: bool) -> anyhow::Result<ExitCode> {
    let (endpoint, path) = split_target(target)?;
    expect_done(client_runtime()?.block_on(fs(inv, &endpoint, FsOp::Remove { path, recursive }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_first_colon_and_keep_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let (ep, path) = split_target(&OsString::from("laptop:/~/a:b")).unwrap();
        assert_eq!((ep.as_str(), path.as_bytes()), ("laptop", &b"/~/a:b"[..]));
        let odd = OsString::from_vec(b"ep:/x/\xff".to_vec());
        assert_eq!(split_target(&odd).unwrap().1.as_bytes(), b"/x/\xff");
        assert!(split_target(&OsString::from("nocolon")).is_err());
        assert!(split_target(&OsString::from(":/x")).is_err());
        assert!(split_target(&OsString::from("ep:")).is_err());
    }
}
