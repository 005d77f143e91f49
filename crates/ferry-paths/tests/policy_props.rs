//! Property tests of the policy matcher and the parsers, checked against a
//! naive component-list oracle rather than the matcher's own `Path` logic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use ferry_paths::{Access, Policy, RuleOrigin};
use proptest::prelude::*;

const HOME: &str = "/home/u";
const CONFIG_DIR: &str = "/home/u/.ferry";

/// Names chosen so that prefixes of each other (`data`, `database`, `d`) collide often.
fn component() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "d", "da", "data", "database", "data2", "x", "a,b", "a.b", "é",
    ])
    .prop_map(str::to_owned)
}

fn components(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(component(), 0..=max)
}

fn rule_paths() -> impl Strategy<Value = BTreeSet<Vec<String>>> {
    prop::collection::btree_set(components(4), 0..6)
}

fn absolute(parts: &[String]) -> String {
    format!("/r/{}", parts.join("/"))
}

fn oracle_covers(rule: &[String], path: &[String]) -> bool {
    rule.len() <= path.len() && rule.iter().zip(path).all(|(r, p)| r == p)
}

fn render_config(rules: &[(Vec<String>, bool, bool)]) -> String {
    rules
        .iter()
        .map(|(parts, sharing, writable)| {
            format!(
                "{},{},{}\n",
                absolute(parts),
                u8::from(*sharing),
                u8::from(*writable)
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn a_rule_matches_only_its_path_and_what_is_beneath_it(
        rules in rule_paths(),
        writable in prop::collection::vec(any::<bool>(), 6),
        path in components(6),
    ) {
        let rules: Vec<(Vec<String>, bool, bool)> = rules
            .into_iter()
            .zip(writable)
            .map(|(parts, w)| (parts, false, w))
            .collect();
        let policy = Policy::from_config_paths(
            &render_config(&rules),
            Path::new(HOME),
            Path::new(CONFIG_DIR),
        )
        .unwrap();
        let decision = policy.decide(Path::new(&absolute(&path))).unwrap();

        let best = rules
            .iter()
            .enumerate()
            .filter(|(_, (parts, _, _))| oracle_covers(parts, &path))
            .max_by_key(|(_, (parts, _, _))| parts.len());
        match (best, &decision.rule) {
            (None, None) => prop_assert_eq!(decision.access, Access::Deny),
            (Some((index, (_, _, w))), Some(rule)) => {
                prop_assert_eq!(rule.origin, RuleOrigin::ConfigPathsLine(index + 1));
                let expected = if *w { Access::ReadWrite } else { Access::ReadOnly };
                prop_assert_eq!(decision.access, expected);
            }
            (best, rule) => prop_assert!(false, "oracle {:?} vs matcher {:?}", best, rule),
        }
    }

    /// A grantee's decision, against an oracle: the owner's access, denied
    /// outside the shared folder or where the deciding rule does not share,
    /// at most read-only for `r`. Never more than the owner gets.
    #[test]
    fn a_grant_never_widens_the_owners_policy(
        rules in rule_paths(),
        flags in prop::collection::vec((any::<bool>(), any::<bool>()), 6),
        root in components(3),
        write in any::<bool>(),
        path in components(6),
    ) {
        let rules: Vec<(Vec<String>, bool, bool)> = rules
            .into_iter()
            .zip(flags)
            .map(|(parts, (sharing, w))| (parts, sharing, w))
            .collect();
        let owner = Policy::from_config_paths(
            &render_config(&rules),
            Path::new(HOME),
            Path::new(CONFIG_DIR),
        )
        .unwrap();
        let grantee = owner.for_grant(Path::new(&absolute(&root)), write).unwrap();
        let asked = absolute(&path);
        let owners = owner.decide(Path::new(&asked)).unwrap().access;
        let decision = grantee.decide(Path::new(&asked)).unwrap();

        let deciding = rules
            .iter()
            .filter(|(parts, _, _)| oracle_covers(parts, &path))
            .max_by_key(|(parts, _, _)| parts.len());
        let expected = match deciding {
            _ if !oracle_covers(&root, &path) => Access::Deny,
            None | Some((_, false, _)) => Access::Deny,
            Some((_, true, true)) if write => Access::ReadWrite,
            Some((_, true, _)) => Access::ReadOnly,
        };
        prop_assert_eq!(decision.access, expected, "{}", decision.explain());
        let rank = |a: Access| match a {
            Access::Deny => 0,
            Access::ReadOnly => 1,
            Access::ReadWrite => 2,
        };
        prop_assert!(rank(decision.access) <= rank(owners));
    }

    #[test]
    fn data_never_matches_a_sibling_sharing_its_prefix(
        suffix in "[^/\0]{1,12}",
        rest in prop::collection::vec("[^/\0]{1,8}", 0..3),
    ) {
        let policy = Policy::from_config_paths(
            "~/data,0,1",
            Path::new(HOME),
            Path::new(CONFIG_DIR),
        )
        .unwrap();
        prop_assume!(suffix != ".." && !rest.iter().any(|name| name == ".."));
        let mut sibling = PathBuf::from(format!("{HOME}/data{suffix}"));
        sibling.extend(&rest);
        let decision = policy.decide(&sibling).unwrap();
        prop_assert_eq!(decision.access, Access::Deny, "{}", decision.explain());
        prop_assert!(decision.rule.is_none());
        let mut inside = PathBuf::from(format!("{HOME}/data/{suffix}"));
        inside.extend(&rest);
        prop_assert_eq!(policy.decide(&inside).unwrap().access, Access::ReadWrite);
    }

    #[test]
    fn config_paths_render_and_parse_round_trip(
        rules in rule_paths(),
        flags in prop::collection::vec((any::<bool>(), any::<bool>()), 6),
        comment_every in 0usize..3,
    ) {
        let rules: Vec<(Vec<String>, bool, bool)> = rules
            .into_iter()
            .zip(flags)
            .map(|(parts, (sharing, writable))| (parts, sharing, writable))
            .collect();
        // Interleaved comments check that line numbers still point at the right lines.
        let mut text = String::new();
        let mut expected_lines = Vec::new();
        let mut line = 0;
        for (index, rule) in rules.iter().enumerate() {
            if comment_every > 0 && index % comment_every == 0 {
                text.push_str("# comment\n\n");
                line += 2;
            }
            text.push_str(&render_config(std::slice::from_ref(rule)));
            line += 1;
            expected_lines.push(line);
        }
        let policy = Policy::from_config_paths(&text, Path::new(HOME), Path::new(CONFIG_DIR)).unwrap();
        prop_assert_eq!(policy.rules().len(), rules.len());
        for ((parts, sharing, writable), (parsed, line)) in
            rules.iter().zip(policy.rules().iter().zip(expected_lines))
        {
            prop_assert_eq!(&parsed.path, &PathBuf::from(absolute(parts)).components().collect::<PathBuf>());
            prop_assert_eq!(parsed.sharing, *sharing);
            let access = if *writable { Access::ReadWrite } else { Access::ReadOnly };
            prop_assert_eq!(parsed.access, access);
            prop_assert_eq!(parsed.origin, RuleOrigin::ConfigPathsLine(line));
        }
    }

    #[test]
    fn restrict_paths_render_and_parse_round_trip(
        rules in prop::collection::btree_map(components(3), 0usize..5, 0..6),
    ) {
        let prefixes = ["", "R", "W", "RW", "N"];
        let items: Vec<String> = rules
            .iter()
            // Commas cannot be expressed in -restrict-paths.
            .filter(|(parts, _)| !parts.iter().any(|p| p.contains(',')))
            .map(|(parts, prefix)| format!("{}{}", prefixes[*prefix], absolute(parts)))
            .collect();
        let policy = Policy::from_restrict_paths(&items.join(","), Path::new(HOME), Path::new(CONFIG_DIR)).unwrap();
        prop_assert_eq!(policy.rules().len(), items.len());
        for (index, (rule, item)) in policy.rules().iter().zip(&items).enumerate() {
            prop_assert_eq!(&rule.text, item);
            prop_assert_eq!(rule.origin, RuleOrigin::RestrictPathsItem(index + 1));
            let expected = match item.split('/').next().unwrap() {
                "R" => Access::ReadOnly,
                "N" => Access::Deny,
                _ => Access::ReadWrite,
            };
            prop_assert_eq!(rule.access, expected);
        }
    }

    #[test]
    fn decide_never_panics_and_explains_on_one_line(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        prefix in prop::sample::select(vec!["", "/", "/home/u/", "/home/u/.", "/r/data/"]),
    ) {
        let policy = Policy::from_config_paths(
            "~/,0,1\n/r/data,0,0\n~/.local/share,1,1",
            Path::new(HOME),
            Path::new(CONFIG_DIR),
        )
        .unwrap();
        let mut raw = prefix.as_bytes().to_vec();
        raw.extend(bytes);
        let path = PathBuf::from(OsString::from_vec(raw));
        match policy.decide(&path) {
            Ok(decision) => {
                prop_assert!(decision.path.is_absolute());
                prop_assert!(!decision.path.as_os_str().as_bytes().ends_with(b"/") || decision.path == Path::new("/"));
                let explanation = decision.explain();
                prop_assert!(!explanation.contains('\n') && !explanation.contains('\r'));
                if let Some(rule) = &decision.rule {
                    prop_assert!(decision.path.starts_with(&rule.path));
                }
            }
            Err(error) => prop_assert!(!error.to_string().contains('\n')),
        }
    }
}
