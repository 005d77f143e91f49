//! Issuing and checking access and refresh tokens: one place for the
//! `/token` endpoint, `ferry-hub token create` and the API's bearer check.

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
}

impl EndpointPrincipal {
    /// The endpoint a certificate (DER) names, if it names one.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        Some(Self {
            endpoint_id: crate::pki::endpoint_id_of(der)?,
            cert_sha256: crate::secrets::hex(&ferry_proto::setup_key::cert_sha256(der)),
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
    })
}

/// The principal behind a bearer token, if it is live.
pub fn authenticate(
    store: &dyn Storage,
    bearer: &str,
) -> Result<Option<Principal>, crate::store::StoreError> {
    Ok(store
        .token(&token_hash(bearer), TokenKind::Access, now())?
        .map(|t| Principal {
            user_id: t.user_id,
            user_name: t.user_name,
            client_id: t.client_id,
            scopes: t.scope.split_whitespace().map(str::to_string).collect(),
        }))
}
