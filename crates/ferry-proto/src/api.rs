//! The hub's REST API bodies, shared by the hub and the CLI, and the file
//! operations that travel on from the hub to an endpoint.
//!
//! All routes are under `/api/v1`. Errors are [`ApiError`] with an HTTP
//! status; `message` is one line a user can act on.

use crate::wire_path::WirePath;
use serde::{Deserialize, Serialize};

/// OAuth2 client id of the `ferry` command line (a public client: PKCE).
pub const CLI_CLIENT_ID: &str = "ferry-cli";
/// Scope to create and register endpoints.
pub const SCOPE_SETUP: &str = "endpoint:setup";
/// Scope for transfers and file operations.
pub const SCOPE_TRANSFER: &str = "transfer";
/// Scope for a refresh token: an app that has it keeps working while its
/// user is away.
pub const SCOPE_OFFLINE_ACCESS: &str = "offline_access";
/// Scope to list and see one's own endpoints (and nothing more).
pub const SCOPE_MY_ENDPOINTS: &str = "my-endpoints";
/// Scope to list and see the endpoints shared with one.
pub const SCOPE_SHARED_WITH_ME: &str = "shared-with-me";
/// Path of the hub page that shows the one-time code to paste.
pub const AUTH_CODE_PATH: &str = "/auth/code";
/// Path serving the hub's TLS CA certificate (PEM), for setup by key.
pub const CA_CERT_PATH: &str = "/ca.crt";
/// The hub's OpenAPI description of this API (public, like the CA).
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiError {
    /// A stable machine word, e.g. `not_found`, `forbidden`, `endpoint_offline`.
    pub error: String,
    pub message: String,
}

/// RFC 6749 §5.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: String,
    /// OpenID Connect: the ID token, when the code's scopes had `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// RFC 6749 §5.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateEndpoint {
    pub display_name: String,
}

/// A new endpoint and the one-time key that registers a machine as it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedEndpoint {
    pub id: String,
    pub display_name: String,
    pub setup_key: String,
}

/// `PATCH /api/v1/endpoints/{id}`: what to change; absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UpdateEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The identity domains every access to the endpoint then needs a
    /// session identity from; empty clears the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
}

/// `GET /api/v1/whoami`: who the caller is (`ferry whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WhoAmI {
    /// The account's identity, `user@domain`.
    pub identity: String,
    /// The account's user name on this hub.
    pub username: String,
    /// Every identity linked to the account, its own first.
    pub linked_identities: Vec<LinkedIdentity>,
    /// The identities the caller's sign-in authenticated, and when: what an
    /// endpoint's `allowed_domains` policy is judged by.
    pub session_identities: Vec<SessionIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LinkedIdentity {
    pub identity: String,
    /// The identity provider that vouches for it (`local`: this hub's own
    /// accounts).
    pub provider: String,
    /// When it was linked, Unix seconds; absent for the account's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionIdentity {
    pub identity: String,
    /// Unix seconds.
    pub authenticated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EndpointInfo {
    pub id: String,
    pub display_name: String,
    pub owner: String,
    pub connected: bool,
    /// Unix seconds.
    pub created: i64,
    /// The hub refuses this endpoint's certificate: it never connects again.
    #[serde(default)]
    pub revoked: bool,
    /// Identity domains every access needs a session identity from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// Its machines (transfer nodes), `primary` first: filled in when one
    /// endpoint is shown, empty (and absent) in listings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeInfo>,
}

/// One machine of an endpoint (a transfer node) and its control link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodeInfo {
    /// `primary` for the machine the endpoint was set up on.
    pub name: String,
    pub connected: bool,
    /// Unix seconds its link was admitted, when connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Unix seconds this hub last saw it connected, when offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Whether a machine has registered as it yet (a node's setup key
    /// may still be unused).
    pub registered: bool,
}

/// `POST /api/v1/endpoints/{id}/nodes`: the new node's name; absent:
/// the next free `node-N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddNode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A new node of an endpoint and the one-time key that sets a machine up
/// as it (`ferry -setup KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddedNode {
    pub endpoint_id: String,
    pub node: String,
    pub setup_key: String,
}

