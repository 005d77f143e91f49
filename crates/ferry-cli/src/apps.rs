//! `ferry app create|list|show|rotate-secret|delete|consents|revoke`: the
//! apps a user registers on the hub (OAuth clients) and the apps they let
//! act for them. The hub makes client ids and secrets and shows a secret
//! once; these verbs only ask and print.

use crate::args::AppCommand;
use crate::hub::{path_segment, session};
use crate::terminal::escape;
use crate::{Invocation, client_runtime};
use ferry_proto::api::{AppDeleted, AppInfo, ConsentInfo, CreateApp};
use ferry_proto::human::utc_minutes;
use ferry_setup::hub_client::Auth;
use std::process::ExitCode;

fn print_app(app: &AppInfo) -> std::io::Result<()> {
    outln!("Client ID: {}", escape(&app.client_id));
    outln!("Name: {}", escape(&app.name));
    outln!("Type: {}", escape(&app.kind));
    for uri in &app.redirect_uris {
        outln!("Redirect URI: {}", escape(uri));
    }
    if let Some(identity) = &app.identity {
        outln!("Identity: {}", escape(identity));
    }
    if let Some(secret) = &app.client_secret {
        outln!("Client Secret: {}", escape(secret));
        outln!(
            "Keep the secret: the hub shows it only now (a new one: `ferry app rotate-secret`)."
        );
    }
    Ok(())
}

pub fn app(inv: &Invocation, command: AppCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        let one = |id: &str| format!("/api/v1/apps/{}", path_segment(id));
        match command {
            AppCommand::Create {
                name,
                kind,
                redirect_uris,
                json,
            } => {
                let body = CreateApp {
                    name,
                    kind: kind.as_str().to_string(),
                    redirect_uris,
                };
                let created: AppInfo = client.post_json("/api/v1/apps", &body, auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&created)?);
                } else {
                    print_app(&created)?;
                }
            }
            AppCommand::List { json } => {
                let listed: Vec<AppInfo> = client.get_all("/api/v1/apps", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&listed)?);
                } else if listed.is_empty() {
                    outln!("No apps. Register one with `ferry app create NAME --type TYPE`.");
                } else {
                    outln!("{:<36} | {:<7} | Name", "Client ID", "Type");
                    for app in &listed {
                        outln!(
                            "{:<36} | {:<7} | {}",
                            escape(&app.client_id),
                            escape(&app.kind),
                            escape(&app.name)
                        );
                    }
                }
            }
            AppCommand::Show { id, json } => {
                let shown: AppInfo = client.get_json(&one(&id), &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&shown)?);
                } else {
                    print_app(&shown)?;
                }
            }
            AppCommand::RotateSecret { id, json } => {
                let rotated: AppInfo = client
                    .post_json(
                        &format!("{}/rotate-secret", one(&id)),
                        &serde_json::json!({}),
                        auth,
                    )
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&rotated)?);
                } else {
                    print_app(&rotated)?;
                }
            }
            AppCommand::Delete { id } => {
                let deleted: AppDeleted = client.delete_json(&one(&id), auth).await?;
                outln!(
                    "App {} deleted; its tokens no longer work",
                    escape(&deleted.client_id)
                );
            }
            AppCommand::Consents { json } => {
                let listed: Vec<ConsentInfo> =
                    client.get_all("/api/v1/consents", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&listed)?);
                } else if listed.is_empty() {
                    outln!("You let no app act for you.");
                } else {
                    outln!(
                        "{:<36} | {:<16} | {:<20} | Scopes",
                        "Client ID",
                        "Since (UTC)",
                        "Name"
                    );
                    for c in &listed {
                        outln!(
                            "{:<36} | {:<16} | {:<20} | {}",
                            escape(&c.client_id),
                            utc_minutes(c.created),
                            escape(&c.name),
                            escape(&c.scopes.join(" "))
                        );
                    }
                }
            }
            AppCommand::Revoke { id } => {
                let revoked: AppDeleted = client
                    .delete_json(&format!("/api/v1/consents/{}", path_segment(&id)), auth)
                    .await?;
                outln!(
                    "Access of app {} revoked; its tokens for you no longer work",
                    escape(&revoked.client_id)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
