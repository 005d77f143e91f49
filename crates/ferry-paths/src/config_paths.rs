//! Parser for GCP's `config-paths` file: one `PATH,SHARING,RW` rule per line.

use std::path::Path;

use crate::policy::{Access, PolicyError, Rule, RuleOrigin};
use crate::rule_path::{RulePathError, expand_rule_path};

/// What is wrong with one `config-paths` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("expected PATH,SHARING,RW")]
    MissingFields,
    #[error("SHARING must be 0 or 1, got {0:?}")]
    BadSharing(String),
    #[error("RW must be 0 or 1, got {0:?}")]
    BadRw(String),
    #[error("{0}")]
    Path(RulePathError),
}

/// Parses the whole file; the first malformed line is the error.
pub(crate) fn parse(text: &str, home: &Path) -> Result<Vec<Rule>, PolicyError> {
    let mut rules = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_number = index + 1;
        let rule = parse_line(line, line_number, home).map_err(|problem| {
            PolicyError::ConfigPathsLine {
                line: line_number,
                text: line.to_owned(),
                problem,
            }
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_line(line: &str, line_number: usize, home: &Path) -> Result<Rule, LineProblem> {
    // Splitting on the last two commas lets paths that contain commas through.
    let mut fields = line.rsplitn(3, ',');
    let (Some(rw), Some(sharing), Some(path)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(LineProblem::MissingFields);
    };
    let sharing = match sharing.trim() {
        "0" => false,
        "1" => true,
        other => return Err(LineProblem::BadSharing(other.to_owned())),
    };
    let access = match rw.trim() {
        "1" => Access::ReadWrite,
        "0" => Access::ReadOnly,
        other => return Err(LineProblem::BadRw(other.to_owned())),
    };
    let path = expand_rule_path(path.trim(), home).map_err(LineProblem::Path)?;
    Ok(Rule {
        path,
        access,
        sharing,
        origin: RuleOrigin::ConfigPathsLine(line_number),
        text: line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::path::PathBuf;

    const HOME: &str = "/home/u";

    fn parse_ok(text: &str) -> Vec<Rule> {
        parse(text, Path::new(HOME)).unwrap()
    }

    fn parse_err(text: &str) -> (usize, String, LineProblem) {
        match parse(text, Path::new(HOME)) {
            Err(PolicyError::ConfigPathsLine {
                line,
                text,
                problem,
            }) => (line, text, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn parses_rules_with_tilde_sharing_and_rw() {
        let rules = parse_ok("~/,0,1\n/data/ro,1,0\n~,0,0\n");
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].path, PathBuf::from("/home/u"));
        assert_eq!(rules[0].access, Access::ReadWrite);
        assert!(!rules[0].sharing);
        assert_eq!(rules[0].origin, RuleOrigin::ConfigPathsLine(1));
        assert_eq!(rules[0].text, "~/,0,1");
        assert_eq!(rules[1].path, PathBuf::from("/data/ro"));
        assert_eq!(rules[1].access, Access::ReadOnly);
        assert!(rules[1].sharing);
        assert_eq!(rules[2].path, PathBuf::from("/home/u"));
    }

    #[test]
    fn comments_blanks_and_whitespace_are_ignored_but_counted() {
        let rules = parse_ok("# header\n\n   \n  # indented comment\n  ~/data , 0 , 1  \r\n");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].path, PathBuf::from("/home/u/data"));
        assert_eq!(rules[0].origin, RuleOrigin::ConfigPathsLine(5));
        assert_eq!(rules[0].text, "~/data , 0 , 1");
    }

    #[test]
    fn trailing_slash_and_dots_are_insignificant() {
        let rules = parse_ok("/data/x/,0,1\n/srv/./y//,0,1");
        assert_eq!(rules[0].path, PathBuf::from("/data/x"));
        assert_eq!(rules[1].path, PathBuf::from("/srv/y"));
    }

    #[test]
    fn commas_in_paths_split_on_last_two() {
        let rules = parse_ok("/data/a,b,0,1\n/x,,y,1,0");
        assert_eq!(rules[0].path, PathBuf::from("/data/a,b"));
        assert_eq!(rules[0].access, Access::ReadWrite);
        assert_eq!(rules[1].path, PathBuf::from("/x,,y"));
        assert!(rules[1].sharing);
        assert_eq!(rules[1].access, Access::ReadOnly);
    }

    #[test]
    fn empty_file_has_no_rules() {
        assert!(parse_ok("").is_empty());
        assert!(parse_ok("# nothing\n\n").is_empty());
    }

    #[test]
    fn missing_fields_error_has_line_and_text() {
        assert_eq!(
            parse_err("~/,0,1\n\nfoo\n"),
            (3, "foo".to_owned(), LineProblem::MissingFields)
        );
        assert_eq!(parse_err("/a,1").2, LineProblem::MissingFields);
        let message = parse(" foo ", Path::new(HOME)).unwrap_err().to_string();
        assert_eq!(
            message,
            "config-paths line 1: expected PATH,SHARING,RW (line: \"foo\")"
        );
    }

    #[test]
    fn bad_rw_and_sharing_errors() {
        assert_eq!(
            parse_err("~/a,0,1\n~/b,0,1\n~/c,0,1\n~/x,0,2"),
            (4, "~/x,0,2".to_owned(), LineProblem::BadRw("2".into()))
        );
        assert_eq!(
            parse_err("~/x,yes,1"),
            (
                1,
                "~/x,yes,1".to_owned(),
                LineProblem::BadSharing("yes".into())
            )
        );
        assert_eq!(parse_err("~/x,0,").2, LineProblem::BadRw(String::new()));
        let message = parse("~/x,0,2", Path::new(HOME)).unwrap_err().to_string();
        assert_eq!(
            message,
            "config-paths line 1: RW must be 0 or 1, got \"2\" (line: \"~/x,0,2\")"
        );
    }

    #[test]
    fn path_errors() {
        assert_eq!(
            parse_err("data,0,1").2,
            LineProblem::Path(RulePathError::Relative("data".into()))
        );
        assert_eq!(
            parse_err("# c\n~bob/data,0,1"),
            (
                2,
                "~bob/data,0,1".to_owned(),
                LineProblem::Path(RulePathError::TildeUser("~bob/data".into()))
            )
        );
        assert_eq!(
            parse_err("/data/../etc,0,1").2,
            LineProblem::Path(RulePathError::ParentDir("/data/../etc".into()))
        );
        assert_eq!(parse_err(",0,1").2, LineProblem::Path(RulePathError::Empty));
    }

    #[test]
    fn duplicate_paths_name_both_lines() {
        let error = Policy::from_config_paths(
            "~/data,0,1\n# x\n/home/u/data/,0,0\n",
            Path::new(HOME),
            Path::new("/home/u/.ferry"),
        )
        .unwrap_err();
        assert_eq!(
            error,
            PolicyError::DuplicateRule {
                path: PathBuf::from("/home/u/data"),
                first: RuleOrigin::ConfigPathsLine(1),
                second: RuleOrigin::ConfigPathsLine(3),
            }
        );
        assert_eq!(
            error.to_string(),
            "config-paths line 1 and config-paths line 3 both name /home/u/data; remove one of them"
        );
    }
}
