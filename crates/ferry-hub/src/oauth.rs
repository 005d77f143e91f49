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
use crate::state::url_host_port;
use crate::store::{AuthCodeRow, ClientRow, CodeUse, SessionRow, TokenKind};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use ferry_proto::api::{
    AUTH_CODE_PATH, CLI_CLIENT_ID, OAuthError, SCOPE_SETUP, SCOPE_TRANSFER, TokenResponse,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Authorization codes are redeemed right after approval; 5 minutes covers
/// a user copying one from the browser into a terminal.
pub const CODE_TTL: i64 = 5 * 60;
/// A browser session lasts a working day.
pub const SESSION_TTL: i64 = 12 * 3600;
/// `__Host-`: browsers accept the cookie only from this origin over HTTPS,
/// with `Path=/` and no `Domain`, so no other service on a sibling host (or
/// plain HTTP on this one) can set or replace it.
pub const SESSION_COOKIE: &str = "__Host-ferry_session";
/// The sign-in form has no session yet: its CSRF token is a cookie the hub
/// made and tagged, and the form carries a second tag over that cookie
/// (see [`login_csrf_field`]).
const LOGIN_CSRF_COOKIE: &str = "__Host-ferry_login_csrf";
/// How long a sign-in form stays good; a form shown again within half of
/// it keeps the cookie the browser holds, so two open sign-in tabs work.
const LOGIN_FORM_TTL: i64 = 3600;
const LOGIN_COOKIE_PURPOSE: &str = "ferry-hub login csrf cookie v1";
const LOGIN_FIELD_PURPOSE: &str = "ferry-hub login csrf field v1";
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
    Shown {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("authorization request refused")]
    Refused(Refusal),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Shown {
                status,
                title,
                message,
            } => page(status, pages::error(title, &message)),
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
    PageError::Shown {
        status,
        title,
        message: message.into(),
    }
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

/// A new sign-in cookie: `ISSUED.NONCE.TAG`, tagged with the hub's key.
fn new_login_cookie(hub: &Hub, now: i64) -> Result<String, getrandom::Error> {
    let body = format!("{now}.{}", random_token(24)?);
    let tag = hub
        .login_csrf
        .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    Ok(format!("{body}.{tag}"))
}

/// How old a sign-in cookie is, if this hub made it (and not in the future).
fn login_cookie_age(hub: &Hub, cookie: &str, now: i64) -> Option<i64> {
    let (body, tag) = cookie.rsplit_once('.')?;
    let expected = hub
        .login_csrf
        .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    if !constant_time_eq(tag.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let issued: i64 = body.split_once('.')?.0.parse().ok()?;
    Some(now - issued).filter(|age| *age >= -60)
}

/// The form field that goes with a sign-in cookie. Only the hub can make
/// it, so a cookie and field chosen elsewhere never match.
fn login_csrf_field(hub: &Hub, cookie: &str) -> String {
    hub.login_csrf
        .tag_text(LOGIN_FIELD_PURPOSE, cookie.as_bytes())
}

/// Browsers say where a request comes from (Fetch Metadata): a form posted
/// from another site, or from a sibling on this site (another port or
/// subdomain, which could also have planted cookies), is refused whatever
/// tokens it carries. Clients that do not say are judged by their tokens.
fn posted_from_elsewhere(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| !matches!(site.as_bytes(), b"same-origin" | b"none"))
}

fn refused_from_elsewhere() -> PageError {
    shown(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was sent from another site. Open this hub's own page and try again.",
    )
}

/// The signed-in browser's session, if its cookie names a live one.
fn session(hub: &Hub, headers: &HeaderMap) -> Result<Option<(String, SessionRow)>, PageError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(value);
    Ok(hub
        .store
        .session(&hash, grants::now())
        .map_err(internal)?
        .map(|s| (hash, s)))
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

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Show(message) => page(
                StatusCode::BAD_REQUEST,
                pages::error("This sign-in link is not valid", &message),
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
            let port = &port_and_path[..end];
            if !port.bytes().all(|b| b.is_ascii_digit())
                || !port.parse::<u16>().is_ok_and(|p| p != 0)
            {
                return false;
            }
            &port_and_path[end..]
        }
        None => rest,
    };
    rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
}

/// `https://AUTHORITY/PATH` split at the first `/` after the authority.
fn split_https(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("https://")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// This hub's copy-the-code page. The CLI builds the URI from the hub URL
/// its user typed, so the host's case and an explicit default port do not
/// matter; everything else must be the configured URL's.
fn is_hub_code_page(hub: &Hub, uri: &str) -> bool {
    let (Some((authority, path)), Some((own_authority, own_path))) = (
        split_https(uri),
        split_https(hub.config.url.trim_end_matches('/')),
    ) else {
        return false;
    };
    if path != format!("{own_path}{AUTH_CODE_PATH}") {
        return false;
    }
    match (
        url_host_port(&format!("https://{authority}")),
        url_host_port(&format!("https://{own_authority}")),
    ) {
        (Ok((host, port)), Ok((own_host, own_port))) => {
            host.eq_ignore_ascii_case(&own_host) && port == own_port
        }
        _ => false,
    }
}

/// Where the built-in CLI may be sent back to.
fn redirect_allowed(hub: &Hub, uri: &str) -> bool {
    // Header-safe and fragment-free (RFC 6749 §3.1.2) before anything else.
    if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains(['#', '"', '<', '>', '\\', '`']) {
        return false;
    }
    is_hub_code_page(hub, uri) || is_loopback_redirect(uri)
}

/// The requested scopes, known ones only; both when none is asked for.
fn parse_scopes(scope: Option<&str>) -> Result<Vec<&'static str>, String> {
    let mut scopes = Vec::new();
    for word in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|w| !w.is_empty())
    {
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
        scopes = vec![SCOPE_SETUP, SCOPE_TRANSFER];
    }
    scopes.sort_unstable();
    Ok(scopes)
}

/// Unpadded URL-safe base64 of 32 bytes: 43 characters.
fn is_base64_of_32_bytes(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.2: BASE64URL(SHA-256) is exactly 43 unreserved characters.
fn is_s256_challenge(challenge: &str) -> bool {
    is_base64_of_32_bytes(challenge)
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
        // Not the link's words: anyone can make a link to this page.
        return Err(Refusal::Show(
            "The client this link names is not known to this hub.".into(),
        ));
    }
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Show("The link has no redirect_uri.".into()))?;
    if !redirect_allowed(hub, redirect_uri) {
        return Err(Refusal::Show(format!(
            "The redirect_uri is not allowed for {CLI_CLIENT_ID}: it may lead to this hub's code page or to a loopback address only."
        )));
    }
    let state = params.get("state").map(str::to_string);
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        to: redirect_uri.to_string(),
        error,
        description: description.to_string(),
        state: state.clone(),
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(refuse("invalid_request", "response_type is missing")),
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        refuse(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        )
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        ));
    }
    if !is_s256_challenge(challenge) {
        return Err(refuse(
            "invalid_request",
            "code_challenge is not an S256 challenge",
        ));
    }
    let scopes = parse_scopes(params.get("scope")).map_err(|e| refuse("invalid_scope", &e))?;
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

    /// Where the browser goes with the code once approved: the redirect
    /// URI's origin, and whether it is a program on the user's computer.
    fn destination(&self) -> (&str, bool) {
        let uri = self.redirect_uri.as_str();
        let start = uri.find("://").map_or(0, |i| i + 3);
        let end = uri[start..]
            .find(['/', '?'])
            .map_or(uri.len(), |i| start + i);
        (&uri[..end], is_loopback_redirect(uri))
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
            SCOPE_TRANSFER => Some("transfer files and work with files on your endpoints"),
            _ => None,
        })
        .collect()
}

