//! The command-line contract: spellings, exit codes, help that teaches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::User;

#[test]
fn version_and_help_in_both_spellings() {
    let user = User::new();
    for flag in ["-version", "--version"] {
        let out = user.run(&[flag]);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.starts_with("ferry "), "{out:?}");
    }
    for flag in ["-help", "--help"] {
        let out = user.run(&[flag]);
        assert_eq!(out.code, Some(0), "{out:?}");
        for verb in [
            "-setup",
            "-start",
            "-stop",
            "-status",
            "-pause",
            "-unpause",
            "config-paths",
        ] {
            assert!(out.stdout.contains(verb), "help lacks {verb}: {out:?}");
        }
    }
    let start_help = user.run(&["-start", "-help"]);
    assert_eq!(start_help.code, Some(0));
    assert!(
        start_help.stdout.contains("-restrict-paths"),
        "{start_help:?}"
    );
}

#[test]
fn bad_usage_exits_2_with_one_clear_line() {
    let user = User::new();
    for args in [
        &["-strat"][..],
        &["-status", "--bogus"][..],
        &["-start", "-stop"][..],
        &["-status", "-json"][..],
        &["frobnicate"][..],
        &[][..],
        // Typed wrong, though clap accepts the words: EP:PATH needs both.
        &["ls", "laptop"][..],
        &["mkdir", ":/x"][..],
        &["rm", "laptop:"][..],
    ] {
        let out = user.run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.trim().is_empty(), "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
}

#[test]
fn setup_spellings_are_accepted_and_an_existing_setup_is_kept() {
    let user = User::new();
    user.set_up_endpoint("kept");
    let before = std::fs::read(user.dir.join("endpoint.toml")).unwrap();
    for args in [
        &["-setup", "KEY"][..],
        &["-setup", "--setup-key", "KEY"][..],
        &["-setup", "--no-gui", "--name", "x"][..],
    ] {
        let out = user.run(args);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("already set up") && out.stderr.contains("--force"),
            "{out:?}"
        );
    }
    assert_eq!(
        std::fs::read(user.dir.join("endpoint.toml")).unwrap(),
        before
    );
}
