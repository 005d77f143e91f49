//! The hub's OpenAPI 3.1 description of its REST API, served at
//! [`OPENAPI_PATH`].
//!
//! Bodies and query strings are described by the JSON Schema that
//! `schemars` derives from the very types the handlers (de)serialize, so
//! a field cannot change without its description changing. The routes
//! themselves are one table, [`OPERATIONS`]; a test fails, naming the
//! route, when a route the router declares under `/api/` has no line
//! there (or a line names a route that is gone). Every operation answers
//! its errors as [`ApiError`] (the `default` response).

use crate::server::Hub;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use ferry_proto::api::{
    ApiError, AppDeleted, AppInfo, ConsentInfo, CreateApp, CreateEndpoint, CreateGroup, CreateLink,
    CreatePermission, CreateWebhook, CreatedEndpoint, EndpointInfo, FsOp, FsOutcome, GroupInfo,
    GroupMember, LinkDeleted, LinkInfo, OPENAPI_PATH, PermissionDeleted, PermissionInfo,
    RegisterEndpoint, RegisteredEndpoint, UpdateEndpoint, WebhookDeleted, WebhookInfo, WhoAmI,
};
use ferry_proto::task::{
    CreateTimer, CreatedTimer, SubmissionId, SubmitTask, SubmittedTask, TaskEvent, TaskInfo,
    TimerInfo,
};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::sync::Arc;

type Describe = fn(&mut SchemaGenerator) -> Schema;

/// A body's (or answer's) schema: a `$ref` to its type's, in components.
fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// An access token (or the browser session of the hub's pages).
    Bearer,
    /// An access token with the setup scope, or an endpoint's setup key.
    BearerOrSetupKey,
    /// Anyone.
    Public,
}

/// One (method, path) of the API.
#[derive(Debug)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// The query string's type, each field one parameter.
    pub query: Option<Describe>,
    pub body: Option<Describe>,
    /// The success statuses (all with the same body) and that body.
    pub statuses: &'static [u16],
    pub answer: Describe,
    /// A list that comes in pages ([`crate::api::PageQuery`]): `limit` and
    /// `marker` parameters and a `Link: <..>; rel="next"` header while
    /// more remain.
    pub paged: bool,
    /// Bytes of a file, not JSON: the answer of a `GET`, the body of a `PUT`.
    pub binary: bool,
}

const fn op(method: &'static str, path: &'static str, summary: &'static str) -> Operation {
    Operation {
        method,
        path,
        summary,
        auth: Auth::Bearer,
        query: None,
        body: None,
        statuses: &[200],
        answer: of::<Value>,
        paged: false,
        binary: false,
    }
}

impl Operation {
    const fn answers(self, status: u16, answer: Describe) -> Self {
        let statuses: &'static [u16] = match status {
            201 => &[201],
            _ => &[200],
        };
        Operation {
            statuses,
            answer,
            ..self
        }
    }
    /// Also answers 200, with the same body, when it made nothing new.
    const fn or_existing(self) -> Self {
        Operation {
            statuses: &[200, 201],
            ..self
        }
    }
    const fn takes(self, body: Describe) -> Self {
        Operation {
            body: Some(body),
            ..self
        }
    }
    const fn query(self, query: Describe) -> Self {
        Operation {
            query: Some(query),
            ..self
        }
    }
    const fn paged(self) -> Self {
        Operation {
            paged: true,
            ..self
        }
    }
    const fn binary(self, statuses: &'static [u16]) -> Self {
        Operation {
            binary: true,
            statuses,
            ..self
        }
    }
    const fn auth(self, auth: Auth) -> Self {
        Operation { auth, ..self }
    }
}

use crate::api::{AuditQuery, SearchQuery, UploadQuery, WaitQuery};

