//! The route walks (tests only): what every route of [`crate::web::router`]
//! answers to no one, to a forged session and to another user.
//!
//! The routes are read from the source of each `routes()` the router
//! merges ([`ROUTE_SOURCES`]), so a route added without a line in a walk
//! fails the walk. The API's routes are walked in depth by
//! `api::tests::every_route_refuses_no_one_and_hides_one_users_objects_from_another`;
//! every other route (the pages, the OAuth endpoints, the CA certificate)
//! is walked here.

use crate::grants;
use crate::secrets::token_hash;
use crate::server::Hub;
use crate::session::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::store::AuthCodeRow;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ferry_proto::api::{
    AUTH_CODE_PATH, CA_CERT_PATH, CLI_CLIENT_ID, OPENAPI_PATH, SCOPE_SETUP, SCOPE_TRANSFER,
};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

/// Paths the routes name by a constant, by the constant's name.
const PATH_CONSTANTS: &[(&str, &str)] = &[
    ("CA_CERT_PATH", CA_CERT_PATH),
    ("AUTH_CODE_PATH", AUTH_CODE_PATH),
    ("OPENAPI_PATH", OPENAPI_PATH),
];

/// Who walks a source's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkedBy {
    /// [`every_route_of_the_router_refuses_no_one_and_forged_sessions_and_hides_other_users`].
    Here,
    /// The API's own walk, which fails for a route it does not walk.
    ApiWalk,
}

/// Every source of routes `web::router` has: its name as the router
/// spells it (`crate::NAME::routes()`, or `web` for the router's own),
/// its file, and who walks it. A new source is one line here, then its
/// routes need lines in a walk.
const ROUTE_SOURCES: &[(&str, &str, WalkedBy)] = &[
    ("web", include_str!("web.rs"), WalkedBy::Here),
    ("oauth", include_str!("oauth/mod.rs"), WalkedBy::Here),
    ("api", include_str!("api.rs"), WalkedBy::ApiWalk),
    ("app", include_str!("app/mod.rs"), WalkedBy::Here),
    (
        "oidc_provider",
        include_str!("oidc_provider.rs"),
        WalkedBy::Here,
    ),
];

/// The text of the function that starts with `start` in `source`.
fn function<'a>(source: &'a str, start: &str) -> &'a str {
    let at = source
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the source"));
    let end = source[at..].find("\n}\n").expect("the function's end");
    &source[at..at + end]
}

/// Every (METHOD, path) the `routes()` (or `router(`) function in `source`
/// declares with `.route(PATH, method(..).method(..))`, sorted.
pub fn declared_routes(source: &str, start: &str) -> Vec<(String, String)> {
    let body = function(source, start);
    let mut declared = Vec::new();
    for (at, _) in body.match_indices(".route(") {
        let args_start = at + ".route(".len();
        // The call's arguments, up to its matching parenthesis.
        let mut depth = 1;
        let mut end = args_start;
        for (i, c) in body[args_start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = args_start + i;
                break;
            }
        }
        let args = &body[args_start..end];
        let (path, handlers) = args.split_once(',').expect("a path and handlers");
        let path = path.trim();
        let path = match path.strip_prefix('"') {
            Some(literal) => literal.trim_end_matches('"').to_string(),
            None => {
                let name = path.rsplit("::").next().unwrap_or(path);
                PATH_CONSTANTS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("add {name} to PATH_CONSTANTS"))
                    .1
                    .to_string()
            }
        };
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && handlers.as_bytes()[i - 1] != b'_'
            });
            if called {
                declared.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    declared.sort();
    declared
}

/// The modules whose `routes()` the router merges, as it names them.
fn merged_sources() -> Vec<String> {
    let router = function(include_str!("web.rs"), "pub fn router(");
    let mut merged: Vec<String> = router
        .split(".merge(crate::")
        .skip(1)
        .map(|rest| rest.split("::routes()").next().unwrap().to_string())
        .collect();
    merged.push("web".into());
    merged.sort();
    merged
}

/// The routes of every source that `who` walks.
fn routes_walked_by(who: WalkedBy) -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = ROUTE_SOURCES
        .iter()
        .filter(|(_, _, by)| *by == who)
        .flat_map(|(name, source, _)| {
            let start = if *name == "web" {
                "pub fn router("
            } else {
                "pub fn routes()"
            };
            declared_routes(source, start)
        })
        .collect();
    routes.sort();
    routes
}

