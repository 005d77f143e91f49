//! The authorization server's tests, driving the hub's router as a browser
//! and as OAuth clients would.

use super::params::{MAX_PARAM, encode, encode_pairs, form_decode};
use crate::grants::{self, ACCESS_TTL};
use crate::secrets::{random_token, token_hash};
use crate::server::Hub;
use crate::session::{
    LOGIN_COOKIE_PURPOSE, LOGIN_CSRF_COOKIE, LOGIN_FORM_TTL, SESSION_COOKIE, login_field,
};
use crate::store::AuthCodeRow;
use crate::store::ClientRow;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_proto::api::{AUTH_CODE_PATH, CLI_CLIENT_ID, SCOPE_SETUP, SCOPE_TRANSFER, TokenResponse};
use http_body_util::BodyExt;
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::Arc;
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
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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

/// The hidden fields of the page's form that posts to `action`, as a
/// browser sends them (a page may hold several forms).
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form posts to {action}: {html}"));
    let form = &html[start..];
    hidden(&form[..form.find("</form>").unwrap_or(form.len())])
}

/// A sign-in cookie of the hub's, made as the hub makes one.
fn new_login_cookie(hub: &Hub, now: i64) -> Result<String, getrandom::Error> {
    let body = format!("{now}.{}", random_token(24)?);
    let tag = hub
        .login_csrf
        .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    Ok(format!("{body}.{tag}"))
}

