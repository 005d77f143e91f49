//! The hub as an OpenID Connect relying party to the upstream identity
//! providers of `hub.toml` (`[[identity_provider]]`): discovery, the
//! authorization request (code flow, `state`, `nonce`, PKCE S256), the
//! code exchange at the token endpoint (`client_secret_basic`), and the
//! ID token's checks: its signature against the provider's JWKS
//! (jsonwebtoken on aws-lc-rs; only asymmetric algorithms), `iss`, `aud`
//! (and `azp` when there are several audiences), `exp`, `iat` and the
//! `nonce` of this sign-in ([`validate_id_token`], a pure function of the
//! token, the keys and `now`).
//!
//! A sign-in under way is kept here, in memory, under its `state`: the
//! provider, the nonce, the PKCE verifier, the hash of a random value the
//! browser holds in the [`BINDING_COOKIE`] (so a callback finished in
//! another browser is refused: login CSRF), and, when linking, the account
//! and session it links for. At most [`MAX_PENDING`] at once, each for
//! [`PENDING_TTL`] seconds, and each used once. Discovery and the JWKS
//! are cached for [`METADATA_TTL`]; an ID token signed by a key the cache
//! does not know refreshes them once.
//!
//! Which identity a provider vouches for is [`identity_from`]'s rule: its
//! `email` when `email_verified` is true and the address's domain is one
//! of the provider's `domains`; else `preferred_username` when it is
//! `NAME@DOMAIN` of those domains, or a bare name when the provider has
//! exactly one domain (`NAME@THAT_DOMAIN`). Anything else is refused.

use crate::secrets::{constant_time_eq, pkce_s256_challenge, random_token, token_hash};
use crate::state::{HubConfig, HubDir};
use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds a sign-in may take at the provider.
pub const PENDING_TTL: i64 = 600;
/// Sign-ins under way at once, over every provider.
pub const MAX_PENDING: usize = 1024;
/// How long discovery and the JWKS are reused.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The browser's half of a sign-in under way.
pub const BINDING_COOKIE: &str = "__Host-ferry_oidc";
/// Largest answer read from a provider.
const MAX_RESPONSE: usize = 1 << 20;
/// Clock skew allowed between the hub and a provider.
const LEEWAY: i64 = 60;
/// Longest identity accepted, in bytes.
const MAX_IDENTITY: usize = 256;

/// Why a federated sign-in did not happen; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no identity provider is named {0:?} on this hub")]
    UnknownProvider(String),
    #[error("the identity provider {provider} cannot be reached ({detail}); try again later")]
    Unreachable { provider: String, detail: String },
    #[error("the identity provider {provider} answered in a way the hub cannot use: {detail}")]
    BadAnswer { provider: String, detail: String },
    #[error(
        "this sign-in expired or was started in another browser; start it again from the login page"
    )]
    UnknownState,
    #[error("too many sign-ins are under way; try again in a minute")]
    Busy,
    #[error("the identity provider {provider} refused the sign-in: {detail}")]
    Refused { provider: String, detail: String },
    #[error("the identity provider {provider} sent an ID token the hub does not accept: {reason}")]
    IdToken {
        provider: String,
        reason: IdTokenError,
    },
    #[error("{0}")]
    NoIdentity(String),
    #[error("no randomness: {0}")]
    Randomness(#[from] getrandom::Error),
}

/// Why an ID token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("it is malformed or its signature does not verify ({0})")]
    Signature(String),
    #[error("algorithm {0} is not accepted (only asymmetric signatures are)")]
    Algorithm(String),
    #[error("it is signed by key {0:?}, which the provider's JWKS does not hold")]
    UnknownKey(String),
    #[error("it was issued by {0:?}, not by the configured issuer")]
    Issuer(String),
    #[error("it was not issued to this hub (aud/azp)")]
    Audience,
    #[error("it has expired")]
    Expired,
    #[error("it was issued in the future (iat)")]
    IssuedInFuture,
    #[error("its nonce is not this sign-in's")]
    Nonce,
}

