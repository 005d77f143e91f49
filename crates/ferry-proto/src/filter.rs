//! Name filters of a transfer (`--include PATTERN`, `--exclude PATTERN`):
//! the rules as they travel in a task's options, and the matcher both
//! endpoints run. Pure: bytes in, a verdict out.
//!
//! The semantics, as rsync users expect them (and as `ferry transfer
//! --help` and `docs/cli-extensions.md` state them):
//!
//! - Rules are tried in the order given; the first whose pattern matches
//!   decides. A name no rule matches is included.
//! - They apply to what a `-r` walk finds beneath an item's directory,
//!   each entry by its path relative to that directory (the transfer
//!   root). An item named on the command line is always sent.
//! - A pattern ending in `/` matches directories only (the `/` is not
//!   part of what is matched).
//! - A pattern with a `/` anywhere else (a leading one too) is anchored:
//!   it is matched against the whole relative path (`logs/*.gz` matches
//!   `logs/a.gz`, not `x/logs/a.gz`). Without one, it is matched against
//!   the entry's name at any depth (`*.tmp` matches `a.tmp` and
//!   `x/y/a.tmp`). This is gitignore's rule; rsync matches an unanchored
//!   pattern with a `/` against the path's end instead.
//! - `*` matches any bytes but `/`; `**` any bytes, `/` too; `?` one byte
//!   but `/`; `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one byte of (or
//!   not of) a set; `\` makes the next byte literal. Matching is on
//!   bytes, so a name that is not UTF-8 matches exactly as it is spelled
//!   (and `?` is one byte, not one character, as in rsync).
//! - An excluded directory is not descended: nothing beneath it is
//!   looked at, whatever later rules say (so `--include '*.csv' --exclude
//!   '*'` sends the csv files at the top only; add `--include '*/'`
//!   first to look in every directory, as with rsync).
//! - With `--delete`, an excluded destination entry is never deleted
//!   (nor anything beneath an excluded directory).
//!
//! Hostile input is bounded: at most [`MAX_FILTERS`] rules of at most
//! [`MAX_PATTERN`] bytes, and matching is a walk over the pattern's
//! positions for each byte of the name (no backtracking), so an entry
//! costs at most rules × pattern × path steps.

use crate::wire_path::WirePath;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most rules one task may carry.
pub const MAX_FILTERS: usize = 64;
/// Longest pattern, in bytes.
pub const MAX_PATTERN: usize = 256;

/// Whether a rule's match includes or excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FilterAction {
    Include,
    Exclude,
}

/// One `--include` or `--exclude`, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FilterRule {
    pub action: FilterAction,
    /// Bytes, exactly as the user typed them.
    pub pattern: WirePath,
}

impl FilterRule {
    pub fn include(pattern: impl Into<Vec<u8>>) -> Self {
        Self {
            action: FilterAction::Include,
            pattern: WirePath::from_bytes(pattern),
        }
    }

    pub fn exclude(pattern: impl Into<Vec<u8>>) -> Self {
        Self {
            action: FilterAction::Exclude,
            pattern: WirePath::from_bytes(pattern),
        }
    }
}

/// Why a list of rules is refused; each is one line for the user.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("too many --include/--exclude patterns ({count}; at most {MAX_FILTERS})")]
    TooMany { count: usize },
    #[error("the pattern {pattern:?} is too long ({len} bytes; at most {MAX_PATTERN})")]
    TooLong { pattern: String, len: usize },
    #[error("the pattern {pattern:?} is empty: it would match nothing")]
    Empty { pattern: String },
    #[error("the pattern {pattern:?} has a '[' with no closing ']'")]
    UnclosedClass { pattern: String },
    #[error("the pattern {pattern:?} ends in a lone '\\'")]
    TrailingEscape { pattern: String },
}

