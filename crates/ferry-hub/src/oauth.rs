//! The OAuth2 authorization server and the browser side of logging in:
//! `/authorize` (RFC 6749 code grant with RFC 7636 PKCE, RFC 8252 loopback
//! redirects), the login and consent pages behind it, the copy-the-code page,
//! `/token` (authorization_code, refresh_token with rotation,
//! client_credentials), `/revoke` (RFC 7009) and `/logout`.
//!
//! The only public client is the built-in `ferry-cli`; it must use PKCE S256.
//! Confidential clients are registered by an admin and may only use
//! client_credentials. Every secret (session, code, token) is stored hashed.

use crate::grants::{self, ACCESS_TTL};
use crate::pages;
use crate::secrets::{
    constant_time_eq, pkce_s256_matches, random_token, token_hash, verify_password,
};
use crate::server::Hub;
use crate::store::{AuthCodeRow, ClientRow, CodeUse, SessionRow, TokenKind};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use ferry_proto::api::{AUTH_CODE_PATH, CLI_CLIENT_ID, OAuthError, SCOPE_SETUP, SCOPE_TRANSFER};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Authorization codes are redeemed right after approval; 5 minutes covers
/// a user copying one from the browser into a terminal.
pub const CODE_TTL: i64 = 5 * 60;
/// A browser session lasts a working day.
pub const SESSION_TTL: i64 = 12 * 3600;
pub const SESSION_COOKIE: &str = "ferry_session";
/// Double-submit cookie guarding the login form, which has no session yet.
const LOGIN_CSRF_COOKIE: &str = "ferry_login_csrf";
/// Longest value of any parameter; the longest legitimate ones (PKCE
/// verifiers, loopback redirect URIs) are far below it.
const MAX_PARAM: usize = 2048;
const MAX_PARAMS: usize = 32;
/// What the built-in CLI client is called on the consent page.
const CLI_CLIENT_NAME: &str = "The ferry command line (ferry-cli)";
/// The authorize parameters a login or consent form carries through its POST.
const CARRIED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "state",
];

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(landing))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/authorize", get(authorize).post(decide))
        .route(AUTH_CODE_PATH, get(code_page))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
}

// --- parameters ---

/// Request parameters, bounded in number and length, each at most once
/// (RFC 6749 §3.1); an empty value counts as absent.
#[derive(Debug)]
struct Params(Vec<(String, String)>);

impl Params {
    fn new(pairs: Vec<(String, String)>) -> Result<Self, String> {
        if pairs.len() > MAX_PARAMS {
            return Err(format!("too many parameters (at most {MAX_PARAMS})"));
        }
        for (i, (name, value)) in pairs.iter().enumerate() {
            if name.len() > MAX_PARAM || value.len() > MAX_PARAM {
                return Err(format!(
                    "parameter {:?} is too long (at most {MAX_PARAM} bytes)",
                    truncate(name)
                ));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "parameter {:?} appears more than once",
                    truncate(name)
                ));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` decoding of one component.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `uri` with `pairs` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", encode_pairs(pairs))
}

// --- responses ---

/// Why a page request failed; each variant is a page or a redirect.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("{title}: {message}")]
    Shown { status: StatusCode, title: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("authorization request refused")]
    Refused(Refusal),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Shown { status, title, message } => page(status, pages::error(title, &message)),
            PageError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::error(
                        "Something went wrong",
                        "The hub could not handle this request; its operator can find the reason in its log.",
                    ),
                )
            }
            PageError::Refused(refusal) => refusal.into_response(),
        }
    }
}

impl From<Refusal> for PageError {
    fn from(refusal: Refusal) -> Self {
        PageError::Refused(refusal)
    }
}

fn shown(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
    PageError::Shown { status, title, message: message.into() }
}

fn internal(e: impl std::fmt::Display) -> PageError {
    PageError::Internal(e.to_string())
}

fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(e) => internal(format!("unusable redirect location: {e}")).into_response(),
    }
}

fn set_cookie(response: &mut Response, cookie: &str) {
    match HeaderValue::try_from(cookie) {
        Ok(value) => {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Err(e) => tracing::error!(error = %e, "unusable cookie"),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= MAX_PARAM)
}

fn csrf_matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

/// The signed-in browser's session, if its cookie names a live one.
fn session(hub: &Hub, headers: &HeaderMap) -> Result<Option<(String, SessionRow)>, PageError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(value);
    Ok(hub.store.session(&hash, grants::now()).map_err(internal)?.map(|s| (hash, s)))
}

fn client_ip(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}

// --- the authorization request ---

/// A checked `/authorize` request.
#[derive(Debug)]
struct AuthRequest {
    client_id: String,
    client_name: &'static str,
    redirect_uri: String,
    challenge: String,
    scopes: Vec<&'static str>,
    state: Option<String>,
}

/// Why a request cannot be authorized: shown to the user when the redirect
/// target is not trusted (RFC 6749 §4.1.2.1), else sent back to it.
#[derive(Debug)]
enum Refusal {
    Show(String),
    Redirect {
        to: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Show(message) => error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &message,
            ),
            Refusal::Redirect {
                to,
                error,
                description,
                state,
            } => {
                let mut pairs = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(state) = &state {
                    pairs.push(("state", state));
                }
                see_other(&with_query(&to, &pairs))
            }
        }
    }
}

/// RFC 8252 §7.3: a loopback IP literal, any port, any path, plain http.
fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("http://127.0.0.1")
        .or_else(|| uri.strip_prefix("http://[::1]"))
    else {
        return false;
    };
    let rest = match rest.strip_prefix(':') {
        Some(port_and_path) => {
            let end = port_and_path
                .find(['/', '?'])
                .unwrap_or(port_and_path.len());
            if !port_and_path[..end].parse::<u16>().is_ok_and(|p| p != 0)
                || !port_and_path[..end].bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
            &port_and_path[end..]
        }
        None => rest,
    };
    rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
}

fn hub_code_page(hub: &Hub) -> String {
    format!("{}{AUTH_CODE_PATH}", hub.config.url.trim_end_matches('/'))
}

/// Where the built-in CLI may be sent back to.
fn redirect_allowed(hub: &Hub, uri: &str) -> bool {
    // Header-safe and fragment-free (RFC 6749 §3.1.2) before anything else.
    if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains(['#', '"', '<', '>', '\\', '`']) {
        return false;
    }
    uri == hub_code_page(hub) || is_loopback_redirect(uri)
}

