//! The token endpoint, `/token`: the authorization_code grant (PKCE, one
//! use, a replay revokes what the code gave), refresh with rotation, and
//! client_credentials; client authentication, which `/revoke` shares.

use super::params::{Params, form_decode, is_verifier, truncate};
use crate::grants::{self, ACCESS_TTL, IssueError};
use crate::secrets::{constant_time_eq, pkce_s256_matches, token_hash};
use crate::server::Hub;
use crate::store::{ClientKind, ClientRow, CodeUse, StoreError, TokenKind};
use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ferry_proto::api::{CLI_CLIENT_ID, OAuthError, SCOPE_OFFLINE_ACCESS, TokenResponse};
use std::sync::Arc;

/// An RFC 6749 §5.2 error.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
pub(super) struct OAuthFailure {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let body = OAuthError {
            error: self.error.to_string(),
            error_description: self.description,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ferry-hub\""),
            );
        }
        response
    }
}

pub(super) fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> OAuthFailure {
    OAuthFailure {
        status,
        error,
        description: description.into(),
    }
}

pub(super) fn invalid_request(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

pub(super) fn invalid_grant(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn invalid_client(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

pub(super) fn server_error(e: impl std::fmt::Display) -> OAuthFailure {
    tracing::error!(error = %e, "internal error at the token endpoint");
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the hub failed to handle the request; see its log",
    )
}

/// A store error: one that cannot answer now is RFC 6749's
/// `temporarily_unavailable` (503), for the client to try again shortly,
/// and never an answer about the grant it presented.
pub(super) fn store_error(e: StoreError) -> OAuthFailure {
    if e.is_transient() {
        tracing::warn!(error = %e, "storage unavailable at the token endpoint");
        oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the hub's database is busy; try again shortly",
        )
    } else {
        server_error(e)
    }
}

fn issue_error(e: IssueError) -> OAuthFailure {
    match e {
        IssueError::Store(e) => store_error(e),
        e @ IssueError::Randomness(_) => server_error(e),
    }
}

/// The client making a token or revocation request.
#[derive(Debug)]
pub(super) enum Client {
    /// No secret; PKCE protects its codes.
    Public(String),
    /// Authenticated with its secret.
    Confidential(ClientRow),
}

impl Client {
    fn id(&self) -> &str {
        match self {
            Client::Public(id) => id,
            Client::Confidential(row) => &row.client_id,
        }
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id):urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || invalid_client("the Authorization header is not valid HTTP Basic client authentication");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() => Ok(Some((id, secret))),
        _ => Err(malformed()),
    }
}

/// Who is asking, authenticated as far as its kind requires; `None` when
/// the request names no client.
pub(super) fn authenticate_client(
    hub: &Hub,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<Client>, OAuthFailure> {
    let basic = basic_credentials(headers)?;
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    let (id, secret) = match (&basic, form_id) {
        (Some(_), _) if form_secret.is_some() => {
            return Err(invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ));
        }
        (Some((id, _)), Some(form_id)) if id != form_id => {
            return Err(invalid_request(
                "client_id differs from the client in the Authorization header",
            ));
        }
        (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str()).filter(|s| !s.is_empty())),
        (None, Some(id)) => (id, form_secret),
        (None, None) if form_secret.is_some() => {
            return Err(invalid_request("client_secret without client_id"));
        }
        (None, None) => return Ok(None),
    };
    if id == CLI_CLIENT_ID {
        if secret.is_some() {
            return Err(invalid_client(format!(
                "{CLI_CLIENT_ID} is a public client and has no secret"
            )));
        }
        return Ok(Some(Client::Public(id.to_string())));
    }
    let row = hub
        .store
        .client(id)
        .map_err(store_error)?
        .ok_or_else(|| invalid_client("unknown client"))?;
    match (&row.secret_hash, secret) {
        (Some(stored), Some(secret))
            if constant_time_eq(token_hash(secret).as_bytes(), stored.as_bytes()) =>
        {
            Ok(Some(Client::Confidential(row)))
        }
        (Some(_), _) => Err(invalid_client("client authentication failed")),
        (None, Some(_)) => Err(invalid_client("this client is public and has no secret")),
        (None, None) => Ok(Some(Client::Public(row.client_id))),
    }
}

