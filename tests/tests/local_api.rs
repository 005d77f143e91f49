//! The local socket treats its clients as hostile: oversized, malformed and
//! wrong-version frames are refused with a reason, and the daemon lives on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{User, is_root, on_path};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn send_raw(user: &User, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(user.socket()).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(bytes).unwrap();
    // End of requests: the daemon answers what it got, then closes.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn hostile_frames_are_refused_and_the_daemon_lives_on() {
    let user = User::new();
    user.set_up_endpoint("node");
    let daemon = user.start_foreground(&[]);

    let huge = send_raw(&user, &u32::MAX.to_be_bytes());
    assert!(huge.contains("exceeds the limit"), "{huge:?}");
    let garbage = send_raw(&user, &frame(b"\xff\xfe not json"));
    assert!(garbage.contains("malformed"), "{garbage:?}");
    let unknown = send_raw(&user, &frame(br#"{"v":1,"op":"exec","cmd":"sh"}"#));
    assert!(unknown.contains("malformed"), "{unknown:?}");
    let future = send_raw(&user, &frame(br#"{"v":99,"op":"status"}"#));
    assert!(future.contains("version 99"), "{future:?}");
    // A well-formed request on a raw connection is answered.
    let status = send_raw(&user, &frame(br#"{"v":1,"op":"status"}"#));
    assert!(status.contains("\"result\":\"status\""), "{status:?}");

    assert_eq!(user.run(&["-status"]).code, Some(0));
    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
}

#[test]
fn another_uid_is_refused_even_if_the_socket_were_reachable() {
    if !is_root() || !on_path("setpriv") {
        ferry_tests::skip("needs root and setpriv to act as another user");
        return;
    }
    let user = User::new();
    user.set_up_endpoint("node");
    let daemon = user.start_foreground(&[]);
    // Open the way on purpose, so only the SO_PEERCRED check stands.
    for dir in [user.home.parent().unwrap(), &user.home, &user.dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(user.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ferry_tests::ferry_bin())
        .args(["-pause", "-dir"])
        .arg(&user.dir)
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("uid 65534 may not use"), "{stderr}");
    let status = user.run(&["-status"]);
    assert!(
        !status.stdout.contains("Hub: paused"),
        "another uid paused the daemon"
    );
    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
}
