//! The web app through the router, as a browser meets it: a signed-in
//! session, forms with its token, answers read as HTML.

use super::view::shown_name;
use crate::grants;
use crate::secrets::{random_token, token_hash};
use crate::server::Hub;
use crate::session::SESSION_COOKIE;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

const LAPTOP: &str = "11111111-0000-0000-0000-000000000001";
const CLUSTER: &str = "11111111-0000-0000-0000-000000000002";

struct Browser {
    hub: Arc<Hub>,
    cookie: String,
    csrf: String,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Browser {
    /// Alice, signed in, with endpoints `laptop` and `cluster`.
    fn alice() -> Self {
        let hub = crate::web::for_tests();
        let alice = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store
            .create_endpoint(LAPTOP, alice, "laptop", 0)
            .unwrap();
        hub.store
            .create_endpoint(CLUSTER, alice, "cluster", 0)
            .unwrap();
        let token = random_token(32).unwrap();
        let csrf = random_token(32).unwrap();
        hub.store
            .put_session(&token_hash(&token), alice, &csrf, grants::now() + 3600)
            .unwrap();
        Browser {
            hub,
            cookie: format!("{SESSION_COOKIE}={token}"),
            csrf,
        }
    }

    async fn send(&self, request: axum::http::request::Builder, body: Body) -> Answer {
        let request = request
            .header(header::COOKIE, &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .body(body)
            .unwrap();
        let response = crate::web::router(self.hub.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri), Body::empty()).await
    }

    async fn post(&self, uri: &str, fields: &[(&str, &str)]) -> Answer {
        let mut pairs = vec![("csrf", self.csrf.as_str())];
        pairs.extend_from_slice(fields);
        self.send(
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(crate::oauth::encode_form(&pairs)),
        )
        .await
    }
}

/// Both panels open: `laptop` at `/~/data/` in panel 1, `cluster` at
/// `/~/in/` in panel 2.
fn panels() -> Vec<(&'static str, &'static str)> {
    vec![
        ("c1", "laptop"),
        ("o1", LAPTOP),
        ("p1", "/~/data/"),
        ("c2", "cluster"),
        ("o2", CLUSTER),
        ("p2", "/~/in/"),
    ]
}

#[test]
fn names_that_are_not_utf8_are_shown_with_their_bytes_escaped() {
    assert_eq!(shown_name(b"plain name.txt"), "plain name.txt");
    assert_eq!(shown_name("résumé".as_bytes()), "résumé");
    assert_eq!(shown_name(b"bad\xffname"), "bad\\xFFname");
}

#[tokio::test]
async fn start_sends_the_checked_entries_into_the_other_panel_byte_for_byte() {
    let alice = Browser::alice();
    let mut form = panels();
    form.extend([
        ("from", "1"),
        ("sel1", "f:bad%FFname"),
        ("sel1", "d:run%252"),
        ("label", "nightly"),
        ("sync", "checksum"),
        ("delete", "on"),
        ("exclude", "*.tmp\r\n\r\nscratch/\r\n"),
        ("bwlimit", "50M"),
    ]);
    let answer = alice.post("/files/transfer", &form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.headers[header::LOCATION].to_str().unwrap();
    let task_id = location.split("started=").nth(1).unwrap();
    let work = alice.hub.store.task_work(task_id).unwrap().unwrap();
    let items: Vec<(&[u8], &[u8], bool)> = work
        .items
        .iter()
        .map(|i| (i.source.as_bytes(), i.destination.as_bytes(), i.recursive))
        .collect();
    assert_eq!(
        items,
        vec![
            (
                &b"/~/data/bad\xffname"[..],
                &b"/~/in/bad\xffname"[..],
                false
            ),
            (&b"/~/data/run%2"[..], &b"/~/in/run%2"[..], true),
        ]
    );
    assert!(work.options.delete);
    assert_eq!(
        work.options.filters,
        vec![
            ferry_proto::filter::FilterRule::exclude("*.tmp"),
            ferry_proto::filter::FilterRule::exclude("scratch/"),
        ]
    );
    assert_eq!(work.options.bwlimit, Some(50_000_000));
    assert_eq!(
        work.options.sync_level,
        Some(ferry_proto::task::SyncLevel::Checksum)
    );
    let task = alice.hub.store.task(task_id).unwrap().unwrap();
    assert_eq!(
        (task.source_id.as_str(), task.destination_id.as_str()),
        (LAPTOP, CLUSTER)
    );
    assert_eq!(task.label.as_deref(), Some("nightly"));

    // The page it leads to names the new task.
    let page = alice.get(location).await;
    assert!(
        page.body.contains(&format!("data-task-id=\"{task_id}\"")),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_form_that_cannot_be_done_says_what_to_do_and_changes_nothing() {
    let alice = Browser::alice();
    let mut nothing_checked = panels();
    nothing_checked.push(("from", "2"));
    let mut sneaky = panels();
    sneaky.extend([("from", "1"), ("sel1", "f:..%2Fetc")]);
    let mut one_panel = vec![("c1", "laptop"), ("o1", LAPTOP), ("p1", "/~/")];
    one_panel.extend([("from", "1"), ("sel1", "f:a")]);
    for (form, says) in [
        (nothing_checked, "Check the entries to transfer first"),
        (sneaky, "must not contain “/”"),
        (one_panel, "Open a collection in the other panel first"),
    ] {
        let answer = alice.post("/files/transfer", &form).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(answer.body.contains("role=\"alert\""), "{}", answer.body);
        assert!(answer.body.contains(says), "{says}: {}", answer.body);
    }
    assert!(alice.hub.store.tasks_of(1, 10).unwrap().is_empty());
}

#[tokio::test]
async fn text_from_users_and_endpoints_is_escaped_on_every_page() {
    let alice = Browser::alice();
    let evil = "<img src=x onerror=alert(1)>";
    alice
        .hub
        .store
        .create_endpoint(
            "11111111-0000-0000-0000-000000000003",
            1,
            "<script>alert(1)</script>",
            0,
        )
        .unwrap();
    let mut form = panels();
    form.extend([("from", "1"), ("sel1", "f:a"), ("label", evil)]);
    let started = alice.post("/files/transfer", &form).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let task_id = alice.hub.store.tasks_of(1, 1).unwrap().remove(0).id;
    for uri in [
        "/files?c1=%3Cscript%3E&p1=%3Cb%3E".to_string(),
        "/activity".into(),
        format!("/activity/{task_id}"),
        format!("/activity/{task_id}/live"),
        "/endpoints".into(),
        "/endpoints/11111111-0000-0000-0000-000000000003".into(),
    ] {
        let page = alice.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        for raw in ["<img src=x", "<script>alert", "<b>"] {
            assert!(
                !page.body.contains(raw),
                "{uri} carries {raw}: {}",
                page.body
            );
        }
    }
}

#[tokio::test]
async fn every_app_page_runs_only_the_hubs_own_script() {
    let alice = Browser::alice();
    for uri in ["/", "/files", "/activity", "/endpoints", "/account"] {
        let page = alice.get(uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        let policy = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert_eq!(policy, super::APP_CSP, "{uri}");
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        assert!(!page.body.contains("<script>"), "{uri}: no inline script");
        assert!(
            page.body.contains("<script src=\"/assets/app.js\""),
            "{uri}"
        );
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "{uri}");
        assert_eq!(page.body.matches("<h1").count(), 1, "{uri}: one h1");
    }
    // Another user's task is a page that says so, styled by its own policy.
    let missing = alice
        .get("/activity/99999999-0000-0000-0000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers[header::CONTENT_SECURITY_POLICY],
        crate::web::DEFAULT_CSP
    );
}

#[tokio::test]
async fn create_endpoint_shows_its_setup_key_once_and_the_line_to_run() {
    let alice = Browser::alice();
    let created = alice
        .post("/endpoints/new", &[("name", "lab-server")])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created
        .body
        .split("data-setup-key=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let decoded = ferry_proto::setup_key::SetupKey::decode(key).unwrap();
    assert_eq!(decoded.hub_url, alice.hub.config.url);
    assert!(created.body.contains("ferry -setup "));
    // Listed, not connected; the key is not on the list.
    let list = alice.get("/endpoints").await;
    assert!(list.body.contains("lab-server") && list.body.contains("not connected"));
    assert!(!list.body.contains(key));
    // A name already taken says so.
    let again = alice
        .post("/endpoints/new", &[("name", "lab-server")])
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.body.contains("already have an endpoint named"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn cancel_on_a_task_page_ends_an_active_task() {
    let alice = Browser::alice();
    let mut form = panels();
    form.extend([("from", "1"), ("sel1", "f:a")]);
    alice.post("/files/transfer", &form).await;
    let task_id = alice.hub.store.tasks_of(1, 1).unwrap().remove(0).id;
    let page = alice.get(&format!("/activity/{task_id}")).await;
    assert!(page.body.contains("data-status=\"ACTIVE\""));
    assert!(page.body.contains(">Cancel</button>"));
    let canceled = alice
        .post(&format!("/activity/{task_id}/cancel"), &[])
        .await;
    assert_eq!(canceled.status, StatusCode::SEE_OTHER);
    let page = alice.get(&format!("/activity/{task_id}")).await;
    assert!(
        page.body.contains("data-status=\"CANCELED\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains(">Cancel</button>"));
}

/// A task's page says over how many nodes of each endpoint its latest
/// attempt was spread, and nothing of nodes when it was not.
#[tokio::test]
async fn a_task_page_says_over_how_many_nodes_it_was_spread() {
    let alice = Browser::alice();
    let mut form = panels();
    form.extend([("from", "1"), ("sel1", "f:a")]);
    alice.post("/files/transfer", &form).await;
    let task_id = alice.hub.store.tasks_of(1, 1).unwrap().remove(0).id;
    let line = "<dt>Nodes</dt><dd>2 per endpoint";
    let page = alice.get(&format!("/activity/{task_id}")).await;
    assert!(!page.body.contains("<dt>Nodes</dt>"), "{}", page.body);
    assert!(alice.hub.store.begin_attempt(&task_id, 1).unwrap());
    assert!(alice.hub.store.spread_attempt(&task_id, 1, 2).unwrap());
    for uri in [
        format!("/activity/{task_id}"),
        format!("/activity/{task_id}/live"),
    ] {
        let page = alice.get(&uri).await;
        assert!(page.body.contains(line), "{uri}: {}", page.body);
    }
}

#[tokio::test]
async fn a_token_made_on_the_account_page_works_for_scripts_until_revoked() {
    let alice = Browser::alice();
    let made = alice
        .post(
            "/account/tokens",
            &[("label", "nightly copy"), ("days", "90")],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let token = made
        .body
        .split("data-access-token=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(made.body.contains("export FERRY_TOKEN="));
    let api = |token: String| {
        let hub = alice.hub.clone();
        async move {
            crate::web::router(hub)
                .oneshot(
                    Request::get("/api/v1/endpoints")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(api(token.clone()).await, StatusCode::OK);
    let listed = alice.get("/account").await;
    assert!(listed.body.contains("nightly copy"), "{}", listed.body);
    assert!(!listed.body.contains(&token), "shown only once");
    let grant = alice.hub.store.personal_tokens(1, grants::now()).unwrap()[0]
        .grant_id
        .clone();
    let revoked = alice
        .post(&format!("/account/tokens/{grant}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(api(token).await, StatusCode::UNAUTHORIZED);
    // A name it cannot have says so.
    let unnamed = alice.post("/account/tokens", &[("label", " ")]).await;
    assert_eq!(unnamed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unnamed.body.contains("role=\"alert\""), "{}", unnamed.body);
}

#[tokio::test]
async fn sign_out_other_browsers_keeps_this_one() {
    let alice = Browser::alice();
    let other = random_token(32).unwrap();
    alice
        .hub
        .store
        .put_session(&token_hash(&other), 1, "x", grants::now() + 3600)
        .unwrap();
    let page = alice.get("/account").await;
    assert!(
        page.body.contains("this browser and 1 other"),
        "{}",
        page.body
    );
    let ended = alice.post("/account/sessions/end-others", &[]).await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert!(ended.body.contains("Signed out of 1 other browser."));
    assert!(
        alice
            .hub
            .store
            .session(&token_hash(&other), grants::now())
            .unwrap()
            .is_none()
    );
    assert_eq!(
        alice.get("/account").await.status,
        StatusCode::OK,
        "still signed in here"
    );
}

/// Activity links to the timers; the Timers page lists each with its
/// schedule, and `Delete` ends it.
#[tokio::test]
async fn the_timers_page_lists_a_timer_and_delete_ends_it() {
    let b = Browser::alice();
    let empty = b.get("/timers").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No timers"), "{}", empty.body);
    assert!(b.get("/activity").await.body.contains("href=\"/timers\""));
    let alice = crate::grants::Principal {
        user_id: b.hub.store.user_by_name("alice").unwrap().unwrap().id,
        user_name: "alice".into(),
        client_id: "test".into(),
        scopes: vec![ferry_proto::api::SCOPE_TRANSFER.into()],
        sign_in: Default::default(),
    };
    let id = crate::timers::create(
        &*b.hub.store,
        &alice,
        ferry_proto::task::CreateTimer {
            transfer: ferry_proto::task::SubmitTask {
                submission_id: None,
                source_endpoint: "laptop".into(),
                destination_endpoint: "cluster".into(),
                items: vec![ferry_proto::task::TransferItem {
                    source: ferry_proto::wire_path::WirePath::from_bytes("/~/a"),
                    destination: ferry_proto::wire_path::WirePath::from_bytes("/~/b"),
                    recursive: false,
                }],
                options: Default::default(),
                label: Some("nightly <backup>".into()),
                deadline: None,
                notify: None,
            },
            interval: 86_400,
            start: None,
            stop_after_runs: None,
            stop_after_date: None,
            run_deadline: None,
        },
        grants::now(),
    )
    .unwrap();
    let page = b.get("/timers").await;
    assert!(
        page.body.contains(&format!("data-timer-row=\"{id}\"")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("nightly &lt;backup&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("1d"), "{}", page.body);
    let deleted = b.post(&format!("/timers/{id}/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.body.contains("deleted"), "{}", deleted.body);
    assert!(b.hub.store.timer(&id).unwrap().is_none());
    let again = b.post(&format!("/timers/{id}/delete"), &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

/// "Repeat every" in the transfer options makes a timer of the transfer
/// (its first run now) instead of a single task.
#[tokio::test]
async fn repeat_every_makes_a_timer_of_the_transfer() {
    let b = Browser::alice();
    let mut fields = panels();
    fields.extend_from_slice(&[
        ("from", "1"),
        ("sel1", "f:a.txt"),
        ("repeat", "86400"),
        ("deadline", "3600"),
        ("label", "daily"),
    ]);
    let answer = b.post("/files/transfer", &fields).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.headers[header::LOCATION].to_str().unwrap();
    assert!(location.contains("done=timer"), "{location}");
    let alice = b.hub.store.user_by_name("alice").unwrap().unwrap().id;
    let timers = b.hub.store.timers_of(alice, 10).unwrap();
    assert_eq!(timers.len(), 1);
    let t = &timers[0].timer;
    assert_eq!((t.interval, t.run_deadline), (86_400, Some(3600)));
    assert_eq!(t.label.as_deref(), Some("daily"));
    assert!(
        b.hub.store.tasks_of(alice, 10).unwrap().is_empty(),
        "no task until it runs"
    );
    let shown = b.get(location).await;
    assert!(shown.body.contains("Timer created"), "{}", shown.body);
}

#[tokio::test]
async fn an_endpoints_page_shows_its_owner_the_audit_log_escaped() {
    let alice = Browser::alice();
    let bob = alice.hub.store.add_user("bob", "h", 0).unwrap();
    crate::audit::record(
        &*alice.hub.store,
        100,
        LAPTOP,
        crate::audit::Actor {
            id: bob,
            name: "bob",
        },
        &[crate::audit::Entry {
            task_id: Some("t-42"),
            ..crate::audit::Entry::new(crate::audit::action::READ, b"/~/shared/<b>x")
        }],
    )
    .unwrap();
    let page = alice.get(&format!("/endpoints/{LAPTOP}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Audit log"), "{}", page.body);
    assert!(
        page.body
            .contains("bob read /~/shared/&lt;b&gt;x (task t-42)"),
        "{}",
        page.body
    );
    // Another endpoint's page does not show it.
    let other = alice.get(&format!("/endpoints/{CLUSTER}")).await;
    assert!(!other.body.contains("t-42"), "{}", other.body);
}

/// An endpoint of several machines lists them under Nodes, each with its
/// state; an endpoint of one machine shows no such section.
#[tokio::test]
async fn an_endpoints_page_lists_its_nodes_and_whether_each_is_connected() {
    let alice = Browser::alice();
    let page = alice.get(&format!("/endpoints/{LAPTOP}")).await;
    assert!(
        !page.body.contains(r#"aria-label="Nodes""#),
        "{}",
        page.body
    );
    alice
        .hub
        .store
        .add_endpoint_node(LAPTOP, "node-2", "k2", i64::MAX, 0)
        .unwrap();
    alice
        .hub
        .store
        .set_node_cert(LAPTOP, "node-2", "aa", 1)
        .unwrap();
    alice
        .hub
        .store
        .add_endpoint_node(LAPTOP, "dtn3", "k3", i64::MAX, 0)
        .unwrap();
    let _link = alice.hub.control.connect_for_tests(LAPTOP, None);
    let page = alice.get(&format!("/endpoints/{LAPTOP}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"aria-label="Nodes""#), "{}", page.body);
    for (node, class, state) in [
        ("primary", "on", "connected"),
        ("node-2", "off", "not connected"),
        ("dtn3", "off", "not set up yet"),
    ] {
        let row =
            format!(r#"<td><code>{node}</code></td><td><span class="{class}">{state}</span>"#);
        assert!(page.body.contains(&row), "{row}: {}", page.body);
    }
}

/// An identity policy's refusal links to the page that adds the identity;
/// any other text stays text (escaped).
#[test]
fn a_refusal_naming_the_account_page_links_to_it() {
    let said = "Endpoint src requires an identity from example.org authenticated within 24h: link one at https://hub.test:8443/account (then `ferry login` again).";
    let html = super::view::alert_text(said).into_string();
    assert!(
        html.contains(r#"link one at <a href="https://hub.test:8443/account">https://hub.test:8443/account</a> (then"#),
        "{html}"
    );
    let other = super::view::alert_text("link one at <script>/account").into_string();
    assert!(
        !other.contains("<a ") && other.contains("&lt;script&gt;"),
        "{other}"
    );
}

#[tokio::test]
async fn the_developers_page_registers_an_app_shows_its_secret_once_and_deletes_it() {
    let alice = Browser::alice();
    let empty = alice.get("/developers").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(
        empty.body.contains("aria-current=\"page\">Developers"),
        "{}",
        empty.body
    );
    let refused = alice
        .post(
            "/developers/apps",
            &[
                ("name", "Lab portal"),
                ("type", "portal"),
                ("redirect_uris", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("redirect URIs"), "{}", refused.body);
    let made = alice
        .post(
            "/developers/apps",
            &[
                ("name", "Lab portal"),
                ("type", "portal"),
                (
                    "redirect_uris",
                    "https://portal.example/cb\r\nhttps://portal.example/cb2\r\n",
                ),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let secret = made
        .body
        .split("data-client-secret=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let app = &alice.hub.store.clients_of(1).unwrap()[0];
    assert_eq!(
        app.redirect_uris,
        ["https://portal.example/cb", "https://portal.example/cb2"]
    );
    assert_eq!(
        app.secret_hash.as_deref(),
        Some(token_hash(&secret).as_str())
    );
    let listed = alice.get("/developers").await;
    assert!(listed.body.contains("Lab portal"), "{}", listed.body);
    assert!(!listed.body.contains(&secret), "shown only once");
    let rotated = alice
        .post(
            &format!("/developers/apps/{}/rotate-secret", app.client_id),
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(
        rotated.body.contains("data-client-secret="),
        "{}",
        rotated.body
    );
    assert!(!rotated.body.contains(&secret), "{}", rotated.body);
    let deleted = alice
        .post(&format!("/developers/apps/{}/delete", app.client_id), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(alice.hub.store.clients_of(1).unwrap().is_empty());
}

#[tokio::test]
async fn connected_apps_are_listed_in_plain_words_and_revoke_ends_their_tokens() {
    let alice = Browser::alice();
    let bob = alice.hub.store.add_user("bob", "h", 0).unwrap();
    let owner = grants::Principal {
        user_id: bob,
        user_name: "bob".into(),
        client_id: "ferry-cli".into(),
        scopes: vec!["transfer".into()],
        sign_in: Default::default(),
    };
    let app = crate::apps::create(
        &*alice.hub.store,
        &alice.hub.identity_rules,
        &owner,
        "Bob's <portal>",
        crate::store::ClientKind::Portal,
        &["https://portal.example/cb".to_string()],
        0,
    )
    .unwrap();
    let id = app.row.client_id;
    alice
        .hub
        .store
        .put_consent(1, &id, "my-endpoints offline_access", 5)
        .unwrap();
    let tokens = grants::issue(
        &*alice.hub.store,
        1,
        "alice",
        &id,
        "my-endpoints offline_access",
        "g",
        grants::ACCESS_TTL,
        true,
    )
    .unwrap();
    let page = alice.get("/account").await;
    assert!(page.body.contains("Connected apps"), "{}", page.body);
    assert!(page.body.contains("Bob's &lt;portal&gt;"), "{}", page.body);
    assert!(
        page.body
            .contains("keep this access while you are away; see your endpoints"),
        "{}",
        page.body
    );
    let revoked = alice.post(&format!("/account/apps/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(!revoked.body.contains("&lt;portal&gt;"), "{}", revoked.body);
    for (token, kind) in [
        (&tokens.access_token, crate::store::TokenKind::Access),
        (
            tokens.refresh_token.as_ref().unwrap(),
            crate::store::TokenKind::Refresh,
        ),
    ] {
        assert_eq!(
            alice
                .hub
                .store
                .token(&token_hash(token), kind, grants::now())
                .unwrap(),
            None
        );
    }
    let again = alice.post(&format!("/account/apps/{id}/revoke"), &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn get_link_is_offered_for_the_checked_entry_and_says_why_it_cannot_make_one() {
    let alice = Browser::alice();
    let mut two = panels();
    two.extend([("from", "1"), ("sel1", "f:a"), ("sel1", "f:b")]);
    let mut one = panels();
    one.extend([("from", "1"), ("sel1", "f:results.csv")]);
    let mut budget = one.clone();
    budget.push(("link_max_bytes1", "10 GB"));
    let mut expiry = one.clone();
    expiry.push(("link_expires1", "99999999"));
    // Panel 0's fields are not panel 1's.
    let mut other_panel = one.clone();
    other_panel.push(("link_max_bytes0", "lots"));
    for (form, says) in [
        (two, "Check exactly one file or folder to get a link to"),
        (
            budget,
            "The link's byte budget is a number of bytes with an optional K, M or G",
        ),
        (expiry, "Choose when the link expires from the list."),
        // The endpoint must confirm it shares the path: it is not connected.
        (one, "is not connected"),
        (other_panel, "is not connected"),
    ] {
        let answer = alice.post("/files/link", &form).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(answer.body.contains("role=\"alert\""), "{}", answer.body);
        assert!(answer.body.contains(says), "{says}: {}", answer.body);
    }
    assert!(alice.hub.store.links_of(1).unwrap().is_empty());
    // The control, by its name, in the owner's panel of a listed folder only.
    let control = r#"formaction="/files/link">Get link</button>"#;
    assert!(
        super::view::panel_actions(1, true)
            .into_string()
            .contains(control)
    );
    assert!(
        !super::view::panel_actions(1, false)
            .into_string()
            .contains(control)
    );
}