/// The requested scopes, known ones only; both when none is asked for.
fn parse_scopes(scope: Option<&str>) -> Result<Vec<&'static str>, String> {
    let Some(scope) = scope else {
        return Ok(vec![SCOPE_SETUP, SCOPE_TRANSFER]);
    };
    let mut scopes = Vec::new();
    for word in scope.split(' ').filter(|w| !w.is_empty()) {
        let known = [SCOPE_SETUP, SCOPE_TRANSFER]
            .into_iter()
            .find(|s| *s == word)
            .ok_or_else(|| {
                format!(
                    "unknown scope {:?}; this hub knows {SCOPE_SETUP} and {SCOPE_TRANSFER}",
                    truncate(word)
                )
            })?;
        if !scopes.contains(&known) {
            scopes.push(known);
        }
    }
    if scopes.is_empty() {
        return Ok(vec![SCOPE_SETUP, SCOPE_TRANSFER]);
    }
    scopes.sort_unstable();
    Ok(scopes)
}

/// RFC 7636 §4.2: BASE64URL(SHA-256) is exactly 43 unreserved characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn check_request(hub: &Hub, params: &Params) -> Result<AuthRequest, Refusal> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| Refusal::Show("The link names no client (client_id is missing).".into()))?;
    // Only the built-in CLI may use the browser flow: admin-registered
    // clients act as a fixed account and have no redirect URIs.
    if client_id != CLI_CLIENT_ID {
        return Err(Refusal::Show(format!(
            "The client {:?} is not known to this hub.",
            truncate(client_id)
        )));
    }
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Show("The link has no redirect_uri.".into()))?;
    if !redirect_allowed(hub, redirect_uri) {
        return Err(Refusal::Show(format!(
            "The redirect_uri is not allowed for {CLI_CLIENT_ID}; it may go to this hub's code page or to a loopback address only."
        )));
    }
    let state = params.get("state").map(str::to_string);
    let refuse = |error: &'static str, description: String| Refusal::Redirect {
        to: redirect_uri.to_string(),
        error,
        description,
        state: state.clone(),
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
        None => return Err(refuse("invalid_request", "response_type is missing".into())),
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        refuse(
            "invalid_request",
            "PKCE is required: code_challenge is missing".into(),
        )
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required".into(),
        ));
    }
    if !is_s256_challenge(challenge) {
        return Err(refuse(
            "invalid_request",
            "code_challenge is not an S256 challenge".into(),
        ));
    }
    let scopes = parse_scopes(params.get("scope")).map_err(|e| refuse("invalid_scope", e))?;
    Ok(AuthRequest {
        client_id: client_id.to_string(),
        client_name: CLI_CLIENT_NAME,
        redirect_uri: redirect_uri.to_string(),
        challenge: challenge.to_string(),
        scopes,
        state,
    })
}