/// Token answers, errors included, are never cached (RFC 6749 §5.1).
pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub(super) fn token_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Params, OAuthFailure> {
    let Form(pairs) = form.map_err(|e| {
        invalid_request(format!(
            "the body must be application/x-www-form-urlencoded: {}",
            e.body_text()
        ))
    })?;
    Params::new(pairs).map_err(invalid_request)
}

pub(super) async fn token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let granted = token_params(form).and_then(|params| {
        let client = authenticate_client(&hub, &headers, &params)?;
        match params.get("grant_type") {
            Some("authorization_code") => authorization_code_grant(&hub, client, &params),
            Some("refresh_token") => refresh_grant(&hub, client, &params),
            Some("client_credentials") => client_credentials_grant(&hub, client, &params),
            Some(other) => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {:?} is not supported", truncate(other)),
            )),
            None => Err(invalid_request("grant_type is missing")),
        }
    });
    no_store(match granted {
        Ok(tokens) => (StatusCode::OK, Json(tokens)).into_response(),
        Err(failure) => failure.into_response(),
    })
}

fn authorization_code_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<TokenResponse, OAuthFailure> {
    let client = client.ok_or_else(|| invalid_request("client_id is missing"))?;
    let code = params
        .get("code")
        .ok_or_else(|| invalid_request("code is missing"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| invalid_request("redirect_uri is missing"))?;
    // A public client's codes all carry a challenge, so its redemptions
    // all need a verifier; a portal may have asked without PKCE.
    let verifier = params.get("code_verifier");
    if verifier.is_none() && !matches!(client, Client::Confidential(_)) {
        return Err(invalid_request(
            "code_verifier is missing (PKCE is required)",
        ));
    }
    if verifier.is_some_and(|v| !is_verifier(v)) {
        return Err(invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636)",
        ));
    }
    let row = match hub
        .store
        .take_auth_code(&token_hash(code.trim()), grants::now())
        .map_err(store_error)?
    {
        CodeUse::Fresh(row) => row,
        CodeUse::Reused => {
            tracing::warn!(client = %client.id(), "an authorization code was redeemed twice; its tokens are revoked");
            return Err(invalid_grant(
                "the code was already used; every token issued from it is now revoked",
            ));
        }
        CodeUse::Expired => {
            return Err(invalid_grant(
                "the code expired; sign in again for a new one",
            ));
        }
        CodeUse::Unknown => return Err(invalid_grant("the code is not valid")),
    };
    if row.client_id != client.id() {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if row.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri differs from the one the code was issued for",
        ));
    }
    match (verifier, row.challenge.is_empty()) {
        (_, true) if matches!(client, Client::Confidential(_)) => {}
        (Some(verifier), false) if pkce_s256_matches(verifier, &row.challenge) => {}
        (None, false) => {
            return Err(invalid_request(
                "code_verifier is missing: the code was issued with a code_challenge",
            ));
        }
        _ => {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
    }
    let user = hub
        .store
        .user_by_id(row.user_id)
        .map_err(store_error)?
        .ok_or_else(|| invalid_grant("the account no longer exists"))?;
    // Signed before any token is stored: a token answer always has the ID
    // token its code asked for.
    let id_token = super::id_token::for_code(hub, &row)?;
    // The code hash is the grant id, so a replayed code finds these tokens.
    let mut issued = grants::issue(
        &*hub.store,
        user.id,
        &user.name,
        &row.client_id,
        &row.scope,
        &row.code_hash,
        ACCESS_TTL,
        with_refresh(&row.client_id, &row.scope),
    )
    .map_err(issue_error)?;
    issued.id_token = id_token;
    tracing::info!(user = %user.name, client = %row.client_id, scope = %row.scope, "tokens issued for an authorization code");
    Ok(issued)
}

/// Apps get a refresh token only when the user let them keep access
/// (`offline_access`); the built-in CLI always has, as `ferry login` did.
fn with_refresh(client_id: &str, scope: &str) -> bool {
    client_id == CLI_CLIENT_ID || scope.split_whitespace().any(|s| s == SCOPE_OFFLINE_ACCESS)
}

/// Scopes that must all be among `allowed`; `allowed` itself when none are asked for.
fn narrow_scope(requested: Option<&str>, allowed: &str) -> Result<String, OAuthFailure> {
    let allowed: Vec<&str> = allowed.split_whitespace().collect();
    let mut scopes: Vec<&str> = Vec::new();
    for word in requested.unwrap_or_default().split_whitespace() {
        if !allowed.contains(&word) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {:?} is not granted to this client", truncate(word)),
            ));
        }
        if !scopes.contains(&word) {
            scopes.push(word);
        }
    }
    if scopes.is_empty() {
        scopes = allowed;
    }
    scopes.sort_unstable();
    Ok(scopes.join(" "))
}

