//! Registered apps at the authorization server: a portal's code flow with
//! remembered consents, a native app's PKCE, a service account's own
//! identity, scopes that bound what tokens do, and revocation.

use super::*;
use crate::apps;
use crate::store::{ClientKind, TokenKind};

const PORTAL_CB: &str = "https://portal.example/cb";

/// Bob (the apps' owner) and alice (who uses them).
fn hub_with_bob() -> (Arc<Hub>, crate::grants::Principal) {
    let hub = hub_with_alice();
    let bob = hub.store.add_user("bob", "unused", 0).unwrap();
    let who = crate::grants::Principal {
        user_id: bob,
        user_name: "bob".into(),
        client_id: CLI_CLIENT_ID.into(),
        scopes: vec![SCOPE_TRANSFER.into(), SCOPE_SETUP.into()],
        sign_in: Default::default(),
    };
    (hub, who)
}

fn register(
    hub: &Hub,
    bob: &crate::grants::Principal,
    kind: ClientKind,
    uris: &[&str],
) -> apps::App {
    let uris: Vec<String> = uris.iter().map(|u| u.to_string()).collect();
    apps::create(
        &*hub.store,
        &hub.identity_rules,
        bob,
        "Lab portal",
        kind,
        &uris,
        0,
    )
    .unwrap()
}

fn app_authorize(client_id: &str, redirect_uri: &str, scope: &str, pkce: Option<&str>) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", "st4te"),
        ("scope", scope),
    ];
    if let Some(challenge) = pkce {
        pairs.push(("code_challenge", challenge));
        pairs.push(("code_challenge_method", "S256"));
    }
    format!("/authorize?{}", encode_pairs(&pairs))
}

/// The code in a redirect back to `redirect_uri`.
fn code_in(reply: &Reply, redirect_uri: &str) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(
        reply.location().starts_with(&format!("{redirect_uri}?")),
        "{}",
        reply.location()
    );
    let back = query_of(reply.location());
    assert_eq!(param(&back, "state"), Some("st4te"));
    param(&back, "code").unwrap().to_string()
}

async fn portal_redeem(hub: &Arc<Hub>, app: &apps::App, code: &str, secret: Option<&str>) -> Reply {
    let id = app.row.client_id.as_str();
    post_token(
        hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", PORTAL_CB),
        ],
        Some((id, secret.unwrap_or(""))),
    )
    .await
}

