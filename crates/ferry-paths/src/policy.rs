//! The path policy: user rules plus the built-in denies, and the one matcher that
//! decides what any absolute path may be used for.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::config_paths::{self, LineProblem};
use crate::restrict_paths::{self, ItemProblem};
use crate::rule_path::{RequestPathError, normalize_absolute, show};

/// What a rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    ReadWrite,
    ReadOnly,
    Deny,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
            Access::Deny => "denied",
        })
    }
}

/// Where a rule came from, so messages can point the owner at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleOrigin {
    /// 1-based line number in `config-paths`.
    ConfigPathsLine(usize),
    /// 1-based item index in `-restrict-paths`.
    RestrictPathsItem(usize),
    /// Built-in deny of the endpoint's own config dir.
    ConfigDir,
    /// Built-in deny of a dot-entry directly under home (`~/.ssh`, `~/.bashrc`, ...).
    HomeDotEntry,
}

impl RuleOrigin {
    pub fn is_built_in(self) -> bool {
        matches!(self, RuleOrigin::ConfigDir | RuleOrigin::HomeDotEntry)
    }
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOrigin::ConfigPathsLine(line) => write!(f, "config-paths line {line}"),
            RuleOrigin::RestrictPathsItem(item) => write!(f, "-restrict-paths item {item}"),
            RuleOrigin::ConfigDir => f.write_str("the built-in deny of the config dir"),
            RuleOrigin::HomeDotEntry => {
                f.write_str("the built-in deny of dot-entries directly under home")
            }
        }
    }
}

/// One rule: everything at or beneath `path` gets `access`, unless a longer rule says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Absolute and normalized: no `.`, no `..`, no trailing slash except for `/`.
    pub path: PathBuf,
    pub access: Access,
    /// The SHARING column of `config-paths`; kept for a future sharing feature.
    pub sharing: bool,
    pub origin: RuleOrigin,
    /// The line or item as the owner wrote it (trimmed), for messages.
    pub text: String,
}

impl fmt::Display for Rule {
    /// `config-paths line 2 (~/data,0,1)` or `the built-in deny of the config dir (/home/u/.ferry)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.is_built_in() {
            write!(f, "{} ({})", self.origin, show(&self.path))
        } else {
            write!(f, "{} ({})", self.origin, show(Path::new(&self.text)))
        }
    }
}

/// Which syntax the user rules came from; only changes the wording of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    ConfigPaths,
    RestrictPaths,
}

impl PolicySource {
    fn rule_noun(self) -> &'static str {
        match self {
            PolicySource::ConfigPaths => "config-paths line",
            PolicySource::RestrictPaths => "-restrict-paths item",
        }
    }
}

/// Everything that can be wrong with a policy file, a `-restrict-paths` value or
/// a path handed to [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("config-paths line {line}: {problem} (line: {text:?})")]
    ConfigPathsLine {
        line: usize,
        text: String,
        problem: LineProblem,
    },
    #[error("-restrict-paths item {item}: {problem} (item: {text:?})")]
    RestrictPathsItem {
        item: usize,
        text: String,
        problem: ItemProblem,
    },
    #[error(
        "{first} and {second} both name {}; remove one of them",
        show(.path)
    )]
    DuplicateRule {
        path: PathBuf,
        first: RuleOrigin,
        second: RuleOrigin,
    },
    #[error("the {what} {} must be an absolute path without `..`", show(.path))]
    BadBaseDir { what: &'static str, path: PathBuf },
    #[error("cannot judge path {}: {problem}", show(.path))]
    BadRequestPath {
        path: PathBuf,
        problem: RequestPathError,
    },
}

/// The owner's rules plus the built-in denies.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    home: PathBuf,
    config_dir: PathBuf,
    source: PolicySource,
}

impl Policy {
    /// Parses a `config-paths` file (`PATH,SHARING,RW` per line).
    ///
    /// `home` expands `~`; `config_dir` is denied unless a line names it. Both
    /// are trusted and used as given (not canonicalized).
    pub fn from_config_paths(
        text: &str,
        home: &Path,
        config_dir: &Path,
    ) -> Result<Policy, PolicyError> {
        let home = base_dir("home directory", home)?;
        let config_dir = base_dir("config dir", config_dir)?;
        let rules = config_paths::parse(text, &home)?;
        Policy::new(rules, home, config_dir, PolicySource::ConfigPaths)
    }