/// The login page, with its CSRF cookie and the field that goes with it.
/// A recent cookie of the hub's that the browser already holds is kept, so
/// two open login tabs both work.
fn login_page(
    hub: &Hub,
    headers: &HeaderMap,
    status: StatusCode,
    carry: &[(String, String)],
    user: &str,
    error: Option<&str>,
) -> Response {
    let now = grants::now();
    let held = cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|c| login_cookie_age(hub, c, now).is_some_and(|age| age < LOGIN_FORM_TTL / 2));
    let login_cookie = match held
        .map(str::to_string)
        .map_or_else(|| new_login_cookie(hub, now), Ok)
    {
        Ok(c) => c,
        Err(e) => return internal(format!("no randomness: {e}")).into_response(),
    };
    let field = login_csrf_field(hub, &login_cookie);
    let mut response = page(status, pages::login(&field, user, carry, error));
    set_cookie(
        &mut response,
        &format!(
            "{LOGIN_CSRF_COOKIE}={login_cookie}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={LOGIN_FORM_TTL}"
        ),
    );
    response
}

/// The authorize parameters among `params`, to take through a login.
fn carried(params: &Params) -> Vec<(String, String)> {
    CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (name.to_string(), v.to_string())))
        .collect()
}

fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Params, PageError> {
    let Query(pairs) =
        query.map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e.body_text()))?;
    Params::new(pairs).map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e))
}

fn form_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Params, PageError> {
    let Form(pairs) =
        form.map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e.body_text()))?;
    Params::new(pairs).map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e))
}

// --- pages ---

async fn landing(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Result<Response, PageError> {
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
}

async fn login_form(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(match session(&hub, &headers)? {
        Some(_) => see_other("/"),
        None => login_page(&hub, &headers, StatusCode::OK, &[], "", None),
    })
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
) -> Result<Response, PageError> {
    if posted_from_elsewhere(&headers) {
        return Err(refused_from_elsewhere());
    }
    let params = form_params(form)?;
    let carry = carried(&params);
    let now = grants::now();
    let issued = cookie(&headers, LOGIN_CSRF_COOKIE)
        .filter(|c| login_cookie_age(&hub, c, now).is_some_and(|age| age < LOGIN_FORM_TTL));
    if !issued.is_some_and(|c| csrf_matches(params.get("csrf"), &login_csrf_field(&hub, c))) {
        return Err(shown(
            StatusCode::FORBIDDEN,
            "Sign-in form expired",
            "This sign-in form expired or did not come from this hub. Go back, reload the page and sign in again.",
        ));
    }
    let user = params.get("username").unwrap_or_default();
    let Some(password) = params.get("password").filter(|_| !user.is_empty()) else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::BAD_REQUEST,
            &carry,
            user,
            Some("Enter your user name and password."),
        ));
    };
    let ip = client_ip(peer);
    // Counted before the password is checked, so guesses sent at once
    // cannot all pass before any is counted.
    let attempt = match hub.logins.begin(user, ip, now) {
        Ok(attempt) => attempt,
        Err(wait) => {
            let minutes = (wait + 59) / 60;
            tracing::warn!(user = %truncate(user), ?ip, "login refused: too many failed logins");
            let plural = if minutes == 1 { "" } else { "s" };
            return Ok(login_page(
                &hub,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &carry,
                user,
                Some(&format!(
                    "too many failed logins; try again in {minutes} minute{plural}"
                )),
            ));
        }
    };
    let Some(place) = hub.password_checks.admit() else {
        attempt.unchecked();
        tracing::warn!(user = %truncate(user), ?ip, "login refused: too many password checks waiting");
        let mut busy = login_page(
            &hub,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            &carry,
            user,
            Some("The hub is busy with other sign-ins; try again in a moment."),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(busy);
    };
    let account = hub.store.user_by_name(user).map_err(internal)?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let password = password.to_string();
    let Some(turn) = place.turn().await else {
        attempt.unchecked();
        return Err(internal("the password checks were closed"));
    };
    // Argon2 takes tens of milliseconds of CPU and about 19 MiB: off the
    // async workers (the dummy hash too, made on first use), and holding
    // its turn until it ends even if the client has gone.
    let verified = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        verify_password(
            &password,
            match &stored {
                Some(hash) => hash,
                None => dummy_password_hash(),
            },
        )
    })
    .await
    .unwrap_or(false);
    let account = match account {
        Some(account) if verified => account,
        _ => {
            attempt.failed();
            tracing::info!(user = %truncate(user), ?ip, "failed login");
            return Ok(login_page(
                &hub,
                &headers,
                StatusCode::UNAUTHORIZED,
                &carry,
                user,
                Some("wrong user name or password"),
            ));
        }
    };
    attempt.succeeded();
    let token = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    let csrf = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        hub.store
            .delete_session(&token_hash(old))
            .map_err(internal)?;
    }
    hub.store
        .put_session(&token_hash(&token), account.id, &csrf, now + SESSION_TTL)
        .map_err(internal)?;
    tracing::info!(user = %account.name, "signed in");
    // Back to the authorize request that sent the browser here, never to a
    // place the form names.
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
        &format!("{LOGIN_CSRF_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}

async fn logout(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    if posted_from_elsewhere(&headers) {
        return Err(refused_from_elsewhere());
    }
    let params = form_params(form)?;
    if let Some((hash, current)) = session(&hub, &headers)? {
        if !csrf_matches(params.get("csrf"), &current.csrf) {
            return Err(shown(
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
}

async fn authorize(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query_params(query)?;
    let request = check_request(&hub, &params)?;
    let Some((_, current)) = session(&hub, &headers)? else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::OK,
            &request.carry(),
            "",
            None,
        ));
    };
    let (destination, local_program) = request.destination();
    let mut response = page(
        StatusCode::OK,
        pages::consent(
            request.client_name,
            &current.user_name,
            &wants(&request.scopes),
            destination,
            local_program,
            &current.csrf,
            &request.carry(),
        ),
    );
    let csp = HeaderValue::try_from(request.consent_csp()).map_err(internal)?;
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, csp);
    Ok(response)
}

/// The consent form's answer.
async fn decide(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    if posted_from_elsewhere(&headers) {
        return Err(refused_from_elsewhere());
    }
    let params = form_params(form)?;
    let Some((_, current)) = session(&hub, &headers)? else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::UNAUTHORIZED,
            &carried(&params),
            "",
            Some("Your session ended; sign in again."),
        ));
    };
    if !csrf_matches(params.get("csrf"), &current.csrf) {
        tracing::warn!(user = %current.user_name, "consent with a missing or wrong CSRF token");
        return Err(shown(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This approval did not come from this hub's consent page. Start again from the link in your terminal.",
        ));
    }
    let request = check_request(&hub, &params)?;
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
            return Err(shown(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "Choose Approve or Deny.",
            ));
        }
    }
    let code = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    let scope = request.scopes.join(" ");
    hub.store
        .put_auth_code(&AuthCodeRow {
            code_hash: token_hash(&code),
            client_id: request.client_id.clone(),
            user_id: current.user_id,
            redirect_uri: request.redirect_uri.clone(),
            challenge: request.challenge.clone(),
            scope: scope.clone(),
            expires: grants::now() + CODE_TTL,
        })
        .map_err(internal)?;
    tracing::info!(user = %current.user_name, client = %request.client_id, %scope, "authorization approved");
    Ok(request.redirect_back(&[("code", &code)]))
}

