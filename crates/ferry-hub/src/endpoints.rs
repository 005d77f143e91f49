//! Endpoint registry operations shared by the REST API, the web pages and
//! the admin command line: find one a principal may act on, create with a
//! setup key, register a CSR, rename, delete.

use crate::authz::{Action, Refusal, Resource, authorize};
use crate::grants::{EndpointPrincipal, Principal};
use crate::pki::CertificateAuthority;
use crate::secrets::{hex, random_token, token_hash};
use crate::store::{DeleteOutcome, EndpointRow, PermissionRow, SetupKeyUse, Storage, StoreError};
use anyhow::Context;
use ferry_proto::api::{AddedNode, CreatedEndpoint, RegisteredEndpoint};
use ferry_proto::setup_key::SetupKey;

/// Setup keys expire after a day unless told otherwise.
pub const SETUP_KEY_TTL: i64 = 86_400;
/// Display names: printable, no control characters, no `:` (it separates
/// `EP:PATH`), at most this many bytes.
pub const MAX_NAME: usize = 128;

/// What a user did wrong, as opposed to the hub failing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the setup key was already used; {}", another_key(.0.as_ref()))]
    KeyUsed(Option<KeyNode>),
    #[error("the setup key has expired; {}", another_key(.0.as_ref()))]
    KeyExpired(Option<KeyNode>),
    #[error(
        "the setup key is not known to this hub; check you copied it whole and use the hub it came from"
    )]
    KeyUnknown,
    #[error("endpoint {0} was revoked; create a new endpoint")]
    Revoked(String),
    /// Deleting it would strand tasks that are still running.
    #[error("{0}")]
    Busy(String),
    /// No endpoint of that name or id among those the principal may see
    /// (someone else's is as absent as a missing one).
    #[error("no endpoint {0:?} among yours")]
    NotFound(String),
    /// The endpoint (its display name here) has no node of that name.
    #[error("endpoint '{0}' has no node {1:?}; list its nodes with `ferry endpoint nodes`")]
    NoSuchNode(String, String),
    /// The principal may not do this to the endpoint.
    #[error(transparent)]
    Refused(Refusal),
    /// The registry could not be read or written (busy: try later).
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The node a refused setup key was made for.
#[derive(Debug)]
pub struct KeyNode {
    pub endpoint_id: String,
    pub node: String,
}

/// How to make another key like a refused one: an endpoint's, or a
/// node's (named by its endpoint's id, which `add-node` takes).
fn another_key(node: Option<&KeyNode>) -> String {
    match node {
        None => "create a new one with `ferry endpoint create`".into(),
        Some(k) => format!(
            "it was for node {} of endpoint {}: the endpoint's owner makes a new node with `ferry endpoint add-node {}`",
            k.node, k.endpoint_id, k.endpoint_id
        ),
    }
}

/// A storage error of a write that gives an endpoint `display_name`: a
/// conflict is the owner's other endpoint of that name.
fn name_taken(display_name: &str) -> impl FnOnce(StoreError) -> RegistryError + '_ {
    move |e| match e {
        StoreError::Conflict { .. } => RegistryError::Conflict(format!(
            "you already have an endpoint named {display_name:?}; choose another name"
        )),
        other => RegistryError::Storage(other),
    }
}

pub fn check_display_name(name: &str) -> Result<(), RegistryError> {
    if name.trim().is_empty()
        || name.len() > MAX_NAME
        || name.chars().any(|c| c.is_control() || c == ':')
    {
        return Err(RegistryError::Invalid(format!(
            "endpoint name {name:?} is not allowed: use 1 to {MAX_NAME} printable characters without ':'"
        )));
    }
    Ok(())
}

/// An endpoint `who` may `action`, named by id or by one of their display
/// names: the one place every route and page resolves what the user typed.
/// A deleted endpoint is as absent as a missing one, and so is one `who`
/// may not act on.
pub fn find(
    store: &dyn Storage,
    who: &Principal,
    name: &str,
    action: Action,
) -> Result<EndpointRow, RegistryError> {
    Ok(find_with_access(store, who, name, action)?.0)
}