async fn api_get(hub: &Arc<Hub>, token: &str, uri: &str) -> Reply {
    send(
        hub,
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_portal_asks_once_gets_only_granted_scopes_and_refresh_only_offline() {
    let (hub, bob) = hub_with_bob();
    let portal = register(&hub, &bob, ClientKind::Portal, &[PORTAL_CB]);
    let id = portal.row.client_id.clone();
    let secret = portal.secret.clone().unwrap();

    // A redirect URI not registered is shown, never followed.
    let mut browser = Browser::new(&hub);
    let elsewhere = browser
        .get(&app_authorize(
            &id,
            "https://evil.example/cb",
            "openid",
            None,
        ))
        .await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert_eq!(elsewhere.location(), "");
    // An app names its scopes.
    let no_scope = browser
        .get(&format!(
            "/authorize?{}",
            encode_pairs(&[
                ("response_type", "code"),
                ("client_id", &id),
                ("redirect_uri", PORTAL_CB),
                ("state", "st4te"),
            ])
        ))
        .await;
    assert!(
        no_scope.location().contains("error=invalid_scope"),
        "{}",
        no_scope.location()
    );

    let authorize = app_authorize(&id, PORTAL_CB, "openid my-endpoints", None);
    let signed_in = sign_in(&mut browser, &authorize).await;
    let consent = browser.get(signed_in.location()).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    for words in ["Lab portal", "see your endpoints", "know that you are you"] {
        assert!(consent.body.contains(words), "{words}: {}", consent.body);
    }
    assert!(!consent.body.contains("transfer files"), "{}", consent.body);
    let approved = browser
        .post(
            "/authorize",
            &with(hidden(&consent.body), &[("decision", "approve")]),
        )
        .await;
    let code = code_in(&approved, PORTAL_CB);

    // A portal is confidential: its code needs its secret.
    let unauthenticated = post_token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", PORTAL_CB),
            ("client_id", &id),
        ],
        None,
    )
    .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let tokens = portal_redeem(&hub, &portal, &code, Some(&secret)).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens: TokenResponse = serde_json::from_str(&tokens.body).unwrap();
    assert_eq!(tokens.scope, "my-endpoints openid");
    assert_eq!(tokens.refresh_token, None, "no offline_access, no refresh");

    // What the token may do: see alice's endpoints, nothing more.
    let listed = api_get(&hub, &tokens.access_token, "/api/v1/endpoints").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let shared = api_get(
        &hub,
        &tokens.access_token,
        "/api/v1/endpoints?filter_scope=shared-with-me",
    )
    .await;
    assert_eq!(shared.status, StatusCode::FORBIDDEN, "{}", shared.body);
    assert!(shared.body.contains("shared-with-me"), "{}", shared.body);
    let tasks = api_get(&hub, &tokens.access_token, "/api/v1/tasks").await;
    assert_eq!(tasks.status, StatusCode::FORBIDDEN, "{}", tasks.body);
    assert_eq!(tasks.json()["error"], "insufficient_scope");
    assert!(
        tasks.json()["message"]
            .as_str()
            .unwrap()
            .contains("transfer"),
        "{}",
        tasks.body
    );

    // The same or fewer scopes again: no second consent page.
    let again = browser
        .get(&app_authorize(&id, PORTAL_CB, "my-endpoints", None))
        .await;
    let code = code_in(&again, PORTAL_CB);
    let tokens = portal_redeem(&hub, &portal, &code, Some(&secret)).await;
    assert_eq!(
        serde_json::from_str::<TokenResponse>(&tokens.body)
            .unwrap()
            .scope,
        "my-endpoints"
    );
    // More scopes: asked again, and offline_access brings a refresh token.
    let more = browser
        .get(&app_authorize(
            &id,
            PORTAL_CB,
            "openid transfer offline_access",
            None,
        ))
        .await;
    assert_eq!(more.status, StatusCode::OK, "{}", more.body);
    assert!(more.body.contains("keep this access while you are away"));
    let approved = browser
        .post(
            "/authorize",
            &with(hidden(&more.body), &[("decision", "approve")]),
        )
        .await;
    let code = code_in(&approved, PORTAL_CB);
    let reply = portal_redeem(&hub, &portal, &code, Some(&secret)).await;
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(tokens.scope, "offline_access openid transfer");
    let refresh_token = tokens.refresh_token.unwrap();
    assert_eq!(
        hub.store.consent(1, &id).unwrap().as_deref(),
        Some("my-endpoints offline_access openid transfer"),
        "what was consented before is kept"
    );
    let tasks = api_get(&hub, &tokens.access_token, "/api/v1/tasks").await;
    assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.body);

    // A portal does not act by itself.
    let by_itself = post_token(
        &hub,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(by_itself.json()["error"], "unauthorized_client");

    // Alice takes it all back: every token of the app for her ends now.
    let alice = crate::grants::Principal {
        user_id: 1,
        user_name: "alice".into(),
        client_id: CLI_CLIENT_ID.into(),
        scopes: vec![SCOPE_TRANSFER.into()],
        sign_in: Default::default(),
    };
    assert_eq!(apps::consents(&*hub.store, &alice).unwrap().len(), 1);
    apps::revoke_consent(&*hub.store, &alice, &id).unwrap();
    assert!(!live(&hub, &tokens.access_token));
    let refreshed = post_token(
        &hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(
        refreshed.json()["error"],
        "invalid_grant",
        "{}",
        refreshed.body
    );
    // And the app must ask again.
    let asked = browser
        .get(&app_authorize(&id, PORTAL_CB, "my-endpoints", None))
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("Approve"), "{}", asked.body);
}