impl AuthRequest {
    /// The request again, as hidden form fields.
    fn carry(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("response_type".to_string(), "code".to_string()),
            ("client_id".to_string(), self.client_id.clone()),
            ("redirect_uri".to_string(), self.redirect_uri.clone()),
            ("code_challenge".to_string(), self.challenge.clone()),
            ("code_challenge_method".to_string(), "S256".to_string()),
            ("scope".to_string(), self.scopes.join(" ")),
        ];
        if let Some(state) = &self.state {
            fields.push(("state".to_string(), state.clone()));
        }
        fields
    }

    /// The consent form submits to the hub, which answers with a redirect
    /// to the client; browsers apply form-action to that redirect too.
    fn consent_csp(&self) -> String {
        let target = if self.redirect_uri.starts_with("http://127.0.0.1") {
            " http://127.0.0.1:*"
        } else if self.redirect_uri.starts_with("http://[::1]") {
            // CSP source expressions cannot name an IPv6 literal, so no
            // form-action list could allow this target.
            return "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'".into();
        } else {
            ""
        };
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{target}; frame-ancestors 'none'; base-uri 'none'"
        )
    }

    fn redirect_back(&self, pairs: &[(&str, &str)]) -> Response {
        let mut pairs = pairs.to_vec();
        if let Some(state) = &self.state {
            pairs.push(("state", state));
        }
        see_other(&with_query(&self.redirect_uri, &pairs))
    }
}

fn wants(scopes: &[&str]) -> Vec<&'static str> {
    scopes
        .iter()
        .filter_map(|s| match *s {
            SCOPE_SETUP => Some("register endpoints"),
            SCOPE_TRANSFER => Some("transfer files and manage your endpoints' files"),
            _ => None,
        })
        .collect()
}

/// The login page, with a fresh CSRF token in a cookie and a hidden field.
fn login_page(
    status: StatusCode,
    carry: &[(String, String)],
    user: &str,
    error: Option<&str>,
) -> Response {
    let csrf = match random_token(32) {
        Ok(t) => t,
        Err(e) => return internal(format!("no randomness: {e}")),
    };
    let mut response = page(status, pages::login(&csrf, user, carry, error));
    set_cookie(
        &mut response,
        &format!(
            "{LOGIN_CSRF_COOKIE}={csrf}; Secure; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600"
        ),
    );
    response
}

fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Params, Response> {
    let Query(pairs) =
        query.map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad request", &e.body_text()))?;
    Params::new(pairs).map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad request", &e))
}

fn form_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Params, Response> {
    let Form(pairs) =
        form.map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad request", &e.body_text()))?;
    Params::new(pairs).map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad request", &e))
}

fn flatten(result: Result<Response, Response>) -> Response {
    result.unwrap_or_else(|e| e)
}

// --- pages ---

async fn landing(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    flatten((|| {
        let current = session(&hub, &headers)?;
        let fingerprint = ferry_proto::setup_key::format_fingerprint(&hub.tls_ca_sha256);
        Ok(page(
            StatusCode::OK,
            pages::landing(
                current.as_ref().map(|(_, s)| s.user_name.as_str()),
                current.as_ref().map(|(_, s)| s.csrf.as_str()),
                &fingerprint,
            ),
        ))
    })())
}

async fn login_form(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    match session(&hub, &headers) {
        Ok(Some(_)) => see_other("/"),
        Ok(None) => login_page(StatusCode::OK, &[], "", None),
        Err(response) => response,
    }
}

/// Argon2 runs for unknown accounts too, against this, so the time taken
/// does not tell which accounts exist.
fn dummy_password_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        crate::secrets::hash_password("no account has this password").unwrap_or_default()
    })
}