/// Every operation of the REST API (one line per route of the router
/// under `/api/`; the test below holds the two together).
pub const OPERATIONS: &[Operation] = &[
    op("GET", OPENAPI_PATH, "This description of the API")
        .auth(Auth::Public)
        .answers(200, of::<Value>),
    op("GET", "/api/v1/whoami", "The caller's identity").answers(200, of::<WhoAmI>),
    op("GET", "/api/v1/endpoints", "Search endpoints")
        .query(of::<SearchQuery>)
        .paged()
        .answers(200, of::<Vec<EndpointInfo>>),
    op(
        "POST",
        "/api/v1/endpoints",
        "Create an endpoint and its setup key",
    )
    .takes(of::<CreateEndpoint>)
    .answers(201, of::<CreatedEndpoint>),
    op(
        "POST",
        "/api/v1/endpoints/register",
        "Register an endpoint's key (its CSR) and get its certificate",
    )
    .auth(Auth::BearerOrSetupKey)
    .takes(of::<RegisterEndpoint>)
    .answers(201, of::<RegisteredEndpoint>),
    op("GET", "/api/v1/endpoints/{endpoint}", "One endpoint").answers(200, of::<EndpointInfo>),
    op(
        "PATCH",
        "/api/v1/endpoints/{endpoint}",
        "Rename an endpoint or set its domains",
    )
    .takes(of::<UpdateEndpoint>)
    .answers(200, of::<EndpointInfo>),
    op(
        "DELETE",
        "/api/v1/endpoints/{endpoint}",
        "Delete an endpoint",
    )
    .answers(200, of::<EndpointInfo>),
    op(
        "POST",
        "/api/v1/endpoints/{endpoint}/fs",
        "List, make, rename or remove on a connected endpoint",
    )
    .takes(of::<FsOp>)
    .answers(200, of::<FsOutcome>),
    op(
        "GET",
        "/api/v1/endpoints/{endpoint}/permissions",
        "An endpoint's shares",
    )
    .paged()
    .answers(200, of::<Vec<PermissionInfo>>),
    op(
        "POST",
        "/api/v1/endpoints/{endpoint}/permissions",
        "Share a path",
    )
    .takes(of::<CreatePermission>)
    .answers(201, of::<PermissionInfo>),
    op(
        "DELETE",
        "/api/v1/endpoints/{endpoint}/permissions/{permission}",
        "Revoke a share (its tasks fail)",
    )
    .answers(200, of::<PermissionDeleted>),
    op(
        "GET",
        "/api/v1/endpoints/{endpoint}/audit",
        "An endpoint's audit log: pages from the newest back, each oldest first",
    )
    .query(of::<AuditQuery>)
    .paged()
    .answers(200, of::<Vec<ferry_proto::api::AuditEvent>>),
    op(
        "GET",
        "/api/v1/endpoints/{endpoint}/nodes",
        "An endpoint's machines (transfer nodes), primary first",
    )
    .answers(200, of::<Vec<ferry_proto::api::NodeInfo>>),
    op(
        "POST",
        "/api/v1/endpoints/{endpoint}/nodes",
        "Add a node to an endpoint and get its one-time setup key",
    )
    .takes(of::<ferry_proto::api::AddNode>)
    .answers(201, of::<ferry_proto::api::AddedNode>),
    op(
        "DELETE",
        "/api/v1/endpoints/{endpoint}/nodes/{node}",
        "Remove a node (its certificate is refused); the nodes that remain",
    )
    .answers(200, of::<Vec<ferry_proto::api::NodeInfo>>),
    op("GET", "/api/v1/groups", "The caller's groups")
        .paged()
        .answers(200, of::<Vec<GroupInfo>>),
    op("POST", "/api/v1/groups", "Create a group")
        .takes(of::<CreateGroup>)
        .answers(201, of::<GroupInfo>),
    op("POST", "/api/v1/groups/{group}/members", "Add a member")
        .takes(of::<GroupMember>)
        .answers(200, of::<GroupInfo>),
    op(
        "DELETE",
        "/api/v1/groups/{group}/members/{user}",
        "Remove a member",
    )
    .answers(200, of::<GroupInfo>),
    op(
        "GET",
        "/api/v1/links",
        "The caller's links (without their URLs)",
    )
    .paged()
    .answers(200, of::<Vec<LinkInfo>>),
    op(
        "POST",
        "/api/v1/links",
        "Make a link anyone holding its URL may read a shared path through",
    )
    .takes(of::<CreateLink>)
    .answers(201, of::<LinkInfo>),
    op(
        "DELETE",
        "/api/v1/links/{link}",
        "Delete a link (its URL answers 410)",
    )
    .answers(200, of::<LinkDeleted>),
    op("GET", "/api/v1/webhooks", "The caller's webhooks")
        .paged()
        .answers(200, of::<Vec<WebhookInfo>>),
    op(
        "POST",
        "/api/v1/webhooks",
        "Add a webhook (its secret is shown once)",
    )
    .takes(of::<CreateWebhook>)
    .answers(201, of::<WebhookInfo>),
    op("DELETE", "/api/v1/webhooks/{webhook}", "Remove a webhook")
        .answers(200, of::<WebhookDeleted>),
    op("GET", "/api/v1/tasks", "The caller's tasks, newest first")
        .paged()
        .answers(200, of::<Vec<TaskInfo>>),
    op(
        "POST",
        "/api/v1/tasks",
        "Submit a transfer task (201; 200 with the task its submission_id made before)",
    )
    .takes(of::<SubmitTask>)
    .answers(201, of::<SubmittedTask>)
    .or_existing(),
    op(
        "GET",
        "/api/v1/submission_id",
        "A fresh submission_id for a task submission",
    )
    .answers(200, of::<SubmissionId>),
    op("GET", "/api/v1/tasks/{task}", "One task")
        .query(of::<WaitQuery>)
        .answers(200, of::<TaskInfo>),
    op("POST", "/api/v1/tasks/{task}/cancel", "Cancel a task").answers(200, of::<TaskInfo>),
    op(
        "GET",
        "/api/v1/tasks/{task}/events",
        "A task's events, oldest first",
    )
    .paged()
    .answers(200, of::<Vec<TaskEvent>>),
    op("GET", "/api/v1/timers", "The caller's timers")
        .paged()
        .answers(200, of::<Vec<TimerInfo>>),
    op(
        "POST",
        "/api/v1/timers",
        "Create a timer (a recurring transfer)",
    )
    .takes(of::<CreateTimer>)
    .answers(201, of::<CreatedTimer>),
    op(
        "GET",
        "/api/v1/timers/{timer}",
        "One timer, with its recent events",
    )
    .answers(200, of::<TimerInfo>),
    op("DELETE", "/api/v1/timers/{timer}", "Delete a timer").answers(200, of::<TimerInfo>),
    op(
        "GET",
        "/api/v1/endpoints/{endpoint}/files/{*path}",
        "Download a file (`Range`, `If-Range`, `If-None-Match`, `If-Modified-Since`); \
         HEAD with `upload` tells how much of an upload arrived (docs/https.md)",
    )
    .query(of::<UploadQuery>)
    .binary(&[200, 206]),
    op(
        "PUT",
        "/api/v1/endpoints/{endpoint}/files/{*path}",
        "Upload a file, whole or (with `upload` and `Content-Range`) a piece; \
         201 when it landed, 204 when a piece arrived (docs/https.md)",
    )
    .query(of::<UploadQuery>)
    .binary(&[201, 204]),
    op("GET", "/api/v1/apps", "The caller's registered apps")
        .paged()
        .answers(200, of::<Vec<AppInfo>>),
    op(
        "POST",
        "/api/v1/apps",
        "Register an app (native, portal or service); a secret is shown once",
    )
    .takes(of::<CreateApp>)
    .answers(201, of::<AppInfo>),
    op("GET", "/api/v1/apps/{app}", "One of the caller's apps").answers(200, of::<AppInfo>),
    op(
        "DELETE",
        "/api/v1/apps/{app}",
        "Delete an app (its tokens stop working)",
    )
    .answers(200, of::<AppDeleted>),
    op(
        "POST",
        "/api/v1/apps/{app}/rotate-secret",
        "Give an app a new secret, shown once",
    )
    .answers(200, of::<AppInfo>),
    op(
        "GET",
        "/api/v1/consents",
        "The apps the caller let act for them",
    )
    .paged()
    .answers(200, of::<Vec<ConsentInfo>>),
    op(
        "DELETE",
        "/api/v1/consents/{app}",
        "Revoke a consent (the app's tokens for the caller stop working)",
    )
    .answers(200, of::<AppDeleted>),
];