/// An ID token's claims that the hub reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: OneOrMany,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub preferred_username: Option<String>,
}

/// `aud`: one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks an ID token received from the token endpoint: its signature by
/// a key of `jwks`, then `iss`, `aud`/`azp`, `exp`, `iat` and `nonce`
/// (OpenID Connect Core 3.1.3.7) at `now`.
pub fn validate_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<Claims, IdTokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Signature(e.to_string()))?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        // Without a kid, only a JWKS of one key says which it is.
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| IdTokenError::UnknownKey(header.kid.clone().unwrap_or_default()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| IdTokenError::Signature(e.to_string()))?;
    // The signature here; every claim below, against `now`.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| IdTokenError::Signature(e.to_string()))?
        .claims;
    if claims.iss != issuer {
        return Err(IdTokenError::Issuer(claims.iss.chars().take(200).collect()));
    }
    let audiences = claims.aud.as_slice();
    if !audiences.iter().any(|a| a == client_id) {
        return Err(IdTokenError::Audience);
    }
    if let Some(azp) = &claims.azp
        && azp != client_id
    {
        return Err(IdTokenError::Audience);
    }
    if audiences.len() > 1 && claims.azp.is_none() {
        return Err(IdTokenError::Audience);
    }
    if claims.exp + LEEWAY <= now {
        return Err(IdTokenError::Expired);
    }
    if claims.iat > now + LEEWAY {
        return Err(IdTokenError::IssuedInFuture);
    }
    let matches = claims
        .nonce
        .as_deref()
        .is_some_and(|n| constant_time_eq(n.as_bytes(), nonce.as_bytes()));
    if !matches {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

/// The identity a provider vouching for `domains` vouches for in `claims`
/// (the rule in this module's documentation), lowercased; or why none.
pub fn identity_from(
    claims: &Claims,
    provider: &str,
    domains: &[String],
) -> Result<String, String> {
    let ours = |identity: &str| {
        crate::identities::domain_of(identity)
            .is_some_and(|d| domains.iter().any(|o| o.eq_ignore_ascii_case(d)))
    };
    let usable = |identity: &str| {
        let name = identity.rsplit_once('@').map_or(identity, |(n, _)| n);
        !name.is_empty()
            && identity.len() <= MAX_IDENTITY
            && !identity
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ',')
    };
    if let Some(email) = &claims.email
        && claims.email_verified == Some(true)
        && ours(email)
        && usable(email)
    {
        return Ok(email.to_lowercase());
    }
    if let Some(name) = &claims.preferred_username {
        if name.contains('@') {
            if ours(name) && usable(name) {
                return Ok(name.to_lowercase());
            }
        } else if let [only] = domains {
            let identity = format!("{name}@{only}");
            if usable(&identity) {
                return Ok(identity.to_lowercase());
            }
        }
    }
    Err(format!(
        "{provider} vouched for no identity in {}: the hub takes a verified email address (email with email_verified) in those domains, or a preferred_username there",
        domains.join(", ")
    ))
}