/// The endpoint's first machine, whose certificate is the endpoint row's.
pub const PRIMARY_NODE: &str = "primary";
/// Most bytes of a node name.
pub const MAX_NODE_NAME: usize = 32;

/// A node's name: a lowercase letter or digit, then up to 31 lowercase
/// letters, digits or `-` (it goes into a certificate's URI SAN and onto
/// terminals). `primary` is the endpoint's first machine's and is taken.
pub fn check_node_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NODE_NAME
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !ok {
        return Err(format!(
            "node name {name:?} is not valid: use 1 to {MAX_NODE_NAME} lowercase letters, digits or '-', starting with a letter or digit"
        ));
    }
    if name == PRIMARY_NODE {
        return Err(format!(
            "{PRIMARY_NODE:?} is the endpoint's first machine; choose another node name"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FilterScope {
    MyEndpoints,
    SharedWithMe,
    All,
}

/// `POST /api/v1/endpoints/register`: authorised by a setup key (header
/// `Authorization: SetupKey KEY`) for a pre-created endpoint, or by a bearer
/// token with [`SCOPE_SETUP`], which creates the endpoint named here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RegisterEndpoint {
    pub csr_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RegisteredEndpoint {
    pub id: String,
    pub display_name: String,
    pub owner: String,
    pub cert_pem: String,
    /// The CA that signs endpoint certificates (for endpoint-to-endpoint TLS).
    pub endpoint_ca_pem: String,
    /// The node this machine joined the endpoint as (a node's setup key);
    /// absent: it is the endpoint's primary machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What the hub may ask an endpoint to do to its files: a closed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FsOp {
    List { path: WirePath },
    Mkdir { path: WirePath },
    Rename { from: WirePath, to: WirePath },
    Remove { path: WirePath, recursive: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FsEntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FsEntry {
    pub name: WirePath,
    #[serde(rename = "type")]
    pub kind: FsEntryKind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FsOutcome {
    Listing {
        entries: Vec<FsEntry>,
        truncated: bool,
    },
    Done,
    Failed {
        message: String,
    },
}

/// Most entries one listing carries, so a reply fits a control frame.
pub const MAX_LIST_ENTRIES: usize = 4000;

/// Endpoint certificates name their endpoint in a URI SAN with this prefix
/// followed by the endpoint id.
pub const ENDPOINT_URI_PREFIX: &str = "urn:ferry:endpoint:";

/// A node's certificate names, besides its endpoint, its node in a second
/// URI SAN with this prefix followed by the node's name; a certificate
/// without one is the endpoint's primary machine's.
pub const NODE_URI_PREFIX: &str = "urn:ferry:node:";

/// The DNS name in an endpoint's certificate, used to verify it as a TLS
/// server on the data channel.
pub fn endpoint_dns_name(endpoint_id: &str) -> String {
    format!("{endpoint_id}.endpoint.ferry.invalid")
}

/// Host and port of an `https://` URL (port 443 when absent; IPv6 in
/// brackets). The error is one line for the user.
pub fn https_host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("hub URL {url:?} must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("hub URL {url:?} has no usable host"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("hub URL {url:?} has an unclosed [IPv6] host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("hub URL {url:?} has an invalid port {p:?}"))?,
    };
    if host.is_empty() {
        return Err(format!("hub URL {url:?} has no host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_short_lowercase_and_not_primary() {
        for ok in ["node-2", "dtn1", "a", &"x".repeat(MAX_NODE_NAME)] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "Node",
            "a b",
            "a/b",
            "a:b",
            "primary",
            "é",
            &"x".repeat(MAX_NODE_NAME + 1),
        ] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_addresses_parse_like_urls() {
        let ok = |u: &str| https_host_port(u).unwrap();
        assert_eq!(
            ok("https://hub.example.org"),
            ("hub.example.org".into(), 443)
        );
        assert_eq!(ok("https://127.0.0.1:8443/"), ("127.0.0.1".into(), 8443));
        assert_eq!(ok("https://[::1]:9000/api"), ("::1".into(), 9000));
        for bad in [
            "http://h",
            "https://",
            "https://h:0",
            "https://h:99999",
            "https://u@h",
            "https://[::1",
        ] {
            assert!(https_host_port(bad).is_err(), "{bad}");
        }
    }
}

/// `POST /api/v1/endpoints/{endpoint}/permissions`: the owner shares a
/// path (`ferry endpoint permission create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatePermission {
    pub path: WirePath,
    /// `r` or `rw`.
    pub permissions: String,
    /// `identity`, `group`, `all_authenticated` or `anonymous`.
    pub principal_type: String,
    /// The user or group name (empty for the other two kinds).
    #[serde(default)]
    pub principal: String,
    /// Unix seconds; absent: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// A permission as `ferry endpoint permission list --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermissionInfo {
    pub id: String,
    pub path: WirePath,
    pub permissions: String,
    pub principal_type: String,
    pub principal: String,
    pub expires: Option<i64>,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateGroup {
    pub name: String,
}

/// `POST /api/v1/groups/{group}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupMember {
    pub user: String,
}

/// A group as `ferry group list --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupInfo {
    pub name: String,
    pub owner: String,
    pub members: Vec<String>,
}

/// One entry of an endpoint's audit log, as `ferry endpoint audit --json`
/// shows it (`GET /api/v1/endpoints/{endpoint}/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditEvent {
    /// Unix seconds.
    pub time: i64,
    /// Who acted (a user name; empty for the hub itself).
    pub identity: String,
    /// `ls`, `read`, `write`, `mkdir`, `rename`, `delete`, `link`, or a
    /// sharing word (`permission_create`, ...); others may come.
    pub action: String,
    pub path: Option<WirePath>,
    pub task_id: Option<String>,
    /// A rename's new path, a permission's id, a refusal's reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `DELETE /api/v1/endpoints/{endpoint}/permissions/{id}`: what ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermissionDeleted {
    pub id: String,
    /// ACTIVE tasks that used the permission and failed with it.
    pub tasks_failed: Vec<String>,
}

/// `POST /api/v1/links`: a URL anyone holding it may read a path through
/// (`ferry link create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateLink {
    /// The endpoint, by id or one of the caller's names.
    pub endpoint_id: String,
    pub path: WirePath,
    /// Unix seconds; absent: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Most bytes the link serves in all; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// A link as `ferry link create --json` and `ferry link list --json` show
/// it. The hub keeps only its token's hash: `url` is there only in the
/// answer to its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LinkInfo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub endpoint_id: String,
    pub path: WirePath,
    /// Unix seconds; null: until deleted.
    pub expires: Option<i64>,
    /// Unix seconds.
    pub created: i64,
    /// Null: no limit.
    pub max_bytes: Option<u64>,
    pub bytes_served: u64,
}

/// `DELETE /api/v1/links/{id}`: what ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LinkDeleted {
    pub id: String,
}

/// `POST /api/v1/webhooks`: where to POST news of the caller's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateWebhook {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Absent: every event (succeeded, failed, inactive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<crate::notify::NotifyEvents>,
}

/// A webhook as `ferry webhook list --json` shows it; `secret` only in
/// the answer to its creation (the one time the hub shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub events: crate::notify::NotifyEvents,
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `DELETE /api/v1/webhooks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookDeleted {
    pub id: String,
}

/// `POST /api/v1/apps`: register an OAuth app (`ferry app create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateApp {
    pub name: String,
    /// `native`, `portal` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A portal's exact redirect URIs; none for the other types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
}

/// An app as `ferry app list --json` shows it; `client_secret` only in
/// the answers to its creation and to a rotation (the one time the hub
/// shows it); `identity` for a service account, which acts as itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppInfo {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// `DELETE /api/v1/apps/{client_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppDeleted {
    pub client_id: String,
}

/// An app the caller let act for them (`GET /api/v1/consents`), and what
/// they let it do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConsentInfo {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created: i64,
}