fn refresh_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<TokenResponse, OAuthFailure> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is missing"))?;
    let hash = token_hash(presented);
    let Some(old) = hub
        .store
        .token(&hash, TokenKind::Refresh, grants::now())
        .map_err(store_error)?
    else {
        // A rotated-away token coming back means two parties hold it: end
        // the whole grant (RFC 6749 §10.4, OAuth 2.0 Security BCP §4.14).
        if let Some(grant) = hub.store.token_was_revoked(&hash).map_err(store_error)? {
            hub.store.revoke_grant(&grant).map_err(store_error)?;
            tracing::warn!("a revoked refresh token was presented; its grant is revoked");
            return Err(invalid_grant(
                "the refresh token was already used; this login is revoked, log in again",
            ));
        }
        return Err(invalid_grant(
            "the refresh token is invalid or expired; log in again",
        ));
    };
    match &client {
        Some(client) if client.id() != old.client_id => {
            return Err(invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        Some(_) => {}
        // Only a public client may leave itself unnamed; a confidential one
        // authenticates on every grant.
        None => {
            let public = old.client_id == CLI_CLIENT_ID
                || hub
                    .store
                    .client(&old.client_id)
                    .map_err(store_error)?
                    .is_some_and(|c| c.secret_hash.is_none());
            if !public {
                return Err(invalid_client(
                    "this refresh token belongs to a confidential client; authenticate it",
                ));
            }
        }
    }
    let scope = narrow_scope(params.get("scope"), &old.scope)?;
    // The successors are written before the old token is spent: a store
    // that fails in between leaves the old one live for the client's
    // retry, where spending it first would take that retry for a replay
    // and end the login. Successors never handed out are worth nothing.
    let issued = grants::issue(
        &*hub.store,
        old.user_id,
        &old.user_name,
        &old.client_id,
        &scope,
        &old.grant_id,
        ACCESS_TTL,
        true,
    )
    .map_err(issue_error)?;
    if !hub.store.revoke_live_token(&hash).map_err(store_error)? {
        // Spent meanwhile by another request: two parties hold it. The
        // grant ends, the successors just written with it.
        hub.store.revoke_grant(&old.grant_id).map_err(store_error)?;
        tracing::warn!(user = %old.user_name, "a refresh token was used twice at once; its grant is revoked");
        return Err(invalid_grant(
            "the refresh token was already used; this login is revoked, log in again",
        ));
    }
    Ok(issued)
}

fn client_credentials_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<TokenResponse, OAuthFailure> {
    let row = match client {
        Some(Client::Confidential(row))
            if matches!(row.kind, ClientKind::Admin | ClientKind::Service) =>
        {
            row
        }
        Some(Client::Confidential(row)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                format!(
                    "{} is a portal: it acts for users who sign in (authorization_code), not by itself",
                    row.client_id
                ),
            ));
        }
        Some(Client::Public(id)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                format!(
                    "{id} is a public client; client_credentials needs a registered confidential client"
                ),
            ));
        }
        None => return Err(invalid_client("client authentication is required")),
    };
    let scope = narrow_scope(params.get("scope"), &row.scopes)?;
    let user = hub
        .store
        .user_by_id(row.user_id)
        .map_err(store_error)?
        .ok_or_else(|| invalid_client("the account this client acts as no longer exists"))?;
    let grant_id = format!("client:{}", uuid::Uuid::new_v4());
    let issued = grants::issue(
        &*hub.store,
        user.id,
        &user.name,
        &row.client_id,
        &scope,
        &grant_id,
        ACCESS_TTL,
        false,
    )
    .map_err(issue_error)?;
    tracing::info!(client = %row.client_id, user = %user.name, "client_credentials token issued");
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_scopes_must_be_among_those_granted() {
        assert_eq!(
            narrow_scope(None, "transfer endpoint:setup").unwrap(),
            "endpoint:setup transfer"
        );
        assert_eq!(
            narrow_scope(Some("transfer"), "transfer endpoint:setup").unwrap(),
            "transfer"
        );
        assert!(narrow_scope(Some("endpoint:setup"), "transfer").is_err());
    }
}
