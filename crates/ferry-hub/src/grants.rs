//! Issuing and checking access and refresh tokens: one place for the
//! `/token` endpoint, `ferry-hub token create` and the API's bearer check.

use crate::secrets::{random_token, token_hash};
use crate::store::{Storage, TokenKind, TokenRow};
use anyhow::Context;
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
) -> anyhow::Result<TokenResponse> {
    let now = now();
    let access = random_token(32).context("no randomness for a token")?;
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
        let refresh = random_token(32).context("no randomness for a token")?;
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