/// [`find`], with the live permissions through which `who` reaches the
/// endpoint when it is someone else's (empty for its owner): what
/// [`crate::authz::authorize_paths`] then decides each path by. Another
/// user's endpoint is found by its id only (display names are per owner).
pub fn find_with_access(
    store: &dyn Storage,
    who: &Principal,
    name: &str,
    action: Action,
) -> Result<(EndpointRow, Vec<PermissionRow>), RegistryError> {
    let not_found = || RegistryError::NotFound(name.to_string());
    let by_id = store.endpoint(name)?.filter(|row| !row.deleted);
    let row = match by_id {
        Some(row) => row,
        None => store
            .endpoint_by_name(who.user_id, name)?
            .ok_or_else(not_found)?,
    };
    let reaching = if row.owner_id == who.user_id {
        Vec::new()
    } else {
        store.permissions_for(who.user_id, &row.id, crate::grants::now())?
    };
    match authorize(
        who,
        action,
        Resource::SharedEndpoint {
            endpoint: &row,
            reaching: &reaching,
        },
    ) {
        Ok(()) => Ok((row, reaching)),
        Err(Refusal::Hidden) => Err(not_found()),
        Err(refusal) => Err(RegistryError::Refused(refusal)),
    }
}

/// Sets the identity domains every access to the caller's endpoint `row`
/// then needs (checked by `identities::check_allowed_domains`; empty
/// clears the policy).
pub fn set_allowed_domains(
    store: &dyn Storage,
    row: &EndpointRow,
    domains: &[String],
) -> Result<(), RegistryError> {
    if !store.set_allowed_domains(&row.id, domains)? {
        return Err(RegistryError::NotFound(row.id.clone()));
    }
    Ok(())
}

/// Gives the caller's endpoint `row` a new display name.
pub fn rename(
    store: &dyn Storage,
    row: &EndpointRow,
    display_name: &str,
) -> Result<(), RegistryError> {
    check_display_name(display_name)?;
    if !store
        .rename_endpoint(&row.id, display_name)
        .map_err(name_taken(display_name))?
    {
        return Err(RegistryError::Internal(anyhow::anyhow!(
            "endpoint {} vanished",
            row.id
        )));
    }
    Ok(())
}

/// The hub's admin revokes endpoint `id` (`ferry-hub endpoint revoke`):
/// its certificate is refused from then on, its daemon is disconnected
/// within a heartbeat, and its tasks fail (the scheduler's sweep tells
/// every endpoint). Revoking a revoked endpoint again is no error.
pub fn revoke(store: &dyn Storage, id: &str) -> Result<(), RegistryError> {
    if store.revoke_endpoint(id)? {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!("no endpoint with id {id}")))
    }
}

/// Most task ids a refused deletion names.
const BUSY_LISTED: usize = 5;

/// Deletes endpoint `row`: from then on its certificate is refused as a
/// revoked one's. Refused while tasks are ACTIVE on it, naming them, since
/// they could never finish.
pub fn delete(store: &dyn Storage, row: &EndpointRow) -> Result<(), RegistryError> {
    match store.delete_endpoint(&row.id)? {
        DeleteOutcome::Deleted => Ok(()),
        DeleteOutcome::Missing => Err(RegistryError::Internal(anyhow::anyhow!(
            "endpoint {} vanished",
            row.id
        ))),
        DeleteOutcome::Busy(tasks) => {
            let mut listed = tasks
                .iter()
                .take(BUSY_LISTED)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if tasks.len() > BUSY_LISTED {
                listed.push_str(&format!(" and {} more", tasks.len() - BUSY_LISTED));
            }
            Err(RegistryError::Busy(format!(
                "endpoint '{}' has {} ACTIVE: {listed}; cancel {} with `ferry task cancel ID` or wait for {}, then delete it",
                row.display_name,
                if tasks.len() == 1 {
                    "a task".to_string()
                } else {
                    format!("{} tasks", tasks.len())
                },
                if tasks.len() == 1 { "it" } else { "them" },
                if tasks.len() == 1 { "it" } else { "them" },
            )))
        }
    }
}

/// Creates an endpoint record and a one-time setup key for it.
pub fn create(
    store: &dyn Storage,
    hub_url: &str,
    ca_sha256: [u8; 32],
    owner_id: i64,
    display_name: &str,
    key_ttl: i64,
) -> Result<CreatedEndpoint, RegistryError> {
    check_display_name(display_name)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::grants::now();
    store
        .create_endpoint(&id, owner_id, display_name, now)
        .map_err(name_taken(display_name))?;
    let secret = random_token(32).context("no randomness for a setup key")?;
    store.put_setup_key(&token_hash(&secret), &id, now + key_ttl)?;
    let key = SetupKey {
        hub_url: hub_url.to_string(),
        ca_sha256,
        secret,
    };
    Ok(CreatedEndpoint {
        id,
        display_name: display_name.to_string(),
        setup_key: key.encode(),
    })
}

