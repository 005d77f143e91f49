//! Apps on ferry, as a developer and their users meet them: alice
//! registers a portal with `ferry app create`; the portal (a loopback
//! listener standing in for its site) sends her browser through the hub's
//! sign-in and consent, gets the code, exchanges it with its secret and
//! uses the token, which does no more than she let it (no `transfer`, no
//! transfer); she revokes the consent and the portal's refresh token is
//! refused. A service account gets tokens with its secret, acts as its own
//! identity, is refused on alice's endpoint until she shares a folder
//! with that identity, and then reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::Lab;
use ferry_tests::browser::Browser;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A portal's callback: answers every request with a page, so a browser
/// sent there stops with the code in its URL.
fn portal_site() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nportal welcome",
            );
        }
    });
    format!("http://127.0.0.1:{port}/callback")
}

fn query_value(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?.1.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The portal sends the browser to the hub and gets it back: the page the
/// browser ends on (the consent page), or the code at the callback.
async fn authorize(
    browser: &mut Browser,
    client_id: &str,
    callback: &str,
    scope: &str,
) -> (String, String) {
    let url = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=portal-state",
        callback.replace(':', "%3A").replace('/', "%2F"),
        scope.replace(' ', "%20")
    );
    let (at, status, page) = browser.visit(&url).await;
    assert!(status.is_success(), "{at}: {status}: {page}");
    (at, page)
}

/// Approves the consent page and returns the code the portal got.
async fn approve(browser: &mut Browser, at: &str, page: &str, callback: &str) -> String {
    let (back, status, body) = browser
        .submit_at(at, page, &[("decision", "approve")])
        .await;
    assert!(status.is_success(), "{back}: {status}: {body}");
    code_at(&back, callback)
}

fn code_at(url: &str, callback: &str) -> String {
    assert!(url.starts_with(callback), "back at the portal: {url}");
    assert_eq!(
        query_value(url, "state").as_deref(),
        Some("portal-state"),
        "{url}"
    );
    query_value(url, "code").unwrap_or_else(|| panic!("a code: {url}"))
}

async fn token_request(lab: &Lab, id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let reply = lab
        .hub
        .web_client()
        .post(format!("{}/token", lab.hub.url))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap())
}