async fn login(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form_params(form) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let carry: Vec<(String, String)> = CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (name.to_string(), v.to_string())))
        .collect();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE);
    if !expected.is_some_and(|expected| csrf_matches(params.get("csrf"), expected)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-in form expired",
            "This sign-in form expired or did not come from this hub. Go back, reload the page and sign in again.",
        );
    }
    let user = params.get("username").unwrap_or_default();
    let Some(password) = params.get("password").filter(|_| !user.is_empty()) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            &carry,
            user,
            Some("Enter your user name and password."),
        );
    };
    let ip = client_ip(peer);
    let now = grants::now();
    if let Some(wait) = hub.logins.blocked_for(user, ip, now) {
        let minutes = (wait + 59) / 60;
        tracing::warn!(user = %truncate(user), ?ip, "login refused: too many failed logins");
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &carry,
            user,
            Some(&format!(
                "too many failed logins; try again in {minutes} minute{}",
                if minutes == 1 { "" } else { "s" }
            )),
        );
    }
    let account = match hub.store.user_by_name(user) {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let stored = account.as_ref().map_or_else(
        || dummy_password_hash().to_string(),
        |a| a.password_hash.clone(),
    );
    let password = password.to_string();
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    let account = match account {
        Some(account) if verified => account,
        _ => {
            hub.logins.failed(user, ip, now);
            tracing::info!(user = %truncate(user), ?ip, "failed login");
            return login_page(
                StatusCode::UNAUTHORIZED,
                &carry,
                user,
                Some("wrong user name or password"),
            );
        }
    };
    hub.logins.succeeded(user);
    let (token, csrf) = match (random_token(32), random_token(32)) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => return internal(format!("no randomness: {e}")),
    };
    if let Some(old) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = hub.store.delete_session(&token_hash(old))
    {
        return internal(e);
    }
    if let Err(e) = hub
        .store
        .put_session(&token_hash(&token), account.id, &csrf, now + SESSION_TTL)
    {
        return internal(e);
    }
    tracing::info!(user = %account.name, "signed in");
    // Back to the authorize request that sent the browser here, never to a
    // caller-chosen place.
    let next = if carry.is_empty() {
        "/".to_string()
    } else {
        let pairs: Vec<(&str, &str)> = carry
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        format!("/authorize?{}", encode_pairs(&pairs))
    };
    let mut response = see_other(&next);
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={token}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_TTL}"
        ),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_CSRF_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0"),
    );
    response
}

async fn logout(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    flatten((|| {
        let params = form_params(form)?;
        if let Some((hash, current)) = session(&hub, &headers)? {
            if !csrf_matches(params.get("csrf"), &current.csrf) {
                return Err(error_page(
                    StatusCode::FORBIDDEN,
                    "Sign-out refused",
                    "This sign-out form did not come from this hub.",
                ));
            }
            hub.store.delete_session(&hash).map_err(internal)?;
            tracing::info!(user = %current.user_name, "signed out");
        }
        let mut response = see_other("/");
        set_cookie(
            &mut response,
            &format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
        );
        Ok(response)
    })())
}

async fn authorize(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    flatten((|| {
        let params = query_params(query)?;
        let request = check_request(&hub, &params).map_err(Refusal::into_response)?;
        let Some((_, current)) = session(&hub, &headers)? else {
            return Ok(login_page(StatusCode::OK, &request.carry(), "", None));
        };
        let mut response = page(
            StatusCode::OK,
            pages::consent(
                request.client_name,
                &current.user_name,
                &wants(&request.scopes),
                &current.csrf,
                &request.carry(),
            ),
        );
        let csp = HeaderValue::try_from(request.consent_csp()).map_err(internal)?;
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
        Ok(response)
    })())
}

/// The consent form's answer.
async fn decide(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    flatten((|| {
        let params = form_params(form)?;
        let Some((_, current)) = session(&hub, &headers)? else {
            let carry: Vec<(String, String)> = CARRIED
                .iter()
                .filter_map(|name| params.get(name).map(|v| (name.to_string(), v.to_string())))
                .collect();
            return Ok(login_page(
                StatusCode::UNAUTHORIZED,
                &carry,
                "",
                Some("Your session ended; sign in again."),
            ));
        };
        if !csrf_matches(params.get("csrf"), &current.csrf) {
            tracing::warn!(user = %current.user_name, "consent with a missing or wrong CSRF token");
            return Err(error_page(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This approval did not come from this hub's consent page. Start again from the link in your terminal.",
            ));
        }
        let request = check_request(&hub, &params).map_err(Refusal::into_response)?;
        match params.get("decision") {
            Some("approve") => {}
            Some("deny") => {
                tracing::info!(user = %current.user_name, client = %request.client_id, "authorization denied");
                return Ok(request.redirect_back(&[
                    ("error", "access_denied"),
                    ("error_description", "the user denied the request"),
                ]));
            }
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "Choose Approve or Deny.",
                ));
            }
        }
        let code = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
        hub.store
            .put_auth_code(&AuthCodeRow {
                code_hash: token_hash(&code),
                client_id: request.client_id.clone(),
                user_id: current.user_id,
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.challenge.clone(),
                scope: request.scopes.join(" "),
                expires: grants::now() + CODE_TTL,
            })
            .map_err(internal)?;
        tracing::info!(user = %current.user_name, client = %request.client_id, scope = %request.scopes.join(" "), "authorization approved");
        Ok(request.redirect_back(&[("code", &code)]))
    })())
}