/// Every (METHOD, path) of every source of routes, sorted.
pub fn every_declared_route() -> Vec<(String, String)> {
    let mut all = routes_walked_by(WalkedBy::Here);
    all.extend(routes_walked_by(WalkedBy::ApiWalk));
    all.sort();
    all
}

#[test]
fn every_source_of_routes_is_walked() {
    let mut known: Vec<String> = ROUTE_SOURCES.iter().map(|(n, ..)| n.to_string()).collect();
    known.sort();
    assert_eq!(
        merged_sources(),
        known,
        "every source of routes the router merges is in ROUTE_SOURCES, with who walks it"
    );
    assert!(
        routes_walked_by(WalkedBy::ApiWalk).contains(&("POST".into(), "/api/v1/tasks".into())),
        "the parser reads the API's routes"
    );
}

struct Answer {
    status: StatusCode,
    location: String,
    body: String,
    set_cookies: Vec<String>,
}

impl Answer {
    /// Everything of the answer a browser could show or keep.
    fn text(&self) -> String {
        format!(
            "{} {}\n{}\n{}",
            self.status,
            self.location,
            self.set_cookies.join("\n"),
            self.body
        )
    }
}

async fn send(
    hub: &Arc<Hub>,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    form: Option<&[(String, String)]>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = match form {
        Some(pairs) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Body::from(crate::oauth::encode_form(&pairs))
        }
        None => Body::empty(),
    };
    let response = crate::web::router(hub.clone())
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        location: headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        set_cookies: headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
    }
}

/// A live session for `user_id`: its cookie header and its CSRF token.
fn session(hub: &Hub, user_id: i64) -> ((&'static str, String), String) {
    let token = crate::secrets::random_token(32).unwrap();
    let csrf = crate::secrets::random_token(32).unwrap();
    hub.store
        .put_session(&token_hash(&token), user_id, &csrf, grants::now() + 3600)
        .unwrap();
    (("cookie", format!("{SESSION_COOKIE}={token}")), csrf)
}

/// What a kind of route is to a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A page: its principal is the session's; a posted form must come
    /// from the hub's origin and carry its CSRF token.
    Page,
    /// An OAuth client's endpoint: it authenticates what the body
    /// carries, never a cookie, so a session changes nothing of its answer.
    Client,
    /// The same for everyone.
    Public,
}