/// Whether a provider's URL is one the hub talks to: `https://`, or plain
/// `http://` to a loopback address only (a provider on the hub's own
/// machine, as in tests), with no query or fragment.
pub fn check_issuer(issuer: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(issuer).with_context(|| format!("{issuer:?} is not a URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("{issuer:?} has a query or fragment");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => {
            anyhow::bail!("{issuer:?} must be https:// (plain http:// only to a loopback address)")
        }
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// What discovery told of a provider, with its keys.
#[derive(Debug)]
struct Metadata {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks: JwkSet,
    fetched: Instant,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// One upstream provider.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub display_name: String,
    pub domains: Vec<String>,
    issuer: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<Option<Arc<Metadata>>>,
}

impl Provider {
    fn unreachable(&self, e: impl std::fmt::Display) -> OidcError {
        OidcError::Unreachable {
            provider: self.name.clone(),
            detail: e.to_string(),
        }
    }

    fn bad_answer(&self, e: impl std::fmt::Display) -> OidcError {
        OidcError::BadAnswer {
            provider: self.name.clone(),
            detail: e.to_string(),
        }
    }

    /// Discovery and the JWKS, from the cache unless older than
    /// [`METADATA_TTL`] or `refresh` asks for fresh ones.
    async fn metadata(&self, refresh: bool) -> Result<Arc<Metadata>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some(m) = cached.as_ref()
            && !refresh
            && m.fetched.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        // OpenID Connect Discovery 4.3: the issuer it names is the one asked.
        if discovery.issuer != self.issuer {
            return Err(self.bad_answer(format!(
                "its discovery names the issuer {:?}, not {:?}",
                discovery.issuer, self.issuer
            )));
        }
        for endpoint in [
            &discovery.authorization_endpoint,
            &discovery.token_endpoint,
            &discovery.jwks_uri,
        ] {
            check_issuer(endpoint).map_err(|e| self.bad_answer(e))?;
        }
        let jwks: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        let fresh = Arc::new(Metadata {
            authorization_endpoint: discovery.authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            jwks,
            fetched: Instant::now(),
        });
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self.bad_answer(format!("{url} answered {}", response.status())));
        }
        let body = read_bounded(response)
            .await
            .map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&body).map_err(|e| self.bad_answer(format!("{url}: {e}")))
    }

    /// The code exchange: the ID token the token endpoint gives for `code`.
    async fn exchange(
        &self,
        metadata: &Metadata,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let response = self
            .http
            .post(&metadata.token_endpoint)
            // client_secret_basic: each part form-encoded first (RFC 6749 2.3.1).
            .basic_auth(
                form_component(&self.client_id),
                Some(form_component(&self.client_secret)),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = read_bounded(response)
            .await
            .map_err(|e| self.unreachable(e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.bad_answer(format!("the token endpoint answered {status}: {e}")))?;
        if let Some(error) = answer.error {
            return Err(OidcError::Refused {
                provider: self.name.clone(),
                detail: format!(
                    "{error}{}",
                    answer
                        .error_description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )
                .chars()
                .take(300)
                .collect(),
            });
        }
        answer
            .id_token
            .ok_or_else(|| self.bad_answer("the token endpoint sent no id_token"))
    }
}

/// RFC 6749 Appendix B's encoding of one value.
fn form_component(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!("an answer over {MAX_RESPONSE} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// For whom a sign-in links its identity instead of signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTo {
    pub user_id: i64,
    /// The session that asked (its login id): only it may finish.
    pub login_id: String,
}

#[derive(Debug)]
struct Pending {
    provider: String,
    nonce: String,
    verifier: String,
    binding_hash: String,
    link: Option<LinkTo>,
    /// Where the browser goes once signed in (a path on the hub).
    next: String,
    created: i64,
}

/// A sign-in sent to its provider: where the browser goes, and the value
/// of its [`BINDING_COOKIE`].
#[derive(Debug)]
pub struct Started {
    pub location: String,
    pub binding: String,
}

/// A sign-in the provider vouched for.
#[derive(Debug)]
pub struct Finished {
    pub provider: String,
    pub identity: String,
    pub link: Option<LinkTo>,
    /// Where the browser goes next (a path on the hub).
    pub next: String,
}

/// Every provider of `hub.toml`, and the sign-ins under way.
#[derive(Debug, Default)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Providers {
    /// The providers `config` names, each with its secret read and its
    /// HTTP client (trusting its `ca_file` alone when it has one).
    pub fn load(dir: &HubDir, config: &HubConfig) -> anyhow::Result<Self> {
        let mut list = Vec::new();
        for p in &config.identity_providers {
            let secret_path = config.resolve(dir, &p.client_secret_file);
            let secret = std::fs::read_to_string(&secret_path)
                .with_context(|| {
                    format!(
                        "identity_provider {:?}: cannot read client_secret_file {}",
                        p.name,
                        secret_path.display()
                    )
                })?
                .trim()
                .to_string();
            let builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("ferry-hub/", env!("CARGO_PKG_VERSION")));
            ferry_tls::install_crypto_provider();
            let builder = match &p.ca_file {
                Some(ca) => {
                    let path = config.resolve(dir, ca);
                    let roots = ferry_tls::certs_from_file(&path).with_context(|| {
                        format!("identity_provider {:?}: ca_file {}", p.name, path.display())
                    })?;
                    let tls = ferry_tls::client_config(&roots, None, &[b"http/1.1"])?;
                    builder.use_preconfigured_tls((*tls).clone())
                }
                None => builder,
            };
            list.push(Arc::new(Provider {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                domains: p
                    .domains
                    .iter()
                    .map(|d| crate::identities::check_domain(d))
                    .collect::<Result<_, _>>()?,
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
                client_secret: secret,
                http: builder
                    .build()
                    .context("cannot build an HTTP client for an identity provider")?,
                metadata: tokio::sync::Mutex::new(None),
            }));
        }
        Ok(Self {
            list,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// (name, display name) of each provider, as `hub.toml` orders them.
    pub fn offered(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .map(|p| (p.name.clone(), p.display_name.clone()))
            .collect()
    }

    fn provider(&self, name: &str) -> Result<Arc<Provider>, OidcError> {
        self.list
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| OidcError::UnknownProvider(name.chars().take(64).collect()))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a browser to provider `name` (`hub_url` is the hub's own
    /// URL, for the callback); `link` when a signed-in user links.
    pub async fn start(
        &self,
        hub_url: &str,
        name: &str,
        link: Option<LinkTo>,
        next: String,
        now: i64,
    ) -> Result<Started, OidcError> {
        let provider = self.provider(name)?;
        let metadata = provider.metadata(false).await?;
        let state = random_token(32)?;
        let nonce = random_token(32)?;
        let verifier = random_token(32)?;
        let binding = random_token(32)?;
        let linking = link.is_some();
        {
            let mut pending = self.pending();
            pending.retain(|_, p| now - p.created < PENDING_TTL);
            if pending.len() >= MAX_PENDING {
                return Err(OidcError::Busy);
            }
            pending.insert(
                state.clone(),
                Pending {
                    provider: provider.name.clone(),
                    nonce: nonce.clone(),
                    verifier: verifier.clone(),
                    binding_hash: token_hash(&binding),
                    link,
                    next,
                    created: now,
                },
            );
        }
        let mut location = reqwest::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| provider.bad_answer(e))?;
        let mut query = location.query_pairs_mut();
        // Linking asks the provider to authenticate afresh, so the user
        // chooses which of their accounts there to link.
        if linking {
            query.append_pair("prompt", "login");
        }
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &callback(hub_url, &provider.name))
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_s256_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        drop(query);
        Ok(Started {
            location: location.into(),
            binding,
        })
    }

    /// Finishes the sign-in `state` names, which must have been started in
    /// the browser holding `binding`, for provider `name`: the code
    /// exchanged, the ID token checked, the identity it vouches for.
    pub async fn finish(
        &self,
        hub_url: &str,
        name: &str,
        state: &str,
        code: &str,
        binding: Option<&str>,
        now: i64,
    ) -> Result<Finished, OidcError> {
        let pending = {
            let mut all = self.pending();
            let known = all.get(state).is_some_and(|p| {
                p.provider == name
                    && now - p.created < PENDING_TTL
                    && binding.is_some_and(|b| {
                        constant_time_eq(token_hash(b).as_bytes(), p.binding_hash.as_bytes())
                    })
            });
            if !known {
                return Err(OidcError::UnknownState);
            }
            // Used once, whatever happens next.
            all.remove(state).ok_or(OidcError::UnknownState)?
        };
        let provider = self.provider(name)?;
        let metadata = provider.metadata(false).await?;
        let id_token = provider
            .exchange(
                &metadata,
                code,
                &callback(hub_url, &provider.name),
                &pending.verifier,
            )
            .await?;
        let check = |jwks: &JwkSet| {
            validate_id_token(
                &id_token,
                jwks,
                &provider.issuer,
                &provider.client_id,
                &pending.nonce,
                now,
            )
        };
        let claims = match check(&metadata.jwks) {
            // Keys rotate: a key the cache does not know is looked for
            // once in fresh ones.
            Err(IdTokenError::UnknownKey(_)) => check(&provider.metadata(true).await?.jwks),
            other => other,
        }
        .map_err(|reason| OidcError::IdToken {
            provider: provider.name.clone(),
            reason,
        })?;
        let identity = identity_from(&claims, &provider.display_name, &provider.domains)
            .map_err(OidcError::NoIdentity)?;
        Ok(Finished {
            provider: provider.name.clone(),
            identity,
            link: pending.link,
            next: pending.next,
        })
    }
}

/// The hub's callback for provider `name`.
pub fn callback(hub_url: &str, name: &str) -> String {
    format!(
        "{}/auth/oidc/{name}/callback",
        hub_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{EncodingKey, Header};

    struct Signer {
        key: EncodingKey,
        jwks: JwkSet,
    }

    /// A P-256 key as a provider would hold it, and its JWKS.
    fn signer() -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed point");
        let jwks = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
        }]}))
        .unwrap();
        Signer {
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwks,
        }
    }

    const ISS: &str = "https://idp.example.edu";

    fn sign(signer: &Signer, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &signer.key).unwrap()
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": ISS, "sub": "x", "aud": "ferry-hub", "exp": 2000, "iat": 1000,
            "nonce": "n0", "email": "X@Example.EDU", "email_verified": true,
        })
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut c = claims();
        c[key] = value;
        c
    }

    #[test]
    fn an_id_token_is_accepted_only_when_every_check_passes() {
        let s = signer();
        let check =
            |token: &str, now| validate_id_token(token, &s.jwks, ISS, "ferry-hub", "n0", now);
        let good = check(&sign(&s, claims()), 1500).unwrap();
        assert_eq!(good.sub, "x");
        assert_eq!(
            identity_from(&good, "Campus", &["example.edu".into()]).unwrap(),
            "x@example.edu"
        );
        use serde_json::json;
        for (bad, now, expected) in [
            (
                with("aud", json!("someone-else")),
                1500,
                IdTokenError::Audience,
            ),
            (
                with("aud", json!(["ferry-hub", "other"])),
                1500,
                IdTokenError::Audience,
            ),
            (with("azp", json!("other")), 1500, IdTokenError::Audience),
            (claims(), 2000 + LEEWAY, IdTokenError::Expired),
            (
                with("iat", json!(1500 + LEEWAY + 1)),
                1500,
                IdTokenError::IssuedInFuture,
            ),
            (with("nonce", json!("n1")), 1500, IdTokenError::Nonce),
            (
                with("iss", json!("https://evil.example")),
                1500,
                IdTokenError::Issuer("https://evil.example".into()),
            ),
        ] {
            assert_eq!(check(&sign(&s, bad.clone()), now), Err(expected), "{bad}");
        }
        let mut no_nonce = claims();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert_eq!(check(&sign(&s, no_nonce), 1500), Err(IdTokenError::Nonce));
        // Several audiences are fine when this hub is the authorized party.
        let mut both = with("aud", json!(["ferry-hub", "other"]));
        both["azp"] = json!("ferry-hub");
        assert!(check(&sign(&s, both), 1500).is_ok());

        // Another key's signature, a changed payload, HS256, none.
        let other = signer();
        assert!(matches!(
            check(&sign(&other, claims()), 1500),
            Err(IdTokenError::Signature(_))
        ));
        let token = sign(&s, claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged =
            B64.encode(serde_json::to_vec(&with("email", json!("boss@example.edu"))).unwrap());
        parts[1] = &forged;
        assert!(matches!(
            check(&parts.join("."), 1500),
            Err(IdTokenError::Signature(_))
        ));
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("k1".into());
        let hs =
            jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(b"secret")).unwrap();
        assert!(matches!(check(&hs, 1500), Err(IdTokenError::Algorithm(_))));
        let unsigned = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            B64.encode(serde_json::to_vec(&claims()).unwrap())
        );
        assert!(check(&unsigned, 1500).is_err());
        let mut unknown = Header::new(Algorithm::ES256);
        unknown.kid = Some("k9".into());
        let unknown = jsonwebtoken::encode(&unknown, &claims(), &s.key).unwrap();
        assert_eq!(
            check(&unknown, 1500),
            Err(IdTokenError::UnknownKey("k9".into()))
        );
    }

    #[test]
    fn the_identity_is_a_verified_address_or_a_username_in_the_providers_domains() {
        let base: Claims = serde_json::from_value(claims()).unwrap();
        let edu = ["example.edu".to_string()];
        let id = |c: &Claims, d: &[String]| identity_from(c, "Campus", d);
        assert_eq!(id(&base, &edu).unwrap(), "x@example.edu");
        let unverified = Claims {
            email_verified: Some(false),
            ..base.clone()
        };
        assert!(id(&unverified, &edu).is_err());
        assert!(
            id(&base, &["example.org".into()])
                .unwrap_err()
                .contains("example.org")
        );
        let named = Claims {
            email: None,
            preferred_username: Some("Jo".into()),
            ..base.clone()
        };
        assert_eq!(id(&named, &edu).unwrap(), "jo@example.edu");
        // A bare name means nothing to a provider of two domains.
        assert!(id(&named, &["a.org".into(), "b.org".into()]).is_err());
        let qualified = Claims {
            preferred_username: Some("jo@b.org".into()),
            ..named.clone()
        };
        assert_eq!(
            id(&qualified, &["a.org".into(), "b.org".into()]).unwrap(),
            "jo@b.org"
        );
        let spaced = Claims {
            preferred_username: Some("j o".into()),
            ..named
        };
        assert!(id(&spaced, &edu).is_err());
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        for good in [
            "https://idp.example.edu",
            "https://idp.example.edu/realms/x",
            "http://127.0.0.1:9000",
            "http://[::1]:9000/oidc",
            "http://localhost:8080",
        ] {
            assert!(check_issuer(good).is_ok(), "{good}");
        }
        for bad in [
            "http://idp.example.edu",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://idp.example.edu/?x=1",
            "not a url",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
        assert_eq!(form_component("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }

    #[tokio::test]
    async fn a_callback_needs_the_browser_that_started_it_and_works_once() {
        let providers = Providers::default();
        // No such provider: nothing is started.
        assert!(matches!(
            providers
                .start("https://hub", "nope", None, "/".into(), 0)
                .await,
            Err(OidcError::UnknownProvider(_))
        ));
        providers.pending().insert(
            "st".into(),
            Pending {
                provider: "campus".into(),
                nonce: "n".into(),
                verifier: "v".into(),
                binding_hash: token_hash("cookie"),
                link: None,
                next: "/".into(),
                created: 100,
            },
        );
        for (name, binding, now) in [
            ("campus", Some("other"), 101),
            ("campus", None, 101),
            ("org", Some("cookie"), 101),
            ("campus", Some("cookie"), 100 + PENDING_TTL),
        ] {
            assert!(matches!(
                providers
                    .finish("https://hub", name, "st", "code", binding, now)
                    .await,
                Err(OidcError::UnknownState)
            ));
        }
        // The right browser in time gets past the state check (and then
        // finds no provider of that name here), and uses the state up.
        assert!(matches!(
            providers
                .finish("https://hub", "campus", "st", "code", Some("cookie"), 101)
                .await,
            Err(OidcError::UnknownProvider(_))
        ));
        assert!(providers.pending().is_empty());
    }
}