/// A list of rules, compiled once per attempt.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    rules: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    include: bool,
    dirs_only: bool,
    /// Matched against the whole relative path, not the name.
    anchored: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `?`
    AnyByte,
    /// `*`: any run of bytes but `/`.
    Star,
    /// `**`: any run of bytes.
    DoubleStar,
    /// `[...]`: byte ranges, inclusive.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl FilterSet {
    /// Checks and compiles `rules` (the hub's check and the endpoints'
    /// are this one function).
    pub fn new(rules: &[FilterRule]) -> Result<Self, FilterError> {
        if rules.len() > MAX_FILTERS {
            return Err(FilterError::TooMany { count: rules.len() });
        }
        let rules = rules.iter().map(compile).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the entry at `rel` (relative to the transfer root, `/`
    /// between components, no leading or trailing `/`) is included, its
    /// ancestors taken as included (the walk never reaches an entry
    /// beneath an excluded directory).
    /// The item's own root (`rel` empty) is always included.
    pub fn included(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.rules.is_empty() || rel.is_empty() {
            return true;
        }
        let name = match rel.iter().rposition(|b| *b == b'/') {
            Some(slash) => &rel[slash + 1..],
            None => rel,
        };
        for rule in &self.rules {
            if rule.dirs_only && !is_dir {
                continue;
            }
            let subject = if rule.anchored { rel } else { name };
            if glob_match(&rule.tokens, subject) {
                return rule.include;
            }
        }
        true
    }

    /// Whether a walk that honours the rules could reach `rel` at all:
    /// every directory above it included, and it too. What a destination
    /// checks of each entry a source offers.
    pub fn reachable(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let ancestors_ok = rel
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .all(|(i, _)| self.included(&rel[..i], true));
        ancestors_ok && self.included(rel, is_dir)
    }
}

fn compile(rule: &FilterRule) -> Result<Compiled, FilterError> {
    let raw = rule.pattern.as_bytes();
    let shown = || rule.pattern.encode();
    if raw.len() > MAX_PATTERN {
        return Err(FilterError::TooLong {
            pattern: shown().chars().take(40).collect::<String>() + "...",
            len: raw.len(),
        });
    }
    let (body, dirs_only) = match raw.strip_suffix(b"/") {
        Some(body) => (body, true),
        None => (raw, false),
    };
    let anchored = body.contains(&b'/');
    let body = body.strip_prefix(b"/").unwrap_or(body);
    if body.is_empty() {
        return Err(FilterError::Empty { pattern: shown() });
    }
    let mut tokens = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'*' if body.get(i + 1) == Some(&b'*') => {
                tokens.push(Token::DoubleStar);
                i += 2;
                // `***` and more are `**` too.
                while body.get(i) == Some(&b'*') {
                    i += 1;
                }
            }
            b'*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            b'?' => {
                tokens.push(Token::AnyByte);
                i += 1;
            }
            b'\\' => {
                let b = *body
                    .get(i + 1)
                    .ok_or_else(|| FilterError::TrailingEscape { pattern: shown() })?;
                tokens.push(Token::Byte(b));
                i += 2;
            }
            b'[' => {
                let (token, next) = class(body, i + 1)
                    .ok_or_else(|| FilterError::UnclosedClass { pattern: shown() })?;
                tokens.push(token);
                i = next;
            }
            b => {
                tokens.push(Token::Byte(b));
                i += 1;
            }
        }
    }
    Ok(Compiled {
        include: rule.action == FilterAction::Include,
        dirs_only,
        anchored,
        tokens,
    })
}

