//! The `-restrict-paths` parser (`Policy::from_restrict_paths`: GridFTP's
//! comma-separated `R`/`W`/`RW`/`N`-prefixed paths) and the decisions of the
//! policy it builds.
//!
//! Input: `base dirs selector (1 byte) | -restrict-paths value | (\0 path)*`;
//! the paths after NUL bytes are asked about with `Policy::decide`.
//!
//! Asserts:
//! - a value is accepted only if every item is well formed, and never when
//!   an item's path has a `..` component;
//! - an accepted value has one rule per item, in order, each naming its
//!   item and text, with the access its prefix says (none, `W`, `RW`:
//!   read-write; `R`: read-only; `N`: deny) and its path expanded (`~`)
//!   and normalized as the reference normalizer does it; a blank value has
//!   no rules;
//! - a refused value names the bad item with its text, in one line without
//!   control characters;
//! - every decision of the resulting policy follows the documented rules
//!   (see `ferry_fuzz::check_policy`).
#![no_main]

use ferry_fuzz::{
    base_dirs, check_policy, expected_rule_path, has_dotdot, is_one_clean_line,
};
use ferry_paths::{Access, Policy, PolicyError, RuleOrigin};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let (home, config_dir) = base_dirs(selector);
    let (spec, queries) = ferry_fuzz::policy_input(data);
    let path = |b: &'static [u8]| Path::new(OsStr::from_bytes(b));
    let parsed = Policy::from_restrict_paths(&spec, path(home), path(config_dir));
    let items: Vec<&str> = if spec.trim().is_empty() {
        Vec::new()
    } else {
        spec.split(',').map(str::trim).collect()
    };
    let policy = match parsed {
        Err(error) => {
            assert!(is_one_clean_line(&error.to_string()), "{error}");
            match &error {
                PolicyError::RestrictPathsItem { item, text, .. } => {
                    assert_eq!(items.get(item - 1), Some(&text.as_str()));
                }
                PolicyError::DuplicateRule { .. } => {}
                other => panic!("unexpected error {other:?}"),
            }
            return;
        }
        Ok(policy) => policy,
    };
    let rules = policy.rules();
    assert_eq!(rules.len(), items.len(), "one rule per item");
    for (i, (rule, item)) in rules.iter().zip(&items).enumerate() {
        assert_eq!(rule.origin, RuleOrigin::RestrictPathsItem(i + 1));
        assert_eq!(rule.text, *item);
        assert!(!rule.sharing);
        let start = item.find(['/', '~']).expect("an accepted item has a path");
        let (prefix, raw_path) = item.split_at(start);
        assert!(
            !has_dotdot(raw_path.as_bytes()),
            "accepted {raw_path:?} with .."
        );
        let access = match prefix {
            "" | "W" | "RW" => Access::ReadWrite,
            "R" => Access::ReadOnly,
            "N" => Access::Deny,
            other => panic!("prefix {other:?} accepted"),
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
});
