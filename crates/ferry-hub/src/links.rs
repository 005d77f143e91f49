//! Links: an HTTPS URL (`/l/{token}`) that anyone holding it may `GET`
//! a path of an endpoint through, read-only, until it expires or its
//! creator deletes it (`ferry link create`).
//!
//! The token is a MAC of the link's random id under a key every hub
//! instance shares ([`token`]); the store keeps only the token's SHA-256,
//! and the hub can give the URL again (`ferry link list`). Every request through a link
//! reaches the endpoint with an anonymous read-only [`ShareGrant`] rooted
//! at the link's path: the endpoint narrows its policy by it as for any
//! grantee, so it reads nothing outside that path, writes nothing, and
//! refuses a path that lies under no `config-paths` rule whose SHARING
//! flag is 1, whatever the hub asks. A file is answered as
//! [`crate::https_files`] answers it (ranges, validators); a directory as
//! a plain HTML index of its entries.

use crate::audit::{self, Actor};
use crate::authz::Action;
use crate::control::CallError;
use crate::endpoints::{self, RegistryError};
use crate::grants::{Principal, now};
use crate::https_files::{self, StreamError};
use crate::server::Hub;
use crate::sharing::{self, SharingError};
use crate::store::{AuditRow, EndpointRow, LinkRow, StoreError};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_proto::api::{FsEntryKind, FsOp, FsOutcome, LinkInfo};
use ferry_proto::share::{ShareGrant, ShareMode};
use ferry_proto::wire_path::WirePath;

/// Files one link serves at once, besides the endpoint's own bound.
pub const STREAMS_PER_LINK: usize = 4;
/// Links one user keeps at once.
const MAX_LINKS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Sharing(#[from] SharingError),
    #[error("{0}")]
    NotFound(String),
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        LinkError::Sharing(SharingError::Storage(e))
    }
}

impl From<RegistryError> for LinkError {
    fn from(e: RegistryError) -> Self {
        LinkError::Sharing(SharingError::Endpoint(e))
    }
}

/// A link as its creator asks for it.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// By id or one of the creator's names.
    pub endpoint: String,
    pub path: WirePath,
    pub expires: Option<i64>,
    pub max_bytes: Option<u64>,
}

/// What a request through a link reaches the endpoint with.
fn grant_of(link: &LinkRow) -> ShareGrant {
    ShareGrant {
        permission_id: format!("link {}", link.id),
        root: WirePath::from_bytes(link.path.clone()),
        mode: ShareMode::Read,
        grantee: identity(link),
    }
}

/// Who reads through a link, as the audit logs say it.
fn identity(link: &LinkRow) -> String {
    format!("anonymous (link {})", link.id)
}

/// A link's token: a MAC of its (random) id under the hub's link key,
/// unguessable without the key. The store keeps only the token's hash
/// (what a read is looked up by); the hub can say the URL again, in
/// `ferry link list`, because it can make the token again.
pub fn token(hub: &Hub, link_id: &str) -> String {
    hub.link_key.tag_text("link token", link_id.as_bytes())
}

/// A link's URL.
pub fn url(hub: &Hub, link_id: &str) -> String {
    format!(
        "{}/l/{}",
        hub.config.url.trim_end_matches('/'),
        token(hub, link_id)
    )
}

pub fn info(hub: &Hub, link: LinkRow) -> LinkInfo {
    LinkInfo {
        url: Some(url(hub, &link.id)),
        id: link.id,
        endpoint_id: link.endpoint_id,
        path: WirePath::from_bytes(link.path),
        expires: link.expires,
        created: link.created,
        max_bytes: link.max_bytes.map(|b| b.max(0) as u64),
        bytes_served: link.bytes_served.max(0) as u64,
    }
}