    /// Parses a GridFTP-style `-restrict-paths` value (`R~/data,N~/data/secret,...`).
    pub fn from_restrict_paths(
        spec: &str,
        home: &Path,
        config_dir: &Path,
    ) -> Result<Policy, PolicyError> {
        let home = base_dir("home directory", home)?;
        let config_dir = base_dir("config dir", config_dir)?;
        let rules = restrict_paths::parse(spec, &home)?;
        Policy::new(rules, home, config_dir, PolicySource::RestrictPaths)
    }

    fn new(
        rules: Vec<Rule>,
        home: PathBuf,
        config_dir: PathBuf,
        source: PolicySource,
    ) -> Result<Policy, PolicyError> {
        for (index, later) in rules.iter().enumerate() {
            if let Some(earlier) = rules[..index].iter().find(|r| r.path == later.path) {
                return Err(PolicyError::DuplicateRule {
                    path: later.path.clone(),
                    first: earlier.origin,
                    second: later.origin,
                });
            }
        }
        Ok(Policy {
            rules,
            home,
            config_dir,
            source,
        })
    }

    /// The user rules in the order they were written (built-in denies are not listed).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn source(&self) -> PolicySource {
        self.source
    }

    /// Decides what `path` may be used for. Purely lexical: symlinks are the
    /// rooted filesystem's business.
    ///
    /// Fails if `path` is not absolute or has a `..` component; `.` and
    /// repeated or trailing `/` are normalized away.
    pub fn decide(&self, path: &Path) -> Result<Decision, PolicyError> {
        let normalized =
            normalize_absolute(path).map_err(|problem| PolicyError::BadRequestPath {
                path: path.to_path_buf(),
                problem,
            })?;
        Ok(self.decide_normalized(normalized))
    }

    pub(crate) fn decide_normalized(&self, path: PathBuf) -> Decision {
        let best_user_rule = self
            .rules
            .iter()
            .filter(|rule| path.starts_with(&rule.path))
            .max_by_key(|rule| depth(&rule.path));

        // A built-in deny yields only to a user rule that names the denied entry
        // or something beneath it; a broader rule such as `~/` does not count.
        let overriding_built_in = |deny: &Rule| {
            best_user_rule.is_some_and(|user_rule| user_rule.path.starts_with(&deny.path))
        };
        // On a tie (config dir `~/.ferry`) max_by_key keeps the last, and the
        // config-dir reason is the more telling one.
        let built_in_deny = [self.home_dot_deny(&path), self.config_dir_deny(&path)]
            .into_iter()
            .flatten()
            .filter(|deny| !overriding_built_in(deny))
            .max_by_key(|deny| depth(&deny.path));

        let (rule, access) = match (built_in_deny, best_user_rule) {
            (Some(deny), _) => (Some(deny), Access::Deny),
            (None, Some(user_rule)) => (Some(user_rule.clone()), user_rule.access),
            (None, None) => (None, Access::Deny),
        };
        Decision {
            path,
            rule,
            access,
            source: self.source,
        }
    }

    /// Decides ferry's temporary file named `temp_name` beside `target`,
    /// the file it becomes: as that target, never more than the
    /// temporary's own path would get, except that the built-in deny of
    /// dot-entries directly under home does not apply to it.
    ///
    /// That deny is meant for the user's own dot-files. A temporary is a
    /// dot-entry directly under home whenever its target is a file there
    /// (`ferry transfer a:/~/x b:/~/x`), and it belongs to the transfer
    /// writing that target, which the policy already allows. Every other
    /// rule still counts: a target that is denied or read-only has a
    /// temporary just as unreachable, and so does a temporary whose own
    /// path a rule denies (the config dir, a line naming it). The
    /// exemption belongs to this decision alone, which only
    /// [`crate::RootedFs`]'s temporary-file operations make, with the
    /// name they derive from the target: [`Policy::decide`] on the same
    /// path (`ls`, `rm`, the source of a transfer) still refuses it, so a
    /// user's own `~/.ferry.*` file stays out of reach.
    pub fn decide_temporary(
        &self,
        target: &Path,
        temp_name: &OsStr,
    ) -> Result<Decision, PolicyError> {
        let normalized =
            normalize_absolute(target).map_err(|problem| PolicyError::BadRequestPath {
                path: target.to_path_buf(),
                problem,
            })?;
        Ok(self.decide_temporary_normalized(normalized, temp_name))
    }

    pub(crate) fn decide_temporary_normalized(
        &self,
        target: PathBuf,
        temp_name: &OsStr,
    ) -> Decision {
        let plain_name = Path::new(temp_name)
            .components()
            .eq([Component::Normal(temp_name)]);
        let (Some(parent), true) = (target.parent(), plain_name) else {
            // The root has no temporary beside it; a name with a slash is
            // not a name.
            return Decision {
                path: target,
                rule: None,
                access: Access::Deny,
                source: self.source,
            };
        };
        let path = parent.join(temp_name);
        let as_target = self.decide_normalized(target);
        let own = self.decide_normalized(path.clone());
        let own = match &own.rule {
            Some(rule) if rule.origin == RuleOrigin::HomeDotEntry => as_target.clone(),
            _ => own,
        };
        let stricter = if rank(own.access) < rank(as_target.access) {
            own
        } else {
            as_target
        };
        Decision { path, ..stricter }
    }

    fn config_dir_deny(&self, path: &Path) -> Option<Rule> {
        path.starts_with(&self.config_dir)
            .then(|| built_in_deny(self.config_dir.clone(), RuleOrigin::ConfigDir))
    }

    fn home_dot_deny(&self, path: &Path) -> Option<Rule> {
        let below_home = path.strip_prefix(&self.home).ok()?;
        match below_home.components().next() {
            Some(Component::Normal(name)) if name.as_bytes().first() == Some(&b'.') => Some(
                built_in_deny(self.home.join(name), RuleOrigin::HomeDotEntry),
            ),
            _ => None,
        }
    }

    /// Some rule (user or built-in) whose area lies strictly beneath `path`, if any.
    ///
    /// A symlink or rename under `path` could lead into such an area, so callers
    /// must look at real locations when this returns `Some`.
    pub(crate) fn rule_strictly_beneath(&self, path: &Path) -> Option<Rule> {
        if let Some(user_rule) = self
            .rules
            .iter()
            .find(|rule| rule.path != path && rule.path.starts_with(path))
        {
            return Some(user_rule.clone());
        }
        if self.config_dir != path && self.config_dir.starts_with(path) {
            return Some(built_in_deny(
                self.config_dir.clone(),
                RuleOrigin::ConfigDir,
            ));
        }
        // Any directory that is home or above it has (potential) dot-entries of home beneath it.
        if self.home.starts_with(path) {
            return Some(built_in_deny(self.home.clone(), RuleOrigin::HomeDotEntry));
        }
        None
    }
}