#[tokio::test]
async fn a_native_app_needs_pkce_and_may_use_any_loopback_port() {
    let (hub, bob) = hub_with_bob();
    let native = register(&hub, &bob, ClientKind::Native, &[]);
    assert_eq!(native.secret, None);
    let id = native.row.client_id.clone();
    let mut browser = Browser::new(&hub);
    let without = browser
        .get(&app_authorize(
            &id,
            "http://127.0.0.1:5111/cb",
            "transfer",
            None,
        ))
        .await;
    assert!(
        without.location().contains("error=invalid_request"),
        "{}",
        without.location()
    );
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:5111/cb";
    let authorize = app_authorize(&id, redirect, "transfer", Some(&challenge));
    let signed_in = sign_in(&mut browser, &authorize).await;
    let consent = browser.get(signed_in.location()).await;
    assert!(
        consent.body.contains("a program on this computer"),
        "{}",
        consent.body
    );
    let approved = browser
        .post(
            "/authorize",
            &with(hidden(&consent.body), &[("decision", "approve")]),
        )
        .await;
    let code = code_in(&approved, redirect);
    let redeem = |verifier: String, code: String| {
        let hub = hub.clone();
        let id = id.clone();
        async move {
            post_token(
                &hub,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", &id),
                    ("code_verifier", &verifier),
                ],
                None,
            )
            .await
        }
    };
    let reply = redeem(verifier.clone(), code).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(tokens.scope, "transfer");
    assert_eq!(tokens.refresh_token, None);
    // Another port, remembered consent: straight back with a code.
    let (verifier, challenge) = pkce();
    let other = "http://[::1]:6222/x";
    let again = browser
        .get(&app_authorize(&id, other, "transfer", Some(&challenge)))
        .await;
    let code = code_in(&again, other);
    // The code page too, and a wrong verifier is refused.
    let reply = post_token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", other),
            ("client_id", &id),
            ("code_verifier", &pkce().0),
        ],
        None,
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant");
    drop(verifier);
    // A public app has no secret to present, and cannot act by itself.
    let cc = post_token(
        &hub,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
        None,
    )
    .await;
    assert_eq!(cc.json()["error"], "unauthorized_client", "{}", cc.body);
    // A site is not a loopback address.
    let site = browser
        .get(&app_authorize(&id, PORTAL_CB, "transfer", Some(&challenge)))
        .await;
    assert_eq!(site.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_service_account_acts_as_itself_until_it_is_deleted() {
    let (hub, bob) = hub_with_bob();
    let service = register(&hub, &bob, ClientKind::Service, &[]);
    let id = service.row.client_id.clone();
    let identity = service.identity.clone().unwrap();
    assert_eq!(identity, format!("{id}@clients.hub.test"));
    let secret = service.secret.clone().unwrap();
    let reply = post_token(
        &hub,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let tokens: TokenResponse = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(tokens.refresh_token, None);
    let principal = grants::authenticate(&*hub.store, &hub.identity_rules, &tokens.access_token)
        .unwrap()
        .unwrap();
    assert_eq!(principal.user_name, identity);
    assert_ne!(principal.user_id, bob.user_id, "not its owner");
    let whoami = api_get(&hub, &tokens.access_token, "/api/v1/whoami").await;
    assert_eq!(
        whoami.json()["identity"],
        identity.as_str(),
        "{}",
        whoami.body
    );
    // It cannot use the browser flow.
    let mut browser = Browser::new(&hub);
    let (_, challenge) = pkce();
    let page = browser
        .get(&app_authorize(&id, CODE_PAGE, "transfer", Some(&challenge)))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);

    // A rotated secret replaces the old one at once.
    let rotated = apps::rotate_secret(&*hub.store, &hub.identity_rules, &bob, &id).unwrap();
    let old = post_token(
        &hub,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = post_token(
        &hub,
        &[("grant_type", "client_credentials")],
        Some((&id, rotated.secret.as_deref().unwrap())),
    )
    .await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);

    // Only its owner sees, rotates or deletes it.
    let alice = crate::grants::Principal {
        user_id: 1,
        user_name: "alice".into(),
        client_id: CLI_CLIENT_ID.into(),
        scopes: vec![SCOPE_TRANSFER.into()],
        sign_in: Default::default(),
    };
    for refused in [
        apps::show(&*hub.store, &hub.identity_rules, &alice, &id).map(|_| ()),
        apps::rotate_secret(&*hub.store, &hub.identity_rules, &alice, &id).map(|_| ()),
        apps::delete(&*hub.store, &hub.identity_rules, &alice, &id),
    ] {
        assert!(
            matches!(refused, Err(apps::AppError::NotFound(_))),
            "{refused:?}"
        );
    }
    let listed = api_get(&hub, &tokens.access_token, &format!("/api/v1/apps/{id}")).await;
    assert_eq!(
        listed.status,
        StatusCode::NOT_FOUND,
        "its own token is not its owner"
    );

    apps::delete(&*hub.store, &hub.identity_rules, &bob, &id).unwrap();
    assert!(
        !live(&hub, &tokens.access_token),
        "deleting revokes its tokens"
    );
    let gone = post_token(
        &hub,
        &[("grant_type", "client_credentials")],
        Some((&id, rotated.secret.as_deref().unwrap())),
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        hub.store
            .token(&token_hash(&tokens.access_token), TokenKind::Access, 0)
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn apps_are_registered_checked_and_listed_over_the_api() {
    let (hub, bob) = hub_with_bob();
    let token = grants::issue(
        &*hub.store,
        bob.user_id,
        "bob",
        CLI_CLIENT_ID,
        "transfer",
        "g",
        ACCESS_TTL,
        false,
    )
    .unwrap()
    .access_token;
    let post = |body: serde_json::Value| {
        let hub = hub.clone();
        let token = token.clone();
        async move {
            send(
                &hub,
                Request::post("/api/v1/apps")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
        }
    };
    for (body, says) in [
        (
            serde_json::json!({"name": "p", "type": "portal"}),
            "redirect URIs",
        ),
        (
            serde_json::json!({"name": "p", "type": "portal", "redirect_uris": ["http://portal.example/cb"]}),
            "https://",
        ),
        (
            serde_json::json!({"name": "n", "type": "native", "redirect_uris": [PORTAL_CB]}),
            "only a portal",
        ),
        (
            serde_json::json!({"name": "x", "type": "robot"}),
            "native, portal or service",
        ),
        (serde_json::json!({"name": "", "type": "native"}), "name"),
    ] {
        let reply = post(body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert!(reply.body.contains(says), "{body}: {}", reply.body);
    }
    let made =
        post(serde_json::json!({"name": "Portal", "type": "portal", "redirect_uris": [PORTAL_CB]}))
            .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let made = made.json();
    assert!(
        made["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 43)
    );
    let listed = api_get(&hub, &token, "/api/v1/apps").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["client_id"], made["client_id"]);
    assert_eq!(listed[0]["type"], "portal");
    assert!(
        listed[0].get("client_secret").is_none(),
        "shown once: {listed}"
    );
    let stored = hub
        .store
        .client(made["client_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secret_hash.as_deref(),
        Some(token_hash(made["client_secret"].as_str().unwrap()).as_str()),
        "kept hashed"
    );
}

#[tokio::test]
async fn an_app_the_store_cannot_look_up_is_a_503_not_an_unknown_client() {
    let (hub, store) = super::failing_hub_with_alice();
    let bob = hub.store.add_user("bob", "unused", 0).unwrap();
    let owner = crate::grants::Principal {
        user_id: bob,
        user_name: "bob".into(),
        client_id: CLI_CLIENT_ID.into(),
        scopes: vec![SCOPE_TRANSFER.into()],
        sign_in: Default::default(),
    };
    let portal = register(&hub, &owner, ClientKind::Portal, &[PORTAL_CB]);
    store.fail("client");
    let mut browser = Browser::new(&hub);
    let reply = browser
        .get(&app_authorize(
            &portal.row.client_id,
            PORTAL_CB,
            "openid",
            None,
        ))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("not known"), "{}", reply.body);
    assert!(store.failures("client") >= 1);
}
