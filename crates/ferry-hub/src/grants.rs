//! Issuing and checking access and refresh tokens: one place for the
//! `/token` endpoint, `ferry-hub token create` and the API's bearer check.

use crate::identities::{IdentityRules, SignInProof};
use crate::secrets::{random_token, token_hash};
use crate::store::{Storage, StoreError, TokenKind, TokenRow};
use ferry_proto::api::TokenResponse;

/// Access tokens live an hour; refresh tokens a month.
pub const ACCESS_TTL: i64 = 3600;
pub const REFRESH_TTL: i64 = 30 * 86_400;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub user_name: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// What the sign-in behind the request proved (the identities it
    /// authenticated recently); empty for tokens not issued through one.
    pub sign_in: SignInProof,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// An endpoint's daemon, as the certificate it presented on the control
/// channel names it. TLS proved it holds the key of a certificate the
/// endpoint CA signed; whether that is still the endpoint's registered
/// certificate is [`crate::authz::authorize`]'s to decide, against the
/// registry's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPrincipal {
    pub endpoint_id: String,
    /// Hex SHA-256 of the presented certificate (DER), as the registry keeps it.
    pub cert_sha256: String,
    /// The endpoint's node the certificate names; `None`: its primary.
    pub node: Option<String>,
}

impl EndpointPrincipal {
    /// The endpoint a certificate (DER) names, if it names one.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        Some(Self {
            endpoint_id: crate::pki::endpoint_id_of(der)?,
            cert_sha256: crate::secrets::hex(&ferry_proto::setup_key::cert_sha256(der)),
            node: ferry_tls::node_of(der),
        })
    }
}

/// Why tokens could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no randomness for a token: {0}")]
    Randomness(#[from] getrandom::Error),
}

/// Mints an access token (and a refresh token when asked) for one grant.
// Every argument is a distinct column of the token rows; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    store: &dyn Storage,
    user_id: i64,
    user_name: &str,
    client_id: &str,
    scope: &str,
    grant_id: &str,
    access_ttl: i64,
    with_refresh: bool,
) -> Result<TokenResponse, IssueError> {
    let now = now();
    let access = random_token(32)?;
    let row = |token: &str, kind, ttl| TokenRow {
        token_hash: token_hash(token),
        kind,
        user_id,
        user_name: user_name.to_string(),
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        expires: now + ttl,
        grant_id: grant_id.to_string(),
    };
    store.put_token(&row(&access, TokenKind::Access, access_ttl))?;
    let refresh_token = if with_refresh {
        let refresh = random_token(32)?;
        store.put_token(&row(&refresh, TokenKind::Refresh, REFRESH_TTL))?;
        Some(refresh)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: access_ttl.max(0) as u64,
        refresh_token,
        scope: scope.to_string(),
        id_token: None,
    })
}

/// The client id of personal access tokens: tokens a user makes for their
/// scripts (`FERRY_TOKEN`) on the account page, or the admin makes for
/// them with `ferry-hub token create`.
pub const PERSONAL_CLIENT: &str = "ferry-personal";
/// Longest name of a personal token, in bytes.
pub const MAX_TOKEN_LABEL: usize = 100;
/// Longest life of a personal token: a year, then make a new one.
pub const MAX_PERSONAL_TTL: i64 = 366 * 86_400;

/// Why a personal token was not made.
#[derive(Debug, thiserror::Error)]
pub enum PersonalTokenError {
    #[error("a token's name must be 1 to {MAX_TOKEN_LABEL} bytes without control characters")]
    BadLabel,
    #[error("a token lives from one second to a year")]
    BadLifetime,
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Makes a personal access token for `who`, with everything a signed-in
/// user may do, named `label`, working for `ttl` seconds; the token text
/// is returned once and only its hash is kept.
pub fn create_personal(
    store: &dyn Storage,
    who: &Principal,
    label: &str,
    ttl: i64,
) -> Result<TokenResponse, PersonalTokenError> {
    let label = label.trim();
    if label.is_empty() || label.len() > MAX_TOKEN_LABEL || label.chars().any(char::is_control) {
        return Err(PersonalTokenError::BadLabel);
    }
    if !(1..=MAX_PERSONAL_TTL).contains(&ttl) {
        return Err(PersonalTokenError::BadLifetime);
    }
    let grant = uuid::Uuid::new_v4().to_string();
    store
        .put_personal_token(&grant, who.user_id, label, now())
        .map_err(IssueError::from)?;
    let scope = format!(
        "{} {}",
        ferry_proto::api::SCOPE_TRANSFER,
        ferry_proto::api::SCOPE_SETUP
    );
    Ok(issue(
        store,
        who.user_id,
        &who.user_name,
        PERSONAL_CLIENT,
        &scope,
        &grant,
        ttl,
        false,
    )?)
}

/// Revokes `who`'s personal token of grant `grant_id`; `false` when no
/// live token of theirs has that grant (someone else's is as absent).
pub fn revoke_personal(
    store: &dyn Storage,
    who: &Principal,
    grant_id: &str,
) -> Result<bool, crate::store::StoreError> {
    let theirs = store
        .personal_tokens(who.user_id, now())?
        .iter()
        .any(|t| t.grant_id == grant_id);
    if theirs {
        store.revoke_grant(grant_id)?;
    }
    Ok(theirs)
}

/// The principal behind a bearer token, if it is live. A token issued
/// through a browser sign-in proves what that sign-in had authenticated
/// when the code was issued (recorded under its grant).
pub fn authenticate(
    store: &dyn Storage,
    rules: &IdentityRules,
    bearer: &str,
) -> Result<Option<Principal>, crate::store::StoreError> {
    let now = now();
    let Some(t) = store.token(&token_hash(bearer), TokenKind::Access, now)? else {
        return Ok(None);
    };
    let sign_in = SignInProof::load(store, rules, &t.grant_id, now)?;
    Ok(Some(Principal {
        user_id: t.user_id,
        user_name: t.user_name,
        client_id: t.client_id,
        scopes: t.scope.split_whitespace().map(str::to_string).collect(),
        sign_in,
    }))
}