async fn code_page(query: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Response {
    flatten((|| {
        let params = query_params(query)?;
        let error =
            params
                .get("error")
                .map(|error| match (error, params.get("error_description")) {
                    ("access_denied", _) => {
                        "You denied the request, so no code was issued.".to_string()
                    }
                    (error, Some(description)) => format!("{error}: {description}"),
                    (error, None) => error.to_string(),
                });
        Ok(page(
            StatusCode::OK,
            pages::auth_code(params.get("code"), error.as_deref()),
        ))
    })())
}

// --- the token endpoint ---

/// An RFC 6749 §5.2 error.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(OAuthError {
            error: error.to_string(),
            error_description: description.into(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ferry-hub\""),
        );
    }
    response
}

fn invalid_request(description: impl Into<String>) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_grant(description: impl Into<String>) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn invalid_client(description: impl Into<String>) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "internal error at the token endpoint");
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the hub failed to handle the request; see its log",
    )
}

/// The client making a token or revocation request.
#[derive(Debug)]
enum Client {
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
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || invalid_client("the Authorization header is not valid HTTP Basic client authentication");
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
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
fn authenticate_client(
    hub: &Hub,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<Client>, Response> {
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
        (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str())),
        (None, Some(id)) => (id, form_secret),
        (None, None) if form_secret.is_some() => {
            return Err(invalid_request("client_secret without client_id"));
        }
        (None, None) => return Ok(None),
    };
    if id == CLI_CLIENT_ID {
        if secret.is_some_and(|s| !s.is_empty()) {
            return Err(invalid_client(format!(
                "{CLI_CLIENT_ID} is a public client and has no secret"
            )));
        }
        return Ok(Some(Client::Public(id.to_string())));
    }
    let row = hub
        .store
        .client(id)
        .map_err(server_error)?
        .ok_or_else(|| invalid_client("unknown client"))?;
    match (&row.secret_hash, secret) {
        (Some(stored), Some(secret))
            if constant_time_eq(token_hash(secret).as_bytes(), stored.as_bytes()) =>
        {
            Ok(Some(Client::Confidential(row)))
        }
        (Some(_), _) => Err(invalid_client("client authentication failed")),
        (None, Some(s)) if !s.is_empty() => {
            Err(invalid_client("this client is public and has no secret"))
        }
        (None, _) => Ok(Some(Client::Public(row.client_id))),
    }
}

/// `/token` answers are never cached (RFC 6749 §5.1), also its errors.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn token_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Params, Response> {
    let Form(pairs) = form.map_err(|e| {
        invalid_request(format!(
            "the body must be application/x-www-form-urlencoded: {}",
            e.body_text()
        ))
    })?;
    Params::new(pairs).map_err(invalid_request)
}

async fn token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    no_store(flatten((|| {
        let params = token_params(form)?;
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
    })()))
}

fn granted(response: ferry_proto::api::TokenResponse) -> Result<Response, Response> {
    Ok((StatusCode::OK, Json(response)).into_response())
}