/// The stable machine words of [`ApiError::error`], for the description.
const ERROR_WORDS: &str = "invalid, unauthorized, invalid_token, invalid_setup_key, \
    insufficient_scope, forbidden, csrf, revoked, not_shared, identity_required, \
    not_found, method_not_allowed, conflict, endpoint_busy, task_ended, ambiguous, \
    too_large, unsupported_media_type, operation_failed, endpoint_offline, \
    endpoint_unavailable, timeout, unavailable, internal (see docs/api.md)";

/// The description, served with the hub's own URL as its server.
pub fn document(server_url: &str) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    // Query parameters are flat, each its own schema.
    let mut inline = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let error = of::<ApiError>(&mut g);
    let mut paths: Map<String, Value> = Map::new();
    for o in OPERATIONS {
        let mut parameters: Vec<Value> = path_parameters(o.path)
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": "string", "minLength": 1}})
            })
            .collect();
        if let Some(query) = o.query {
            parameters.extend(query_parameters(query(&mut inline)));
        }
        if o.paged {
            parameters.extend(query_parameters(
                inline.root_schema_for::<crate::api::PageQuery>(),
            ));
        }
        let mut answer = if o.binary && o.method == "GET" {
            json!({
                "description": o.summary,
                "content": {"application/octet-stream": {"schema": {}}},
            })
        } else {
            json!({
                "description": o.summary,
                "content": {"application/json": {"schema": (o.answer)(&mut g)}},
            })
        };
        if o.paged {
            answer["headers"] = json!({"Link": {
                "description": "`<URL>; rel=\"next\"` (RFC 8288) while more remain: \
                    the same request with the next page's `marker`",
                "schema": {"type": "string"},
            }});
        }
        let mut responses: Map<String, Value> = o
            .statuses
            .iter()
            .map(|status| {
                let mut answer = answer.clone();
                if *status == 204 {
                    // No content: a piece of an upload arrived.
                    answer.as_object_mut().map(|a| a.remove("content"));
                }
                (status.to_string(), answer)
            })
            .collect();
        responses.insert(
            "default".into(),
            json!({
                "description": format!("An error; `error` is one of: {ERROR_WORDS}"),
                "content": {"application/json": {"schema": error.clone()}},
            }),
        );
        let mut operation = json!({
            "summary": o.summary,
            "operationId": operation_id(o),
            "parameters": parameters,
            "responses": responses,
        });
        if o.binary && o.method == "PUT" {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/octet-stream": {"schema": {}}},
            });
        }
        if let Some(body) = o.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body(&mut g)}},
            });
        }
        operation["security"] = match o.auth {
            Auth::Bearer => json!([{"bearer": []}]),
            Auth::BearerOrSetupKey => json!([{"bearer": []}, {"setupKey": []}]),
            Auth::Public => json!([]),
        };
        // A path that runs to the end (`{*path}`) is one parameter.
        let item = paths
            .entry(o.path.replace("{*", "{"))
            .or_insert_with(|| json!({}));
        item[o.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferry hub",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Errors answer JSON `{error, message}`: `error` a stable \
                machine word, `message` one line a user can act on. Lists come in pages \
                (`limit`, `marker`, and a `Link` header with rel=\"next\" while more remain). \
                A task submission may carry a `submission_id` (from \
                `GET /api/v1/submission_id`): the same one again returns the same task.",
        },
        "servers": [{"url": server_url.trim_end_matches('/')}],
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "setupKey": {"type": "http", "scheme": "SetupKey",
                    "description": "`Authorization: SetupKey <key>` from `ferry endpoint create`"},
            },
        },
    })
}

