//! Federated login and identity policy, against real OpenID providers:
//! two issuers of the certified `oidc-provider` (node-oidc-provider, run
//! by `tests/web/oidc-idp.mjs` on loopback), one vouching for
//! example.edu ("Campus login"), one for example.org ("Org login").
//!
//! A browser (driven over HTTP, following the pages' links and forms as a
//! person would) signs in through Campus: the hub makes an account for
//! x@example.edu, which `ferry whoami` shows after `ferry login`. From
//! the account page x links x@example.org through Org; `ferry whoami
//! --linked-identities` lists both. Alice (a password account) then
//! requires example.org on her endpoint `src`: her token, a fresh login
//! that has only her own identity, and her browser session are refused
//! with one line that names the domain and the page to link one at, while
//! `dst` still answers; linking x@example.org (x's) to her is refused;
//! once she links alice@example.org, her session opens `src` at once, the
//! command line's after `ferry login` again.
//!
//! Needs `node` and `npm ci` in `tests/web`; without them the test says
//! SKIPPED, unless `FERRY_REQUIRE_BROWSER=1` (as in CI), when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::browser::{Browser, auth_code, link};
use ferry_tests::{Hub, Lab, User, edit_config, ferry_bin, on_path, skip, wait_until};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// What is missing to run the providers here, if anything.
fn missing() -> Option<String> {
    let mut missing = Vec::new();
    if !on_path("node") {
        missing.push("node is not on PATH".to_string());
    }
    let module = web_dir().join("node_modules/oidc-provider");
    if !module.is_dir() {
        missing.push(format!(
            "{} is missing (npm ci in tests/web)",
            module.display()
        ));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// The providers' node process; ended when the test ends.
struct Providers {
    child: Child,
    issuers: HashMap<String, String>,
}

impl Drop for Providers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECRET: &str = "a client secret of the hub's";

/// Starts one provider per name, each with a client for `hub`.
fn start_providers(hub: &Hub, names: &[&str]) -> Providers {
    let spec: Vec<_> = names
        .iter()
        .map(|name| {
            serde_json::json!({
                "name": name,
                "client_id": format!("ferry-hub-{name}"),
                "client_secret": SECRET,
                "redirect_uri": format!("{}/auth/oidc/{name}/callback", hub.url),
            })
        })
        .collect();
    let mut child = Command::new("node")
        .arg("oidc-idp.mjs")
        .current_dir(web_dir())
        .env("FERRY_IDP_SPEC", serde_json::to_string(&spec).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Its warnings and errors land in the test's output.
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    // Reads to the end, so the providers never write to a closed pipe.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut issuers = HashMap::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the identity providers did not start within a minute");
        if line == "READY" {
            break;
        }
        if let Some(rest) = line.strip_prefix("ISSUER ") {
            let (name, url) = rest.split_once(' ').unwrap();
            issuers.insert(name.to_string(), url.to_string());
        }
    }
    assert_eq!(issuers.len(), names.len(), "{issuers:?}");
    Providers { child, issuers }
}

/// Points `hub` at the providers and restarts it.
fn configure(hub: &mut Hub, providers: &Providers) {
    std::fs::write(hub.dir.join("idp-secret"), format!("{SECRET}\n")).unwrap();
    edit_config(
        &hub.dir.join("hub.toml"),
        "identity_max_age_hours = 24",
        "identity_max_age_hours = 2",
    );
    let mut config = std::fs::read_to_string(hub.dir.join("hub.toml")).unwrap();
    config.push_str("local_domain = \"hub.test\"\n");
    for (name, display, domain) in [
        ("campus", "Campus login", "example.edu"),
        ("org", "Org login", "example.org"),
    ] {
        config.push_str(&format!(
            "\n[[identity_provider]]\nname = \"{name}\"\ndisplay_name = \"{display}\"\nissuer = \"{}\"\nclient_id = \"ferry-hub-{name}\"\nclient_secret_file = \"idp-secret\"\ndomains = [\"{domain}\"]\n",
            providers.issuers[name]
        ));
    }
    std::fs::write(hub.dir.join("hub.toml"), config).unwrap();
    hub.kill();
    hub.serve();
}

/// Follows a link that leads to a provider's login page, signs in there
/// as `login`, and goes on through the provider's pages (its consent, and
/// its "end the other session" step when another account was signed in
/// there) until the hub answers: (where, status, the hub's page).
async fn at_provider(
    browser: &mut Browser,
    hub: &Hub,
    href: &str,
    login: &str,
) -> (String, reqwest::StatusCode, String) {
    let (at, status, page) = browser.visit(href).await;
    assert!(status.is_success(), "{at}: {status}: {page}");
    assert!(
        page.contains("name=\"login\""),
        "not the provider's login page ({at}): {page}"
    );
    let mut now = browser
        .submit_at(&at, &page, &[("login", login), ("password", "anything")])
        .await;
    for _ in 0..4 {
        if now.0.starts_with(&hub.url) {
            return now;
        }
        let (at, status, page) = now;
        assert!(status.is_success(), "{at}: {status}: {page}");
        now = browser.submit_at(&at, &page, &[]).await;
    }
    panic!("the provider never sent the browser back to the hub: {now:?}");
}

/// [`at_provider`], which must end on a page of the hub's.
async fn through_provider(
    browser: &mut Browser,
    hub: &Hub,
    href: &str,
    login: &str,
) -> (String, String) {
    let (at, status, page) = at_provider(browser, hub, href, login).await;
    assert!(status.is_success(), "{at}: {status}: {page}");
    (at, page)
}

/// `ferry login` as `user` (its home), approved in `browser`, which is
/// signed in already.
async fn cli_login(hub: &Hub, user: &User, browser: &mut Browser) {
    let mut login = Command::new(ferry_bin())
        .args(["login", "--hub", &hub.url, "--hub-ca"])
        .arg(hub.ca_cert())
        .env_clear()
        .env("HOME", &user.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(login.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no login URL");
        if line.starts_with("https://") {
            break line.trim().to_string();
        }
    };
    let consent = browser.get(&url).await;
    assert!(
        consent.contains("value=\"approve\""),
        "not a consent page: {consent}"
    );
    let code_page = browser.submit(&consent, &[("decision", "approve")]).await;
    let code = auth_code(&code_page);
    writeln!(login.stdin.take().unwrap(), "{code}").unwrap();
    let done = login.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{done:?}");
}

/// `ferry ARGS` as `user`, with the credentials `ferry login` saved.
fn ferry(user: &User, args: &[&str]) -> ferry_tests::Ran {
    Command::new(ferry_bin())
        .args(args)
        .env_clear()
        .env("HOME", &user.home)
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into()
}

/// The id of alice's endpoint `name`.
fn endpoint_id(lab: &Lab, name: &str) -> String {
    let out = lab.ferry(&["endpoint", "search", name, "--json"]);
    let found: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    found[0]["id"].as_str().unwrap().to_string()
}

fn refused_for_domain(out: &ferry_tests::Ran, hub: &Hub) {
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    let expected = format!(
        "endpoint src requires an identity from example.org authenticated within 2h: link one at {}/account (then `ferry login` again)",
        hub.url
    );
    assert!(out.stderr.contains(&expected), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_upstream_links_an_identity_and_an_endpoint_asks_for_its_domain() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("FERRY_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "FERRY_REQUIRE_BROWSER=1 but {why}"
        );
        skip(&why);
        return;
    }
    let mut lab = Lab::new();
    let providers = start_providers(&lab.hub, &["campus", "org"]);
    configure(&mut lab.hub, &providers);

    // x signs in through Campus: a new account, x@example.edu.
    let mut xb = Browser::new(&lab.hub);
    let login = xb.get("/login").await;
    let campus = link(&login, "Campus login").expect("the login page offers Campus login");
    let (at, home) = through_provider(&mut xb, &lab.hub, &campus, "x@example.edu").await;
    assert!(at.starts_with(&lab.hub.url), "back at the hub: {at}");
    assert!(home.contains("Sign out"), "signed in: {home}");
    let x = User::new();
    cli_login(&lab.hub, &x, &mut xb).await;
    let me = ferry(&x, &["whoami", "--json"]);
    assert_eq!(me.code, Some(0), "{me:?}");
    let me: serde_json::Value = serde_json::from_str(&me.stdout).unwrap();
    assert_eq!(me["identity"], "x@example.edu", "{me}");
    assert_eq!(me["username"], "x", "{me}");
    let plain = ferry(&x, &["whoami"]);
    assert_eq!(plain.stdout, "x@example.edu\n", "{plain:?}");

    // x links x@example.org from the account page.
    let account = xb.get("/account").await;
    let org = link(&account, "Link an identity from Org login").expect("a link button");
    let (at, account) = through_provider(&mut xb, &lab.hub, &org, "x@example.org").await;
    assert!(at.ends_with("/account"), "{at}");
    assert!(account.contains("x@example.org"), "{account}");
    let linked = ferry(&x, &["whoami", "--linked-identities"]);
    assert_eq!(linked.code, Some(0), "{linked:?}");
    assert!(linked.stdout.starts_with("x@example.edu\n"), "{linked:?}");
    assert!(
        linked
            .stdout
            .contains("  x@example.edu (campus, signed in ")
            && linked.stdout.contains("  x@example.org (org)"),
        "both, and which this login authenticated: {linked:?}"
    );
    let json = ferry(&x, &["whoami", "--linked-identities", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let all: Vec<&str> = json["linked_identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["identity"].as_str().unwrap())
        .collect();
    assert_eq!(all, ["x@example.edu", "x@example.org"], "{json}");

    // Alice requires example.org on src.
    let set = lab.ferry(&[
        "endpoint",
        "update",
        "src",
        "--allowed-domains",
        "example.org",
        "--json",
    ]);
    assert_eq!(set.code, Some(0), "{set:?}");
    let set: serde_json::Value = serde_json::from_str(&set.stdout).unwrap();
    assert_eq!(set["allowed_domains"], serde_json::json!(["example.org"]));
    // Her token proves no sign-in at all; dst has no policy.
    refused_for_domain(&lab.ferry(&["ls", "src:/~/"]), &lab.hub);
    refused_for_domain(
        &lab.ferry(&["transfer", "src:/~/", "dst:/~/copy", "-r"]),
        &lab.hub,
    );
    // (Its daemon dials the restarted hub again first.)
    wait_until(Duration::from_secs(60), "dst answers ls", || {
        lab.ferry(&["ls", "dst:/~/"]).code == Some(0)
    });

    // A fresh login with only her own identity (alice@hub.test): refused.
    let mut ab = Browser::new(&lab.hub);
    let login = ab.get("/login").await;
    ab.submit(
        &login,
        &[("username", "alice"), ("password", "correct horse battery")],
    )
    .await;
    let alice = User::new();
    cli_login(&lab.hub, &alice, &mut ab).await;
    let me = ferry(&alice, &["whoami", "--json"]);
    let me: serde_json::Value = serde_json::from_str(&me.stdout).unwrap();
    assert_eq!(me["identity"], "alice@hub.test", "{me}");
    refused_for_domain(&ferry(&alice, &["ls", "src:/~/"]), &lab.hub);
    // Her browser session, through the API the web app uses, likewise.
    let account = ab.get("/account").await;
    let src_id = endpoint_id(&lab, "src");
    let list = serde_json::json!({"op": "list", "path": "/~/"});
    let fs = format!("/api/v1/endpoints/{src_id}/fs");
    let (status, body) = ab.api_post(&account, &fs, &list).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    assert_eq!(body["error"], "identity_required", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("requires an identity from example.org"),
        "{body}"
    );
    // x@example.org is x's: linking it to alice is refused.
    let org = link(&account, "Link an identity from Org login").unwrap();
    let (_, status, page) = at_provider(&mut ab, &lab.hub, &org, "x@example.org").await;
    assert_eq!(status.as_u16(), 409, "{page}");
    assert!(page.contains("already linked to another account"), "{page}");

    // She links alice@example.org; the login made before still proves
    // only what it had, a new one opens src.
    let org = link(&account, "Link an identity from Org login").unwrap();
    let (_, account) = through_provider(&mut ab, &lab.hub, &org, "alice@example.org").await;
    assert!(account.contains("alice@example.org"), "{account}");
    // The session that linked it has it now (once src's daemon is back
    // from the hub's restart); the token made before has not.
    let mut listed = None;
    for _ in 0..60 {
        let (status, body) = ab.api_post(&account, &fs, &list).await;
        assert_ne!(status.as_u16(), 403, "{body}");
        if status.is_success() {
            listed = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(listed.is_some(), "src never listed for the session");
    refused_for_domain(&ferry(&alice, &["ls", "src:/~/"]), &lab.hub);
    cli_login(&lab.hub, &alice, &mut ab).await;
    wait_until(Duration::from_secs(60), "src answers ls", || {
        ferry(&alice, &["ls", "src:/~/"]).code == Some(0)
    });
    // Clearing the policy opens it to her token again.
    let clear = lab.ferry(&["endpoint", "update", "src", "--allowed-domains", ""]);
    assert_eq!(clear.code, Some(0), "{clear:?}");
    assert_eq!(lab.ferry(&["ls", "src:/~/"]).code, Some(0));
}
