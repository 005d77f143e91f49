//! The authorization endpoint: checking an `/authorize` request (client,
//! redirect URI, PKCE, scopes), the consent page and its answer, which
//! issues the code, and the copy-the-code page.

use super::login::login_page;
use super::params::{
    Params, carried, form_params, is_base64_of_32_bytes, is_s256_challenge, query_params, truncate,
    with_query,
};
use super::{PageError, internal, page, see_other, shown};
use crate::grants;
use crate::oidc_provider::{MAX_NONCE, SCOPE_EMAIL, SCOPE_OPENID, SCOPE_PROFILE};
use crate::page_auth::{Anyone, MaybeSignedIn};
use crate::pages;
use crate::secrets::{random_token, token_hash};
use crate::server::Hub;
use crate::session::same_origin;
use crate::store::{AuthCodeRow, ClientKind, ClientRow, OidcCodeRow};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_proto::api::{
    AUTH_CODE_PATH, CLI_CLIENT_ID, SCOPE_MY_ENDPOINTS, SCOPE_OFFLINE_ACCESS, SCOPE_SETUP,
    SCOPE_SHARED_WITH_ME, SCOPE_TRANSFER,
};
use std::sync::Arc;

/// Authorization codes are redeemed right after approval; 5 minutes covers
/// a user copying one from the browser into a terminal.
const CODE_TTL: i64 = 5 * 60;
/// What the built-in CLI client is called on the consent page.
const CLI_CLIENT_NAME: &str = "The ferry command line (ferry-cli)";

/// Every scope this hub grants, with what the consent page says it lets
/// an app do.
const SCOPES: &[(&str, &str)] = &[
    (SCOPE_OPENID, "know that you are you (sign you in)"),
    (SCOPE_PROFILE, "see your user name"),
    (SCOPE_EMAIL, "see your e-mail address"),
    (
        SCOPE_TRANSFER,
        "transfer files and work with files on your endpoints",
    ),
    (SCOPE_OFFLINE_ACCESS, "keep this access while you are away"),
    (SCOPE_MY_ENDPOINTS, "see your endpoints"),
    (SCOPE_SHARED_WITH_ME, "see the endpoints shared with you"),
    (SCOPE_SETUP, "register endpoints"),
];

/// A checked `/authorize` request.
#[derive(Debug)]
struct AuthRequest {
    client_id: String,
    client_name: String,
    /// A registered app (the built-in CLI is none).
    app: Option<ClientKind>,
    redirect_uri: String,
    /// `None` only for a portal, whose secret protects its codes.
    challenge: Option<String>,
    scopes: Vec<&'static str>,
    state: Option<String>,
    /// OpenID Connect: the client's value for its ID token to echo.
    nonce: Option<String>,
}

/// Why a request cannot be authorized: shown to the user when the redirect
/// target is not trusted (RFC 6749 §4.1.2.1), else sent back to it.
#[derive(Debug)]
pub(super) enum Refusal {
    Show(String),
    /// The store could not say whether the client exists: try again,
    /// as for any page the store cannot answer.
    Store(crate::store::StoreError),
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
            Refusal::Store(e) => PageError::from(e).into_response(),
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
    path == format!("{own_path}{AUTH_CODE_PATH}")
        && same_origin(
            &format!("https://{authority}"),
            &format!("https://{own_authority}"),
        )
}

/// Where the built-in CLI may be sent back to.
fn redirect_allowed(hub: &Hub, uri: &str) -> bool {
    // Header-safe and fragment-free (RFC 6749 §3.1.2) before anything else.
    if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains(['#', '"', '<', '>', '\\', '`']) {
        return false;
    }
    is_hub_code_page(hub, uri) || is_loopback_redirect(uri)
}