/// Signs the CSR of the endpoint a setup key was made for.
pub fn register_with_key(
    store: &dyn Storage,
    endpoint_ca: &CertificateAuthority,
    key_text: &str,
    csr_pem: &str,
) -> Result<RegisteredEndpoint, RegistryError> {
    let key = SetupKey::decode(key_text).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let (endpoint_id, node) =
        match store.take_setup_key(&token_hash(&key.secret), crate::grants::now())? {
            SetupKeyUse::Fresh { endpoint_id, node } => (endpoint_id, node),
            SetupKeyUse::Used { endpoint_id, node } => {
                return Err(RegistryError::KeyUsed(key_node(endpoint_id, node)));
            }
            SetupKeyUse::Expired { endpoint_id, node } => {
                return Err(RegistryError::KeyExpired(key_node(endpoint_id, node)));
            }
            SetupKeyUse::Unknown => return Err(RegistryError::KeyUnknown),
        };
    let endpoint = live_endpoint(store, &endpoint_id)?;
    match node {
        None => sign_for(store, endpoint_ca, endpoint, csr_pem),
        Some(node) => sign_node_for(store, endpoint_ca, endpoint, &node, csr_pem),
    }
}

fn key_node(endpoint_id: String, node: Option<String>) -> Option<KeyNode> {
    node.map(|node| KeyNode { endpoint_id, node })
}

/// The endpoint a setup key was made for (or one just created), to sign
/// a CSR for: refused once revoked.
fn live_endpoint(store: &dyn Storage, endpoint_id: &str) -> Result<EndpointRow, RegistryError> {
    let endpoint = store.endpoint(endpoint_id)?.ok_or_else(|| {
        RegistryError::Internal(anyhow::anyhow!("endpoint {endpoint_id} vanished"))
    })?;
    if endpoint.revoked {
        return Err(RegistryError::Revoked(endpoint_id.to_string()));
    }
    Ok(endpoint)
}

/// Most nodes one endpoint may have besides its primary.
pub const MAX_NODES: usize = 32;

/// Adds a node (a machine besides its primary) to `endpoint`, which its
/// owner found with [`Action::ManageEndpoint`], and a one-time setup key
/// that registers a machine as it (`ferry -setup KEY`), made as
/// [`create`] makes an endpoint's. Without a name, the next free `node-N`.
pub fn add_node(
    store: &dyn Storage,
    hub_url: &str,
    ca_sha256: [u8; 32],
    endpoint: &EndpointRow,
    name: Option<&str>,
    key_ttl: i64,
) -> Result<AddedNode, RegistryError> {
    let existing = store.endpoint_nodes(&endpoint.id)?;
    if existing.len() >= MAX_NODES {
        return Err(RegistryError::Invalid(format!(
            "endpoint '{}' has {MAX_NODES} nodes already; remove one with `ferry endpoint remove-node` first",
            endpoint.display_name
        )));
    }
    let name = match name {
        Some(name) => {
            ferry_proto::api::check_node_name(name).map_err(RegistryError::Invalid)?;
            name.to_string()
        }
        None => (2..)
            .map(|n| format!("node-{n}"))
            .find(|n| !existing.iter().any(|e| &e.name == n))
            .unwrap_or_default(),
    };
    let now = crate::grants::now();
    let secret = random_token(32).context("no randomness for a setup key")?;
    store
        .add_endpoint_node(
            &endpoint.id,
            &name,
            &token_hash(&secret),
            now + key_ttl,
            now,
        )
        .map_err(|e| match e {
            StoreError::Conflict { .. } => RegistryError::Conflict(format!(
                "endpoint '{}' has a node named {name:?} already; choose another name",
                endpoint.display_name
            )),
            other => RegistryError::Storage(other),
        })?;
    let key = SetupKey {
        hub_url: hub_url.to_string(),
        ca_sha256,
        secret,
    };
    Ok(AddedNode {
        endpoint_id: endpoint.id.clone(),
        node: name,
        setup_key: key.encode(),
    })
}

