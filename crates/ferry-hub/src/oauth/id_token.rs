//! OpenID Connect Core §3.1.3.3: the ID token the token endpoint adds to
//! an authorization_code answer when the code's scopes include `openid`,
//! signed with the hub's provider key ([`crate::oidc_provider`]).

use super::token::{OAuthFailure, invalid_grant, server_error, store_error};
use crate::grants;
use crate::oidc_provider::{ID_TOKEN_TTL, SCOPE_OPENID, issuer, user_claims};
use crate::server::Hub;
use crate::store::AuthCodeRow;
use serde_json::Value;

/// The ID token for a redeemed code, or `None` when it did not ask for one.
pub(super) fn for_code(hub: &Hub, code: &AuthCodeRow) -> Result<Option<String>, OAuthFailure> {
    let scopes: Vec<&str> = code.scope.split_whitespace().collect();
    if !scopes.contains(&SCOPE_OPENID) {
        return Ok(None);
    }
    let request = hub
        .store
        .oidc_code(&code.code_hash)
        .map_err(store_error)?
        .ok_or_else(|| server_error("a code with scope openid has no OpenID request stored"))?;
    let mut claims = user_claims(hub, code.user_id, &scopes)
        .map_err(store_error)?
        .ok_or_else(|| invalid_grant("the account no longer exists"))?;
    let now = grants::now();
    claims.insert("iss".into(), Value::String(issuer(hub)));
    claims.insert("aud".into(), Value::String(code.client_id.clone()));
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ID_TOKEN_TTL).into());
    claims.insert("auth_time".into(), request.auth_time.into());
    if let Some(nonce) = request.nonce {
        claims.insert("nonce".into(), Value::String(nonce));
    }
    hub.oidc_key
        .sign(&Value::Object(claims))
        .map(Some)
        .map_err(server_error)
}