/// The requested scopes, known ones only; the built-in CLI's two when
/// none is asked for.
fn parse_scopes(scope: Option<&str>) -> Result<Vec<&'static str>, String> {
    let mut scopes = Vec::new();
    for word in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|w| !w.is_empty())
    {
        let known = SCOPES
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s == word)
            .ok_or_else(|| {
                format!(
                    "unknown scope {:?}; this hub knows {}",
                    truncate(word),
                    SCOPES
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
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

/// The client a browser flow is for: the built-in CLI, or a registered
/// native app or portal (service accounts and an admin's clients act as
/// an account of their own and have no users to ask).
fn browser_client(hub: &Hub, client_id: &str) -> Result<Option<ClientRow>, Refusal> {
    if client_id == CLI_CLIENT_ID {
        return Ok(None);
    }
    // Not the link's words: anyone can make a link to this page.
    let unknown = || Refusal::Show("The client this link names is not known to this hub.".into());
    let row = hub
        .store
        .client(client_id)
        .map_err(Refusal::Store)?
        .ok_or_else(unknown)?;
    match row.kind {
        ClientKind::Native | ClientKind::Portal => Ok(Some(row)),
        ClientKind::Admin | ClientKind::Service => Err(Refusal::Show(
            "This client signs in with its own secret (client_credentials), not through a browser."
                .into(),
        )),
    }
}

fn check_request(hub: &Hub, params: &Params) -> Result<AuthRequest, Refusal> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| Refusal::Show("The link names no client (client_id is missing).".into()))?;
    let app = browser_client(hub, client_id)?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Show("The link has no redirect_uri.".into()))?;
    match &app {
        // A portal's URIs are exactly those registered (RFC 6749 §3.1.2.3).
        Some(row) if row.kind == ClientKind::Portal => {
            if !row.redirect_uris.iter().any(|u| u == redirect_uri) {
                return Err(Refusal::Show(
                    "The redirect_uri is not one registered for this app.".into(),
                ));
            }
        }
        _ => {
            if !redirect_allowed(hub, redirect_uri) {
                return Err(Refusal::Show(
                    "The redirect_uri is not allowed for this app: it may lead to this hub's code page or to a loopback address only.".into(),
                ));
            }
        }
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
    let kind = app.as_ref().map(|row| row.kind);
    // A portal authenticates with its secret; PKCE is then its choice.
    let challenge = match params.get("code_challenge") {
        None if kind == Some(ClientKind::Portal) => None,
        None => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: code_challenge is missing",
            ));
        }
        Some(challenge) => {
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
            Some(challenge.to_string())
        }
    };
    if app.is_some() && params.get("scope").is_none() {
        return Err(refuse(
            "invalid_scope",
            "scope is missing: ask for the scopes the app needs, e.g. openid transfer",
        ));
    }
    let scopes = parse_scopes(params.get("scope")).map_err(|e| refuse("invalid_scope", &e))?;
    let nonce = params.get("nonce").map(str::to_string);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
        return Err(refuse(
            "invalid_request",
            &format!("nonce is longer than {MAX_NONCE} bytes"),
        ));
    }
    Ok(AuthRequest {
        client_id: client_id.to_string(),
        client_name: app
            .as_ref()
            .map_or_else(|| CLI_CLIENT_NAME.to_string(), |row| row.name.clone()),
        app: kind,
        redirect_uri: redirect_uri.to_string(),
        challenge,
        scopes,
        state,
        nonce,
    })
}

impl AuthRequest {
    /// The request again, as hidden form fields.
    fn carry(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("response_type".to_string(), "code".to_string()),
            ("client_id".to_string(), self.client_id.clone()),
            ("redirect_uri".to_string(), self.redirect_uri.clone()),
            ("scope".to_string(), self.scopes.join(" ")),
        ];
        if let Some(challenge) = &self.challenge {
            fields.push(("code_challenge".to_string(), challenge.clone()));
            fields.push(("code_challenge_method".to_string(), "S256".to_string()));
        }
        if let Some(state) = &self.state {
            fields.push(("state".to_string(), state.clone()));
        }
        if let Some(nonce) = &self.nonce {
            fields.push(("nonce".to_string(), nonce.clone()));
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
    /// URI's origin, and what is there, in words.
    fn destination(&self) -> (&str, &'static str) {
        let uri = self.redirect_uri.as_str();
        let start = uri.find("://").map_or(0, |i| i + 3);
        let end = uri[start..]
            .find(['/', '?'])
            .map_or(uri.len(), |i| start + i);
        let whose = if self.app == Some(ClientKind::Portal) {
            "the app's own site"
        } else if is_loopback_redirect(uri) {
            "a program on this computer"
        } else {
            "a page that shows it for you to copy"
        };
        (&uri[..end], whose)
    }

    /// Whether `user` consented to all of this before (the built-in CLI
    /// always asks: it is how `ferry login` is confirmed).
    fn consented(&self, hub: &Hub, user_id: i64) -> Result<bool, PageError> {
        if self.app.is_none() {
            return Ok(false);
        }
        let Some(given) = hub.store.consent(user_id, &self.client_id)? else {
            return Ok(false);
        };
        let given: Vec<&str> = given.split_whitespace().collect();
        Ok(self.scopes.iter().all(|s| given.contains(s)))
    }

    fn redirect_back(&self, pairs: &[(&str, &str)]) -> Response {
        let mut pairs = pairs.to_vec();
        if let Some(state) = &self.state {
            pairs.push(("state", state));
        }
        see_other(&with_query(&self.redirect_uri, &pairs))
    }
}

pub(super) fn scope_words(scope: &str) -> Vec<&'static str> {
    wants(&scope.split_whitespace().collect::<Vec<_>>())
}

