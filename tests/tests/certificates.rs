//! Certificates that age: a hub that signs short-lived endpoint
//! certificates, daemons that renew theirs over the control channel and
//! keep moving data after the first certificate expired, and a daemon
//! offline past its certificate's end told exactly what to run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Hub, User, edit_config, line_value, wait_until};
use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(90);
/// Short enough for a test: renewal is due with a third left (~11 s).
const LIFETIME_SECS: u64 = 30;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn endpoints_renew_their_certificates_and_an_expired_one_says_what_to_run() {
    let mut hub = Hub::start();
    hub.kill();
    edit_config(
        &hub.dir.join("hub.toml"),
        "endpoint_cert_lifetime_secs = 7776000",
        &format!("endpoint_cert_lifetime_secs = {LIFETIME_SECS}"),
    );
    hub.serve();
    hub.add_user("alice", "correct horse battery");
    let setup = |name: &str| {
        let (_, key) = hub.endpoint_key("alice", name, &[]);
        let user = User::new();
        assert_eq!(user.setup_with_key(&key, name).code, Some(0));
        user
    };
    let (src, dst) = (setup("src"), setup("dst"));
    let first_issued = now();
    let first_certs = [
        fs::read(src.dir.join("endpoint.crt")).unwrap(),
        fs::read(dst.dir.join("endpoint.crt")).unwrap(),
    ];
    let src_daemon = src.start_foreground(&[]);
    let _dst_daemon = dst.start_foreground(&[]);
    src.wait_hub_state("connected", LIMIT);
    dst.wait_hub_state("connected", LIMIT);

    // Both renew on their own, well before the first certificates end.
    wait_until(LIMIT, "both certificates renewed", || {
        fs::read(src.dir.join("endpoint.crt")).unwrap() != first_certs[0]
            && fs::read(dst.dir.join("endpoint.crt")).unwrap() != first_certs[1]
    });
    // Past the first certificates' end, the links and the data channel
    // run on the renewed ones (an expired certificate fails any handshake).
    let first_end = first_issued + LIFETIME_SECS + 1;
    wait_until(LIMIT, "the first certificates to expire", || {
        now() > first_end
    });
    src.wait_hub_state("connected", LIMIT);
    let token = hub.token("alice");
    fs::create_dir(src.home.join("data")).unwrap();
    fs::write(src.home.join("data/run.txt"), "results").unwrap();
    let moved = src.run_as(
        &hub,
        &token,
        &["transfer", "-r", "src:/~/data", "dst:/~/copy", "--wait"],
    );
    assert_eq!(moved.code, Some(0), "{moved:?}\nhub: {}", hub.log());
    assert!(line_value(&moved.stdout, "Task ID: ").is_some());
    assert_eq!(
        fs::read_to_string(dst.home.join("copy/run.txt")).unwrap(),
        "results"
    );

    // Offline past the certificate's end: the start is refused in one line
    // that says what to run.
    assert_eq!(src.run(&["-stop"]).code, Some(0));
    src_daemon.wait_exit(LIMIT);
    let stopped = now();
    wait_until(LIMIT, "the certificate to expire offline", || {
        now() > stopped + LIFETIME_SECS + 1
    });
    let start = src.run(&["-start"]);
    assert_eq!(start.code, Some(1), "{start:?}");
    let first = start.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("certificate expired") && first.contains("`ferry -setup --force`"),
        "{start:?}"
    );
}
