//! `ferry webhook add|list|delete`: the URLs the hub POSTs news of the
//! caller's tasks to. The hub makes each webhook's secret and shows it
//! once, in the answer to `add`; these verbs only ask and print.

use crate::args::WebhookCommand;
use crate::hub::{path_segment, session};
use crate::terminal::escape;
use crate::{Invocation, client_runtime};
use ferry_proto::api::{CreateWebhook, WebhookDeleted, WebhookInfo};
use ferry_proto::human::utc_minutes;
use ferry_setup::hub_client::Auth;
use std::process::ExitCode;

pub fn webhook(inv: &Invocation, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        match command {
            WebhookCommand::Add { url, events, json } => {
                let created: WebhookInfo = client
                    .post_json("/api/v1/webhooks", &CreateWebhook { url, events }, auth)
                    .await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&created)?);
                } else {
                    outln!("Webhook ID: {}", escape(&created.id));
                    outln!("Events: {}", created.events);
                    if let Some(secret) = &created.secret {
                        outln!("Secret: {}", escape(secret));
                        outln!(
                            "Keep the secret: the hub shows it only now. Each POST carries X-Ferry-Timestamp and X-Ferry-Signature: sha256=HEX, the HMAC-SHA256 of TIMESTAMP.BODY under the secret."
                        );
                    }
                }
            }
            WebhookCommand::List { json } => {
                let listed: Vec<WebhookInfo> =
                    client.get_all("/api/v1/webhooks", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&listed)?);
                } else if listed.is_empty() {
                    outln!("No webhooks. Add one with `ferry webhook add URL`.");
                } else {
                    outln!("{:<36} | {:<25} | {:<16} | URL", "ID", "Events", "Created (UTC)");
                    for w in &listed {
                        outln!(
                            "{:<36} | {:<25} | {:<16} | {}",
                            escape(&w.id),
                            w.events,
                            utc_minutes(w.created),
                            escape(&w.url)
                        );
                    }
                }
            }
            WebhookCommand::Delete { id } => {
                let deleted: WebhookDeleted = client
                    .delete_json(&format!("/api/v1/webhooks/{}", path_segment(&id)), auth)
                    .await?;
                outln!("Webhook {} deleted", escape(&deleted.id));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