fn wants(scopes: &[&str]) -> Vec<&'static str> {
    SCOPES
        .iter()
        .filter(|(s, _)| scopes.contains(s))
        .map(|(_, words)| *words)
        .collect()
}

pub(super) async fn authorize(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query_params(query)?;
    let request = check_request(&hub, &params)?;
    let Some(current) = current else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::OK,
            &request.carry(),
            "",
            None,
        ));
    };
    if request.consented(&hub, current.principal().user_id)? {
        return issue_code(&hub, &current, &request);
    }
    let (destination, whose) = request.destination();
    let mut response = page(
        StatusCode::OK,
        pages::consent(
            &request.client_name,
            current.user_name(),
            &wants(&request.scopes),
            destination,
            whose,
            current.csrf_token(),
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
pub(super) async fn decide(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let params = form_params(form)?;
    let Some(current) = current else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::UNAUTHORIZED,
            &carried(&params),
            "",
            Some("Your session ended; sign in again."),
        ));
    };
    if current.check_csrf(params.get("csrf")).is_err() {
        tracing::warn!(user = %current.user_name(), "consent with a missing or wrong CSRF token");
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
            tracing::info!(user = %current.user_name(), client = %request.client_id, "authorization denied");
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
    if request.app.is_some() {
        // Remembered with what was consented before, so asking for less
        // later does not take back the rest.
        let mut scopes: Vec<String> = hub
            .store
            .consent(current.principal().user_id, &request.client_id)?
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for s in &request.scopes {
            if !scopes.iter().any(|g| g == s) {
                scopes.push(s.to_string());
            }
        }
        scopes.sort_unstable();
        hub.store.put_consent(
            current.principal().user_id,
            &request.client_id,
            &scopes.join(" "),
            grants::now(),
        )?;
    }
    issue_code(&hub, &current, &request)
}

/// Issues the code of an approved request and sends the browser back with it.
fn issue_code(
    hub: &Hub,
    current: &crate::page_auth::SignedIn,
    request: &AuthRequest,
) -> Result<Response, PageError> {
    let code = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    let scope = request.scopes.join(" ");
    // The tokens of this code (their grant is the code's hash) prove what
    // the session had authenticated by now, and no more.
    let identities = hub.store.login_identities(current.session().login_id())?;
    for (identity, at) in &identities {
        hub.store
            .note_login_identity(&token_hash(&code), identity, *at)?;
    }
    let expires = grants::now() + CODE_TTL;
    // Before the code: a code that asked for `openid` never exists
    // without what its ID token needs.
    if request.scopes.contains(&SCOPE_OPENID) {
        // The session's latest authentication (each sign-in notes its
        // identity as it happens); a session always has one.
        let auth_time = identities
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or_else(grants::now);
        hub.store.put_oidc_code(&OidcCodeRow {
            code_hash: token_hash(&code),
            nonce: request.nonce.clone(),
            auth_time,
            expires,
        })?;
    }
    hub.store.put_auth_code(&AuthCodeRow {
        code_hash: token_hash(&code),
        client_id: request.client_id.clone(),
        user_id: current.principal().user_id,
        redirect_uri: request.redirect_uri.clone(),
        challenge: request.challenge.clone().unwrap_or_default(),
        scope: scope.clone(),
        expires,
    })?;
    tracing::info!(user = %current.user_name(), client = %request.client_id, %scope, "authorization approved");
    Ok(request.redirect_back(&[("code", &code)]))
}

/// Anyone can make a link to this page, so it shows only what the hub
/// itself would put there: a code in the form the hub issues, or one of its
/// own sentences, never text from the link.
pub(super) async fn code_page(
    _: Anyone,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            parse_scopes(Some("openid profile email openid")).unwrap(),
            [SCOPE_EMAIL, SCOPE_OPENID, SCOPE_PROFILE]
        );
        let unknown = parse_scopes(Some("openid address")).unwrap_err();
        assert!(unknown.contains("openid, profile, email"), "{unknown}");
    }
}
