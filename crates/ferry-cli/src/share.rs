//! Sharing verbs: `ferry endpoint permission create|list|delete`,
//! `ferry group create|member add|member remove|list`, `ferry link
//! create|list|delete`, and the owner's `ferry endpoint audit`. The hub decides
//! who may share what, and the endpoint checks every grantee's request
//! itself; these verbs only ask and print.

use crate::args::{DeadlineArg, GroupCommand, GroupMemberCommand, LinkCommand, PermissionCommand};
use crate::hub::{path_segment, session, split_target};
use crate::terminal::{escape, escape_bytes};
use crate::{Invocation, client_runtime};
use ferry_proto::api::{
    AuditEvent, CreateGroup, CreateLink, CreatePermission, GroupInfo, GroupMember, LinkDeleted,
    LinkInfo, PermissionDeleted, PermissionInfo,
};
use ferry_proto::human::{utc_minutes, utc_seconds};
use ferry_setup::hub_client::{Auth, HubClient};
use std::io::Write;
use std::process::ExitCode;

/// `ferry endpoint permission ...`, in `ferry endpoint`'s session.
pub async fn permission(
    client: &HubClient,
    token: &str,
    command: PermissionCommand,
) -> anyhow::Result<()> {
    match command {
        PermissionCommand::Create {
            target,
            permissions,
            grantee,
            expires,
            json,
        } => {
            let (endpoint, path) = split_target(&target)?;
            let (principal_type, principal) = match (grantee.identity, grantee.group) {
                (Some(user), _) => ("identity", user),
                (None, Some(group)) => ("group", group),
                (None, None) if grantee.all_authenticated => ("all_authenticated", String::new()),
                (None, None) => ("anonymous", String::new()),
            };
            let expires = expires.map(|e| e.after(crate::transfer::now()));
            let created: PermissionInfo = client
                .post_json(
                    &format!("/api/v1/endpoints/{}/permissions", path_segment(&endpoint)),
                    &CreatePermission {
                        path,
                        permissions,
                        principal_type: principal_type.into(),
                        principal,
                        expires,
                    },
                    Auth::Bearer(token),
                )
                .await?;
            if json.json {
                outln!("{}", serde_json::to_string(&created)?);
            } else {
                outln!("Permission ID: {}", created.id);
            }
        }
        PermissionCommand::List { endpoint, json } => {
            let listed: Vec<PermissionInfo> = client
                .get_all(
                    &format!("/api/v1/endpoints/{}/permissions", path_segment(&endpoint)),
                    &[],
                    Auth::Bearer(token),
                )
                .await?;
            if json.json {
                outln!("{}", serde_json::to_string(&listed)?);
            } else if listed.is_empty() {
                outln!("Nothing on this endpoint is shared.");
            } else {
                print_permissions(&listed)?;
            }
        }
        PermissionCommand::Delete { endpoint, id, json } => {
            let deleted: PermissionDeleted = client
                .delete_json(
                    &format!(
                        "/api/v1/endpoints/{}/permissions/{}",
                        path_segment(&endpoint),
                        path_segment(&id)
                    ),
                    Auth::Bearer(token),
                )
                .await?;
            if json.json {
                outln!("{}", serde_json::to_string(&deleted)?);
            } else {
                outln!("Permission {} deleted", deleted.id);
                for task in &deleted.tasks_failed {
                    outln!("task {task} used it and has failed");
                }
            }
        }
    }
    Ok(())
}

/// Events `ferry endpoint audit` shows, the newest.
const AUDIT_SHOWN: usize = 1000;

/// `ferry endpoint audit EP [--since WHEN] [--json]`, in `ferry
/// endpoint`'s session.
pub async fn audit(
    client: &HubClient,
    token: &str,
    endpoint: &str,
    since: Option<DeadlineArg>,
    json: bool,
) -> anyhow::Result<()> {
    let since = since.map_or(0, |s| s.before(crate::transfer::now()));
    let events: Vec<AuditEvent> = client
        .get_json(
            &format!("/api/v1/endpoints/{}/audit", path_segment(endpoint)),
            &[
                ("since", &since.to_string()),
                ("limit", &AUDIT_SHOWN.to_string()),
            ],
            Auth::Bearer(token),
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string(&events)?);
    } else if events.is_empty() {
        outln!("No events recorded on this endpoint in that time.");
    } else {
        print_audit(&events)?;
        if events.len() >= AUDIT_SHOWN {
            eprintln!("ferry: the newest {AUDIT_SHOWN} events shown; narrow with --since");
        }
    }
    Ok(())
}

fn print_audit(events: &[AuditEvent]) -> std::io::Result<()> {
    // The hub itself (a permission's expiry) has no identity.
    let identities: Vec<_> = events
        .iter()
        .map(|e| match e.identity.as_str() {
            "" => "-".into(),
            who => escape(who),
        })
        .collect();
    let actions: Vec<_> = events.iter().map(|e| escape(&e.action)).collect();
    let width = |column: &[std::borrow::Cow<'_, str>], title: &str| {
        column
            .iter()
            .map(|c| c.chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (who_width, action_width) = (width(&identities, "Identity"), width(&actions, "Action"));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<23}  {:<who_width$}  {:<action_width$}  {:<36}  Path",
        "Time", "Identity", "Action", "Task"
    )?;
    for ((e, who), action) in events.iter().zip(&identities).zip(&actions) {
        let task = e.task_id.as_deref().map_or("-".into(), escape);
        write!(
            out,
            "{:<23}  {:<who_width$}  {:<action_width$}  {:<36}  ",
            utc_seconds(e.time),
            who,
            action,
            task,
        )?;
        match &e.path {
            Some(path) => out.write_all(&escape_bytes(path.as_bytes()))?,
            None => out.write_all(b"-")?,
        }
        if e.detail.is_empty() {
            writeln!(out)?;
        } else {
            writeln!(out, " ({})", escape(&e.detail))?;
        }
    }
    Ok(())
}

