//! What received files are like on disk: a real hub, two real endpoint
//! daemons on loopback, `ferry transfer`. Ownership is not preserved, so
//! no setuid, setgid or sticky bit ever arrives, and the receiving
//! endpoint's umask (from `endpoint.toml`, else the daemon's own) narrows
//! the source's permissions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode_of(path: &Path) -> String {
    let mode = fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    format!("{mode:04o}")
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Source files and directories with special bits and open permissions.
fn make_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("world-writable", 0o666),
        ("private", 0o600),
    ] {
        fs::write(root.join(name), name).unwrap();
        set_mode(&root.join(name), mode);
    }
    for (name, mode) in [("setgid-dir", 0o2775), ("sticky-dir", 0o1777)] {
        fs::create_dir(root.join(name)).unwrap();
        fs::write(root.join(name).join("inside"), name).unwrap();
        set_mode(&root.join(name), mode);
    }
}

/// The modes things arrived with, in `make_tree`'s order.
fn arrived(root: &Path) -> Vec<(&'static str, String)> {
    [
        "setuid",
        "setgid",
        "world-writable",
        "private",
        "setgid-dir",
        "sticky-dir",
    ]
    .into_iter()
    .map(|name| (name, mode_of(&root.join(name))))
    .collect()
}

fn expect(modes: [(&'static str, &str); 6]) -> Vec<(&'static str, String)> {
    modes.map(|(n, m)| (n, m.to_string())).to_vec()
}

/// `umask = "…"` in an endpoint's `endpoint.toml` (`None`: no such line).
fn set_umask_setting(user: &User, umask: Option<&str>) {
    let file = user.dir.join("endpoint.toml");
    let text = fs::read_to_string(&file).unwrap();
    let mut kept: String = text
        .lines()
        .filter(|l| !l.starts_with("umask"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(umask) = umask {
        kept.push_str(&format!("umask = \"{umask}\"\n"));
    }
    fs::write(&file, kept).unwrap();
}

/// Starts the destination's daemon under a process umask of `umask`,
/// transfers `src:/~/FROM` to `dst:/~/TO` recursively, waits for success,
/// and stops the daemon.
fn receive(lab: &mut Lab, umask: &str, from: &str, to: &str) {
    lab.start_dst_under_umask(umask);
    let (from, to) = (format!("src:/~/{from}"), format!("dst:/~/{to}"));
    lab.wait(&lab.transfer(&["-r", &from, &to]));
    lab.stop_dst();
}

#[test]
fn received_files_lose_special_bits_and_follow_the_receiving_umask() {
    let mut lab = Lab::builder().dst_offline().start();
    make_tree(&lab.src.home.join("tree"));

    // umask 022 from endpoint.toml, whatever the daemon's own.
    set_umask_setting(&lab.dst, Some("022"));
    receive(&mut lab, "077", "tree", "u022");
    assert_eq!(
        arrived(&lab.dst.home.join("u022")),
        expect([
            ("setuid", "0755"),
            ("setgid", "0755"),
            ("world-writable", "0644"),
            ("private", "0600"),
            ("setgid-dir", "0755"),
            ("sticky-dir", "0755"),
        ])
    );

    // umask 027 from endpoint.toml.
    set_umask_setting(&lab.dst, Some("027"));
    receive(&mut lab, "022", "tree", "u027");
    assert_eq!(
        arrived(&lab.dst.home.join("u027")),
        expect([
            ("setuid", "0750"),
            ("setgid", "0750"),
            ("world-writable", "0640"),
            ("private", "0600"),
            ("setgid-dir", "0750"),
            ("sticky-dir", "0750"),
        ])
    );

    // No setting: the daemon's own umask.
    set_umask_setting(&lab.dst, None);
    receive(&mut lab, "077", "tree", "own");
    assert_eq!(
        arrived(&lab.dst.home.join("own")),
        expect([
            ("setuid", "0700"),
            ("setgid", "0700"),
            ("world-writable", "0600"),
            ("private", "0600"),
            ("setgid-dir", "0700"),
            ("sticky-dir", "0700"),
        ])
    );
}

#[test]
fn a_malformed_umask_setting_refuses_the_start_in_one_line() {
    let user = User::new();
    user.set_up_endpoint("laptop");
    set_umask_setting(&user, Some("0999"));
    let out = user.run(&["-start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = out.stderr.trim();
    assert!(
        !line.contains('\n') && line.contains("umask") && line.contains("022"),
        "{out:?}"
    );
}
