//! Apps on ferry: OAuth clients users register themselves, for the REST
//! API, the web app's Developers page and `ferry app`; and the consents
//! users gave them, for the Account page's "Connected apps".
//!
//! A native app is public (PKCE, loopback redirects on any port and the
//! hub's copy-the-code page); a portal is confidential with exact redirect
//! URIs (authorization code and refresh); a service account uses
//! client_credentials and acts as itself: an account of its own named
//! `CLIENT_ID@clients.LOCAL_DOMAIN`, which owns what it creates and can be
//! shared with like a user. Secrets are shown once and stored hashed.

use crate::authz::{Action, Refusal, Resource, authorize};
use crate::grants::Principal;
use crate::identities::IdentityRules;
use crate::secrets::{random_token, token_hash};
use crate::store::{ClientKind, ClientRow, ConsentRow, Storage, StoreError};
use ferry_proto::api::{SCOPE_SETUP, SCOPE_TRANSFER};

/// Longest app name, in bytes.
pub const MAX_APP_NAME: usize = 100;
/// Most redirect URIs one portal has, and the longest one.
pub const MAX_REDIRECT_URIS: usize = 10;
pub const MAX_REDIRECT_URI: usize = 512;
/// Most apps one user registers.
pub const MAX_APPS: usize = 50;
/// The password hash of service accounts: never a PHC string, so no
/// password signs in as one.
pub const SERVICE_ACCOUNT: &str = "!service-account";
/// What a service account may ask of client_credentials.
const SERVICE_SCOPES: &str = "endpoint:setup transfer";

/// Why an app request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("no app {0:?} among yours")]
    NotFound(String),
    #[error(transparent)]
    Refused(Refusal),
    #[error("no randomness for a client secret: {0}")]
    Randomness(#[from] getrandom::Error),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// A registered app, with its secret when it was just made or rotated.
#[derive(Debug, Clone)]
pub struct App {
    pub row: ClientRow,
    /// A service account's own identity.
    pub identity: Option<String>,
    pub secret: Option<String>,
}

/// The identity a service account acts as.
pub fn service_identity(rules: &IdentityRules, client_id: &str) -> String {
    format!("{client_id}@clients.{}", rules.local_domain)
}

/// The kinds a user registers (an admin's clients are made with `ferry-hub client create`).
pub fn parse_kind(text: &str) -> Result<ClientKind, AppError> {
    match ClientKind::parse(text) {
        Some(kind @ (ClientKind::Native | ClientKind::Portal | ClientKind::Service)) => Ok(kind),
        _ => Err(AppError::Invalid(format!(
            "an app's type is native, portal or service, not {:?}",
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// A portal's redirect URI: `https://`, or plain http to a loopback
/// address (a portal under development), with no fragment; compared
/// exactly, byte for byte, at `/authorize`.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_REDIRECT_URI {
        return Err(format!(
            "a redirect URI is at most {MAX_REDIRECT_URI} bytes"
        ));
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains(['"', '<', '>', '\\', '`']) {
        return Err(format!(
            "{uri:?} is not a URI: it has spaces or characters URIs escape"
        ));
    }
    if uri.contains('#') {
        return Err("a redirect URI has no #fragment (RFC 6749 §3.1.2)".into());
    }
    let not_uri = || format!("{uri:?} is not an absolute https:// URI");
    let (scheme, rest) = uri.split_once("://").ok_or_else(not_uri)?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(format!(
            "{uri:?} has a user name in it: give the site's address alone"
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']').ok_or_else(not_uri)?;
            (inside, after)
        }
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p != 0)
        });
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !port_ok || !host_ok {
        return Err(not_uri());
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{uri:?} is not an https:// URI (plain http only to a loopback address)"
        )),
    }
}

fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_APP_NAME || name.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "an app's name is 1 to {MAX_APP_NAME} bytes without control characters"
        )));
    }
    Ok(name.to_string())
}