/// Anyone can make a link to this page, so it shows only what the hub
/// itself would put there: a code in the form the hub issues, or one of its
/// own sentences, never text from the link.
async fn code_page(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query_params(query).map_err(|_| {
        shown(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "This is not a link the hub made.",
        )
    })?;
    let error = params.get("error").map(|error| match error {
        "access_denied" => "You denied the request, so no code was issued.",
        _ => "The hub could not issue a code for this sign-in.",
    });
    // Codes are random_token(32).
    let code = params
        .get("code")
        .filter(|code| is_base64_of_32_bytes(code));
    Ok(page(StatusCode::OK, pages::auth_code(code, error)))
}

// --- the token endpoint ---

/// An RFC 6749 §5.2 error.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
struct OAuthFailure {
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

fn oauth_error(
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

fn invalid_request(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_grant(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn invalid_client(description: impl Into<String>) -> OAuthFailure {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

fn server_error(e: impl std::fmt::Display) -> OAuthFailure {
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
fn authenticate_client(
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
        .map_err(server_error)?
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
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn token_params(
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

async fn token(
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
    // Every code carries a challenge, so every redemption needs a verifier.
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| invalid_request("code_verifier is missing (PKCE is required)"))?;
    if !is_verifier(verifier) {
        return Err(invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636)",
        ));
    }
    let row = match hub
        .store
        .take_auth_code(&token_hash(code.trim()), grants::now())
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
    // The code hash is the grant id, so a replayed code finds these tokens.
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
    Ok(issued)
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
        // authenticates on every grant.
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
    grants::issue(
        &hub.store,
        old.user_id,
        &old.user_name,
        &old.client_id,
        &scope,
        &old.grant_id,
        ACCESS_TTL,
        true,
    )
    .map_err(|e| server_error(format!("{e:#}")))
}

fn client_credentials_grant(
    hub: &Hub,
    client: Option<Client>,
    params: &Params,
) -> Result<TokenResponse, OAuthFailure> {
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
    Ok(issued)
}

/// RFC 7009. Holding a token is enough to revoke it; a client that does
/// authenticate may revoke only its own tokens.
async fn revoke(
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
            .map_err(server_error)?
        {
            Some(row) => Some(row),
            None => hub
                .store
                .token(&hash, TokenKind::Access, now)
                .map_err(server_error)?,
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
            TokenKind::Refresh => hub
                .store
                .revoke_grant(&row.grant_id)
                .map_err(server_error)?,
            TokenKind::Access => hub.store.revoke_token(&hash).map_err(server_error)?,
        }
        tracing::info!(user = %row.user_name, client = %row.client_id, "token revoked");
        Ok(())
    });
    no_store(match revoked {
        Ok(()) => StatusCode::OK.into_response(),
        Err(failure) => failure.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientRow;
    use axum::body::Body;
    use axum::http::Request;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http_body_util::BodyExt;
    use sha2::Digest;
    use tower::ServiceExt;

    const PASSWORD: &str = "correct horse battery";
    const CODE_PAGE: &str = "https://hub.test:8443/auth/code";

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Reply {
        fn location(&self) -> &str {
            self.headers
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap())
                .unwrap_or_default()
        }
        fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }
        fn set_cookies(&self) -> Vec<&str> {
            self.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        }
    }

    /// A cookie-keeping browser driving the router.
    struct Browser {
        hub: Arc<Hub>,
        cookies: Vec<(String, String)>,
        ip: Option<SocketAddr>,
    }

    impl Browser {
        fn new(hub: &Arc<Hub>) -> Self {
            Self {
                hub: hub.clone(),
                cookies: Vec::new(),
                ip: None,
            }
        }

        async fn send(&mut self, mut request: Request<Body>) -> Reply {
            if !self.cookies.is_empty() {
                let jar: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                request
                    .headers_mut()
                    .insert(header::COOKIE, jar.join("; ").parse().unwrap());
            }
            if let Some(ip) = self.ip {
                request.extensions_mut().insert(ConnectInfo(ip));
            }
            let reply = send(&self.hub, request).await;
            for set in reply.set_cookies() {
                let (pair, attributes) = set.split_once(';').unwrap();
                assert!(
                    attributes.contains("Secure") && attributes.contains("HttpOnly"),
                    "{set}"
                );
                let (name, value) = pair.split_once('=').unwrap();
                self.cookies.retain(|(n, _)| n != name);
                if !attributes.contains("Max-Age=0") {
                    self.cookies.push((name.to_string(), value.to_string()));
                }
            }
            reply
        }

        async fn get(&mut self, uri: &str) -> Reply {
            self.send(Request::get(uri).body(Body::empty()).unwrap())
                .await
        }

        async fn post(&mut self, uri: &str, form: &[(String, String)]) -> Reply {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            self.send(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(encode_pairs(&pairs)))
                    .unwrap(),
            )
            .await
        }

        fn cookie(&self, name: &str) -> Option<&str> {
            self.cookies
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    async fn send(hub: &Arc<Hub>, request: Request<Body>) -> Reply {
        let response = crate::web::router(hub.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    fn unescape(text: &str) -> String {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    /// The hidden inputs of a page, as a browser would submit them.
    fn hidden(html: &str) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for piece in html.split("<input type=\"hidden\" name=\"").skip(1) {
            let (name, rest) = piece.split_once("\" value=\"").unwrap();
            let value = rest.split_once('"').unwrap().0;
            fields.push((unescape(name), unescape(value)));
        }
        fields
    }

    fn with(mut fields: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        for (k, v) in extra {
            fields.retain(|(n, _)| n != k);
            fields.push((k.to_string(), v.to_string()));
        }
        fields
    }

    fn query_of(url: &str) -> Vec<(String, String)> {
        url.split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        (form_decode(k).unwrap(), form_decode(v).unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn pkce() -> (String, String) {
        let verifier = random_token(32).unwrap();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        (verifier, challenge)
    }

    fn authorize_uri(redirect_uri: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", CLI_CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "st4te"),
            ("scope", "endpoint:setup transfer"),
        ];
        for (k, v) in extra {
            pairs.retain(|(n, _)| n != k);
            if !v.is_empty() {
                pairs.push((k, v));
            }
        }
        format!("/authorize?{}", encode_pairs(&pairs))
    }

    fn hub_with_alice() -> Arc<Hub> {
        let hub = crate::web::for_tests();
        hub.store
            .add_user(
                "alice",
                &crate::secrets::hash_password(PASSWORD).unwrap(),
                0,
            )
            .unwrap();
        hub
    }

    /// Signs in through the login page the authorize request shows.
    async fn sign_in(browser: &mut Browser, authorize: &str) -> Reply {
        let login = browser.get(authorize).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        assert!(login.body.contains("name=\"password\""), "{}", login.body);
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        let reply = browser.post("/login", &form).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        reply
    }

    /// The browser part of the flow: sign in, approve, follow the redirect.
    async fn approved_code(
        hub: &Arc<Hub>,
        redirect_uri: &str,
        challenge: &str,
    ) -> (Browser, String) {
        let mut browser = Browser::new(hub);
        let authorize = authorize_uri(redirect_uri, challenge, &[]);
        let signed_in = sign_in(&mut browser, &authorize).await;
        let consent = browser.get(signed_in.location()).await;
        assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
        let approved = browser
            .post(
                "/authorize",
                &with(hidden(&consent.body), &[("decision", "approve")]),
            )
            .await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
        assert!(
            approved.location().starts_with(&format!("{redirect_uri}?")),
            "{}",
            approved.location()
        );
        let back = query_of(approved.location());
        assert_eq!(param(&back, "state"), Some("st4te"));
        let code = param(&back, "code").unwrap().to_string();
        (browser, code)
    }

    async fn post_token(
        hub: &Arc<Hub>,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Reply {
        let mut request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(id),
                encode(secret)
            ));
            request = request.header(header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        send(hub, request.body(Body::from(encode_pairs(form))).unwrap()).await
    }

    async fn redeem(hub: &Arc<Hub>, code: &str, verifier: &str) -> Reply {
        post_token(
            hub,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CODE_PAGE),
                ("client_id", CLI_CLIENT_ID),
                ("code_verifier", verifier),
            ],
            None,
        )
        .await
    }

    fn live(hub: &Hub, access: &str) -> bool {
        grants::authenticate(&hub.store, access).unwrap().is_some()
    }

    #[tokio::test]
    async fn the_paste_flow_issues_tokens_once_and_a_replayed_code_revokes_them() {
        let hub = hub_with_alice();
        let (verifier, challenge) = pkce();
        let mut browser = Browser::new(&hub);
        let authorize = authorize_uri(CODE_PAGE, &challenge, &[]);

        let login = browser.get(&authorize).await;
        assert_eq!(login.status, StatusCode::OK);
        assert!(browser.cookie(LOGIN_CSRF_COOKIE).is_some());
        let carried = hidden(&login.body);
        assert_eq!(param(&carried, "code_challenge"), Some(challenge.as_str()));
        assert_eq!(param(&carried, "redirect_uri"), Some(CODE_PAGE));
        assert_eq!(param(&carried, "state"), Some("st4te"));

        let signed_in = browser
            .post(
                "/login",
                &with(carried, &[("username", "alice"), ("password", PASSWORD)]),
            )
            .await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.body
        );
        assert!(
            signed_in.location().starts_with("/authorize?"),
            "{}",
            signed_in.location()
        );
        let session_cookie = signed_in
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("__Host-ferry_session="))
            .unwrap()
            .to_string();
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(session_cookie.contains(attribute), "{session_cookie}");
        }
        let session_value = browser.cookie(SESSION_COOKIE).unwrap().to_string();
        assert_eq!(session_value.len(), 43, "32 random bytes");
        assert!(
            hub.store
                .session(&token_hash(&session_value), grants::now())
                .unwrap()
                .is_some(),
            "stored hashed"
        );
        assert!(
            hub.store
                .session(&session_value, grants::now())
                .unwrap()
                .is_none(),
            "never stored in clear"
        );

        let consent = browser.get(signed_in.location()).await;
        assert_eq!(consent.status, StatusCode::OK);
        assert!(
            consent.body.contains("ferry-cli") && consent.body.contains("wants to"),
            "{}",
            consent.body
        );
        assert!(
            consent.body.contains("register endpoints") && consent.body.contains("transfer files"),
            "{}",
            consent.body
        );
        assert!(consent.body.contains("alice"));

        let approved = browser
            .post(
                "/authorize",
                &with(hidden(&consent.body), &[("decision", "approve")]),
            )
            .await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER);
        assert!(
            approved
                .location()
                .starts_with(&format!("{CODE_PAGE}?code=")),
            "{}",
            approved.location()
        );
        let code = param(&query_of(approved.location()), "code")
            .unwrap()
            .to_string();

        let shown = browser
            .get(&format!(
                "{AUTH_CODE_PATH}?{}",
                approved.location().split_once('?').unwrap().1
            ))
            .await;
        assert_eq!(shown.status, StatusCode::OK);
        assert!(
            shown.body.contains(&format!(
                "<code class=\"code\" id=\"auth-code\">{code}</code>"
            )),
            "{}",
            shown.body
        );
        assert!(
            shown.body.contains("paste it into the terminal"),
            "{}",
            shown.body
        );

        let tokens = redeem(&hub, &code, &verifier).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
        assert_eq!(tokens.headers[header::CACHE_CONTROL], "no-store");
        let tokens: TokenResponse = serde_json::from_str(&tokens.body).unwrap();
        assert_eq!(tokens.token_type, "Bearer");
        assert_eq!(tokens.expires_in, ACCESS_TTL as u64);
        assert_eq!(tokens.scope, "endpoint:setup transfer");
        let principal = grants::authenticate(&hub.store, &tokens.access_token)
            .unwrap()
            .unwrap();
        assert_eq!(principal.user_name, "alice");
        assert_eq!(principal.client_id, CLI_CLIENT_ID);
        assert!(principal.has_scope(SCOPE_SETUP) && principal.has_scope(SCOPE_TRANSFER));

        let again = redeem(&hub, &code, &verifier).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.json()["error"], "invalid_grant");
        assert!(
            !live(&hub, &tokens.access_token),
            "a replayed code revokes what it issued"
        );
        let refresh = post_token(
            &hub,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens.refresh_token.as_deref().unwrap()),
            ],
            None,
        )
        .await;
        assert_eq!(
            refresh.json()["error"],
            "invalid_grant",
            "the refresh token went too"
        );
    }

    #[tokio::test]
    async fn a_wrong_verifier_or_redirect_uri_gets_invalid_grant_and_burns_the_code() {
        let hub = hub_with_alice();
        let (verifier, challenge) = pkce();
        let (_, code) = approved_code(&hub, CODE_PAGE, &challenge).await;
        let (other_verifier, _) = pkce();
        let wrong = redeem(&hub, &code, &other_verifier).await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
        assert_eq!(wrong.json()["error"], "invalid_grant");
        assert_eq!(
            redeem(&hub, &code, &verifier).await.json()["error"],
            "invalid_grant",
            "one attempt per code"
        );

        let (verifier, challenge) = pkce();
        let (_, code) = approved_code(&hub, CODE_PAGE, &challenge).await;
        let moved = post_token(
            &hub,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:5000/cb"),
                ("client_id", CLI_CLIENT_ID),
                ("code_verifier", &verifier),
            ],
            None,
        )
        .await;
        assert_eq!(moved.json()["error"], "invalid_grant");

        let (verifier, challenge) = pkce();
        let (_, code) = approved_code(&hub, CODE_PAGE, &challenge).await;
        let no_verifier = post_token(
            &hub,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CODE_PAGE),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await;
        assert_eq!(no_verifier.json()["error"], "invalid_request");
        assert_eq!(
            redeem(&hub, &code, &verifier).await.status,
            StatusCode::OK,
            "a malformed request does not burn the code"
        );
        assert_eq!(
            redeem(&hub, "made-up", &verifier).await.json()["error"],
            "invalid_grant"
        );
    }

    #[tokio::test]
    async fn an_expired_code_is_refused() {
        let hub = hub_with_alice();
        let (verifier, challenge) = pkce();
        let alice = hub.store.user_by_name("alice").unwrap().unwrap();
        hub.store
            .put_auth_code(&AuthCodeRow {
                code_hash: token_hash("old-code"),
                client_id: CLI_CLIENT_ID.into(),
                user_id: alice.id,
                redirect_uri: CODE_PAGE.into(),
                challenge,
                scope: SCOPE_TRANSFER.into(),
                expires: grants::now() - 1,
            })
            .unwrap();
        let reply = redeem(&hub, "old-code", &verifier).await;
        assert_eq!(reply.json()["error"], "invalid_grant");
        assert!(
            reply.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }

    #[tokio::test]
    async fn pkce_s256_is_required() {
        let hub = hub_with_alice();
        let (verifier, challenge) = pkce();
        let loopback = "http://127.0.0.1:43210/callback";
        for (extra, why) in [
            (
                vec![
                    ("code_challenge_method", "plain"),
                    ("code_challenge", verifier.as_str()),
                ],
                "plain",
            ),
            (vec![("code_challenge_method", "")], "no method"),
            (vec![("code_challenge", "")], "no challenge"),
            (vec![("code_challenge", "short")], "not a S256 challenge"),
        ] {
            let reply = Browser::new(&hub)
                .get(&authorize_uri(loopback, &challenge, &extra))
                .await;
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{why}");
            let back = query_of(reply.location());
            assert!(reply.location().starts_with(loopback), "{why}");
            assert_eq!(param(&back, "error"), Some("invalid_request"), "{why}");
            assert_eq!(param(&back, "state"), Some("st4te"), "{why}");
        }
        let unknown_scope = Browser::new(&hub)
            .get(&authorize_uri(
                loopback,
                &challenge,
                &[("scope", "transfer admin")],
            ))
            .await;
        assert_eq!(
            param(&query_of(unknown_scope.location()), "error"),
            Some("invalid_scope")
        );
        let token_type = Browser::new(&hub)
            .get(&authorize_uri(
                loopback,
                &challenge,
                &[("response_type", "token")],
            ))
            .await;
        assert_eq!(
            param(&query_of(token_type.location()), "error"),
            Some("unsupported_response_type")
        );
    }

    #[tokio::test]
    async fn bad_clients_and_redirect_uris_show_an_error_and_never_redirect() {
        let hub = hub_with_alice();
        let (_, challenge) = pkce();
        for (redirect, client) in [
            ("https://evil.example/cb", CLI_CLIENT_ID),
            ("https://hub.test:8443/auth/code/../../evil", CLI_CLIENT_ID),
            ("https://hub.test:8443/auth/codex", CLI_CLIENT_ID),
            ("https://hub.test:8443/auth/code?x=1", CLI_CLIENT_ID),
            ("https://hub.test/auth/code", CLI_CLIENT_ID),
            (
                "https://hub.test:8443@evil.example/auth/code",
                CLI_CLIENT_ID,
            ),
            (
                "https://evil.example/x/https://hub.test:8443/auth/code",
                CLI_CLIENT_ID,
            ),
            ("http://hub.test:8443/auth/code", CLI_CLIENT_ID),
            ("http://127.0.0.1.evil.example/cb", CLI_CLIENT_ID),
            ("http://127.0.0.1:80@evil.example/cb", CLI_CLIENT_ID),
            ("http://127.0.0.1:99999/cb", CLI_CLIENT_ID),
            ("http://127.0.0.1:0/cb", CLI_CLIENT_ID),
            ("http://127.0.0.1:+80/cb", CLI_CLIENT_ID),
            ("http://127.0.0.1:5000/cb#frag", CLI_CLIENT_ID),
            ("http://localhost:5000/cb", CLI_CLIENT_ID),
            ("https://127.0.0.1:5000/cb", CLI_CLIENT_ID),
            ("http://[::1]x/cb", CLI_CLIENT_ID),
            ("", CLI_CLIENT_ID),
            (CODE_PAGE, "svc-made-up"),
            (CODE_PAGE, "<script>"),
        ] {
            let mut browser = Browser::new(&hub);
            let mut extra = vec![("redirect_uri", redirect), ("client_id", client)];
            // Even an otherwise refusable request must not bounce to an untrusted place.
            extra.push(("code_challenge_method", "plain"));
            let reply = browser
                .get(&authorize_uri(CODE_PAGE, &challenge, &extra))
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{redirect} {client}");
            assert!(
                reply.headers.get(header::LOCATION).is_none(),
                "{redirect} {client}"
            );
            assert!(reply.body.contains("not valid"), "{}", reply.body);
            assert!(!reply.body.contains("<script>"), "{}", reply.body);
        }
        for allowed in [
            CODE_PAGE,
            "http://127.0.0.1:43210/cb",
            "http://127.0.0.1/",
            "http://[::1]:8080/x?y=1",
            "http://127.0.0.1:1",
            "https://HUB.test:8443/auth/code",
        ] {
            let reply = Browser::new(&hub)
                .get(&authorize_uri(allowed, &challenge, &[]))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{allowed}: {}", reply.body);
        }
    }

    #[tokio::test]
    async fn loopback_redirects_get_code_and_state_and_deny_gets_access_denied() {
        let hub = hub_with_alice();
        let (verifier, challenge) = pkce();
        let loopback = "http://[::1]:43210/done";
        let (mut browser, code) = approved_code(&hub, loopback, &challenge).await;
        let tokens = post_token(
            &hub,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", loopback),
                ("client_id", CLI_CLIENT_ID),
                ("code_verifier", &verifier),
            ],
            None,
        )
        .await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);

        let consent = browser
            .get(&authorize_uri(
                "http://127.0.0.1:5000/cb",
                &challenge,
                &[("scope", "transfer")],
            ))
            .await;
        assert!(
            consent.body.contains("transfer files") && !consent.body.contains("register endpoints"),
            "{}",
            consent.body
        );
        let csp = consent.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:*"),
            "{csp}"
        );
        let denied = browser
            .post(
                "/authorize",
                &with(hidden(&consent.body), &[("decision", "deny")]),
            )
            .await;
        assert_eq!(denied.status, StatusCode::SEE_OTHER);
        let back = query_of(denied.location());
        assert!(denied.location().starts_with("http://127.0.0.1:5000/cb?"));
        assert_eq!(param(&back, "error"), Some("access_denied"));
        assert_eq!(param(&back, "state"), Some("st4te"));
        assert_eq!(param(&back, "code"), None);

        let page = browser
            .get(&format!("{AUTH_CODE_PATH}?error=access_denied&state=x"))
            .await;
        assert!(
            page.body.contains("denied") && !page.body.contains("id=\"auth-code\""),
            "{}",
            page.body
        );
    }

    #[tokio::test]
    async fn a_missing_or_wrong_csrf_token_is_forbidden() {
        let hub = hub_with_alice();
        let (_, challenge) = pkce();
        let authorize = authorize_uri(CODE_PAGE, &challenge, &[]);

        // Login form without its cookie, with a wrong field, without the field.
        let mut browser = Browser::new(&hub);
        let login = browser.get(&authorize).await;
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        let mut cookieless = Browser::new(&hub);
        assert_eq!(
            cookieless.post("/login", &form).await.status,
            StatusCode::FORBIDDEN
        );
        let wrong = with(form.clone(), &[("csrf", &random_token(32).unwrap())]);
        assert_eq!(
            browser.post("/login", &wrong).await.status,
            StatusCode::FORBIDDEN
        );
        let missing: Vec<_> = form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
        assert_eq!(
            browser.post("/login", &missing).await.status,
            StatusCode::FORBIDDEN
        );
        assert!(browser.cookie(SESSION_COOKIE).is_none());

        // Consent without the session's token.
        let signed_in = browser.post("/login", &form).await;
        let consent = browser.get(signed_in.location()).await;
        let approve = with(hidden(&consent.body), &[("decision", "approve")]);
        for forged in [
            with(approve.clone(), &[("csrf", &random_token(32).unwrap())]),
            approve
                .iter()
                .filter(|(k, _)| k != "csrf")
                .cloned()
                .collect(),
        ] {
            let reply = browser.post("/authorize", &forged).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN);
            assert!(reply.headers.get(header::LOCATION).is_none());
        }
        // Another browser's session does not make the token valid.
        let mut other = Browser::new(&hub);
        sign_in(&mut other, &authorize).await;
        assert_eq!(
            other.post("/authorize", &approve).await.status,
            StatusCode::FORBIDDEN
        );

        // Logout too.
        let bad_logout = browser
            .post("/logout", &[("csrf".to_string(), "nope".to_string())])
            .await;
        assert_eq!(bad_logout.status, StatusCode::FORBIDDEN);
        assert_eq!(
            browser.post("/authorize", &approve).await.status,
            StatusCode::SEE_OTHER,
            "still signed in"
        );
    }

    #[tokio::test]
    async fn logout_ends_the_session() {
        let hub = hub_with_alice();
        let mut browser = Browser::new(&hub);
        let login = browser.get("/login").await;
        let signed_in = browser
            .post(
                "/login",
                &with(
                    hidden(&login.body),
                    &[("username", "alice"), ("password", PASSWORD)],
                ),
            )
            .await;
        assert_eq!(signed_in.location(), "/");
        let landing = browser.get("/").await;
        assert!(
            landing.body.contains("Signed in as <strong>alice</strong>"),
            "{}",
            landing.body
        );
        let session = token_hash(browser.cookie(SESSION_COOKIE).unwrap());
        let out = browser.post("/logout", &hidden(&landing.body)).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert!(
            out.set_cookies()
                .iter()
                .any(|c| c.starts_with("__Host-ferry_session=;") && c.contains("Max-Age=0"))
        );
        assert!(browser.cookie(SESSION_COOKIE).is_none());
        assert!(
            hub.store
                .session(&session, grants::now())
                .unwrap()
                .is_none()
        );
        assert!(browser.get("/").await.body.contains("Sign in"));
    }

    #[tokio::test]
    async fn failed_logins_are_rate_limited_without_revealing_accounts() {
        let hub = hub_with_alice();
        let mut browser = Browser::new(&hub);
        let login = browser.get("/login").await;
        let attempt = |user: &str, password: &str| {
            with(
                hidden(&login.body),
                &[("username", user), ("password", password)],
            )
        };

        let unknown = browser
            .post("/login", &attempt("mallory", "whatever1"))
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert!(unknown.body.contains("wrong user name or password"));
        for _ in 0..crate::web::MAX_FAILURES_PER_ACCOUNT {
            let reply = browser
                .post("/login", &attempt("alice", "guess-guess"))
                .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert!(
                reply.body.contains("wrong user name or password"),
                "same words as for an unknown account"
            );
        }
        let limited = browser.post("/login", &attempt("alice", PASSWORD)).await;
        assert_eq!(
            limited.status,
            StatusCode::TOO_MANY_REQUESTS,
            "even the right password waits"
        );
        assert!(
            limited
                .body
                .contains("too many failed logins; try again in 15 minutes"),
            "{}",
            limited.body
        );
        assert!(browser.cookie(SESSION_COOKIE).is_none());
        for _ in 1..crate::web::MAX_FAILURES_PER_ACCOUNT {
            browser
                .post("/login", &attempt("mallory", "whatever1"))
                .await;
        }
        let limited_unknown = browser
            .post("/login", &attempt("mallory", "whatever1"))
            .await;
        assert_eq!(
            limited_unknown.status,
            StatusCode::TOO_MANY_REQUESTS,
            "unknown accounts are limited alike"
        );

        // Per address: a spray over many names from one place.
        let hub = hub_with_alice();
        let mut sprayer = Browser::new(&hub);
        sprayer.ip = Some("198.51.100.9:40000".parse().unwrap());
        let login = sprayer.get("/login").await;
        for i in 0..crate::web::MAX_FAILURES_PER_ADDRESS {
            let form = with(
                hidden(&login.body),
                &[
                    ("username", &format!("user{i}")),
                    ("password", "spray-spray"),
                ],
            );
            assert_eq!(
                sprayer.post("/login", &form).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        assert_eq!(
            sprayer.post("/login", &form).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        let mut elsewhere = Browser::new(&hub);
        elsewhere.ip = Some("203.0.113.5:40000".parse().unwrap());
        let login = elsewhere.get("/login").await;
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        assert_eq!(
            elsewhere.post("/login", &form).await.status,
            StatusCode::SEE_OTHER
        );
    }

    #[tokio::test]
    async fn only_a_login_cookie_the_hub_made_and_its_own_field_sign_in() {
        let hub = hub_with_alice();
        let mut browser = Browser::new(&hub);
        let login = browser.get("/login").await;
        let issued = login
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with(LOGIN_CSRF_COOKIE))
            .unwrap()
            .to_string();
        for attribute in ["; Secure", "; HttpOnly", "; SameSite=Strict", "; Path=/;"] {
            assert!(issued.contains(attribute), "{issued}");
        }
        assert!(!issued.to_ascii_lowercase().contains("domain"), "{issued}");
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        let field = param(&form, "csrf").unwrap().to_string();
        let held = browser.cookie(LOGIN_CSRF_COOKIE).unwrap().to_string();
        assert_ne!(
            field, held,
            "the field is a tag over the cookie, not a copy"
        );

        let now = grants::now();
        let planted = random_token(32).unwrap();
        let stale = {
            let body = format!("{}.{}", now - LOGIN_FORM_TTL - 1, random_token(24).unwrap());
            let tag = hub
                .login_csrf
                .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
            format!("{body}.{tag}")
        };
        let other = new_login_cookie(&hub, now).unwrap();
        for (cookie, csrf, why) in [
            (
                planted.clone(),
                planted.clone(),
                "a cookie and field chosen elsewhere",
            ),
            (
                format!("{now}.{planted}.{planted}"),
                login_csrf_field(&hub, &format!("{now}.{planted}.{planted}")),
                "a cookie with a made-up tag",
            ),
            (
                held.clone(),
                login_csrf_field(&hub, &other),
                "another cookie's field",
            ),
            (
                stale.clone(),
                login_csrf_field(&hub, &stale),
                "an expired cookie",
            ),
        ] {
            let mut forger = Browser::new(&hub);
            forger.cookies.push((LOGIN_CSRF_COOKIE.to_string(), cookie));
            let reply = forger
                .post("/login", &with(form.clone(), &[("csrf", &csrf)]))
                .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{why}");
            assert!(forger.cookie(SESSION_COOKIE).is_none(), "{why}");
        }

        // The hub's own pair works, also when the browser says where the
        // form came from; not when it says another site or a sibling.
        for site in ["cross-site", "same-site"] {
            let mut request = Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", site);
            request = request.header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={held}"));
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let reply = send(
                &hub,
                request.body(Body::from(encode_pairs(&pairs))).unwrap(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{site}");
        }
        let reply = browser.post("/login", &form).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert!(browser.cookie(SESSION_COOKIE).is_some());
    }

    #[tokio::test]
    async fn sign_ins_beyond_the_password_check_bound_are_told_to_come_back() {
        let hub = hub_with_alice();
        let mut browser = Browser::new(&hub);
        let login = browser.get("/login").await;
        let form = with(
            hidden(&login.body),
            &[("username", "alice"), ("password", PASSWORD)],
        );
        // Every place taken, by checks running and waiting.
        let places: Vec<_> = std::iter::from_fn(|| hub.password_checks.admit())
            .take(1000)
            .collect();
        assert_eq!(
            places.len(),
            crate::state::default_password_checks()
                + crate::state::default_password_checks_queued()
        );
        for _ in 0..crate::web::MAX_FAILURES_PER_ACCOUNT + 1 {
            let busy = browser.post("/login", &form).await;
            assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(busy.headers.contains_key(header::RETRY_AFTER));
            assert!(busy.body.contains("busy"), "{}", busy.body);
        }
        drop(places);
        let reply = browser.post("/login", &form).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "attempts turned away unchecked did not count: {}",
            reply.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guesses_sent_at_once_are_counted_before_they_are_checked() {
        let hub = hub_with_alice();
        let mut browser = Browser::new(&hub);
        browser.ip = Some("198.51.100.9:40000".parse().unwrap());
        let login = browser.get("/login").await;
        let jar = format!(
            "{LOGIN_CSRF_COOKIE}={}",
            browser.cookie(LOGIN_CSRF_COOKIE).unwrap()
        );
        let attempt = |user: String, password: String| {
            let form = with(
                hidden(&login.body),
                &[("username", &user), ("password", &password)],
            );
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut request = Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &jar)
                .body(Body::from(encode_pairs(&pairs)))
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(browser.ip.unwrap()));
            let hub = hub.clone();
            tokio::spawn(async move { send(&hub, request).await.status })
        };
        let at_once = |attempts: Vec<(String, String)>| {
            let handles: Vec<_> = attempts.into_iter().map(|(u, p)| attempt(u, p)).collect();
            async move {
                let mut statuses = Vec::new();
                for h in handles {
                    statuses.push(h.await.unwrap());
                }
                statuses
            }
        };
        let count =
            |statuses: &[StatusCode], which| statuses.iter().filter(|s| **s == which).count();

        // Nine guesses and the right password at once: at most five are
        // checked, and the right one, if it got in, lifted nothing.
        let mut raced: Vec<(String, String)> = (0..9)
            .map(|i| ("alice".to_string(), format!("guess {i}")))
            .collect();
        raced.insert(3, ("alice".to_string(), PASSWORD.to_string()));
        let raced = at_once(raced).await;
        let limit = crate::web::MAX_FAILURES_PER_ACCOUNT as usize;
        let mut wrong = count(&raced, StatusCode::UNAUTHORIZED);
        assert!(wrong <= limit, "{raced:?}");
        for i in 0..limit {
            let later = at_once(vec![("alice".to_string(), format!("later {i}"))]).await;
            wrong += count(&later, StatusCode::UNAUTHORIZED);
        }
        assert!(
            wrong <= limit,
            "{wrong} wrong passwords checked after {raced:?}"
        );

        // A spray from the same address, all at once.
        let spray = at_once(
            (0..30)
                .map(|i| (format!("user{i}"), "spray spray".to_string()))
                .collect(),
        )
        .await;
        let checked = wrong + count(&spray, StatusCode::UNAUTHORIZED);
        assert!(
            checked <= crate::web::MAX_FAILURES_PER_ADDRESS as usize,
            "{checked} checked from one address: {spray:?}"
        );
        assert!(
            count(&spray, StatusCode::TOO_MANY_REQUESTS) >= 10,
            "{spray:?}"
        );
    }

    #[tokio::test]
    async fn the_consent_page_names_the_redirect_and_the_code_page_no_link_text() {
        let hub = hub_with_alice();
        let (_, challenge) = pkce();
        let mut browser = Browser::new(&hub);
        let authorize = authorize_uri("http://127.0.0.1:4711/cb", &challenge, &[]);
        let signed_in = sign_in(&mut browser, &authorize).await;
        let consent = browser.get(signed_in.location()).await;
        assert!(
            consent
                .body
                .contains("goes to <strong><code>http://127.0.0.1:4711</code></strong>"),
            "{}",
            consent.body
        );

        let lure = "call+support+at+555";
        for query in [
            format!("error=server_error&error_description={lure}"),
            format!("error={lure}"),
            format!("error=access_denied&error_description={lure}"),
            format!("code={lure}"),
            format!("code=x&code={lure}"),
        ] {
            let page = browser.get(&format!("{AUTH_CODE_PATH}?{query}")).await;
            assert!(!page.body.contains("support"), "{query}: {}", page.body);
        }
        let code = random_token(32).unwrap();
        let page = browser.get(&format!("{AUTH_CODE_PATH}?code={code}")).await;
        assert!(page.body.contains(&code), "{}", page.body);
        let unknown = browser
            .get("/authorize?client_id=call+support+at+555&redirect_uri=x")
            .await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert!(!unknown.body.contains("support"), "{}", unknown.body);
    }

    async fn fresh_tokens(hub: &Arc<Hub>) -> TokenResponse {
        let (verifier, challenge) = pkce();
        let (_, code) = approved_code(hub, CODE_PAGE, &challenge).await;
        let reply = redeem(hub, &code, &verifier).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    async fn refresh(hub: &Arc<Hub>, token: &str) -> Reply {
        post_token(
            hub,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_a_replay_revokes_the_grant() {
        let hub = hub_with_alice();
        let first = fresh_tokens(&hub).await;
        let first_refresh = first.refresh_token.clone().unwrap();
        let rotated = refresh(&hub, &first_refresh).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        assert_eq!(rotated.headers[header::CACHE_CONTROL], "no-store");
        let second: TokenResponse = serde_json::from_str(&rotated.body).unwrap();
        let second_refresh = second.refresh_token.clone().unwrap();
        assert_ne!(second_refresh, first_refresh);
        assert_eq!(second.scope, first.scope);
        assert!(live(&hub, &second.access_token));

        // Narrowing works, widening does not.
        let narrow = post_token(
            &hub,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &second_refresh),
                ("scope", "transfer admin"),
            ],
            None,
        )
        .await;
        assert_eq!(narrow.json()["error"], "invalid_scope");

        let replay = refresh(&hub, &first_refresh).await;
        assert_eq!(replay.status, StatusCode::BAD_REQUEST);
        assert_eq!(replay.json()["error"], "invalid_grant");
        assert!(
            !live(&hub, &second.access_token),
            "the replay revoked the whole grant"
        );
        assert!(!live(&hub, &first.access_token));
        assert_eq!(
            refresh(&hub, &second_refresh).await.json()["error"],
            "invalid_grant"
        );

        // Another login's grant is untouched, and a client cannot use a token of another.
        let other = fresh_tokens(&hub).await;
        assert!(live(&hub, &other.access_token));
        let stolen = post_token(
            &hub,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", other.refresh_token.as_deref().unwrap()),
                ("client_id", "svc-x"),
            ],
            None,
        )
        .await;
        assert_eq!(stolen.json()["error"], "invalid_client");
        assert_eq!(
            refresh(&hub, "never-issued").await.json()["error"],
            "invalid_grant"
        );
    }

    fn add_service_client(hub: &Hub, scopes: &str) -> (String, String) {
        let bob = hub.store.add_user("bob", "unused", 0).unwrap();
        let secret = random_token(32).unwrap();
        hub.store
            .add_client(
                &ClientRow {
                    client_id: "svc-registry".into(),
                    name: "image registry".into(),
                    secret_hash: Some(token_hash(&secret)),
                    user_id: bob,
                    scopes: scopes.into(),
                },
                0,
            )
            .unwrap();
        ("svc-registry".into(), secret)
    }

    #[tokio::test]
    async fn client_credentials_need_a_confidential_client_and_its_secret() {
        let hub = hub_with_alice();
        let (id, secret) = add_service_client(&hub, SCOPE_TRANSFER);

        let basic = post_token(
            &hub,
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await;
        assert_eq!(basic.status, StatusCode::OK, "{}", basic.body);
        assert_eq!(basic.headers[header::CACHE_CONTROL], "no-store");
        let tokens: TokenResponse = serde_json::from_str(&basic.body).unwrap();
        assert_eq!(tokens.refresh_token, None);
        assert_eq!(tokens.scope, SCOPE_TRANSFER);
        let principal = grants::authenticate(&hub.store, &tokens.access_token)
            .unwrap()
            .unwrap();
        assert_eq!(
            (principal.user_name.as_str(), principal.client_id.as_str()),
            ("bob", "svc-registry")
        );

        let in_form = post_token(
            &hub,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "transfer"),
            ],
            None,
        )
        .await;
        assert_eq!(in_form.status, StatusCode::OK, "{}", in_form.body);

        let wrong = post_token(
            &hub,
            &[("grant_type", "client_credentials")],
            Some((&id, "not-the-secret")),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.json()["error"], "invalid_client");
        assert!(wrong.headers.get(header::WWW_AUTHENTICATE).is_some());
        let no_secret = post_token(
            &hub,
            &[("grant_type", "client_credentials"), ("client_id", &id)],
            None,
        )
        .await;
        assert_eq!(no_secret.json()["error"], "invalid_client");
        let unknown = post_token(
            &hub,
            &[("grant_type", "client_credentials")],
            Some(("svc-nobody", &secret)),
        )
        .await;
        assert_eq!(unknown.json()["error"], "invalid_client");
        let wider = post_token(
            &hub,
            &[("grant_type", "client_credentials"), ("scope", SCOPE_SETUP)],
            Some((&id, &secret)),
        )
        .await;
        assert_eq!(wider.json()["error"], "invalid_scope");
        let both = post_token(
            &hub,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
            Some((&id, &secret)),
        )
        .await;
        assert_eq!(both.json()["error"], "invalid_request");
        let public = post_token(
            &hub,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await;
        assert_eq!(public.json()["error"], "unauthorized_client");
        let public_secret = post_token(
            &hub,
            &[("grant_type", "client_credentials")],
            Some((CLI_CLIENT_ID, "guess")),
        )
        .await;
        assert_eq!(public_secret.json()["error"], "invalid_client");
        let nobody = post_token(&hub, &[("grant_type", "client_credentials")], None).await;
        assert_eq!(nobody.json()["error"], "invalid_client");
    }

    #[tokio::test]
    async fn the_token_endpoint_rejects_malformed_requests() {
        let hub = hub_with_alice();
        assert_eq!(
            post_token(&hub, &[("grant_type", "password")], None)
                .await
                .json()["error"],
            "unsupported_grant_type"
        );
        assert_eq!(
            post_token(&hub, &[], None).await.json()["error"],
            "invalid_request"
        );
        let long = "x".repeat(MAX_PARAM + 1);
        assert_eq!(
            post_token(&hub, &[("grant_type", &long)], None)
                .await
                .json()["error"],
            "invalid_request"
        );
        let twice = send(
            &hub,
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(
                    "grant_type=refresh_token&refresh_token=a&refresh_token=b",
                ))
                .unwrap(),
        )
        .await;
        assert_eq!(twice.json()["error"], "invalid_request");
        let json = send(
            &hub,
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(json.status, StatusCode::BAD_REQUEST);
        assert_eq!(json.json()["error"], "invalid_request");
        let (_, challenge) = pkce();
        let duplicated = Browser::new(&hub)
            .get(&format!(
                "{}&state=again",
                authorize_uri(CODE_PAGE, &challenge, &[])
            ))
            .await;
        assert_eq!(duplicated.status, StatusCode::BAD_REQUEST);
        assert!(duplicated.headers.get(header::LOCATION).is_none());
    }

    async fn revoke_token(hub: &Arc<Hub>, form: &[(&str, &str)]) -> Reply {
        send(
            hub,
            Request::post("/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(encode_pairs(form)))
                .unwrap(),
        )
        .await
    }

    #[tokio::test]
    async fn revocation_ends_a_token_or_a_whole_login() {
        let hub = hub_with_alice();
        let tokens = fresh_tokens(&hub).await;
        let revoked = revoke_token(
            &hub,
            &[
                ("token", &tokens.access_token),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;
        assert_eq!(revoked.status, StatusCode::OK);
        assert!(!live(&hub, &tokens.access_token));
        let refreshed = refresh(&hub, tokens.refresh_token.as_deref().unwrap()).await;
        assert_eq!(
            refreshed.status,
            StatusCode::OK,
            "revoking an access token keeps the login"
        );
        let refreshed: TokenResponse = serde_json::from_str(&refreshed.body).unwrap();

        let by_refresh = revoke_token(
            &hub,
            &[("token", refreshed.refresh_token.as_deref().unwrap())],
        )
        .await;
        assert_eq!(by_refresh.status, StatusCode::OK);
        assert!(
            !live(&hub, &refreshed.access_token),
            "revoking the refresh token ends the grant"
        );
        assert_eq!(
            refresh(&hub, refreshed.refresh_token.as_deref().unwrap())
                .await
                .json()["error"],
            "invalid_grant"
        );

        assert_eq!(
            revoke_token(&hub, &[("token", "never-issued")])
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            revoke_token(&hub, &[]).await.json()["error"],
            "invalid_request"
        );

        let (id, secret) = add_service_client(&hub, SCOPE_TRANSFER);
        let other = fresh_tokens(&hub).await;
        let foreign = send(
            &hub,
            Request::post("/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(
                    header::AUTHORIZATION,
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
                    ),
                )
                .body(Body::from(encode_pairs(&[("token", &other.access_token)])))
                .unwrap(),
        )
        .await;
        assert_eq!(foreign.json()["error"], "unauthorized_client");
        assert!(live(&hub, &other.access_token));
    }

    #[test]
    fn loopback_redirects_follow_rfc_8252() {
        for ok in [
            "http://127.0.0.1:1/",
            "http://127.0.0.1:65535/a/b?c=d",
            "http://[::1]:9/",
            "http://127.0.0.1",
            "http://[::1]?x",
        ] {
            assert!(is_loopback_redirect(ok), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:65536/",
            "http://127.0.0.1:/",
            "http://127.0.0.10/",
            "http://127.0.0.1:1x/",
            "http://[::1]:1@evil/",
        ] {
            assert!(!is_loopback_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn scopes_default_to_both_and_unknown_ones_are_refused() {
        assert_eq!(parse_scopes(None).unwrap(), [SCOPE_SETUP, SCOPE_TRANSFER]);
        assert_eq!(
            parse_scopes(Some("transfer transfer")).unwrap(),
            [SCOPE_TRANSFER]
        );
        assert!(parse_scopes(Some("transfer root")).is_err());
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

    #[test]
    fn encoding_round_trips() {
        let text = "a b&c=d/é+%";
        assert_eq!(form_decode(&encode(text)).unwrap(), text);
        assert_eq!(form_decode("a+b%2B").unwrap(), "a b+");
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(
            with_query("http://127.0.0.1:1/cb?x=1", &[("code", "a b")]),
            "http://127.0.0.1:1/cb?x=1&code=a%20b"
        );
    }
}
