//! Sharing verbs: `ferry endpoint permission create|list|delete` and
//! `ferry group create|member add|member remove|list`. The hub decides
//! who may share what, and the endpoint checks every grantee's request
//! itself; these verbs only ask and print.

use crate::args::{DeadlineArg, GroupCommand, GroupMemberCommand, PermissionCommand};
use crate::hub::{path_segment, session, split_target};
use crate::terminal::{escape, escape_bytes};
use crate::{Invocation, client_runtime};
use ferry_proto::api::{
    CreateGroup, CreatePermission, GroupInfo, GroupMember, PermissionDeleted, PermissionInfo,
};
use ferry_proto::human::utc_minutes;
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
            let expires = expires.map(|e| match e {
                DeadlineArg::In(secs) => crate::transfer::now().saturating_add(secs),
                DeadlineArg::At(at) => at,
            });
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
                .get_json(
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
                let groups: Vec<GroupInfo> = client.get_json("/api/v1/groups", &[], auth).await?;
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