fn authorization_code_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<Response, Response> {
    let client = client.ok_or_else(|| invalid_request("client_id is missing"))?;
    let code = params
        .get("code")
        .ok_or_else(|| invalid_request("code is missing"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| invalid_request("redirect_uri is missing"))?;
    // Every code carries a challenge, so every redemption needs a verifier.
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| invalid_request("code_verifier is missing (PKCE is required)"))?;
    if !is_verifier(verifier) {
        return Err(invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636)",
        ));
    }
    let code_hash = token_hash(code.trim());
    let row = match hub
        .store
        .take_auth_code(&code_hash, grants::now())
        .map_err(server_error)?
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
    if !pkce_s256_matches(verifier, &row.challenge) {
        return Err(invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let user = hub
        .store
        .user_by_id(row.user_id)
        .map_err(server_error)?
        .ok_or_else(|| invalid_grant("the account no longer exists"))?;
    let issued = grants::issue(
        &hub.store,
        user.id,
        &user.name,
        &row.client_id,
        &row.scope,
        &row.code_hash,
        ACCESS_TTL,
        true,
    )
    .map_err(|e| server_error(format!("{e:#}")))?;
    tracing::info!(user = %user.name, client = %row.client_id, scope = %row.scope, "tokens issued for an authorization code");
    granted(issued)
}

/// Scopes that must all be among `allowed`; `allowed` itself when none are asked for.
fn narrow_scope(requested: Option<&str>, allowed: &str) -> Result<String, Response> {
    let Some(requested) = requested else {
        return Ok(allowed.to_string());
    };
    let allowed: Vec<&str> = allowed.split_whitespace().collect();
    let mut scopes: Vec<&str> = Vec::new();
    for word in requested.split_whitespace() {
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
        return Ok(allowed.join(" "));
    }
    scopes.sort_unstable();
    Ok(scopes.join(" "))
}

fn refresh_grant(hub: &Hub, client: Option<Client>, params: &Params) -> Result<Response, Response> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is missing"))?;
    let hash = token_hash(presented);
    let now = grants::now();
    let Some(old) = hub
        .store
        .token(&hash, TokenKind::Refresh, now)
        .map_err(server_error)?
    else {
        // A rotated-away token coming back means two parties hold it: end
        // the whole grant (RFC 6749 §10.4, OAuth 2.0 Security BCP §4.14).
        if let Some(grant) = hub.store.token_was_revoked(&hash).map_err(server_error)? {
            hub.store.revoke_grant(&grant).map_err(server_error)?;
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
        // must authenticate on every grant.
        None => {
            let public = old.client_id == CLI_CLIENT_ID
                || hub
                    .store
                    .client(&old.client_id)
                    .map_err(server_error)?
                    .is_some_and(|c| c.secret_hash.is_none());
            if !public {
                return Err(invalid_client(
                    "this refresh token belongs to a confidential client; authenticate it",
                ));
            }
        }
    }
    let scope = narrow_scope(params.get("scope"), &old.scope)?;
    if !hub.store.revoke_live_token(&hash).map_err(server_error)? {
        hub.store
            .revoke_grant(&old.grant_id)
            .map_err(server_error)?;
        tracing::warn!(user = %old.user_name, "a refresh token was used twice at once; its grant is revoked");
        return Err(invalid_grant(
            "the refresh token was already used; this login is revoked, log in again",
        ));
    }
    let issued = grants::issue(
        &hub.store,
        old.user_id,
        &old.user_name,
        &old.client_id,
        &scope,
        &old.grant_id,
        ACCESS_TTL,
        true,
    )
    .map_err(|e| server_error(format!("{e:#}")))?;
    granted(issued)
}

fn client_credentials_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<Response, Response> {
    let row = match client {
        Some(Client::Confidential(row)) => row,
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
        .map_err(server_error)?
        .ok_or_else(|| invalid_client("the account this client acts as no longer exists"))?;
    let grant_id = format!("client:{}", uuid::Uuid::new_v4());
    let issued = grants::issue(
        &hub.store,
        user.id,
        &user.name,
        &row.client_id,
        &scope,
        &grant_id,
        ACCESS_TTL,
        false,
    )
    .map_err(|e| server_error(format!("{e:#}")))?;
    tracing::info!(client = %row.client_id, user = %user.name, "client_credentials token issued");
    granted(issued)
}

/// RFC 7009. Holding a token is enough to revoke it; a client that does
/// authenticate may revoke only its own tokens.
async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    no_store(flatten((|| {
        let params = token_params(form)?;
        let client = authenticate_client(&hub, &headers, &params)?;
        let presented = params
            .get("token")
            .ok_or_else(|| invalid_request("token is missing"))?;
        let hash = token_hash(presented);
        let now = grants::now();
        let found = match hub
            .store
            .token(&hash, TokenKind::Refresh, now)
            .map_err(server_error)?
        {
            Some(row) => Some(row),
            None => hub
                .store
                .token(&hash, TokenKind::Access, now)
                .map_err(server_error)?,
        };
        if let Some(row) = found {
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
                TokenKind::Refresh => hub
                    .store
                    .revoke_grant(&row.grant_id)
                    .map_err(server_error)?,
                TokenKind::Access => hub.store.revoke_token(&hash).map_err(server_error)?,
            }
            tracing::info!(user = %row.user_name, client = %row.client_id, "token revoked");
        }
        Ok(StatusCode::OK.into_response())
    })()))
}

#[cfg(test)]
mod tests {}