fn built_in_deny(path: PathBuf, origin: RuleOrigin) -> Rule {
    Rule {
        path,
        access: Access::Deny,
        sharing: false,
        origin,
        text: String::new(),
    }
}

fn base_dir(what: &'static str, path: &Path) -> Result<PathBuf, PolicyError> {
    normalize_absolute(path).map_err(|_| PolicyError::BadBaseDir {
        what,
        path: path.to_path_buf(),
    })
}

/// Orders accesses from least to most allowed.
fn rank(access: Access) -> u8 {
    match access {
        Access::Deny => 0,
        Access::ReadOnly => 1,
        Access::ReadWrite => 2,
    }
}

fn depth(path: &Path) -> usize {
    path.components().count()
}

/// The verdict on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The normalized path that was judged.
    pub path: PathBuf,
    /// The rule that decided: a user rule, a built-in deny, or `None` when nothing covers the path.
    pub rule: Option<Rule>,
    /// [`Access::Deny`] when no rule covers the path.
    pub access: Access,
    source: PolicySource,
}

impl Decision {
    pub fn allows_read(&self) -> bool {
        matches!(self.access, Access::ReadWrite | Access::ReadOnly)
    }

    pub fn allows_write(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// One human line, e.g. `/home/u/data/x: read-write, allowed by config-paths line 2 (~/data,0,1)`.
    pub fn explain(&self) -> String {
        let path = show(&self.path);
        match (&self.rule, self.access) {
            (Some(rule), Access::ReadWrite | Access::ReadOnly) => {
                format!("{path}: {}, allowed by {rule}", self.access)
            }
            (Some(rule), Access::Deny) if !rule.origin.is_built_in() => {
                format!("{path}: denied by {rule}")
            }
            _ => format!("{path}: denied: {}", self.reason()),
        }
    }

    /// Why the access is what it is, without the path: the tail of an error message.
    pub fn reason(&self) -> String {
        let noun = self.source.rule_noun();
        match &self.rule {
            None => format!("it is outside the paths this endpoint shares (no {noun} covers it)"),
            Some(rule) => match rule.origin {
                RuleOrigin::ConfigDir => format!(
                    "it is inside the endpoint's config dir {}, which is not reachable unless a {noun} names it",
                    show(&rule.path)
                ),
                RuleOrigin::HomeDotEntry => format!(
                    "dot-entries directly under home are not reachable unless a {noun} names them"
                ),
                RuleOrigin::ConfigPathsLine(_) | RuleOrigin::RestrictPathsItem(_) => {
                    format!("{} by {rule}", self.access)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::from_config_paths(text, Path::new("/home/u"), Path::new("/home/u/.ferry")).unwrap()
    }

    fn access(policy: &Policy, path: &str) -> Access {
        policy.decide(Path::new(path)).unwrap().access
    }

    #[test]
    fn empty_policy_denies_everything() {
        let empty = policy("");
        for path in ["/", "/home/u", "/home/u/data", "/etc/passwd"] {
            let decision = empty.decide(Path::new(path)).unwrap();
            assert_eq!(decision.access, Access::Deny, "{path}");
            assert!(!decision.allows_read());
        }
    }

    #[test]
    fn longest_component_match_wins() {
        let nested = policy("~/,0,1\n~/data,0,0\n~/data/inbox,0,1\n");
        assert_eq!(access(&nested, "/home/u/x"), Access::ReadWrite);
        assert_eq!(access(&nested, "/home/u/data"), Access::ReadOnly);
        assert_eq!(access(&nested, "/home/u/data/x"), Access::ReadOnly);
        assert_eq!(access(&nested, "/home/u/database"), Access::ReadWrite);
        assert_eq!(access(&nested, "/home/u/data/inbox/f"), Access::ReadWrite);
        assert_eq!(access(&nested, "/home/u/data/inboxes"), Access::ReadOnly);
        assert_eq!(access(&nested, "/home"), Access::Deny);
    }

    #[test]
    fn sibling_with_common_prefix_does_not_match() {
        let data_only = policy("~/data,0,1");
        assert_eq!(access(&data_only, "/home/u/database"), Access::Deny);
        assert_eq!(access(&data_only, "/home/u/data2/x"), Access::Deny);
        assert_eq!(access(&data_only, "/home/u/data/x"), Access::ReadWrite);
    }

    #[test]
    fn home_dot_entries_denied_under_home_rule() {
        let home = policy("~/,0,1");
        assert_eq!(access(&home, "/home/u/.ssh"), Access::Deny);
        assert_eq!(access(&home, "/home/u/.ssh/id_ed25519"), Access::Deny);
        assert_eq!(access(&home, "/home/u/.bashrc"), Access::Deny);
        assert_eq!(access(&home, "/home/u/.ferry/config-paths"), Access::Deny);
        // Only entries directly under home are built-in denied.
        assert_eq!(access(&home, "/home/u/src/.git/config"), Access::ReadWrite);
        assert_eq!(access(&home, "/home/u"), Access::ReadWrite);
    }

    #[test]
    fn explicit_rule_overrides_dot_entry_deny_only_for_its_area() {
        let local = policy("~/,0,1\n~/.local/share,0,1\n~/.ssh,0,0");
        assert_eq!(access(&local, "/home/u/.local/share/x"), Access::ReadWrite);
        assert_eq!(access(&local, "/home/u/.local/other"), Access::Deny);
        assert_eq!(access(&local, "/home/u/.local"), Access::Deny);
        assert_eq!(access(&local, "/home/u/.ssh/id"), Access::ReadOnly);
    }

    #[test]
    fn config_dir_deny_survives_dot_entry_override() {
        let policy = Policy::from_config_paths(
            "~/.config,0,1",
            Path::new("/home/u"),
            Path::new("/home/u/.config/ferry"),
        )
        .unwrap();
        assert_eq!(access(&policy, "/home/u/.config/x"), Access::ReadWrite);
        let decision = policy
            .decide(Path::new("/home/u/.config/ferry/config-paths"))
            .unwrap();
        assert_eq!(decision.access, Access::Deny);
        assert_eq!(decision.rule.unwrap().origin, RuleOrigin::ConfigDir);
    }

    #[test]
    fn config_dir_outside_home_is_denied_under_root_rule() {
        let policy =
            Policy::from_config_paths("/,0,1", Path::new("/home/u"), Path::new("/etc/ferry"))
                .unwrap();
        assert_eq!(access(&policy, "/etc/ferry"), Access::Deny);
        assert_eq!(access(&policy, "/etc/ferry/x"), Access::Deny);
        assert_eq!(access(&policy, "/etc/ferryman"), Access::ReadWrite);
        assert_eq!(access(&policy, "/home/u/.ssh"), Access::Deny);
    }

    #[test]
    fn restrict_paths_deny_item_wins_inside_its_area() {
        let policy = Policy::from_restrict_paths(
            "~/data,R/scratch/shared,N~/data/secret",
            Path::new("/home/u"),
            Path::new("/home/u/.ferry"),
        )
        .unwrap();
        assert_eq!(access(&policy, "/home/u/data/x"), Access::ReadWrite);
        assert_eq!(access(&policy, "/scratch/shared/x"), Access::ReadOnly);
        assert_eq!(access(&policy, "/home/u/data/secret/k"), Access::Deny);
        let decision = policy.decide(Path::new("/home/u/data/secret")).unwrap();
        assert_eq!(
            decision.explain(),
            "/home/u/data/secret: denied by -restrict-paths item 3 (N~/data/secret)"
        );
        assert_eq!(
            policy.decide(Path::new("/tmp")).unwrap().explain(),
            "/tmp: denied: it is outside the paths this endpoint shares (no -restrict-paths item covers it)"
        );
    }

    #[test]
    fn decide_normalizes_and_rejects_bad_paths() {
        let home = policy("~/,0,1");
        let decision = home.decide(Path::new("/home/u/./data//x/")).unwrap();
        assert_eq!(decision.path, PathBuf::from("/home/u/data/x"));
        assert!(matches!(
            home.decide(Path::new("home/u/x")),
            Err(PolicyError::BadRequestPath {
                problem: RequestPathError::NotAbsolute,
                ..
            })
        ));
        assert!(matches!(
            home.decide(Path::new("/home/u/data/../.ssh")),
            Err(PolicyError::BadRequestPath {
                problem: RequestPathError::ParentDir,
                ..
            })
        ));
    }

    #[test]
    fn explain_lines() {
        let policy = policy("~/,0,1\n~/data,0,1\n~/ro,0,0");
        let explain = |path: &str| policy.decide(Path::new(path)).unwrap().explain();
        assert_eq!(
            explain("/home/u/data/x"),
            "/home/u/data/x: read-write, allowed by config-paths line 2 (~/data,0,1)"
        );
        assert_eq!(
            explain("/home/u/ro/x"),
            "/home/u/ro/x: read-only, allowed by config-paths line 3 (~/ro,0,0)"
        );
        assert_eq!(
            explain("/home/u/.ssh/id"),
            "/home/u/.ssh/id: denied: dot-entries directly under home are not reachable unless a config-paths line names them"
        );
        assert_eq!(
            explain("/etc/passwd"),
            "/etc/passwd: denied: it is outside the paths this endpoint shares (no config-paths line covers it)"
        );
        assert_eq!(
            explain("/home/u/.ferry/x"),
            "/home/u/.ferry/x: denied: it is inside the endpoint's config dir /home/u/.ferry, which is not reachable unless a config-paths line names it"
        );
    }

    #[test]
    fn rule_strictly_beneath_sees_user_and_built_in_rules() {
        let policy = policy("/,0,1\n~/data,0,1\n~/data/ro,0,0\n/srv,0,1");
        assert_eq!(
            policy
                .rule_strictly_beneath(Path::new("/home/u/data"))
                .unwrap()
                .path,
            PathBuf::from("/home/u/data/ro")
        );
        assert!(
            policy
                .rule_strictly_beneath(Path::new("/home/u/data/ro"))
                .is_none()
        );
        assert!(policy.rule_strictly_beneath(Path::new("/srv")).is_none());
        // Home itself and its ancestors contain the home dot-entries.
        assert!(policy.rule_strictly_beneath(Path::new("/home")).is_some());
        assert!(policy.rule_strictly_beneath(Path::new("/home/u")).is_some());
    }

    fn temporary(policy: &Policy, target: &str) -> Decision {
        let name = crate::temp_name(Path::new(target).file_name().unwrap(), "0b5e3a52");
        policy.decide_temporary(Path::new(target), &name).unwrap()
    }

    #[test]
    fn the_temporary_of_a_permitted_target_directly_under_home_is_allowed() {
        let home = policy("~/,0,1\n~/ro,0,0\n~/data,0,1\n~/data/secret,0,0\n");
        let top = temporary(&home, "/home/u/x");
        assert_eq!(top.path, PathBuf::from("/home/u/.ferry.x.0b5e3a52.part"));
        assert_eq!(top.access, Access::ReadWrite);
        assert_eq!(top.rule.unwrap().origin, RuleOrigin::ConfigPathsLine(1));
        // The same path decided as itself is still the user's dot-file.
        assert_eq!(
            home.decide(Path::new("/home/u/.ferry.x.0b5e3a52.part"))
                .unwrap()
                .rule
                .unwrap()
                .origin,
            RuleOrigin::HomeDotEntry
        );
        assert_eq!(temporary(&home, "/home/u/data/f").access, Access::ReadWrite);
        assert_eq!(temporary(&home, "/home/u/ro/f").access, Access::ReadOnly);
        assert_eq!(
            temporary(&home, "/home/u/data/secret/f").access,
            Access::ReadOnly
        );
    }

    #[test]
    fn the_temporary_of_a_refused_target_is_refused_and_other_rules_still_count() {
        let home = policy("~/,0,1\n~/.ssh,0,0\n");
        // A dot-file target: its temporary is as unreachable as it is.
        let dotfile = temporary(&home, "/home/u/.bashrc");
        assert_eq!(dotfile.access, Access::Deny);
        assert!(
            dotfile.explain().contains("dot-entries"),
            "{}",
            dotfile.explain()
        );
        assert_eq!(
            temporary(&home, "/home/u/.ssh/authorized_keys").access,
            Access::ReadOnly
        );
        assert_eq!(temporary(&home, "/etc/passwd").access, Access::Deny);
        // A rule on the temporary's own path counts even when its target is writable.
        let named = policy("~/,0,1\n~/d/.ferry.x.0b5e3a52.part,0,0\n");
        assert_eq!(temporary(&named, "/home/u/d/x").access, Access::ReadOnly);
        let config = Policy::from_config_paths(
            "~/,0,1",
            Path::new("/home/u"),
            Path::new("/home/u/.ferry.x.0b5e3a52.part"),
        )
        .unwrap();
        let decision = temporary(&config, "/home/u/x");
        assert_eq!(decision.access, Access::Deny);
        assert_eq!(decision.rule.unwrap().origin, RuleOrigin::ConfigDir);
        // Not a temporary name: a path, or nothing beside the root.
        assert_eq!(
            home.decide_temporary(Path::new("/home/u/x"), OsStr::new("a/b"))
                .unwrap()
                .access,
            Access::Deny
        );
        assert_eq!(
            home.decide_temporary(Path::new("/"), OsStr::new(".ferry.x.t.part"))
                .unwrap()
                .access,
            Access::Deny
        );
    }

    #[test]
    fn bad_base_dirs_are_rejected() {
        assert!(matches!(
            Policy::from_config_paths("", Path::new("home"), Path::new("/c")),
            Err(PolicyError::BadBaseDir { .. })
        ));
        assert!(matches!(
            Policy::from_config_paths("", Path::new("/h"), Path::new("/h/../c")),
            Err(PolicyError::BadBaseDir { .. })
        ));
    }
}
