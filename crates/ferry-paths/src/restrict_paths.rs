//! Parser for GridFTP's `-restrict-paths` value: comma-separated items, each an
//! optional `R`, `W`, `RW` or `N` prefix followed by an absolute or `~` path.

use std::path::Path;

use crate::policy::{Access, PolicyError, Rule, RuleOrigin};
use crate::rule_path::{RulePathError, expand_rule_path};

/// What is wrong with one `-restrict-paths` item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemProblem {
    #[error("empty item (stray comma?)")]
    Empty,
    #[error("expected an optional R, W, RW or N followed by a path starting with / or ~")]
    NoPath,
    #[error("unknown prefix {0:?}; use R (read-only), W or RW (read-write) or N (deny)")]
    UnknownPrefix(String),
    #[error("{0}")]
    Path(RulePathError),
}

/// Parses the whole value; an empty value yields no rules (everything denied).
pub(crate) fn parse(spec: &str, home: &Path) -> Result<Vec<Rule>, PolicyError> {
    if spec.trim().is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .enumerate()
        .map(|(index, raw_item)| {
            let item = raw_item.trim();
            let item_number = index + 1;
            parse_item(item, item_number, home).map_err(|problem| PolicyError::RestrictPathsItem {
                item: item_number,
                text: item.to_owned(),
                problem,
            })
        })
        .collect()
}

fn parse_item(item: &str, item_number: usize, home: &Path) -> Result<Rule, ItemProblem> {
    if item.is_empty() {
        return Err(ItemProblem::Empty);
    }
    // Paths start with `/` or `~`, so whatever precedes the first of them is the prefix.
    let path_start = item.find(['/', '~']).ok_or(ItemProblem::NoPath)?;
    let (prefix, raw_path) = item.split_at(path_start);
    let access = match prefix {
        "" | "W" | "RW" => Access::ReadWrite,
        "R" => Access::ReadOnly,
        "N" => Access::Deny,
        other => return Err(ItemProblem::UnknownPrefix(other.to_owned())),
    };
    let path = expand_rule_path(raw_path, home).map_err(ItemProblem::Path)?;
    Ok(Rule {
        path,
        access,
        sharing: false,
        origin: RuleOrigin::RestrictPathsItem(item_number),
        text: item.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::path::PathBuf;

    const HOME: &str = "/home/u";

    fn parse_ok(spec: &str) -> Vec<Rule> {
        parse(spec, Path::new(HOME)).unwrap()
    }

    fn parse_err(spec: &str) -> (usize, String, ItemProblem) {
        match parse(spec, Path::new(HOME)) {
            Err(PolicyError::RestrictPathsItem {
                item,
                text,
                problem,
            }) => (item, text, problem),
            other => panic!("expected an item error, got {other:?}"),
        }
    }

    #[test]
    fn prefixes_map_to_access() {
        let rules = parse_ok("~/data,R/scratch/shared,N~/data/secret,W/w,RW/rw/");
        let summary: Vec<(PathBuf, Access)> =
            rules.iter().map(|r| (r.path.clone(), r.access)).collect();
        assert_eq!(
            summary,
            vec![
                (PathBuf::from("/home/u/data"), Access::ReadWrite),
                (PathBuf::from("/scratch/shared"), Access::ReadOnly),
                (PathBuf::from("/home/u/data/secret"), Access::Deny),
                (PathBuf::from("/w"), Access::ReadWrite),
                (PathBuf::from("/rw"), Access::ReadWrite),
            ]
        );
        assert_eq!(rules[2].origin, RuleOrigin::RestrictPathsItem(3));
        assert_eq!(rules[2].text, "N~/data/secret");
        assert!(rules.iter().all(|r| !r.sharing));
    }

    #[test]
    fn tilde_alone_and_whitespace_around_items() {
        let rules = parse_ok(" R~ , /x ");
        assert_eq!(rules[0].path, PathBuf::from("/home/u"));
        assert_eq!(rules[0].access, Access::ReadOnly);
        assert_eq!(rules[1].path, PathBuf::from("/x"));
    }

    #[test]
    fn empty_spec_has_no_rules() {
        assert!(parse_ok("").is_empty());
        assert!(parse_ok("  ").is_empty());
    }

    #[test]
    fn item_errors_name_the_item() {
        assert_eq!(
            parse_err("/a,X/b"),
            (2, "X/b".to_owned(), ItemProblem::UnknownPrefix("X".into()))
        );
        assert_eq!(
            parse_err("/a,r/b").2,
            ItemProblem::UnknownPrefix("r".into())
        );
        assert_eq!(parse_err("/a,,/b"), (2, String::new(), ItemProblem::Empty));
        assert_eq!(parse_err("/a,").0, 2);
        assert_eq!(
            parse_err("data"),
            (1, "data".to_owned(), ItemProblem::NoPath)
        );
        assert_eq!(
            parse_err("R~bob/x").2,
            ItemProblem::Path(RulePathError::TildeUser("~bob/x".into()))
        );
        assert_eq!(
            parse_err("/a/../b").2,
            ItemProblem::Path(RulePathError::ParentDir("/a/../b".into()))
        );
        assert_eq!(
            parse("/a,X/b", Path::new(HOME)).unwrap_err().to_string(),
            "-restrict-paths item 2: unknown prefix \"X\"; use R (read-only), W or RW (read-write) or N (deny) (item: \"X/b\")"
        );
    }

    #[test]
    fn duplicate_items_are_an_error() {
        let error = Policy::from_restrict_paths(
            "R~/data,N/home/u/data/",
            Path::new(HOME),
            Path::new("/home/u/.ferry"),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            PolicyError::DuplicateRule {
                first: RuleOrigin::RestrictPathsItem(1),
                second: RuleOrigin::RestrictPathsItem(2),
                ..
            }
        ));
    }
}