/// Every page and OAuth route of the router, as no one, with a session
/// cookie that names no session, and as Bob (another user, signed in
/// with his own session, his form's token and the hub's origin):
///
/// - nothing of Alice's (her name, session, CSRF token, authorization
///   code, tokens) is in any answer, and nothing of hers changes;
/// - a page's form without the session's CSRF token, or sent from another
///   site or origin, is refused (403) before it acts;
/// - an OAuth client endpoint answers a cookie as it answers no cookie;
/// - nothing answers 500.
#[tokio::test]
async fn every_route_of_the_router_refuses_no_one_and_forged_sessions_and_hides_other_users() {
    let hub = crate::web::for_tests();
    let alice = hub.store.add_user("alice", "h", 0).unwrap();
    let bob = hub.store.add_user("bob", "h", 0).unwrap();
    let (alices_cookie, alices_csrf) = session(&hub, alice);
    let alices_session = alices_cookie.1.split_once('=').unwrap().1.to_string();
    let tokens = grants::issue(
        &*hub.store,
        alice,
        "alice",
        CLI_CLIENT_ID,
        &format!("{SCOPE_SETUP} {SCOPE_TRANSFER}"),
        "alices-grant",
        3600,
        true,
    )
    .unwrap();
    let alices_refresh = tokens.refresh_token.clone().unwrap();
    let verifier = crate::secrets::random_token(32).unwrap();
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let code_page = format!("{}{AUTH_CODE_PATH}", hub.config.url);
    let alices_code = crate::secrets::random_token(32).unwrap();
    hub.store
        .put_auth_code(&AuthCodeRow {
            code_hash: token_hash(&alices_code),
            client_id: CLI_CLIENT_ID.into(),
            user_id: alice,
            redirect_uri: code_page.clone(),
            challenge: challenge.clone(),
            scope: SCOPE_TRANSFER.into(),
            expires: grants::now() + 300,
        })
        .unwrap();
    // Alice's endpoint and a task on it, for the web app's pages to hide.
    let laptop = "11111111-0000-0000-0000-0000000000aa";
    hub.store
        .create_endpoint(laptop, alice, "alices-laptop", 0)
        .unwrap();
    let alice_principal = grants::Principal {
        user_id: alice,
        user_name: "alice".into(),
        client_id: CLI_CLIENT_ID.into(),
        scopes: vec![SCOPE_TRANSFER.into()],
        sign_in: Default::default(),
    };
    let alices_task = crate::task_service::submit(
        &*hub.store,
        &hub.control,
        &alice_principal,
        ferry_proto::task::SubmitTask {
            submission_id: None,
            source_endpoint: laptop.into(),
            destination_endpoint: laptop.into(),
            items: vec![ferry_proto::task::TransferItem {
                source: ferry_proto::wire_path::WirePath::from_bytes("/~/a"),
                destination: ferry_proto::wire_path::WirePath::from_bytes("/~/b"),
                recursive: false,
            }],
            options: Default::default(),
            label: Some("alices-task".into()),
            deadline: None,
            notify: None,
        },
        grants::now(),
    )
    .unwrap()
    .task_id;
    let alices_timer = crate::timers::create(
        &*hub.store,
        &alice_principal,
        ferry_proto::task::CreateTimer {
            transfer: ferry_proto::task::SubmitTask {
                submission_id: None,
                source_endpoint: laptop.into(),
                destination_endpoint: laptop.into(),
                items: vec![ferry_proto::task::TransferItem {
                    source: ferry_proto::wire_path::WirePath::from_bytes("/~/a"),
                    destination: ferry_proto::wire_path::WirePath::from_bytes("/~/b"),
                    recursive: false,
                }],
                options: Default::default(),
                label: Some("alices-timer".into()),
                deadline: None,
                notify: None,
            },
            interval: 3600,
            start: None,
            stop_after_runs: None,
            stop_after_date: None,
            run_deadline: None,
        },
        grants::now(),
    )
    .unwrap();
    hub.store
        .put_personal_token("alices-personal-grant", alice, "alices script", 0)
        .unwrap();
    hub.store
        .put_token(&crate::store::TokenRow {
            token_hash: token_hash("alices-personal-token"),
            kind: crate::store::TokenKind::Access,
            user_id: alice,
            user_name: "alice".into(),
            client_id: grants::PERSONAL_CLIENT.into(),
            scope: SCOPE_TRANSFER.into(),
            expires: grants::now() + 3600,
            grant_id: "alices-personal-grant".into(),
        })
        .unwrap();
    let alices_app = crate::apps::create(
        &*hub.store,
        &hub.identity_rules,
        &alice_principal,
        "alices-portal",
        crate::store::ClientKind::Portal,
        &["https://portal.example.org/alice".to_string()],
        0,
    )
    .unwrap()
    .row
    .client_id;
    hub.store
        .put_consent(alice, &alices_app, SCOPE_TRANSFER, 0)
        .unwrap();
    let alices: Vec<&str> = vec![
        "alice",
        &alices_app,
        &alices_session,
        &alices_csrf,
        &alices_code,
        &tokens.access_token,
        &alices_refresh,
        &alices_timer,
    ];

    let request = [
        ("response_type", "code"),
        ("client_id", CLI_CLIENT_ID),
        ("redirect_uri", code_page.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", SCOPE_TRANSFER),
        ("state", "st4te"),
    ];
    let authorize = format!("/authorize?{}", crate::oauth::encode_form(&request));
    let fields = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        request
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    /// What each of them gets: no one, a forged session, Bob.
    struct Expect {
        no_one: StatusCode,
        forged: StatusCode,
        bob: StatusCode,
    }
    let all = |status| Expect {
        no_one: status,
        forged: status,
        bob: status,
    };
    // (method, path as declared, the request made, its form, kind, what each gets)
    type Step<'a> = (
        &'a str,
        &'a str,
        String,
        Option<Vec<(String, String)>>,
        Kind,
        Expect,
    );
    let walk: Vec<Step> = vec![
        (
            "GET",
            CA_CERT_PATH,
            CA_CERT_PATH.into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "GET",
            OPENAPI_PATH,
            OPENAPI_PATH.into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        // Links answer anyone alike; an unknown token is simply not found.
        (
            "GET",
            "/l/{token}",
            "/l/not-a-link".into(),
            None,
            Kind::Public,
            all(StatusCode::NOT_FOUND),
        ),
        (
            "GET",
            "/l/{token}/",
            "/l/not-a-link/".into(),
            None,
            Kind::Public,
            all(StatusCode::NOT_FOUND),
        ),
        (
            "GET",
            "/l/{token}/{*rest}",
            "/l/not-a-link/a/b".into(),
            None,
            Kind::Public,
            all(StatusCode::NOT_FOUND),
        ),
        // Open: this hub sets no metrics_token (metrics::tests check one).
        (
            "GET",
            "/metrics",
            "/metrics".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/",
            "/".into(),
            None,
            Kind::Page,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/login",
            "/login".into(),
            None,
            Kind::Page,
            Expect {
                no_one: StatusCode::OK,
                forged: StatusCode::OK,
                bob: StatusCode::SEE_OTHER,
            },
        ),
        (
            "POST",
            "/login",
            "/login".into(),
            Some(vec![
                ("username".into(), "bob".into()),
                ("password".into(), "h".into()),
            ]),
            Kind::Page,
            // A session's token is not the sign-in form's.
            all(StatusCode::FORBIDDEN),
        ),
        (
            "POST",
            "/logout",
            "/logout".into(),
            Some(vec![]),
            Kind::Page,
            // No session: nothing to end.
            all(StatusCode::SEE_OTHER),
        ),
        (
            "GET",
            "/authorize",
            authorize.clone(),
            None,
            Kind::Page,
            all(StatusCode::OK),
        ),
        (
            "POST",
            "/authorize",
            "/authorize".into(),
            Some(fields(&[("decision", "approve")])),
            Kind::Page,
            Expect {
                no_one: StatusCode::UNAUTHORIZED,
                forged: StatusCode::UNAUTHORIZED,
                bob: StatusCode::SEE_OTHER,
            },
        ),
        (
            "GET",
            "/auth/oidc/{name}/start",
            "/auth/oidc/campus/start".into(),
            None,
            Kind::Page,
            // This hub has no identity provider of that name.
            all(StatusCode::NOT_FOUND),
        ),
        (
            "GET",
            "/auth/oidc/{name}/callback",
            "/auth/oidc/campus/callback?state=forged&code=forged".into(),
            None,
            Kind::Page,
            // No sign-in under way has that state: nothing is done.
            all(StatusCode::FORBIDDEN),
        ),
        (
            "GET",
            AUTH_CODE_PATH,
            format!("{AUTH_CODE_PATH}?code=not-a-code"),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "POST",
            "/token",
            "/token".into(),
            Some(vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), "not-a-token".into()),
            ]),
            Kind::Client,
            all(StatusCode::BAD_REQUEST),
        ),
        (
            "POST",
            "/revoke",
            "/revoke".into(),
            Some(vec![("token".into(), "not-a-token".into())]),
            Kind::Client,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/.well-known/jwks.json",
            "/.well-known/jwks.json".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        // A bearer token only: a session cookie is no access token.
        (
            "GET",
            "/userinfo",
            "/userinfo".into(),
            None,
            Kind::Client,
            all(StatusCode::UNAUTHORIZED),
        ),
        (
            "POST",
            "/userinfo",
            "/userinfo".into(),
            Some(vec![]),
            Kind::Client,
            all(StatusCode::UNAUTHORIZED),
        ),
    ];
    // The web app: Bob names Alice's endpoint and task in every way a
    // page takes them, and learns nothing of them.
    let page = |no_one, bob| Expect {
        no_one,
        forged: no_one,
        bob,
    };
    let alices_panel = |extra: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
        let mut form: Vec<(String, String)> = [
            ("from", "1"),
            ("c1", laptop),
            ("o1", laptop),
            ("p1", "/~/"),
            ("c2", laptop),
            ("o2", laptop),
            ("p2", "/~/"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        form.sort();
        Some(form)
    };
    let (see_other, unauthorized) = (StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED);
    let refused_form = StatusCode::UNPROCESSABLE_ENTITY;
    let not_found = StatusCode::NOT_FOUND;
    let mut walk = walk;
    walk.extend([
        (
            "GET",
            "/files",
            format!("/files?c1={laptop}&o1={laptop}&p1=/~/"),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "POST",
            "/files/transfer",
            "/files/transfer".into(),
            alices_panel(&[("sel1", "f:a")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "POST",
            "/files/mkdir",
            "/files/mkdir".into(),
            alices_panel(&[("mkdir1", "x")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "POST",
            "/files/rename",
            "/files/rename".into(),
            alices_panel(&[("sel1", "f:a"), ("rename1", "b")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "POST",
            "/files/delete",
            "/files/delete".into(),
            alices_panel(&[("sel1", "f:a"), ("confirm", "yes")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "POST",
            "/files/share",
            "/files/share".into(),
            alices_panel(&[("sel1", "d:a")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "POST",
            "/files/link",
            "/files/link".into(),
            alices_panel(&[("sel1", "d:a")]),
            Kind::Page,
            page(unauthorized, refused_form),
        ),
        (
            "GET",
            "/activity",
            "/activity".into(),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "GET",
            "/activity/{task}",
            format!("/activity/{alices_task}"),
            None,
            Kind::Page,
            page(see_other, not_found),
        ),
        (
            "GET",
            "/activity/{task}/live",
            format!("/activity/{alices_task}/live"),
            None,
            Kind::Page,
            page(see_other, not_found),
        ),
        (
            "POST",
            "/activity/{task}/cancel",
            format!("/activity/{alices_task}/cancel"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "GET",
            "/timers",
            "/timers".into(),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "POST",
            "/timers/{timer}/delete",
            format!("/timers/{alices_timer}/delete"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "GET",
            "/endpoints",
            "/endpoints".into(),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "POST",
            "/endpoints/new",
            "/endpoints/new".into(),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, StatusCode::CREATED),
        ),
        (
            "GET",
            "/endpoints/{endpoint}",
            format!("/endpoints/{laptop}"),
            None,
            Kind::Page,
            page(see_other, not_found),
        ),
        (
            "POST",
            "/endpoints/{endpoint}/rename",
            format!("/endpoints/{laptop}/rename"),
            Some(vec![("name".into(), "bobs-now".into())]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "POST",
            "/endpoints/{endpoint}/revoke",
            format!("/endpoints/{laptop}/revoke"),
            Some(vec![("confirm".into(), "yes".into())]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "POST",
            "/endpoints/{endpoint}/permissions",
            format!("/endpoints/{laptop}/permissions"),
            Some(vec![
                ("path".into(), "/~/".into()),
                ("with".into(), "bob".into()),
                ("mode".into(), "rw".into()),
            ]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "POST",
            "/endpoints/{endpoint}/permissions/{permission}/delete",
            format!("/endpoints/{laptop}/permissions/some-id/delete"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "GET",
            "/account",
            "/account".into(),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "POST",
            "/account/tokens",
            "/account/tokens".into(),
            Some(vec![("label".into(), "bobs script".into())]),
            Kind::Page,
            page(unauthorized, StatusCode::CREATED),
        ),
        (
            "POST",
            "/account/tokens/{grant}/revoke",
            "/account/tokens/alices-personal-grant/revoke".into(),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "POST",
            "/account/sessions/end-others",
            "/account/sessions/end-others".into(),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, StatusCode::OK),
        ),
        (
            "POST",
            "/account/apps/{app}/revoke",
            format!("/account/apps/{alices_app}/revoke"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "GET",
            "/developers",
            "/developers".into(),
            None,
            Kind::Page,
            page(see_other, StatusCode::OK),
        ),
        (
            "POST",
            "/developers/apps",
            "/developers/apps".into(),
            Some(vec![
                ("name".into(), "bobs-app".into()),
                ("type".into(), "native".into()),
            ]),
            Kind::Page,
            page(unauthorized, StatusCode::CREATED),
        ),
        (
            "POST",
            "/developers/apps/{app}/rotate-secret",
            format!("/developers/apps/{alices_app}/rotate-secret"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "POST",
            "/developers/apps/{app}/delete",
            format!("/developers/apps/{alices_app}/delete"),
            Some(vec![]),
            Kind::Page,
            page(unauthorized, not_found),
        ),
        (
            "GET",
            "/assets/app.js",
            "/assets/app.js".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/assets/app.css",
            "/assets/app.css".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
        (
            "GET",
            "/assets/icon.svg",
            "/assets/icon.svg".into(),
            None,
            Kind::Public,
            all(StatusCode::OK),
        ),
    ]);
    let mut walked: Vec<(String, String)> = walk
        .iter()
        .map(|(m, p, ..)| (m.to_string(), p.to_string()))
        .collect();
    walked.sort();
    assert_eq!(
        walked,
        routes_walked_by(WalkedBy::Here),
        "every route is walked, once"
    );

    let forged = (
        "cookie",
        format!("{SESSION_COOKIE}=made-up; {LOGIN_CSRF_COOKIE}=1.made.up"),
    );
    let same_origin = ("sec-fetch-site", "same-origin".to_string());
    for (method, _, uri, form, kind, expect) in &walk {
        let unsafe_method = *method != "GET";
        let no_one = send(&hub, method, uri, &[], form.as_deref()).await;
        let with_forged = send(
            &hub,
            method,
            uri,
            std::slice::from_ref(&forged),
            form.as_deref(),
        )
        .await;
        // Bob signs in afresh for each request: a walked sign-out ends his session.
        let (bobs_cookie, bobs_csrf) = session(&hub, bob);
        let bobs_form = form.as_ref().map(|form| {
            let mut form = form.clone();
            form.push(("csrf".into(), bobs_csrf.clone()));
            form
        });
        let as_bob = send(
            &hub,
            method,
            uri,
            &[bobs_cookie.clone(), same_origin.clone()],
            bobs_form.as_deref(),
        )
        .await;
        for (who, answer, expected) in [
            ("no one", &no_one, expect.no_one),
            ("a forged session", &with_forged, expect.forged),
            ("bob", &as_bob, expect.bob),
        ] {
            let text = answer.text();
            assert_eq!(answer.status, expected, "{method} {uri} as {who}: {text}");
            for secret in &alices {
                assert!(
                    !text.contains(secret),
                    "{method} {uri} as {who} shows {secret:?}: {text}"
                );
            }
        }
        match kind {
            Kind::Page if unsafe_method => {
                // Bob's own form, without its token, or from elsewhere.
                let (bobs_cookie, bobs_csrf) = session(&hub, bob);
                let mut tokened = form.clone().unwrap_or_default();
                tokened.push(("csrf".into(), bobs_csrf));
                for (why, headers, form) in [
                    (
                        "without its CSRF token",
                        vec![bobs_cookie.clone(), same_origin.clone()],
                        form.clone().unwrap_or_default(),
                    ),
                    (
                        "from another site",
                        vec![
                            bobs_cookie.clone(),
                            ("sec-fetch-site", "cross-site".to_string()),
                        ],
                        tokened.clone(),
                    ),
                    (
                        "from another origin",
                        vec![
                            bobs_cookie.clone(),
                            ("origin", "https://elsewhere.test".to_string()),
                        ],
                        tokened.clone(),
                    ),
                ] {
                    let answer = send(&hub, method, uri, &headers, Some(&form)).await;
                    assert_eq!(
                        answer.status,
                        StatusCode::FORBIDDEN,
                        "{method} {uri} {why}: {}",
                        answer.text()
                    );
                    assert!(answer.location.is_empty(), "{method} {uri} {why}");
                }
                assert!(
                    hub.store
                        .session(
                            &token_hash(bobs_cookie.1.split_once('=').unwrap().1),
                            grants::now()
                        )
                        .unwrap()
                        .is_some(),
                    "{method} {uri}: a refused form ends no session"
                );
            }
            Kind::Client => {
                assert_eq!(
                    (as_bob.status, &as_bob.body),
                    (no_one.status, &no_one.body),
                    "{method} {uri}: a session is no credential here"
                );
            }
            Kind::Page | Kind::Public => {}
        }
    }

    // Alice's things are as she left them.
    assert!(hub.store.client(&alices_app).unwrap().is_some());
    assert_eq!(
        hub.store.consent(alice, &alices_app).unwrap().as_deref(),
        Some(SCOPE_TRANSFER)
    );
    let row = hub.store.endpoint(laptop).unwrap().unwrap();
    assert_eq!(
        (row.display_name.as_str(), row.revoked, row.deleted),
        ("alices-laptop", false, false)
    );
    let task = hub.store.task(&alices_task).unwrap().unwrap();
    assert_eq!(task.status, ferry_proto::task::TaskStatus::Active);
    assert!(
        hub.store.timer(&alices_timer).unwrap().is_some(),
        "bob deleted alice's timer"
    );
    assert_eq!(
        hub.store
            .personal_tokens(alice, grants::now())
            .unwrap()
            .len(),
        1,
        "alice's token still works"
    );
    assert!(
        hub.store
            .session(&token_hash(&alices_session), grants::now())
            .unwrap()
            .is_some()
    );
    assert!(
        grants::authenticate(&*hub.store, &hub.identity_rules, &tokens.access_token)
            .unwrap()
            .is_some()
    );
    let redeemed = send(
        &hub,
        "POST",
        "/token",
        &[],
        Some(&[
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), alices_code.clone()),
            ("redirect_uri".to_string(), code_page.clone()),
            ("client_id".to_string(), CLI_CLIENT_ID.to_string()),
            ("code_verifier".to_string(), verifier.clone()),
        ]),
    )
    .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.text());
}