/// The class that starts at `start` (just past its `[`) and the index
/// past its `]`. A `]` first in the set is a member, as in shells.
fn class(body: &[u8], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(body.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let first = i;
    let mut ranges = Vec::new();
    loop {
        let mut b = *body.get(i)?;
        if b == b']' && i > first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        if b == b'\\' {
            i += 1;
            b = *body.get(i)?;
        }
        // `a-z`; a `-` first or last is itself.
        if body.get(i + 1) == Some(&b'-') && body.get(i + 2).is_some_and(|c| *c != b']') {
            let mut hi = body[i + 2];
            let mut past = i + 3;
            if hi == b'\\' {
                hi = *body.get(i + 3)?;
                past = i + 4;
            }
            ranges.push((b, hi));
            i = past;
        } else {
            ranges.push((b, b));
            i += 1;
        }
    }
}

/// Whether `tokens` match all of `text`: the set of pattern positions
/// reachable after each byte, so no input makes it backtrack.
fn glob_match(tokens: &[Token], text: &[u8]) -> bool {
    let n = tokens.len();
    let mut current = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    current[0] = true;
    close_stars(tokens, &mut current);
    for &b in text {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for (i, token) in tokens.iter().enumerate() {
            if !current[i] {
                continue;
            }
            let (stay, advance) = match token {
                Token::Byte(c) => (false, *c == b),
                Token::AnyByte => (false, b != b'/'),
                Token::Class { negated, ranges } => {
                    let member = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&b));
                    (false, b != b'/' && member != *negated)
                }
                Token::Star => (b != b'/', false),
                Token::DoubleStar => (true, false),
            };
            if stay {
                next[i] = true;
                any = true;
            }
            if advance {
                next[i + 1] = true;
                any = true;
            }
        }
        if !any {
            return false;
        }
        close_stars(tokens, &mut next);
        std::mem::swap(&mut current, &mut next);
    }
    current[n]
}

