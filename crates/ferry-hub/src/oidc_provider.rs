//! The hub as an OpenID Connect provider, for apps that sign their users
//! in with their ferry account: the discovery document
//! (`/.well-known/openid-configuration`), the signing key's JWKS, the
//! claims each scope releases, and the userinfo endpoint. The ID token
//! itself is issued by the token endpoint (`oauth::id_token`).
//!
//! Not to be confused with [`crate::oidc`], where the hub is the relying
//! party of upstream providers. This side makes no outbound request.
//!
//! ID tokens are signed with ES256 by a P-256 key of the hub's own
//! (`oidc-signing.key`, made by `ferry-hub init` or on the first start of
//! a hub made before), never the task-signing key: a key signs one kind of
//! thing. Its `kid` is its RFC 7638 thumbprint, so it names the key itself.

use crate::grants;
use crate::server::Hub;
use crate::store::StoreError;
use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Asks for an ID token and opens userinfo.
pub const SCOPE_OPENID: &str = "openid";
/// Releases `name` and `preferred_username`.
pub const SCOPE_PROFILE: &str = "profile";
/// Releases `email` and `email_verified`.
pub const SCOPE_EMAIL: &str = "email";
/// The longest `nonce` an authorization request may carry, in bytes: far
/// above what clients send (a few dozen), low enough to keep the row and
/// the token small.
pub const MAX_NONCE: usize = 255;
/// An ID token is read once, right after the code exchange.
pub const ID_TOKEN_TTL: i64 = 10 * 60;
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/userinfo", get(userinfo).post(userinfo))
}

/// The hub's ID-token signing key: ES256, with its public half as a JWK.
pub struct ProviderKey {
    encoding: EncodingKey,
    kid: String,
    /// The public key as a JWK, `kid`, `use` and `alg` included.
    jwk: Value,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ProviderKey {
    /// A new P-256 key, as PKCS#8 PEM.
    pub fn new_pem() -> anyhow::Result<String> {
        Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .context("cannot generate the ID-token signing key")?
            .serialize_pem())
    }

    /// The key at `path`, made there (mode 0600) when the hub has none yet:
    /// a hub made before it existed gets one on its first start.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            ferry_tls::write_atomic(path, Self::new_pem()?.as_bytes(), 0o600)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "made the ID-token signing key");
        }
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_pem(&pem).with_context(|| {
            format!(
                "{} is not a P-256 key; move it away and restart to make a new one",
                path.display()
            )
        })
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let pair = KeyPair::from_pem(pem).context("unreadable PEM key")?;
        if pair.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            anyhow::bail!("the key is not ECDSA P-256");
        }
        let point = pair.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            anyhow::bail!("the public key is not an uncompressed P-256 point");
        }
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..]));
        // RFC 7638: SHA-256 of the required members, sorted, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            kid,
            jwk,
        })
    }

    #[cfg(test)]
    pub fn generate() -> Self {
        Self::from_pem(&Self::new_pem().unwrap()).unwrap()
    }

    /// The JWK Set clients verify ID tokens with.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A JWS (compact) of `claims`, with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// The issuer: the hub's URL as `hub.toml` gives it, without a trailing
/// slash, exactly as discovery, ID tokens and clients must agree on it.
pub fn issuer(hub: &Hub) -> String {
    hub.config.url.trim_end_matches('/').to_string()
}

/// The user's claims that `scopes` release: always `sub` (the account's
/// id, which stays when the name changes), then `name` and
/// `preferred_username` for `profile` and `email` for `email`. The hub
/// keeps the address an admin set and never confirmed it with its owner,
/// so `email_verified` is false. `None` when the account is gone.
pub fn user_claims(
    hub: &Hub,
    user_id: i64,
    scopes: &[&str],
) -> Result<Option<Map<String, Value>>, StoreError> {
    let Some(user) = hub.store.user_by_id(user_id)? else {
        return Ok(None);
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.id.to_string()));
    if scopes.contains(&SCOPE_PROFILE) {
        claims.insert("name".into(), Value::String(user.name.clone()));
        claims.insert("preferred_username".into(), Value::String(user.name));
    }
    if scopes.contains(&SCOPE_EMAIL)
        && let Some(email) = hub.store.user_email(user.id)?
    {
        claims.insert("email".into(), Value::String(email));
        claims.insert("email_verified".into(), Value::Bool(false));
    }
    Ok(Some(claims))
}