fn print_permissions(listed: &[PermissionInfo]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36} | {:<11} | {:<17} | {:<16} | Path",
        "ID", "Permissions", "Principal Type", "Principal"
    )?;
    for p in listed {
        write!(
            out,
            "{:<36} | {:<11} | {:<17} | {:<16} | ",
            escape(&p.id),
            p.permissions,
            p.principal_type,
            escape(&p.principal),
        )?;
        out.write_all(&escape_bytes(p.path.as_bytes()))?;
        match p.expires {
            Some(at) => writeln!(out, " (until {} UTC)", utc_minutes(at))?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}

pub fn group(inv: &Invocation, command: GroupCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        match command {
            GroupCommand::Create { name, json } => {
                let created: GroupInfo = client
                    .post_json("/api/v1/groups", &CreateGroup { name }, auth)
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&created)?);
                } else {
                    outln!(
                        "Group {} created; add members with `ferry group member add {} USER`",
                        escape(&created.name),
                        escape(&created.name)
                    );
                }
            }
            GroupCommand::Member(GroupMemberCommand::Add { group, user }) => {
                let path = format!("/api/v1/groups/{}/members", path_segment(&group));
                let changed: GroupInfo =
                    client.post_json(&path, &GroupMember { user }, auth).await?;
                outln!(
                    "Group {}: {}",
                    escape(&changed.name),
                    escape(&changed.members.join(", ")).into_owned()
                );
            }
            GroupCommand::Member(GroupMemberCommand::Remove { group, user }) => {
                let path = format!(
                    "/api/v1/groups/{}/members/{}",
                    path_segment(&group),
                    path_segment(&user)
                );
                let changed: GroupInfo = client.delete_json(&path, auth).await?;
                outln!(
                    "Group {}: {}",
                    escape(&changed.name),
                    if changed.members.is_empty() {
                        "no members".to_string()
                    } else {
                        escape(&changed.members.join(", ")).into_owned()
                    }
                );
            }
            GroupCommand::List { json } => {
                let groups: Vec<GroupInfo> = client.get_all("/api/v1/groups", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&groups)?);
                } else if groups.is_empty() {
                    outln!("No groups. Make one with `ferry group create NAME`.");
                } else {
                    for g in &groups {
                        outln!(
                            "{} (managed by {}): {}",
                            escape(&g.name),
                            escape(&g.owner),
                            if g.members.is_empty() {
                                "no members".to_string()
                            } else {
                                escape(&g.members.join(", ")).into_owned()
                            }
                        );
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ferry link create|list|delete`.
pub fn link(inv: &Invocation, command: LinkCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        match command {
            LinkCommand::Create {
                target,
                expires,
                max_bytes,
                json,
            } => {
                let (endpoint, path) = split_target(&target)?;
                let expires = expires.map(|e| e.after(crate::transfer::now()));
                let created: LinkInfo = client
                    .post_json(
                        "/api/v1/links",
                        &CreateLink {
                            endpoint_id: endpoint,
                            path,
                            expires,
                            max_bytes,
                        },
                        auth,
                    )
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&created)?);
                } else {
                    outln!("Link ID: {}", created.id);
                    outln!("{}", escape(created.url.as_deref().unwrap_or_default()));
                    if let Some(at) = created.expires {
                        outln!("It works until {} UTC.", utc_minutes(at));
                    }
                }
            }
            LinkCommand::List { json } => {
                let listed: Vec<LinkInfo> = client.get_all("/api/v1/links", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&listed)?);
                } else if listed.is_empty() {
                    outln!("No links. Make one with `ferry link create EP:PATH`.");
                } else {
                    print_links(&listed)?;
                }
            }
            LinkCommand::Delete { id, json } => {
                let deleted: LinkDeleted = client
                    .delete_json(&format!("/api/v1/links/{}", path_segment(&id)), auth)
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&deleted)?);
                } else {
                    outln!("Link {} deleted", escape(&deleted.id));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_links(listed: &[LinkInfo]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36} | {:<36} | {:<20} | {:<12} | URL | Path",
        "ID", "Endpoint", "Expires (UTC)", "Served"
    )?;
    for l in listed {
        let expires = l.expires.map_or_else(|| "never".to_string(), utc_minutes);
        let served = match l.max_bytes {
            Some(max) => format!(
                "{}/{}",
                ferry_proto::human::bytes(l.bytes_served),
                ferry_proto::human::bytes(max)
            ),
            None => ferry_proto::human::bytes(l.bytes_served),
        };
        write!(
            out,
            "{:<36} | {:<36} | {:<20} | {:<12} | {} | ",
            escape(&l.id),
            escape(&l.endpoint_id),
            expires,
            served,
            escape(l.url.as_deref().unwrap_or("-"))
        )?;
        out.write_all(&escape_bytes(l.path.as_bytes()))?;
        writeln!(out)?;
    }
    Ok(())
}