fn new_secret() -> Result<(String, String), AppError> {
    let secret = random_token(32)?;
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

fn app(rules: &IdentityRules, row: ClientRow, secret: Option<String>) -> App {
    let identity =
        (row.kind == ClientKind::Service).then(|| service_identity(rules, &row.client_id));
    App {
        row,
        identity,
        secret,
    }
}

/// Registers an app owned by `who`.
pub fn create(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
    name: &str,
    kind: ClientKind,
    redirect_uris: &[String],
    now: i64,
) -> Result<App, AppError> {
    authorize(who, Action::ManageApps, Resource::Any).map_err(AppError::Refused)?;
    let name = check_name(name)?;
    let kind = parse_kind(kind.as_str())?;
    match kind {
        ClientKind::Portal if redirect_uris.is_empty() => {
            return Err(AppError::Invalid(
                "a portal needs its redirect URIs: give --redirect-uri URI (more than once for several)".into(),
            ));
        }
        ClientKind::Portal => {}
        _ if !redirect_uris.is_empty() => {
            return Err(AppError::Invalid(format!(
                "only a portal has redirect URIs: a native app is sent back to a loopback address (any port) or this hub's code page, and a service account to none; drop --redirect-uri or use --type portal (not {})",
                kind.as_str()
            )));
        }
        _ => {}
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(AppError::Invalid(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    let mut uris: Vec<String> = Vec::new();
    for uri in redirect_uris {
        check_redirect_uri(uri).map_err(AppError::Invalid)?;
        if !uris.contains(uri) {
            uris.push(uri.clone());
        }
    }
    if store.clients_of(who.user_id)?.len() >= MAX_APPS {
        return Err(AppError::Invalid(format!(
            "you have {MAX_APPS} apps, the most one user may have; delete one first"
        )));
    }
    let client_id = uuid::Uuid::new_v4().to_string();
    let secret = match kind {
        ClientKind::Native => None,
        _ => Some(new_secret()?),
    };
    let scopes = match kind {
        ClientKind::Service => SERVICE_SCOPES.to_string(),
        // Apps acting for users get what each user consents to instead.
        _ => format!("{SCOPE_SETUP} {SCOPE_TRANSFER}"),
    };
    let mut row = ClientRow {
        client_id,
        name,
        secret_hash: secret.as_ref().map(|(_, hash)| hash.clone()),
        user_id: who.user_id,
        scopes,
        kind,
        owner_id: Some(who.user_id),
        redirect_uris: uris,
    };
    if kind == ClientKind::Service {
        // Its own account, so it owns what it makes and is shared with by
        // its identity like anyone; made with the client, or not at all.
        let identity = service_identity(rules, &row.client_id);
        row.user_id = store.add_service_account(&identity, SERVICE_ACCOUNT, &row, now)?;
    } else {
        store.add_client(&row, now)?;
    }
    tracing::info!(client = %row.client_id, kind = kind.as_str(), owner = %who.user_name, "app registered");
    Ok(app(rules, row, secret.map(|(s, _)| s)))
}

/// `who`'s apps, oldest first.
pub fn list(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
) -> Result<Vec<App>, AppError> {
    authorize(who, Action::ManageApps, Resource::Any).map_err(AppError::Refused)?;
    Ok(store
        .clients_of(who.user_id)?
        .into_iter()
        .map(|row| app(rules, row, None))
        .collect())
}

/// One of `who`'s apps; anyone else's is not found.
pub fn show(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
    id: &str,
) -> Result<App, AppError> {
    let row = store
        .client(id)?
        .ok_or_else(|| AppError::NotFound(id.to_string()))?;
    authorize(who, Action::ManageApps, Resource::App(&row)).map_err(|r| match r {
        Refusal::Hidden => AppError::NotFound(id.to_string()),
        r => AppError::Refused(r),
    })?;
    Ok(app(rules, row, None))
}

/// A new secret for one of `who`'s confidential apps; the old one stops
/// working at once (tokens already issued live on until they expire or
/// the app is deleted).
pub fn rotate_secret(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
    id: &str,
) -> Result<App, AppError> {
    let mut shown = show(store, rules, who, id)?;
    if shown.row.secret_hash.is_none() {
        return Err(AppError::Invalid(
            "a native app is public and has no secret to rotate".into(),
        ));
    }
    let (secret, hash) = new_secret()?;
    if !store.set_client_secret(id, &hash)? {
        return Err(AppError::NotFound(id.to_string()));
    }
    tracing::info!(client = %id, owner = %who.user_name, "app secret rotated");
    shown.row.secret_hash = Some(hash);
    shown.secret = Some(secret);
    Ok(shown)
}

/// Deletes one of `who`'s apps and revokes every token it holds.
pub fn delete(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
    id: &str,
) -> Result<(), AppError> {
    show(store, rules, who, id)?;
    if !store.delete_client(id)? {
        return Err(AppError::NotFound(id.to_string()));
    }
    tracing::info!(client = %id, owner = %who.user_name, "app deleted; its tokens are revoked");
    Ok(())
}

/// The apps `who` let act for them.
pub fn consents(store: &dyn Storage, who: &Principal) -> Result<Vec<ConsentRow>, AppError> {
    authorize(who, Action::ManageApps, Resource::Any).map_err(AppError::Refused)?;
    Ok(store.consents_of(who.user_id)?)
}

/// Takes back what `who` let an app do: its tokens for them stop working
/// at once, and it must ask again.
pub fn revoke_consent(
    store: &dyn Storage,
    who: &Principal,
    client_id: &str,
) -> Result<(), AppError> {
    authorize(who, Action::ManageApps, Resource::Any).map_err(AppError::Refused)?;
    if !store.revoke_consent(who.user_id, client_id)? {
        return Err(AppError::NotFound(client_id.to_string()));
    }
    tracing::info!(client = %client_id, user = %who.user_name, "consent revoked; the app's tokens for the user are revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_without_fragments() {
        for ok in [
            "https://portal.example/cb",
            "https://portal.example:8443/a?b=c",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://portal.example/cb",
            "https://portal.example/cb#x",
            "javascript:alert(1)",
            "https://portal.example/a b",
            "cb",
            "https://user@portal.example/cb",
            "https://portal.example:0/cb",
            "https://portal.example:99999/cb",
            "https:///cb",
            &format!("https://p.example/{}", "a".repeat(MAX_REDIRECT_URI)),
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_native_portal_and_service_are_registered() {
        assert_eq!(parse_kind("portal").unwrap(), ClientKind::Portal);
        assert!(parse_kind("admin").is_err());
        assert!(parse_kind("web").is_err());
    }
}