/// `{name}` segments of a route's path, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|s| s.trim_start_matches('*'))
}

/// One query parameter per property of a query type's (inlined) schema.
fn query_parameters(schema: Schema) -> Vec<Value> {
    let object = schema.as_object().cloned().unwrap_or_default();
    let required: Vec<Value> = object
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(Value::Object(properties)) = object.get("properties") else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&Value::from(name.as_str())),
                "schema": schema,
            });
            if let Some(about) = schema.get("description") {
                parameter["description"] = about.clone();
            }
            parameter
        })
        .collect()
}

/// `GET /api/v1/tasks/{task}` → `get_api_v1_tasks_task`.
fn operation_id(o: &Operation) -> String {
    let path: String = o
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = o.method.to_ascii_lowercase();
    for part in path.split('_').filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    id
}

pub async fn serve(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    Json(document(&hub.config.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router declares under `/api/` has a line in
    /// [`OPERATIONS`], and every line a route.
    #[test]
    fn every_api_route_is_described_and_nothing_else() {
        let declared: Vec<(String, String)> = crate::route_walk::every_declared_route()
            .into_iter()
            .filter(|(_, path)| path.starts_with("/api/"))
            .collect();
        let described: Vec<(String, String)> = OPERATIONS
            .iter()
            .map(|o| (o.method.to_string(), o.path.to_string()))
            .collect();
        let missing: Vec<String> = declared
            .iter()
            .filter(|r| !described.contains(r))
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert!(
            missing.is_empty(),
            "routes without a description: add a line for each to openapi::OPERATIONS: {}",
            missing.join(", ")
        );
        let stale: Vec<String> = described
            .iter()
            .filter(|r| !declared.contains(r))
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert!(
            stale.is_empty(),
            "described but not routed: {}",
            stale.join(", ")
        );
        let mut unique = described.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), described.len(), "a route described twice");
    }

    /// The document is OpenAPI 3.1 in form: every `$ref` resolves, every
    /// path parameter is declared, every operation has an error answer.
    #[test]
    fn the_document_holds_together() {
        let doc = document("https://hub.example.org/");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "https://hub.example.org");
        let text = doc.to_string();
        for (at, _) in text.match_indices("\"$ref\":\"") {
            let rest = &text[at + 8..];
            let target = &rest[..rest.find('"').unwrap()];
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("$ref {target} is not to a component"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "$ref {target} dangles"
            );
        }
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(
            paths
                .values()
                .map(|p| p.as_object().unwrap().len())
                .sum::<usize>(),
            OPERATIONS.len()
        );
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                assert!(
                    operation["responses"]["default"]["content"]["application/json"].is_object(),
                    "{method} {path} has no error answer"
                );
                for name in path_parameters(path) {
                    assert!(
                        operation["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == name && p["in"] == "path"),
                        "{method} {path} does not declare {name}"
                    );
                }
            }
        }
        // The bodies are described from their types: a field of each shows.
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["SubmitTask"]["properties"]["items"].is_object());
        assert!(schemas["TaskInfo"]["properties"]["status"].is_object());
        assert_eq!(schemas["ApiError"]["required"], json!(["error", "message"]));
    }
}