async fn api(
    lab: &Lab,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = lab.hub.web_client();
    let url = format!("{}{path}", lab.hub.url);
    let request = match method {
        "POST" => client.post(url).json(&body.unwrap_or(Value::Null)),
        _ => client.get(url),
    };
    let reply = request.bearer_auth(token).send().await.unwrap();
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_acts_only_as_far_as_its_user_let_it_and_a_service_account_as_itself() {
    let lab = Lab::new();
    let callback = portal_site();
    std::fs::create_dir_all(lab.src.home.join("shared")).unwrap();
    std::fs::write(lab.src.home.join("shared/results.csv"), b"a,b\n").unwrap();
    std::fs::write(lab.src.home.join("a.txt"), b"alpha").unwrap();

    // Alice registers her portal; the secret is shown once.
    let (id, secret) = lab.create_portal("Lab portal", &callback);
    let listed = lab.ferry(&["app", "list"]).ok().to_string();
    assert!(
        listed.contains(&id) && listed.contains("Lab portal"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "{listed}");

    // Her browser: signed in at the hub, sent there by the portal.
    let mut browser = Browser::new(&lab.hub);
    let login = browser.get("/login").await;
    browser
        .submit(
            &login,
            &[("username", "alice"), ("password", "correct horse battery")],
        )
        .await;
    let (at, consent) = authorize(&mut browser, &id, &callback, "openid my-endpoints").await;
    assert!(consent.contains("Lab portal"), "{consent}");
    assert!(consent.contains("see your endpoints"), "{consent}");
    let code = approve(&mut browser, &at, &consent, &callback).await;

    // The portal exchanges the code with its secret.
    let (status, tokens) = token_request(
        &lab,
        &id,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "my-endpoints openid", "{tokens}");
    assert!(
        tokens.get("refresh_token").is_none_or(Value::is_null),
        "{tokens}"
    );
    let seeing = tokens["access_token"].as_str().unwrap().to_string();
    let (status, endpoints) = api(&lab, &seeing, "GET", "/api/v1/endpoints", None).await;
    assert_eq!(status, 200, "{endpoints}");
    assert_eq!(endpoints.as_array().unwrap().len(), 2, "{endpoints}");
    // Without `transfer` it cannot submit: by the API, or the CLI.
    let submission = serde_json::json!({
        "source_endpoint": "src",
        "destination_endpoint": "dst",
        "items": [{"source_path": "/~/a.txt", "destination_path": "/~/b.txt"}],
    });
    let (status, refused) = api(&lab, &seeing, "POST", "/api/v1/tasks", Some(submission)).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"], "insufficient_scope", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("transfer"),
        "{refused}"
    );
    let cli = lab.src.run_as(
        &lab.hub,
        &seeing,
        &["transfer", "src:/~/a.txt", "dst:/~/b.txt"],
    );
    assert_ne!(cli.code, Some(0), "{cli:?}");
    assert!(cli.stderr.contains("transfer"), "{cli:?}");

    // The portal asks for more: she is asked again, and it transfers.
    let (at, consent) = authorize(
        &mut browser,
        &id,
        &callback,
        "openid transfer offline_access",
    )
    .await;
    assert!(
        consent.contains("keep this access while you are away"),
        "{consent}"
    );
    let code = approve(&mut browser, &at, &consent, &callback).await;
    let (status, tokens) = token_request(
        &lab,
        &id,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let sent = lab.src.run_as(
        &lab.hub,
        &access,
        &["transfer", "src:/~/a.txt", "dst:/~/b.txt"],
    );
    let task = ferry_tests::line_value(sent.ok(), "Task ID: ")
        .unwrap_or_else(|| panic!("{sent:?}"))
        .to_string();
    let done = lab.wait(&task);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(std::fs::read(lab.dst.home.join("b.txt")).unwrap(), b"alpha");
    // Asking again for no more than granted: straight back, no page.
    let (back, _) = authorize(&mut browser, &id, &callback, "transfer").await;
    code_at(&back, &callback);

    // She revokes the portal: its refresh and access tokens end at once.
    let consents = lab.ferry(&["app", "consents", "--json"]).ok().to_string();
    let consents: Value = serde_json::from_str(&consents).unwrap();
    assert_eq!(consents[0]["client_id"], id.as_str(), "{consents}");
    lab.ferry(&["app", "revoke", &id]).ok();
    let (status, refused) = token_request(
        &lab,
        &id,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    let (status, _) = api(&lab, &access, "GET", "/api/v1/tasks", None).await;
    assert_eq!(status, 401);

    // A service account: its own identity, tokens from its secret.
    let made = lab
        .ferry(&["app", "create", "nightly", "--type", "service", "--json"])
        .ok()
        .to_string();
    let made: Value = serde_json::from_str(&made).unwrap();
    let (sid, ssecret, identity) = (
        made["client_id"].as_str().unwrap().to_string(),
        made["client_secret"].as_str().unwrap().to_string(),
        made["identity"].as_str().unwrap().to_string(),
    );
    assert!(identity.starts_with(&format!("{sid}@clients.")), "{made}");
    let (status, tokens) = token_request(
        &lab,
        &sid,
        &ssecret,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let robot = tokens["access_token"].as_str().unwrap().to_string();
    let me = lab.src.run_as(&lab.hub, &robot, &["whoami"]);
    assert_eq!(me.ok().trim(), identity, "{me:?}");
    let toml = std::fs::read_to_string(lab.src.dir.join("endpoint.toml")).unwrap();
    let src_id = ferry_tests::line_value(&toml, "id = ")
        .unwrap()
        .trim_matches('"')
        .to_string();
    let target = format!("{src_id}:/~/shared/");
    let before = lab.src.run_as(&lab.hub, &robot, &["ls", &target]);
    assert_ne!(before.code, Some(0), "not shared yet: {before:?}");
    std::fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/shared,1,1\n").unwrap();
    lab.src.run(&["-reload"]).ok();
    lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/shared",
        "--permissions",
        "r",
        "--identity",
        &identity,
    ])
    .ok();
    let after = lab.src.run_as(&lab.hub, &robot, &["ls", &target]);
    assert!(after.ok().contains("results.csv"), "{after:?}");
    // Not beyond the share.
    let outside = lab
        .src
        .run_as(&lab.hub, &robot, &["ls", &format!("{src_id}:/~/")]);
    assert_ne!(outside.code, Some(0), "{outside:?}");

    // Deleting it ends its tokens.
    lab.ferry(&["app", "delete", &sid]).ok();
    let gone = lab.src.run_as(&lab.hub, &robot, &["ls", &target]);
    assert_ne!(gone.code, Some(0), "{gone:?}");
}