/// A star may match nothing: a position at one is also past it.
fn close_stars(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if states[i] && matches!(token, Token::Star | Token::DoubleStar) {
            states[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(rules: &[FilterRule]) -> FilterSet {
        FilterSet::new(rules).unwrap()
    }

    fn matches(pattern: &[u8], text: &[u8]) -> bool {
        let compiled = compile(&FilterRule::exclude(pattern)).unwrap();
        glob_match(&compiled.tokens, text)
    }

    #[test]
    fn wildcards_match_as_in_rsync() {
        for (pattern, text, expected) in [
            (&b"*.tmp"[..], &b"a.tmp"[..], true),
            (b"*.tmp", b".tmp", true),
            (b"*.tmp", b"a.tmp.gz", false),
            (b"*", b"", true),
            (b"a?c", b"abc", true),
            (b"a?c", b"ac", false),
            (b"a?c", b"a/c", false),
            (b"a*c", b"a/c", false),
            (b"a**c", b"a/b/c", true),
            (b"[abc].txt", b"b.txt", true),
            (b"[abc].txt", b"d.txt", false),
            (b"[a-c]x", b"bx", true),
            (b"[!a-c]x", b"bx", false),
            (b"[^a-c]x", b"dx", true),
            (b"[]]", b"]", true),
            (b"[a-]", b"-", true),
            (b"\\*", b"*", true),
            (b"\\*", b"a", false),
            (b"run[0-9][0-9]", b"run07", true),
            (b"*a*a*a*a*a*a*b", &[b'a'; 200], false),
        ] {
            assert_eq!(
                matches(pattern, text),
                expected,
                "{:?} vs {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn names_that_are_not_utf8_match_on_their_bytes() {
        assert!(matches(b"*.tmp", b"\xff\xfe.tmp"));
        assert!(matches(b"\xff*", b"\xffname"));
        assert!(!matches(b"\xff*", b"\xfename"));
        assert!(matches(b"?", b"\x80"));
        // One byte, not one character: `é` is two.
        assert!(!matches(b"?", "é".as_bytes()));
        assert!(matches(b"??", "é".as_bytes()));
        assert!(matches(b"[\x80-\xff]x", b"\x90x"));
        let rules = set(&[FilterRule::exclude(&b"bad\xff"[..])]);
        assert!(!rules.included(b"dir/bad\xff", false));
        assert!(rules.included(b"dir/bad", false));
    }

    #[test]
    fn first_match_wins_and_unmatched_names_are_included() {
        let rules = set(&[
            FilterRule::include("keep.tmp"),
            FilterRule::exclude("*.tmp"),
        ]);
        assert!(rules.included(b"keep.tmp", false));
        assert!(rules.included(b"sub/keep.tmp", false));
        assert!(!rules.included(b"other.tmp", false));
        assert!(rules.included(b"data.h5", false));
        assert!(FilterSet::default().included(b"anything", false));
    }

    #[test]
    fn a_trailing_slash_matches_directories_only() {
        let rules = set(&[FilterRule::exclude("scratch/")]);
        assert!(!rules.included(b"scratch", true));
        assert!(!rules.included(b"a/b/scratch", true));
        assert!(rules.included(b"scratch", false));
    }

    #[test]
    fn a_slash_inside_anchors_to_the_transfer_root() {
        let rules = set(&[
            FilterRule::exclude("logs/*.gz"),
            FilterRule::exclude("/top"),
        ]);
        assert!(!rules.included(b"logs/a.gz", false));
        assert!(rules.included(b"x/logs/a.gz", false));
        assert!(!rules.included(b"top", false));
        assert!(rules.included(b"x/top", false));
        let deep = set(&[FilterRule::exclude("**/cache/")]);
        assert!(!deep.included(b"a/b/cache", true));
        assert!(deep.included(b"cache", true));
    }

    #[test]
    fn csv_only_descends_only_into_included_directories() {
        let flat = set(&[FilterRule::include("*.csv"), FilterRule::exclude("*")]);
        assert!(flat.included(b"a.csv", false));
        assert!(!flat.included(b"a.txt", false));
        assert!(!flat.included(b"sub", true));
        assert!(!flat.reachable(b"sub/b.csv", false));
        // The transfer root itself, which `*` would match, is not filtered.
        assert!(flat.included(b"", true) && flat.reachable(b"", true));
        let deep = set(&[
            FilterRule::include("*/"),
            FilterRule::include("*.csv"),
            FilterRule::exclude("*"),
        ]);
        assert!(deep.included(b"sub", true));
        assert!(deep.reachable(b"sub/b.csv", false));
        assert!(!deep.reachable(b"sub/b.txt", false));
    }

    #[test]
    fn reachable_checks_every_directory_above() {
        let rules = set(&[FilterRule::exclude("scratch/")]);
        assert!(!rules.reachable(b"scratch/x", false));
        assert!(!rules.reachable(b"a/scratch/b/x", false));
        assert!(rules.reachable(b"a/b/x", false));
        assert!(!rules.reachable(b"scratch", true));
    }

    #[test]
    fn hostile_lists_are_refused_in_one_line() {
        let many = vec![FilterRule::exclude("x"); MAX_FILTERS + 1];
        assert_eq!(
            FilterSet::new(&many).unwrap_err(),
            FilterError::TooMany {
                count: MAX_FILTERS + 1
            }
        );
        assert!(FilterSet::new(&many[..MAX_FILTERS]).is_ok());
        let long = FilterRule::exclude(vec![b'a'; MAX_PATTERN + 1]);
        let e = FilterSet::new(&[long]).unwrap_err().to_string();
        assert!(e.contains("too long") && !e.contains('\n'), "{e}");
        assert!(FilterSet::new(&[FilterRule::exclude(vec![b'a'; MAX_PATTERN])]).is_ok());
        for bad in ["", "/", "//", "[abc", "a\\", "[!"] {
            let e = FilterSet::new(&[FilterRule::exclude(bad)]);
            assert!(e.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_travel_as_bytes() {
        let rule = FilterRule::exclude(&b"*.\xff"[..]);
        let text = serde_json::to_string(&rule).unwrap();
        assert_eq!(text, r#"{"action":"exclude","pattern":"*.%FF"}"#);
        assert_eq!(serde_json::from_str::<FilterRule>(&text).unwrap(), rule);
    }

    proptest! {
        /// A literal pattern matches exactly itself; `*` matches any name;
        /// nothing panics on any bytes.
        #[test]
        fn literals_and_stars(name in proptest::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 1..40),
                              pattern in proptest::collection::vec(any::<u8>(), 1..40)) {
            let escaped: Vec<u8> = name.iter().flat_map(|b| [b'\\', *b]).collect();
            prop_assert!(matches(&escaped, &name));
            prop_assert!(matches(b"*", &name));
            if let Ok(set) = FilterSet::new(&[FilterRule::exclude(pattern)]) {
                let _ = set.included(&name, false);
                let _ = set.reachable(&name, true);
            }
        }
    }
}