/// Every machine of `endpoint`, its primary first, and its control link:
/// as this hub instance knows it, or connected to another live one.
pub fn node_infos(
    hub: &crate::server::Hub,
    endpoint: &EndpointRow,
) -> Result<Vec<ferry_proto::api::NodeInfo>, RegistryError> {
    use ferry_proto::api::{NodeInfo, PRIMARY_NODE};
    let rows = hub.store.endpoint_nodes(&endpoint.id)?;
    let mut names = vec![PRIMARY_NODE.to_string()];
    names.extend(rows.iter().map(|r| r.name.clone()));
    let elsewhere = crate::cluster::other_nodes(hub, &endpoint.id);
    Ok(hub
        .control
        .node_links(&endpoint.id, &names)
        .into_iter()
        .map(|l| {
            let registered = if l.node == PRIMARY_NODE {
                endpoint.cert_sha256.is_some()
            } else {
                rows.iter()
                    .any(|r| r.name == l.node && r.cert_sha256.is_some())
            };
            let (connected, since, last_seen) = match l.link {
                crate::control::Link::Connected { since, .. } => (true, Some(since), None),
                crate::control::Link::Offline { last_seen } => {
                    match elsewhere.iter().find(|n| n.node == l.node) {
                        Some(n) => (true, Some(n.since), None),
                        None => (false, None, last_seen),
                    }
                }
            };
            NodeInfo {
                name: l.node,
                connected,
                since,
                last_seen,
                registered,
            }
        })
        .collect())
}

/// Removes node `name` of `endpoint` (found with
/// [`Action::ManageEndpoint`]): its certificate is refused from then on
/// (its link is cut by `control::Registry::recheck`).
pub fn remove_node(
    store: &dyn Storage,
    endpoint: &EndpointRow,
    name: &str,
) -> Result<(), RegistryError> {
    if store.remove_endpoint_node(&endpoint.id, name)? {
        Ok(())
    } else {
        Err(RegistryError::NoSuchNode(
            endpoint.display_name.clone(),
            name.to_string(),
        ))
    }
}

/// Signs `csr_pem` for node `node` of `endpoint` and registers it as the
/// node's certificate.
fn sign_node_for(
    store: &dyn Storage,
    endpoint_ca: &CertificateAuthority,
    endpoint: EndpointRow,
    node: &str,
    csr_pem: &str,
) -> Result<RegisteredEndpoint, RegistryError> {
    let (cert_pem, sha) = endpoint_ca
        .sign_node_csr(csr_pem, &endpoint.id, Some(node))
        .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
    if !store.set_node_cert(&endpoint.id, node, &hex(&sha), crate::grants::now())? {
        return Err(RegistryError::Invalid(format!(
            "node {node} of endpoint '{}' was removed; ask its owner for a new node key (`ferry endpoint add-node`)",
            endpoint.display_name
        )));
    }
    Ok(RegisteredEndpoint {
        id: endpoint.id,
        display_name: endpoint.display_name,
        owner: endpoint.owner_name,
        cert_pem,
        endpoint_ca_pem: endpoint_ca.cert_pem.clone(),
        node: Some(node.to_string()),
    })
}

/// Creates an endpoint for a logged-in user and signs its CSR at once.
pub fn register_new(
    store: &dyn Storage,
    endpoint_ca: &CertificateAuthority,
    owner_id: i64,
    display_name: &str,
    csr_pem: &str,
) -> Result<RegisteredEndpoint, RegistryError> {
    check_display_name(display_name)?;
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create_endpoint(&id, owner_id, display_name, crate::grants::now())
        .map_err(name_taken(display_name))?;
    sign_for(store, endpoint_ca, live_endpoint(store, &id)?, csr_pem)
}

/// A connected endpoint's renewal: a new certificate for `csr_pem`,
/// registered as the endpoint's from now on. `who` is the endpoint as
/// the certificate it presented on the control channel names it; the
/// endpoint may renew only itself, with the certificate registered now.
pub fn renew(
    store: &dyn Storage,
    endpoint_ca: &CertificateAuthority,
    who: &EndpointPrincipal,
    csr_pem: &str,
) -> Result<String, RegistryError> {
    let endpoint = store
        .endpoint(&who.endpoint_id)?
        .ok_or(RegistryError::Refused(Refusal::Hidden))?;
    // A node renews the certificate registered for it: the rule is the
    // endpoint's, judged against the node's registered certificate.
    let registered = match &who.node {
        None => endpoint.clone(),
        Some(node) => {
            let row = store
                .endpoint_nodes(&endpoint.id)?
                .into_iter()
                .find(|n| &n.name == node)
                .ok_or(RegistryError::Refused(Refusal::Hidden))?;
            EndpointRow {
                cert_sha256: row.cert_sha256,
                ..endpoint.clone()
            }
        }
    };
    authorize(
        who,
        Action::RenewCertificate,
        Resource::Endpoint(&registered),
    )
    .map_err(|refusal| match refusal {
        Refusal::Revoked => RegistryError::Revoked(endpoint.id.clone()),
        other => RegistryError::Refused(other),
    })?;
    Ok(match &who.node {
        None => sign_for(store, endpoint_ca, endpoint, csr_pem)?.cert_pem,
        Some(node) => sign_node_for(store, endpoint_ca, endpoint, node, csr_pem)?.cert_pem,
    })
}