/// OpenID Connect Discovery 1.0 §3, for this hub.
pub fn discovery_document(hub: &Hub) -> Value {
    use ferry_proto::api::{SCOPE_SETUP, SCOPE_TRANSFER};
    let issuer = issuer(hub);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "scopes_supported": [SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL, SCOPE_SETUP, SCOPE_TRANSFER],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
            "name", "preferred_username", "email", "email_verified",
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}

async fn discovery(State(hub): State<Arc<Hub>>) -> Json<Value> {
    Json(discovery_document(&hub))
}

async fn jwks(State(hub): State<Arc<Hub>>) -> Json<Value> {
    Json(hub.oidc_key.jwks())
}

/// An RFC 6750 §3 refusal: the status, and a challenge that says why
/// (no error code when the request carried no token at all).
fn bearer_refusal(status: StatusCode, error: Option<&str>, description: &str) -> Response {
    let challenge = match error {
        None => "Bearer realm=\"ferry-hub\"".to_string(),
        Some(error @ "insufficient_scope") => {
            format!("Bearer realm=\"ferry-hub\", error=\"{error}\", scope=\"{SCOPE_OPENID}\"")
        }
        Some(error) => format!("Bearer realm=\"ferry-hub\", error=\"{error}\""),
    };
    let body = json!({
        "error": error.unwrap_or("invalid_token"),
        "error_description": description,
    });
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// OpenID Connect Core §5.3: the signed-in user's claims, for an access
/// token granted `openid`, as the token's scopes release them.
async fn userinfo(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let Some(token) = crate::api::credential(&headers, "Bearer") else {
        return bearer_refusal(
            StatusCode::UNAUTHORIZED,
            None,
            "send an access token in the Authorization header (Bearer)",
        );
    };
    let unavailable = |e: StoreError| {
        tracing::warn!(error = %e, "storage unavailable at userinfo");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "temporarily_unavailable", "error_description": "the hub's database is busy; try again shortly" })),
        )
            .into_response()
    };
    let principal = match grants::authenticate(&*hub.store, &hub.identity_rules, token) {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return bearer_refusal(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid or expired",
            );
        }
        Err(e) => return unavailable(e),
    };
    if !principal.has_scope(SCOPE_OPENID) {
        return bearer_refusal(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token was not granted the openid scope",
        );
    }
    let scopes: Vec<&str> = principal.scopes.iter().map(String::as_str).collect();
    match user_claims(&hub, principal.user_id, &scopes) {
        Ok(Some(claims)) => {
            let mut response = Json(Value::Object(claims)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(None) => bearer_refusal(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            "the account of this access token no longer exists",
        ),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_named_by_its_thumbprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc-signing.key");
        let made = ProviderKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ProviderKey::load_or_create(&path).unwrap();
        assert_eq!(made.kid, again.kid, "a restart keeps the key");
        let jwk = &made.jwks()["keys"][0];
        assert_eq!(jwk["kid"], made.kid.as_str());
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
            (&"EC".into(), &"P-256".into(), &"ES256".into())
        );
        assert!(jwk.get("d").is_none(), "only the public half is published");
        assert_ne!(ProviderKey::generate().kid, made.kid);
        // Not a P-256 key: refused with what to do.
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(&path, ed25519.serialize_pem()).unwrap();
        let err = format!("{:#}", ProviderKey::load_or_create(&path).unwrap_err());
        assert!(err.contains("move it away"), "{err}");
    }
}
