//! The registry case end to end: a third-party site (a container-image
//! registry, `tests/apps/registry.py`, Flask with the Python SDK) is
//! registered as a portal with `ferry app create --type portal`. Alice's
//! browser goes to the registry's `/login`, through the hub's sign-in and
//! consent (`transfer offline_access` among the scopes) and back to its
//! `/callback`, where the registry trades the code with its secret and
//! keeps the refresh token on its side. Later, with no browser anywhere,
//! the registry's `/send` refreshes, finds alice's endpoints and sends the
//! image to `dst`; the bytes land and the task SUCCEEDED. Alice revokes
//! the registry (`ferry app revoke`) and `/send` fails: the hub refuses
//! the refresh token.
//!
//! The image sits on the registry's own endpoint `registry`, owned by its
//! operator bob, who shares the image folder read-only with alice: the
//! registry finds it under her shared-with-me and copies with her token.
//!
//! Without Flask (or `requests`) it says SKIPPED, unless
//! `FERRY_REQUIRE_REGISTRY_APP=1` (as in CI), when it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::browser::Browser;
use ferry_tests::{Lab, User, skip};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn missing_flask() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import flask, requests"])
        .output()
    {
        Err(e) => Some(format!("no python3 ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 lacks Flask or requests (pip install flask==3.1.3 requests): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )),
        Ok(_) => None,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The registry's Flask process, killed when the test ends however it ends.
struct Registry {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_portal_sends_an_image_to_its_user_later_until_revoked() {
    let required = std::env::var("FERRY_REQUIRE_REGISTRY_APP").as_deref() == Ok("1");
    if let Some(why) = missing_flask() {
        assert!(!required, "FERRY_REQUIRE_REGISTRY_APP=1 but {why}");
        skip(&why);
        return;
    }
    let lab = Lab::new();

    // Bob runs the registry: its endpoint holds the image, and he shares
    // the image folder read-only with alice.
    lab.hub.add_user("bob", "bobs password 1");
    let bob = User::new();
    let (_, key) = lab.hub.endpoint_key("bob", "registry", &[]);
    bob.setup_with_key(&key, "registry").ok();
    let _registry_endpoint = bob.start_foreground(&[]);
    bob.wait_hub_state("connected", Duration::from_secs(120));
    let image = ferry_tests::pattern(3_000_000, 15);
    std::fs::create_dir_all(bob.home.join("images")).unwrap();
    std::fs::write(bob.home.join("images/tools.img"), &image).unwrap();
    std::fs::write(bob.dir.join("config-paths"), "~/,0,1\n~/images,1,1\n").unwrap();
    bob.run(&["-reload"]).ok();
    let bob_token = lab.hub.token("bob");
    bob.run_as(
        &lab.hub,
        &bob_token,
        &[
            "endpoint",
            "permission",
            "create",
            "registry:/~/images",
            "--permissions",
            "r",
            "--identity",
            "alice",
        ],
    )
    .ok();

    // The registry's developer registers it with its callback.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let callback = format!("{base}/callback");
    let (id, secret) = lab.create_portal("Image registry", &callback);

    let root = repo_root();
    let log = lab.hub.dir.join("registry.log");
    let child = Command::new("python3")
        .arg(root.join("tests/apps/registry.py"))
        .env("PYTHONPATH", root.join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("REGISTRY_PORT", port.to_string())
        .env("FERRY_HUB_URL", &lab.hub.url)
        .env("FERRY_HUB_CA", lab.hub.ca_cert())
        .env("REGISTRY_CLIENT_ID", &id)
        .env("REGISTRY_CLIENT_SECRET", &secret)
        .env("REGISTRY_REDIRECT_URI", &callback)
        .env("REGISTRY_SOURCE_ENDPOINT", "registry")
        .env("REGISTRY_IMAGE", "/~/images/tools.img")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let mut registry = Registry {
        child,
        url: base,
        log,
    };
    let up_by = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = registry.child.try_wait().unwrap() {
            panic!("the registry exited ({status}):\n{}", registry.log());
        }
        assert!(
            Instant::now() < up_by,
            "registry not up:\n{}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Alice signs in at the hub, then links the registry: its /login, the
    // hub's consent, back to its /callback.
    let mut browser = Browser::new(&lab.hub);
    let login = browser.get("/login").await;
    browser
        .submit(
            &login,
            &[("username", "alice"), ("password", "correct horse battery")],
        )
        .await;
    let (at, status, consent) = browser.visit(&format!("{}/login", registry.url)).await;
    assert!(status.is_success(), "{at}: {status}: {consent}");
    assert!(consent.contains("Image registry"), "{consent}");
    assert!(
        consent.contains("keep this access while you are away"),
        "{consent}"
    );
    let (back, status, page) = browser
        .submit_at(&at, &consent, &[("decision", "approve")])
        .await;
    assert!(
        status.is_success() && back.starts_with(&callback),
        "{back}: {status}: {page}\n{}",
        registry.log()
    );
    assert!(page.contains("registry linked to alice"), "{page}");
    drop(browser);

    // Later, no browser: the registry sends the image on its own.
    let http = lab.hub.web_client();
    let send = |to: &'static str, name: &'static str| {
        let http = http.clone();
        let url = format!("{}/send?user=alice&to={to}&as={name}", registry.url);
        async move {
            let reply = http
                .get(url)
                .timeout(Duration::from_secs(180))
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            let text = reply.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };
    let (status, sent) = send("dst", "tools.img").await;
    assert_eq!(status, 200, "{sent}\n{}", registry.log());
    assert_eq!(sent["status"], "SUCCEEDED", "{sent}");
    let task = lab.show(sent["task_id"].as_str().unwrap());
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert_eq!(
        std::fs::read(lab.dst.home.join("tools.img")).unwrap(),
        image
    );
    // Again, on the rotated refresh token it kept.
    let (status, again) = send("dst", "tools-2.img").await;
    assert_eq!(status, 200, "{again}\n{}", registry.log());
    assert_eq!(again["status"], "SUCCEEDED", "{again}");
    assert_eq!(
        std::fs::read(lab.dst.home.join("tools-2.img")).unwrap(),
        image
    );

    // Alice revokes the registry: its refresh token is refused.
    lab.ferry(&["app", "revoke", &id]).ok();
    let (status, refused) = send("dst", "tools-3.img").await;
    assert_eq!(status, 401, "{refused}\n{}", registry.log());
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    assert!(!lab.dst.home.join("tools-3.img").exists());
    drop(registry);
}
