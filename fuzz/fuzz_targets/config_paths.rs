//! The `config-paths` parser (`Policy::from_config_paths`, one
//! `PATH,SHARING,RW` rule per line) and the decisions of the policy it
//! builds.
//!
//! Input: `base dirs selector (1 byte) | config-paths text | (\0 path)*`;
//! the paths after NUL bytes are asked about with `Policy::decide`.
//!
//! Asserts:
//! - a file is accepted only if every rule line is well formed, and never
//!   when a rule's path has a `..` component;
//! - an accepted file has one rule per rule line, in order, each naming its
//!   line and its text, with SHARING and RW as written (`RW` 1 read-write,
//!   0 read-only, never deny) and its path expanded (`~`) and normalized as
//!   the reference normalizer does it;
//! - a refused file names the first bad line with its text, in one line
//!   without control characters;
//! - every decision of the resulting policy follows the documented rules
//!   (see `ferry_fuzz::check_policy`), and so does a grantee's through a
//!   grant rooted at the first path (see `ferry_fuzz::check_grant`).
#![no_main]

use ferry_fuzz::{
    base_dirs, check_grant, check_policy, expected_rule_path, has_dotdot, is_one_clean_line,
};
use ferry_paths::{Access, Policy, PolicyError, RuleOrigin};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// (line number, trimmed line, path, sharing, rw) of each rule line.
fn rule_lines(text: &str) -> Vec<(usize, &str, &str, &str, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let mut f = l.rsplitn(3, ',');
            let rw = f.next().unwrap_or_default();
            let sharing = f.next().unwrap_or("\u{0}missing");
            let path = f.next().unwrap_or("\u{0}missing");
            (n, l, path.trim(), sharing.trim(), rw.trim())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let (home, config_dir) = base_dirs(selector);
    let (text, queries) = ferry_fuzz::policy_input(data);
    let path = |b: &'static [u8]| Path::new(OsStr::from_bytes(b));
    let parsed = Policy::from_config_paths(&text, path(home), path(config_dir));
    let lines = rule_lines(&text);
    let policy = match parsed {
        Err(error) => {
            assert!(is_one_clean_line(&error.to_string()), "{error}");
            match &error {
                PolicyError::ConfigPathsLine { line, text: t, .. } => {
                    let bad = lines.iter().find(|l| l.0 == *line).expect("a rule line");
                    assert_eq!(bad.1, t, "the error quotes another line");
                }
                PolicyError::DuplicateRule { .. } => {}
                other => panic!("unexpected error {other:?}"),
            }
            return;
        }
        Ok(policy) => policy,
    };
    let rules = policy.rules();
    assert_eq!(rules.len(), lines.len(), "one rule per rule line");
    for (rule, (n, line, raw_path, sharing, rw)) in rules.iter().zip(&lines) {
        assert!(
            !has_dotdot(raw_path.as_bytes()),
            "accepted {raw_path:?} with .."
        );
        assert_eq!(rule.origin, RuleOrigin::ConfigPathsLine(*n));
        assert_eq!(rule.text, *line);
        assert_eq!(rule.sharing, *sharing == "1");
        assert!(
            *sharing == "0" || *sharing == "1",
            "SHARING {sharing:?} accepted"
        );
        let access = match *rw {
            "1" => Access::ReadWrite,
            "0" => Access::ReadOnly,
            other => panic!("RW {other:?} accepted"),
        };
        assert_eq!(rule.access, access);
        let expected = expected_rule_path(raw_path, home)
            .unwrap_or_else(|| panic!("accepted unusable path {raw_path:?}"));
        assert!(
            rule.path.as_os_str().as_bytes() == expected,
            "{raw_path:?} under home {:?} became {:?}, not {:?}",
            String::from_utf8_lossy(home),
            rule.path,
            String::from_utf8_lossy(&expected)
        );
    }
    check_policy(&policy, home, config_dir, &queries);
    check_grant(&policy, &queries);
});