/// Signs `csr_pem` for `endpoint`, which the caller found and may act on.
fn sign_for(
    store: &dyn Storage,
    endpoint_ca: &CertificateAuthority,
    endpoint: EndpointRow,
    csr_pem: &str,
) -> Result<RegisteredEndpoint, RegistryError> {
    let (cert_pem, sha) = endpoint_ca
        .sign_endpoint_csr(csr_pem, &endpoint.id)
        .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
    store.set_endpoint_cert(&endpoint.id, &hex(&sha), crate::grants::now())?;
    Ok(RegisteredEndpoint {
        id: endpoint.id,
        display_name: endpoint.display_name,
        owner: endpoint.owner_name,
        cert_pem,
        endpoint_ca_pem: endpoint_ca.cert_pem.clone(),
        node: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountStore, EndpointStore, SqliteStore};

    fn csr() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    fn principal(cert_pem: &str) -> EndpointPrincipal {
        EndpointPrincipal::from_certificate(&crate::pki::first_cert_der(cert_pem).unwrap()).unwrap()
    }

    #[test]
    fn an_endpoint_renews_with_the_certificate_registered_now_and_not_once_revoked() {
        let store = SqliteStore::in_memory().unwrap();
        let ca = CertificateAuthority::create("test CA").unwrap();
        let alice = store.add_user("alice", "h", 0).unwrap();
        let first = register_new(&store, &ca, alice, "laptop", &csr()).unwrap();
        let first_holder = principal(&first.cert_pem);
        assert_eq!(first_holder.endpoint_id, first.id);

        let renewed = renew(&store, &ca, &first_holder, &csr()).unwrap();
        let holder = principal(&renewed);
        assert_eq!(holder.endpoint_id, first.id);
        // The certificate it replaced renews no more: whoever still holds
        // it is not the endpoint now.
        assert!(matches!(
            renew(&store, &ca, &first_holder, &csr()),
            Err(RegistryError::Refused(Refusal::Forbidden(_)))
        ));
        let stranger = EndpointPrincipal {
            endpoint_id: "no-such-endpoint".into(),
            ..holder.clone()
        };
        assert!(matches!(
            renew(&store, &ca, &stranger, &csr()),
            Err(RegistryError::Refused(Refusal::Hidden))
        ));
        store.revoke_endpoint(&first.id).unwrap();
        assert!(matches!(
            renew(&store, &ca, &holder, &csr()),
            Err(RegistryError::Revoked(_))
        ));
    }

    /// A key used twice says how to make another: an endpoint's with
    /// `endpoint create`, a node's with `endpoint add-node`.
    #[test]
    fn a_used_key_says_which_command_makes_another() {
        let store = SqliteStore::in_memory().unwrap();
        let ca = CertificateAuthority::create("test CA").unwrap();
        let alice = store.add_user("alice", "h", 0).unwrap();
        let url = "https://hub.example.org:8443";
        let made = create(&store, url, [7; 32], alice, "cluster", 60).unwrap();
        register_with_key(&store, &ca, &made.setup_key, &csr()).unwrap();
        let again = register_with_key(&store, &ca, &made.setup_key, &csr()).unwrap_err();
        assert!(matches!(again, RegistryError::KeyUsed(None)), "{again:?}");
        assert!(
            again.to_string().contains("`ferry endpoint create`"),
            "{again}"
        );

        let endpoint = store.endpoint(&made.id).unwrap().unwrap();
        let node = add_node(&store, url, [7; 32], &endpoint, None, 60).unwrap();
        register_with_key(&store, &ca, &node.setup_key, &csr()).unwrap();
        let again = register_with_key(&store, &ca, &node.setup_key, &csr())
            .unwrap_err()
            .to_string();
        assert!(
            again.contains(&format!("node node-2 of endpoint {}", made.id))
                && again.contains(&format!("`ferry endpoint add-node {}`", made.id))
                && !again.contains("endpoint create"),
            "{again}"
        );
        let stale = add_node(&store, url, [7; 32], &endpoint, None, -1).unwrap();
        let expired = register_with_key(&store, &ca, &stale.setup_key, &csr())
            .unwrap_err()
            .to_string();
        assert!(
            expired.starts_with("the setup key has expired; it was for node node-3")
                && expired.contains("`ferry endpoint add-node "),
            "{expired}"
        );
    }
}