/// Makes a link to a path of an endpoint `who` owns, once the endpoint
/// has shown it would serve it to anyone (as it will be asked at each
/// read): the link and its URL.
pub async fn create(
    hub: &Hub,
    who: &Principal,
    new: NewLink,
) -> Result<(LinkRow, String), LinkError> {
    let store = &*hub.store;
    let endpoint = endpoints::find(store, who, &new.endpoint, Action::ManageEndpoint)?;
    let path = sharing::normalize_root(&new.path)?;
    let now = now();
    let invalid = |m: &str| LinkError::Sharing(SharingError::Invalid(m.to_string()));
    if new.expires.is_some_and(|e| e <= now) {
        return Err(invalid("the expiry has already passed"));
    }
    let max_bytes = match new.max_bytes {
        None => None,
        Some(0) => return Err(invalid("--max-bytes must be at least 1")),
        Some(n) => Some(i64::try_from(n).map_err(|_| invalid("--max-bytes is too large"))?),
    };
    if store.links_of(who.user_id)?.len() >= MAX_LINKS {
        return Err(invalid(
            "you have as many links as you may keep; delete some with `ferry link delete`",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let link = LinkRow {
        token_hash: crate::secrets::token_hash(&token(hub, &id)),
        id,
        endpoint_id: endpoint.id.clone(),
        path,
        created_by: who.user_id,
        created: now,
        expires: new.expires,
        deleted: false,
        max_bytes,
        bytes_served: 0,
    };
    probe(hub, &endpoint, &link).await?;
    store.put_link(&link)?;
    let detail = format!("created link {}", link.id);
    audit::record(
        store,
        now,
        &endpoint.id,
        Actor::of(who),
        &[audit::Entry::new(audit::action::LINK, &link.path).detail(detail)],
    )?;
    tracing::info!(endpoint = %endpoint.id, link = %link.id, by = %who.user_name, "link created");
    let url = url(hub, &link.id);
    Ok((link, url))
}

/// Asks the endpoint to open the link's path as an anonymous reader would:
/// a directory it lists, else a file it opens (and sends nothing of).
async fn probe(hub: &Hub, endpoint: &EndpointRow, link: &LinkRow) -> Result<(), LinkError> {
    let shown = String::from_utf8_lossy(&link.path).into_owned();
    let path = WirePath::from_bytes(link.path.clone());
    let unreachable = |e: String| LinkError::Sharing(SharingError::Unreachable(e));
    match crate::cluster::fs(
        hub,
        &endpoint.id,
        FsOp::List { path: path.clone() },
        Some(grant_of(link)),
        crate::files::FS_WITHIN,
    )
    .await
    {
        Ok(FsOutcome::Listing { .. }) => return Ok(()),
        Ok(_) => {}
        Err(CallError::Offline) => {
            return Err(unreachable(format!(
                "endpoint '{}' is not connected: start it with `ferry -start`, so it can confirm its config-paths allow sharing {shown}",
                endpoint.display_name
            )));
        }
        Err(e) => {
            return Err(unreachable(format!(
                "endpoint '{}' could not confirm it shares {shown}: {e}",
                endpoint.display_name
            )));
        }
    }
    let checked = https_files::stream(
        hub,
        endpoint,
        path,
        Some(grant_of(link)),
        &Method::HEAD,
        &HeaderMap::new(),
        |_| Ok(()),
        None,
    )
    .await;
    match checked {
        Ok(_) => Ok(()),
        Err(StreamError::Refused { message, .. }) => {
            Err(LinkError::Sharing(SharingError::Invalid(format!(
                "endpoint '{}' will not share {shown}: {message}",
                endpoint.display_name
            ))))
        }
        Err(e) => Err(unreachable(format!(
            "endpoint '{}' could not confirm it shares {shown}: {e}",
            endpoint.display_name
        ))),
    }
}

/// The links `who` made that are not deleted (expired ones included).
pub fn list(hub: &Hub, who: &Principal) -> Result<Vec<LinkRow>, LinkError> {
    Ok(hub.store.links_of(who.user_id)?)
}

/// Deletes a link of `who`'s: its URL answers 410 from now on.
pub fn delete(hub: &Hub, who: &Principal, id: &str) -> Result<(), LinkError> {
    let store = &*hub.store;
    let found = store
        .links_of(who.user_id)?
        .into_iter()
        .find(|l| l.id == id);
    let (Some(link), true) = (found, store.delete_link(who.user_id, id)?) else {
        return Err(LinkError::NotFound(format!(
            "no link {id} of yours; list them with `ferry link list`"
        )));
    };
    audit::record(
        store,
        now(),
        &link.endpoint_id,
        Actor::of(who),
        &[audit::Entry::new(audit::action::LINK, &link.path)
            .detail(format!("deleted link {}", link.id))],
    )?;
    tracing::info!(link = %id, by = %who.user_name, "link deleted");
    Ok(())
}

// --- reading through a link ---

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The endpoint path `rest` (what follows the token in the URL) names
/// beneath the link's path, or `None` when it would step outside it.
fn beneath(root: &[u8], rest: &str) -> Option<Vec<u8>> {
    let mut path = root.to_vec();
    for component in rest.split('/') {
        match component {
            "" => {}
            "." | ".." => return None,
            c if c.contains('\0') || c.contains('\\') => return None,
            c => {
                if path.last() != Some(&b'/') {
                    path.push(b'/');
                }
                path.extend_from_slice(c.as_bytes());
            }
        }
    }
    (path.len() <= ferry_proto::task::MAX_ITEM_PATH).then_some(path)
}

/// Answers `GET`/`HEAD /l/{token}/{rest}` to anyone; `dir_url`: the
/// URL ends in `/`.
pub async fn serve(
    hub: &Hub,
    token: &str,
    rest: &str,
    dir_url: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let unknown = || plain(StatusCode::NOT_FOUND, "no such link");
    let well_formed = token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !well_formed {
        return unknown();
    }
    let store = &*hub.store;
    let link = match store.link_by_token(&crate::secrets::token_hash(token)) {
        Ok(Some(link)) => link,
        Ok(None) => return unknown(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a link");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hub cannot read its links now; try again later",
            );
        }
    };
    let now = now();
    if link.deleted {
        return plain(StatusCode::GONE, "this link was deleted by its creator");
    }
    if link.expires.is_some_and(|e| e <= now) {
        return plain(StatusCode::GONE, "this link has expired");
    }
    if link.max_bytes.is_some_and(|max| link.bytes_served >= max) {
        return plain(
            StatusCode::GONE,
            "this link has served all the bytes it may",
        );
    }
    let row = match store.endpoint(&link.endpoint_id) {
        Ok(Some(row)) if !row.deleted && !row.revoked => row,
        Ok(_) => return plain(StatusCode::GONE, "this link's endpoint no longer exists"),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a link's endpoint");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hub cannot read its links now; try again later",
            );
        }
    };
    // Traversal is refused as a path the link does not cover: the same
    // answer as a missing file, so nothing outside it can be probed.
    let Some(path) = beneath(&link.path, rest) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(hold) = hub.link_streams.take(&link.id, STREAMS_PER_LINK) else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "this link is serving as many downloads as it may at once; try again shortly",
        );
    };
    let grant = grant_of(&link);
    let wire = WirePath::from_bytes(path.clone());
    let offline = || {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the endpoint behind this link is not connected to the hub now; try again later",
        )
    };
    // A directory is listed; anything else is read as a file.
    match crate::cluster::fs(
        hub,
        &row.id,
        FsOp::List { path: wire.clone() },
        Some(grant.clone()),
        crate::files::FS_WITHIN,
    )
    .await
    {
        Ok(FsOutcome::Listing { entries, truncated }) => {
            drop(hold);
            if !dir_url {
                // Relative links in the index need the directory's URL to end in `/`.
                let last = rest.rsplit('/').next().filter(|s| !s.is_empty());
                let target = match last {
                    Some(name) => format!("{}/", encode(name.as_bytes())),
                    None => format!("{token}/"),
                };
                return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, target)])
                    .into_response();
            }
            record(hub, &link, &path, "https listing".to_string());
            return index(&link, rest, entries, truncated);
        }
        Ok(_) => {}
        Err(CallError::Offline) => return offline(),
        Err(e) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the endpoint behind this link did not answer: {e}; try again"),
            );
        }
    }
    let link_id = link.id.clone();
    let admit = |length: u64| -> Result<(), StreamError> {
        if length == 0 || link.max_bytes.is_none() {
            return Ok(());
        }
        let length = i64::try_from(length).unwrap_or(i64::MAX);
        match store.charge_link(&link_id, length) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StreamError::Invalid(
                "this link has not enough bytes left to send that; ask for a smaller range".into(),
            )),
            Err(e) => Err(StreamError::Invalid(format!(
                "cannot count this link's bytes: {e}"
            ))),
        }
    };
    let counted = link.max_bytes.is_some();
    match https_files::stream(
        hub,
        &row,
        wire,
        Some(grant),
        method,
        headers,
        admit,
        Some(hold),
    )
    .await
    {
        Ok((response, sent)) => {
            if sent.length > 0 {
                if !counted {
                    // Links without a budget count what they served too.
                    let _ =
                        store.charge_link(&link.id, i64::try_from(sent.length).unwrap_or(i64::MAX));
                }
                record(hub, &link, &path, sent.words());
            }
            response
        }
        Err(StreamError::Refused { message, not_found }) => {
            tracing::info!(link = %link.id, %message, "the endpoint refused a read through a link");
            if not_found {
                plain(StatusCode::NOT_FOUND, "not found")
            } else {
                record_refusal(hub, &link, &path, &message);
                plain(
                    StatusCode::FORBIDDEN,
                    "the endpoint behind this link refuses to serve this path",
                )
            }
        }
        Err(StreamError::Invalid(message)) => plain(StatusCode::TOO_MANY_REQUESTS, &message),
        Err(StreamError::Files(crate::files::FilesError::Offline { .. })) => offline(),
        Err(StreamError::Busy(_)) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the endpoint behind this link is serving as many files as it may at once; try again shortly",
        ),
        Err(e) => plain(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

fn record(hub: &Hub, link: &LinkRow, path: &[u8], detail: String) {
    write_audit(hub, link, audit::action::LINK, path, detail);
}

fn record_refusal(hub: &Hub, link: &LinkRow, path: &[u8], reason: &str) {
    write_audit(
        hub,
        link,
        audit::action::REFUSED,
        path,
        format!("link: {reason}"),
    );
}

fn write_audit(hub: &Hub, link: &LinkRow, action: &str, path: &[u8], detail: String) {
    let row = AuditRow {
        time: now(),
        endpoint_id: link.endpoint_id.clone(),
        actor_id: None,
        identity: identity(link),
        action: action.to_string(),
        path: Some(path.to_vec()),
        task_id: None,
        detail,
    };
    if let Err(e) = hub.store.record_audit(&[row]) {
        tracing::error!(endpoint = %link.endpoint_id, error = %e, "cannot record in the audit log");
    }
}

/// Percent-encodes all but RFC 3986's unreserved bytes.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A directory's plain HTML index: each entry a relative link.
fn index(
    link: &LinkRow,
    rest: &str,
    mut entries: Vec<ferry_proto::api::FsEntry>,
    truncated: bool,
) -> Response {
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let root = String::from_utf8_lossy(&link.path);
    let base = root.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/");
    let title = format!("{base}/{}", rest.trim_matches('/'));
    let title = title.trim_end_matches('/');
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
            }
            body {
                h1 { (title) }
                ul {
                    @if !rest.trim_matches('/').is_empty() {
                        li { a href="../" { "../" } }
                    }
                    @for entry in &entries {
                        @let name = String::from_utf8_lossy(entry.name.as_bytes());
                        @let dir = entry.kind == FsEntryKind::Dir;
                        li {
                            @if dir {
                                a href={ (encode(entry.name.as_bytes())) "/" } { (name) "/" }
                            } @else {
                                a href=(encode(entry.name.as_bytes())) { (name) }
                                " (" (ferry_proto::human::bytes(entry.size)) ")"
                            }
                        }
                    }
                }
                @if truncated {
                    p { "More entries than one page shows." }
                }
            }
        }
    };
    let mut response = Response::new(Body::from(page.into_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reaches_nothing_outside_its_path() {
        assert_eq!(beneath(b"/~/pub", ""), Some(b"/~/pub".to_vec()));
        assert_eq!(
            beneath(b"/~/pub", "a/b.txt"),
            Some(b"/~/pub/a/b.txt".to_vec())
        );
        assert_eq!(beneath(b"/~/pub", "a//b/"), Some(b"/~/pub/a/b".to_vec()));
        assert_eq!(beneath(b"/", "x"), Some(b"/x".to_vec()));
        for bad in ["..", "a/../..", "./x", "a/..", "a\0b", "..\\x"] {
            assert_eq!(beneath(b"/~/pub", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_encoded_in_the_index() {
        assert_eq!(encode(b"a b/<c>&\"d\xff"), "a%20b%2F%3Cc%3E%26%22d%FF");
        assert_eq!(encode(b"x-y_z.~1"), "x-y_z.~1");
    }
}
