//! Token revocation, `/revoke` (RFC 7009).

use super::token::{
    Client, authenticate_client, invalid_request, no_store, oauth_error, store_error, token_params,
};
use crate::grants;
use crate::secrets::token_hash;
use crate::server::Hub;
use crate::store::TokenKind;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// RFC 7009. Holding a token is enough to revoke it; a client that does
/// authenticate may revoke only its own tokens.
pub(super) async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let revoked = token_params(form).and_then(|params| {
        let client = authenticate_client(&hub, &headers, &params)?;
        let presented = params
            .get("token")
            .ok_or_else(|| invalid_request("token is missing"))?;
        let hash = token_hash(presented);
        let now = grants::now();
        let found = match hub
            .store
            .token(&hash, TokenKind::Refresh, now)
            .map_err(store_error)?
        {
            Some(row) => Some(row),
            None => hub
                .store
                .token(&hash, TokenKind::Access, now)
                .map_err(store_error)?,
        };
        let Some(row) = found else {
            return Ok(());
        };
        if let Some(Client::Confidential(c)) = &client
            && c.client_id != row.client_id
        {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was issued to another client",
            ));
        }
        match row.kind {
            // A refresh token stands for the whole login.
            TokenKind::Refresh => hub.store.revoke_grant(&row.grant_id).map_err(store_error)?,
            TokenKind::Access => hub.store.revoke_token(&hash).map_err(store_error)?,
        }
        tracing::info!(user = %row.user_name, client = %row.client_id, "token revoked");
        Ok(())
    });
    no_store(match revoked {
        Ok(()) => StatusCode::OK.into_response(),
        Err(failure) => failure.into_response(),
    })
}