fn login_csrf_field(hub: &Hub, cookie: &str) -> String {
    login_field(&hub.login_csrf, cookie)
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
async fn approved_code(hub: &Arc<Hub>, redirect_uri: &str, challenge: &str) -> (Browser, String) {
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

async fn post_token(hub: &Arc<Hub>, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
    let mut request =
        Request::post("/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
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
    grants::authenticate(&*hub.store, &hub.identity_rules, access)
        .unwrap()
        .is_some()
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
    let principal = grants::authenticate(&*hub.store, &hub.identity_rules, &tokens.access_token)
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
    let out = browser
        .post("/logout", &form_fields(&landing.body, "/logout"))
        .await;
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
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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
        crate::state::default_password_checks() + crate::state::default_password_checks_queued()
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
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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
    let count = |statuses: &[StatusCode], which| statuses.iter().filter(|s| **s == which).count();

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
                kind: crate::store::ClientKind::Admin,
                owner_id: None,
                redirect_uris: vec![],
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
    let principal = grants::authenticate(&*hub.store, &hub.identity_rules, &tokens.access_token)
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

#[tokio::test]
async fn a_browser_without_fetch_metadata_is_judged_by_its_origin() {
    let hub = hub_with_alice();
    let mut browser = Browser::new(&hub);
    let login = browser.get("/login").await;
    let form = with(
        hidden(&login.body),
        &[("username", "alice"), ("password", PASSWORD)],
    );
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let post = |origin: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, origin)
            .body(Body::from(encode_pairs(&pairs)))
            .unwrap()
    };
    for elsewhere in ["https://evil.example", "https://hub.test:8444", "null"] {
        let reply = browser.send(post(elsewhere)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{elsewhere}");
        assert!(reply.body.contains("another site"), "{}", reply.body);
    }
    let reply = browser.send(post("https://HUB.test:8443")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(browser.cookie(SESSION_COOKIE).is_some());
}

/// A hub with Alice whose store fails the methods it is told to, as a
/// busy or locked database would.
fn failing_hub_with_alice() -> (Arc<Hub>, Arc<crate::store::failing::FailingStorage>) {
    let failing = Arc::new(crate::store::failing::FailingStorage::new(Arc::new(
        crate::store::SqliteStore::in_memory().unwrap(),
    )));
    let hub = Arc::new(crate::web::test_hub(failing.clone()));
    hub.store
        .add_user(
            "alice",
            &crate::secrets::hash_password(PASSWORD).unwrap(),
            0,
        )
        .unwrap();
    (hub, failing)
}

fn says_try_again(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(reply.body.contains("try again shortly"), "{}", reply.body);
    assert!(
        !reply.body.contains("wrong user name or password"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_sign_in_the_store_cannot_answer_is_a_503_and_counts_against_no_one() {
    let (hub, failing) = failing_hub_with_alice();
    let mut browser = Browser::new(&hub);
    browser.ip = Some("192.0.2.7:1234".parse().unwrap());
    let login = browser.get("/login").await;
    let attempt = |password: &str| {
        with(
            hidden(&login.body),
            &[("username", "alice"), ("password", password)],
        )
    };
    failing.fail("user_by_name");
    // More than the limiter allows: none of them was a guess checked.
    for password in std::iter::repeat_n(PASSWORD, 2).chain(std::iter::repeat_n(
        "guess-guess",
        2 * crate::web::MAX_FAILURES_PER_ACCOUNT as usize,
    )) {
        let reply = browser.post("/login", &attempt(password)).await;
        says_try_again(&reply);
        assert!(reply.headers.contains_key(header::RETRY_AFTER));
    }
    assert!(failing.failures("user_by_name") > crate::web::MAX_FAILURES_PER_ACCOUNT as usize);
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    // The password was right but the session cannot be kept: try again.
    failing.recover();
    failing.fail("put_session");
    says_try_again(&browser.post("/login", &attempt(PASSWORD)).await);
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    failing.recover();
    let signed_in = browser.post("/login", &attempt(PASSWORD)).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert!(browser.cookie(SESSION_COOKIE).is_some());
}

#[tokio::test]
async fn a_consent_the_store_cannot_answer_is_a_503_and_no_sign_in_page() {
    let (hub, failing) = failing_hub_with_alice();
    let (_, challenge) = pkce();
    let mut browser = Browser::new(&hub);
    let authorize = authorize_uri(CODE_PAGE, &challenge, &[]);
    let signed_in = sign_in(&mut browser, &authorize).await;
    let consent = browser.get(signed_in.location()).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let approve = with(hidden(&consent.body), &[("decision", "approve")]);

    failing.fail("session");
    let reply = browser.get(signed_in.location()).await;
    says_try_again(&reply);
    assert!(!reply.body.contains("name=\"password\""), "{}", reply.body);
    let reply = browser.post("/authorize", &approve).await;
    says_try_again(&reply);
    assert!(reply.headers.get(header::LOCATION).is_none());

    failing.recover();
    failing.fail("put_auth_code");
    let reply = browser.post("/authorize", &approve).await;
    says_try_again(&reply);
    assert!(reply.headers.get(header::LOCATION).is_none());

    failing.recover();
    let approved = browser.post("/authorize", &approve).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert!(approved.location().starts_with(CODE_PAGE));
}

#[tokio::test]
async fn a_token_request_the_store_cannot_answer_is_temporarily_unavailable() {
    let (hub, failing) = failing_hub_with_alice();
    let (verifier, challenge) = pkce();
    let (_, code) = approved_code(&hub, CODE_PAGE, &challenge).await;
    let unavailable = |reply: &Reply| {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        let error = reply.json();
        assert_eq!(error["error"], "temporarily_unavailable", "{error}");
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains("try again shortly"),
            "{error}"
        );
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    };

    failing.fail("take_auth_code");
    unavailable(&redeem(&hub, &code, &verifier).await);
    // The code was not spent: it redeems once the store answers.
    failing.recover();
    let redeemed = redeem(&hub, &code, &verifier).await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.body);
    let tokens: TokenResponse = serde_json::from_str(&redeemed.body).unwrap();
    let refresh_token = tokens.refresh_token.unwrap();

    failing.fail("token");
    unavailable(&refresh(&hub, &refresh_token).await);
    failing.recover();
    failing.fail("put_token");
    unavailable(&refresh(&hub, &refresh_token).await);
    failing.recover();
    failing.fail("revoke_live_token");
    unavailable(&refresh(&hub, &refresh_token).await);
    // None of the failed tries spent the refresh token: the retry works,
    // and is not taken for a replay that would end the login.
    failing.recover();
    let again = refresh(&hub, &refresh_token).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(live(
        &hub,
        &serde_json::from_str::<TokenResponse>(&again.body)
            .unwrap()
            .access_token
    ));
    assert!(live(&hub, &tokens.access_token), "the login goes on");
}

// --- the hub as an OpenID Connect provider ---

/// Signs in and approves a request for `scope` (with `extra` parameters),
/// returning the code.
async fn approved_openid_code(hub: &Arc<Hub>, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut browser = Browser::new(hub);
    let authorize = authorize_uri(CODE_PAGE, challenge, extra);
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
    let back = query_of(approved.location());
    param(&back, "code")
        .unwrap_or_else(|| panic!("no code: {}", approved.location()))
        .to_string()
}

async fn userinfo(hub: &Arc<Hub>, method: &str, bearer: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri("/userinfo");
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(hub, request.body(Body::empty()).unwrap()).await
}

/// The payload of a compact JWS, unverified (the signature is checked
/// separately, with the relying party's own validator).
fn jwt_payload(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_names_this_hubs_endpoints_and_what_it_supports() {
    let hub = hub_with_alice();
    let reply = send(
        &hub,
        Request::get("/.well-known/openid-configuration")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let doc = reply.json();
    let issuer = "https://hub.test:8443";
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(doc["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    for scope in ["openid", "profile", "email", SCOPE_SETUP, SCOPE_TRANSFER] {
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&scope.into()),
            "{scope}: {doc}"
        );
    }
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"authorization_code".into())
    );
    assert!(
        doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"none".into()),
        "ferry-cli is a public client"
    );
    assert!(
        doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&"nonce".into())
    );
    // Each endpoint it names is served (the path part of the hub's URL).
    for endpoint in ["jwks_uri", "userinfo_endpoint"] {
        let path = doc[endpoint]
            .as_str()
            .unwrap()
            .strip_prefix(issuer)
            .unwrap();
        let answer = send(&hub, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_ne!(answer.status, StatusCode::NOT_FOUND, "{endpoint}");
    }
}

#[tokio::test]
async fn an_openid_code_gives_an_id_token_that_verifies_with_the_published_key() {
    let hub = hub_with_alice();
    let alice = hub.store.user_by_name("alice").unwrap().unwrap();
    hub.store
        .set_user_email(alice.id, Some("alice@example.org"))
        .unwrap();
    let (verifier, challenge) = pkce();
    let before = grants::now();
    let code = approved_openid_code(
        &hub,
        &challenge,
        &[
            ("scope", "openid profile email transfer"),
            ("nonce", "n-0S6_WzA2Mj"),
        ],
    )
    .await;
    let reply = redeem(&hub, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    let id_token = tokens.id_token.clone().expect("an ID token for openid");

    let jwks = send(
        &hub,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(jwks.status, StatusCode::OK, "{}", jwks.body);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.body).unwrap();
    let now = grants::now();
    // The hub's own relying party validates it as it would an upstream's.
    let validated = crate::oidc::validate_id_token(
        &id_token,
        &jwks,
        "https://hub.test:8443",
        CLI_CLIENT_ID,
        "n-0S6_WzA2Mj",
        now,
    )
    .unwrap();
    assert_eq!(validated.sub, alice.id.to_string());
    for (wrong_issuer, wrong_client, wrong_nonce) in [
        ("https://other.test", CLI_CLIENT_ID, "n-0S6_WzA2Mj"),
        ("https://hub.test:8443", "another-app", "n-0S6_WzA2Mj"),
        ("https://hub.test:8443", CLI_CLIENT_ID, "another-nonce"),
    ] {
        assert!(
            crate::oidc::validate_id_token(
                &id_token,
                &jwks,
                wrong_issuer,
                wrong_client,
                wrong_nonce,
                now
            )
            .is_err()
        );
    }
    // Another key's JWKS does not verify it.
    let other: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(crate::oidc_provider::ProviderKey::generate().jwks()).unwrap();
    assert!(
        crate::oidc::validate_id_token(
            &id_token,
            &other,
            "https://hub.test:8443",
            CLI_CLIENT_ID,
            "n-0S6_WzA2Mj",
            now
        )
        .is_err()
    );

    let claims = jwt_payload(&id_token);
    assert_eq!(claims["aud"], CLI_CLIENT_ID);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["name"], "alice");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.org");
    assert_eq!(claims["email_verified"], false);
    let auth_time = claims["auth_time"].as_i64().unwrap();
    assert!(before <= auth_time && auth_time <= now, "{claims}");
    assert!(claims["exp"].as_i64().unwrap() > now);

    // userinfo, by GET and by POST, says the same of the same scopes.
    for method in ["GET", "POST"] {
        let info = userinfo(&hub, method, Some(&tokens.access_token)).await;
        assert_eq!(info.status, StatusCode::OK, "{method}: {}", info.body);
        let info = info.json();
        assert_eq!(info["sub"], claims["sub"]);
        assert_eq!(info["email"], "alice@example.org");
        assert_eq!(info["preferred_username"], "alice");
    }

    // Only what the scopes release: openid alone is the subject.
    let (verifier, challenge) = pkce();
    let code = approved_openid_code(&hub, &challenge, &[("scope", "openid")]).await;
    let reply = redeem(&hub, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    let claims = jwt_payload(&tokens.id_token.unwrap());
    assert_eq!(claims["sub"], alice.id.to_string());
    for absent in ["nonce", "name", "email", "email_verified"] {
        assert!(claims.get(absent).is_none(), "{absent}: {claims}");
    }
    let info = userinfo(&hub, "GET", Some(&tokens.access_token))
        .await
        .json();
    assert_eq!(info, serde_json::json!({ "sub": alice.id.to_string() }));
}

#[tokio::test]
async fn without_openid_there_is_no_id_token_and_userinfo_refuses() {
    let hub = hub_with_alice();
    let tokens = fresh_tokens(&hub).await;
    assert_eq!(tokens.id_token, None);
    let reply = redeem_body_has_no_id_token(&hub).await;
    assert!(!reply.contains("id_token"), "{reply}");

    let refused = userinfo(&hub, "GET", Some(&tokens.access_token)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let challenge = refused.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    for (bearer, error) in [(None, None), (Some("not-a-token"), Some("invalid_token"))] {
        let refused = userinfo(&hub, "GET", bearer).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
        let challenge = refused.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
        assert_eq!(
            challenge.contains("error="),
            error.is_some(),
            "no error code without a token (RFC 6750 §3.1): {challenge}"
        );
        if let Some(error) = error {
            assert!(challenge.contains(error), "{challenge}");
        }
    }
}

/// The raw body of a redemption without `openid`: no `id_token` key at all.
async fn redeem_body_has_no_id_token(hub: &Arc<Hub>) -> String {
    let (verifier, challenge) = pkce();
    let (_, code) = approved_code(hub, CODE_PAGE, &challenge).await;
    let reply = redeem(hub, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn a_nonce_too_long_is_refused_and_one_at_the_limit_is_carried() {
    let hub = hub_with_alice();
    let (_, challenge) = pkce();
    let long = "n".repeat(crate::oidc_provider::MAX_NONCE + 1);
    let mut browser = Browser::new(&hub);
    let refused = browser
        .get(&authorize_uri(
            CODE_PAGE,
            &challenge,
            &[("scope", "openid"), ("nonce", &long)],
        ))
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
    let back = query_of(refused.location());
    assert_eq!(param(&back, "error"), Some("invalid_request"));
    assert!(
        param(&back, "error_description")
            .unwrap()
            .contains("nonce is longer than"),
        "{back:?}"
    );
    assert!(!refused.location().contains(&long));

    let (verifier, challenge) = pkce();
    let limit = "n".repeat(crate::oidc_provider::MAX_NONCE);
    let code =
        approved_openid_code(&hub, &challenge, &[("scope", "openid"), ("nonce", &limit)]).await;
    let reply = redeem(&hub, &code, &verifier).await;
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        jwt_payload(&tokens.id_token.unwrap())["nonce"],
        limit.as_str()
    );
}

#[tokio::test]
async fn an_openid_step_the_store_cannot_answer_is_retried_not_refused() {
    let (hub, failing) = failing_hub_with_alice();
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&hub);
    let authorize = authorize_uri(
        CODE_PAGE,
        &challenge,
        &[("scope", "openid"), ("nonce", "n1")],
    );
    let signed_in = sign_in(&mut browser, &authorize).await;
    let consent = browser.get(signed_in.location()).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let approve = with(hidden(&consent.body), &[("decision", "approve")]);

    failing.fail("put_oidc_code");
    let reply = browser.post("/authorize", &approve).await;
    says_try_again(&reply);
    assert!(reply.headers.get(header::LOCATION).is_none(), "no code");
    failing.recover();
    let approved = browser.post("/authorize", &approve).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let code = param(&query_of(approved.location()), "code")
        .unwrap()
        .to_string();

    failing.fail("oidc_code");
    let reply = redeem(&hub, &code, &verifier).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    failing.recover();
    // The code was spent by that try: the user signs in again, as for any
    // code that failed at the token endpoint.
    let (verifier, challenge) = pkce();
    let code = approved_openid_code(&hub, &challenge, &[("scope", "openid")]).await;
    let tokens: TokenResponse =
        serde_json::from_str(&redeem(&hub, &code, &verifier).await.body).unwrap();
    assert!(tokens.id_token.is_some());

    failing.fail("token");
    let reply = userinfo(&hub, "GET", Some(&tokens.access_token)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    failing.recover();
    let reply = userinfo(&hub, "GET", Some(&tokens.access_token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}
mod apps;
