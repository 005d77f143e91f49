//! The hub's login and web pages under attack, over real HTTPS to a real
//! `ferry-hub`: password guesses sent in parallel, a sign-in form with a
//! planted CSRF cookie, the headers every answer carries, what the consent
//! and code pages show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Hub, html_unescape};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

const PASSWORD: &str = "correct horse battery";
/// The hub's limits: failed sign-ins per account and per address.
const PER_ACCOUNT: usize = 5;
const PER_ADDRESS: usize = 20;
/// An S256 challenge (RFC 7636 appendix B).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The hidden fields of a page's forms.
fn hidden(page: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for piece in page.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = piece.split_once("\" value=\"").unwrap();
        fields.push((
            html_unescape(name),
            html_unescape(rest.split_once('"').unwrap().0),
        ));
    }
    fields
}

/// What a page says, without its tags (hidden fields are not shown).
fn visible(page: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    html_unescape(&text)
}

/// `name=value` of every cookie set.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_header(set: &[String]) -> String {
    set.iter()
        .map(|c| c.split(';').next().unwrap().trim().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A sign-in form as a browser holds it: its cookie and its fields.
struct LoginForm {
    cookie: String,
    fields: Vec<(String, String)>,
}

async fn login_form(hub: &Hub, http: &reqwest::Client) -> LoginForm {
    let page = http.get(format!("{}/login", hub.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = cookie_header(&set_cookies(page.headers()));
    let fields = hidden(&page.text().await.unwrap());
    LoginForm { cookie, fields }
}

async fn sign_in(
    hub: &Hub,
    http: &reqwest::Client,
    form: &LoginForm,
    user: &str,
    password: &str,
) -> StatusCode {
    let mut fields = form.fields.clone();
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    http.post(format!("{}/login", hub.url))
        .header("cookie", &form.cookie)
        .form(&fields)
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends every `(user, password)` at once; the answers in the same order.
async fn sign_in_at_once(
    hub: &Hub,
    http: &reqwest::Client,
    form: &LoginForm,
    attempts: Vec<(String, String)>,
) -> Vec<StatusCode> {
    let mut fields = Vec::new();
    for (user, password) in attempts {
        let mut f = form.fields.clone();
        f.push(("username".into(), user));
        f.push(("password".into(), password));
        fields.push(f);
    }
    // Every request is built and ready before any is sent.
    let requests: Vec<_> = fields
        .iter()
        .map(|f| {
            http.post(format!("{}/login", hub.url))
                .header("cookie", &form.cookie)
                .form(f)
                .build()
                .unwrap()
        })
        .collect();
    let handles: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let http = http.clone();
            tokio::spawn(async move { http.execute(r).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap());
    }
    statuses
}

fn count(statuses: &[StatusCode], which: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == which).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_from_one_address_meet_both_limits() {
    let hub = Hub::start();
    hub.add_user("alice", PASSWORD);
    let http = hub.web_client();
    let form = login_form(&hub, &http).await;

    // Per account: twelve guesses at once, five may be checked.
    let guesses = (0..12)
        .map(|i| ("alice".to_string(), format!("guess {i}")))
        .collect();
    let answers = sign_in_at_once(&hub, &http, &form, guesses).await;
    let wrong = count(&answers, StatusCode::UNAUTHORIZED);
    assert!(
        wrong <= PER_ACCOUNT,
        "{wrong} guesses were checked against one account: {answers:?}"
    );
    assert_eq!(
        wrong + count(&answers, StatusCode::TOO_MANY_REQUESTS),
        answers.len(),
        "{answers:?}"
    );

    // Per address: a spray over many names, all at once.
    let spray = (0..26)
        .map(|i| (format!("user{i}"), "spray spray".to_string()))
        .collect();
    let sprayed = sign_in_at_once(&hub, &http, &form, spray).await;
    let checked = wrong + count(&sprayed, StatusCode::UNAUTHORIZED);
    assert!(
        checked <= PER_ADDRESS,
        "{checked} guesses were checked from one address: {answers:?} {sprayed:?}"
    );
    assert!(
        count(&sprayed, StatusCode::TOO_MANY_REQUESTS) >= 26 + wrong - PER_ADDRESS,
        "{sprayed:?}"
    );
    assert_eq!(
        count(&sprayed, StatusCode::UNAUTHORIZED) + count(&sprayed, StatusCode::TOO_MANY_REQUESTS),
        sprayed.len(),
        "{sprayed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_racing_wrong_ones_does_not_lift_the_lock() {
    let hub = Hub::start();
    hub.add_user("alice", PASSWORD);
    let http = hub.web_client();
    let form = login_form(&hub, &http).await;

    let mut attempts: Vec<(String, String)> = (0..9)
        .map(|i| ("alice".to_string(), format!("guess {i}")))
        .collect();
    attempts.insert(4, ("alice".to_string(), PASSWORD.to_string()));
    let raced = sign_in_at_once(&hub, &http, &form, attempts).await;
    // Whatever the right password did, the guesses keep counting: at most
    // five wrong passwords are ever checked for the account.
    let mut wrong = count(&raced, StatusCode::UNAUTHORIZED);
    let mut after = Vec::new();
    for i in 0..PER_ACCOUNT + 1 {
        let status = sign_in(&hub, &http, &form, "alice", &format!("later {i}")).await;
        after.push(status);
    }
    wrong += count(&after, StatusCode::UNAUTHORIZED);
    assert!(
        wrong <= PER_ACCOUNT,
        "{wrong} wrong passwords were checked: {raced:?} then {after:?}"
    );
    assert_eq!(
        sign_in(&hub, &http, &form, "alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the account is locked: {raced:?} then {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_login_csrf_pair_is_refused() {
    let hub = Hub::start();
    hub.add_user("alice", PASSWORD);
    let http = hub.web_client();

    // The hub's own cookies are host-only, secure and for the whole site.
    let page = http.get(format!("{}/login", hub.url)).send().await.unwrap();
    let issued = set_cookies(page.headers());
    assert!(!issued.is_empty());
    for cookie in &issued {
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(cookie.contains("; Secure"), "{cookie}");
        assert!(
            cookie.contains("; Path=/;") || cookie.ends_with("; Path=/"),
            "{cookie}"
        );
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    }
    let form = LoginForm {
        cookie: cookie_header(&issued),
        fields: hidden(&page.text().await.unwrap()),
    };

    // A well-formed token another service on this host set as a cookie,
    // and the same token in the form: the hub never issued it.
    let planted = "pLaNtEdToKeNpLaNtEdToKeNpLaNtEdToKeNpLaNtEd";
    let forged = LoginForm {
        cookie: format!("ferry_login_csrf={planted}; __Host-ferry_login_csrf={planted}"),
        fields: vec![("csrf".into(), planted.into())],
    };
    assert_eq!(
        sign_in(&hub, &http, &forged, "alice", PASSWORD).await,
        StatusCode::FORBIDDEN
    );

    // The hub's own pair, posted from another site (a browser says so).
    let mut fields = form.fields.clone();
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), PASSWORD.into()));
    for site in ["cross-site", "same-site"] {
        let answer = http
            .post(format!("{}/login", hub.url))
            .header("cookie", &form.cookie)
            .header("sec-fetch-site", site)
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{site}");
    }
    // From the hub's own page, it signs in.
    let answer = http
        .post(format!("{}/login", hub.url))
        .header("cookie", &form.cookie)
        .header("sec-fetch-site", "same-origin")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(answer.headers())
            .iter()
            .any(|c| c.starts_with("__Host-ferry_session=") && c.contains("; Path=/")),
        "{:?}",
        answer.headers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_hsts_and_api_answers_are_not_sniffed_or_stored() {
    let hub = Hub::start();
    hub.add_user("alice", PASSWORD);
    let token = hub.token("alice");
    let http = hub.web_client();
    for (path, bearer) in [
        ("/", None),
        ("/ca.crt", None),
        ("/no/such/page", None),
        ("/api/v1/endpoints", None),
        ("/api/v1/endpoints", Some(&token)),
        ("/api/v1/tasks", Some(&token)),
    ] {
        let mut request = http.get(format!("{}{path}", hub.url));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let headers = answer.headers();
        let hsts = headers
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(hsts.starts_with("max-age="), "{path}: {headers:?}");
        if path.starts_with("/api/") {
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["cache-control"], "no-store", "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_names_where_the_code_goes() {
    let hub = Hub::start();
    hub.add_user("alice", PASSWORD);
    let http = hub.web_client();
    let loopback = "http://127.0.0.1:4711/ferry-callback";
    let code_page = format!("{}/auth/code", hub.url);
    for (redirect, shown) in [
        (loopback.to_string(), "http://127.0.0.1:4711"),
        (code_page.clone(), hub.url.as_str()),
    ] {
        let authorize = reqwest::Url::parse_with_params(
            &format!("{}/authorize", hub.url),
            [
                ("response_type", "code"),
                ("client_id", "ferry-cli"),
                ("redirect_uri", redirect.as_str()),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("state", "s"),
            ],
        )
        .unwrap();
        let login = http.get(authorize.clone()).send().await.unwrap();
        let cookie = cookie_header(&set_cookies(login.headers()));
        let mut fields = hidden(&login.text().await.unwrap());
        fields.push(("username".into(), "alice".into()));
        fields.push(("password".into(), PASSWORD.into()));
        let signed_in = http
            .post(format!("{}/login", hub.url))
            .header("cookie", &cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let session = cookie_header(&set_cookies(signed_in.headers()));
        let consent = http
            .get(authorize)
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(consent.status(), StatusCode::OK);
        let page = consent.text().await.unwrap();
        assert!(
            page.contains("name=\"decision\""),
            "not the consent page: {page}"
        );
        assert!(
            visible(&page).contains(shown),
            "the consent page does not say the code goes to {shown}: {}",
            visible(&page)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_page_shows_no_text_from_the_link() {
    let hub = Hub::start();
    let http = hub.web_client();
    let page = |query: &[(&str, &str)]| {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/auth/code", hub.url), query).unwrap();
        let http = http.clone();
        async move {
            let answer = http.get(url).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            visible(&answer.text().await.unwrap())
        }
    };
    let lure = "Your account is locked: call support at +1 555 0100";
    for query in [
        vec![("error", "server_error"), ("error_description", lure)],
        vec![("error", lure)],
        vec![("error", "access_denied"), ("error_description", lure)],
        vec![("code", lure)],
    ] {
        let shown = page(&query).await;
        assert!(!shown.contains("call support"), "{query:?}: {shown}");
    }
    // A code as the hub issues it is shown.
    let code = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    assert!(page(&[("code", code)]).await.contains(code));
    assert!(
        page(&[("error", "access_denied")])
            .await
            .contains("You denied the request")
    );
}
