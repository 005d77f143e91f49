//! The hub as an OpenID Connect provider, used as an app would: a real,
//! standard OIDC client library (Python's authlib) runs the code flow
//! from the discovery document alone against a real hub (PKCE S256, a
//! nonce, a loopback redirect), validates the ID token's signature and
//! claims against the published JWKS, and calls userinfo
//! (tests/oidc/authlib_code_flow.py). Then the signing key: made by
//! `init`, private, kept across restarts, and made on the first start of
//! a hub that has none.
//!
//! Without python3 and authlib the client part says SKIPPED, unless
//! `FERRY_REQUIRE_OIDC_CLIENT=1` (as in CI), when it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Hub, skip};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "correct horse battery";
const EMAIL: &str = "alice@example.org";

/// Why the client library cannot run here, if it cannot.
fn missing_client() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .output()
    {
        Err(e) => Some(format!("no python3 ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 has no authlib (pip install authlib): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

async fn jwks(hub: &Hub) -> Value {
    let answer = hub
        .web_client()
        .get(format!("{}/.well-known/jwks.json", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_client_library_signs_a_user_in_through_the_hub() {
    let required = std::env::var("FERRY_REQUIRE_OIDC_CLIENT").as_deref() == Ok("1");
    let missing = missing_client();
    if let Some(why) = &missing {
        assert!(!required, "FERRY_REQUIRE_OIDC_CLIENT=1 but {why}");
    }
    let mut hub = Hub::start();
    hub.add_user_with("alice", PASSWORD, &["--email", EMAIL]);
    let key = hub.dir.join("oidc-signing.key");
    assert_eq!(mode(&key), 0o600, "init made the signing key, private");

    if let Some(why) = missing {
        skip(&why);
    } else {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/authlib_code_flow.py");
        let out = Command::new("python3")
            .arg(&script)
            .env("FERRY_HUB_URL", &hub.url)
            .env("FERRY_HUB_CA", hub.ca_cert())
            .env("FERRY_USER", "alice")
            .env("FERRY_PASSWORD", PASSWORD)
            .env("FERRY_EMAIL", EMAIL)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the OIDC client failed: {}\n{}\nhub log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            hub.log()
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["issuer"], hub.url.as_str());
        assert_eq!(seen["aud"], "ferry-cli");
        assert_eq!(seen["alg"], "ES256");
        assert_eq!(seen["nonce_matches"], true);
        assert_eq!(seen["userinfo"]["preferred_username"], "alice");
        assert_eq!(seen["userinfo"]["email"], EMAIL);
    }

    // A restart keeps the key: tokens already issued still verify.
    let first = jwks(&hub).await;
    hub.kill();
    hub.serve();
    assert_eq!(jwks(&hub).await, first);
    // A hub made before the provider existed has no key: its first start
    // makes one, private.
    hub.kill();
    std::fs::remove_file(&key).unwrap();
    hub.serve();
    assert_eq!(mode(&key), 0o600);
    let made = jwks(&hub).await;
    assert_ne!(made["keys"][0]["kid"], first["keys"][0]["kid"]);
    assert_eq!(made["keys"][0]["alg"], "ES256");
}
