//! The path policy: user rules plus the built-in denies, and the one matcher that
//! decides what any absolute path may be used for.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::config_paths::{self, LineProblem};
use crate::restrict_paths::{self, ItemProblem};
use crate::rule_path::{RequestPathError, normalize_absolute, resolve_endpoint_path, show};

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
    /// The SHARING column of `config-paths`: whether the owner lets
    /// grantees reach what this rule decides ([`Policy::for_grant`]).
    /// Always false for `-restrict-paths`, which has no such column.
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
    #[error("the folder shared with you, {}, is not usable: {problem}", show(.root))]
    BadShareRoot { root: PathBuf, problem: String },
}

/// What one permission lets a grantee reach: everything at or beneath
/// `root` that the owner's policy allows and shares, and writes only with
/// `write`. Made by [`Policy::for_grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLimit {
    /// Absolute and normalized, `/~/` expanded to the owner's home.
    pub root: PathBuf,
    /// The permission is `rw`.
    pub write: bool,
}

/// Why a grantee gets less than the owner would on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareNarrowing {
    /// The path is not at or beneath the shared folder.
    OutsideShare { root: PathBuf },
    /// The owner's rule that decides the path has SHARING 0 (or comes
    /// from `-restrict-paths`, which cannot share).
    NotShared { rule: Rule },
    /// The endpoint's config dir (its private key) is never shared, even
    /// where a rule names it with SHARING 1.
    ConfigDir { path: PathBuf },
    /// The permission is `r`: a write the owner's rule would allow becomes
    /// read-only.
    ReadOnlyShare,
}

/// The owner's rules plus the built-in denies, and, for a grantee, the
/// limits of the permissions it acts through.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    home: PathBuf,
    config_dir: PathBuf,
    source: PolicySource,
    /// Empty for the owner. Each one narrows every decision; a policy
    /// narrowed twice keeps both (their intersection).
    shares: Vec<ShareLimit>,
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
            shares: Vec::new(),
        })
    }

    /// This policy as a grantee gets it through a permission on `root`
    /// (an endpoint path: absolute, or `/~/...` for the owner's home),
    /// read-only unless `write`.
    ///
    /// Every decision of the result is this policy's, narrowed: a path
    /// not at or beneath `root` is denied, and so is one whose deciding
    /// rule has SHARING 0 and anything in the config dir; a write becomes
    /// read-only unless `write`. The owner's denies (built-in ones too)
    /// stand. Nothing widens: this is computed from the endpoint's own
    /// rules, whatever the hub claims, and [`crate::RootedFs`] applies it
    /// with every check it makes for the owner (symlinks, temporaries).
    ///
    /// Fails if `root` is relative or has a `..` component.
    pub fn for_grant(&self, root: &Path, write: bool) -> Result<Policy, PolicyError> {
        let bad = |problem: String| PolicyError::BadShareRoot {
            root: root.to_path_buf(),
            problem,
        };
        let expanded =
            resolve_endpoint_path(&self.home, root.as_os_str().as_bytes()).map_err(bad)?;
        let normalized =
            normalize_absolute(&expanded).map_err(|problem| bad(problem.to_string()))?;
        let mut narrowed = self.clone();
        narrowed.shares.push(ShareLimit {
            root: normalized,
            write,
        });
        Ok(narrowed)
    }

    /// The limits of the permissions this policy acts through: empty for
    /// the owner.
    pub fn share_limits(&self) -> &[ShareLimit] {
        &self.shares
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
        self.narrow(self.decide_for_owner(path))
    }

    /// The decision for the owner, before any share narrows it.
    fn decide_for_owner(&self, path: PathBuf) -> Decision {
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
            narrowing: None,
        }
    }

    /// Applies the share limits (none for the owner) to the owner's
    /// decision on the same path.
    fn narrow(&self, owner: Decision) -> Decision {
        if self.shares.is_empty() {
            return owner;
        }
        let denied = |narrowing| Decision {
            access: Access::Deny,
            narrowing: Some(narrowing),
            ..owner.clone()
        };
        // Outside first: a grantee learns nothing of the owner's rules
        // for paths it was never given.
        if let Some(share) = self
            .shares
            .iter()
            .find(|s| !owner.path.starts_with(&s.root))
        {
            return denied(ShareNarrowing::OutsideShare {
                root: share.root.clone(),
            });
        }
        let rule = match &owner.rule {
            Some(rule) if owner.access != Access::Deny => rule,
            // The owner's own deny (a rule, a built-in, no rule) stands.
            _ => return owner,
        };
        if owner.path.starts_with(&self.config_dir) {
            return denied(ShareNarrowing::ConfigDir {
                path: self.config_dir.clone(),
            });
        }
        if !rule.sharing {
            return denied(ShareNarrowing::NotShared { rule: rule.clone() });
        }
        if owner.access == Access::ReadWrite && self.shares.iter().any(|s| !s.write) {
            return Decision {
                access: Access::ReadOnly,
                narrowing: Some(ShareNarrowing::ReadOnlyShare),
                ..owner
            };
        }
        owner
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
                narrowing: None,
            };
        };
        let path = parent.join(temp_name);
        let as_target = self.decide_normalized(target.clone());
        // The exemption is the owner's; a share then narrows the
        // temporary's own path like any other (a temporary beside the
        // shared folder is outside it).
        let own = self.decide_for_owner(path.clone());
        let own = match &own.rule {
            Some(rule) if rule.origin == RuleOrigin::HomeDotEntry => Decision {
                path: path.clone(),
                ..self.decide_for_owner(target)
            },
            _ => own,
        };
        let own = self.narrow(own);
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

    /// Whether some rule's area or a shared folder lies strictly beneath
    /// `path`: a symlink beneath `path` could then lead out of the one
    /// and into the other, so real locations must be decided again.
    pub(crate) fn has_boundary_strictly_beneath(&self, path: &Path) -> bool {
        self.rule_strictly_beneath(path).is_some()
            || self
                .shares
                .iter()
                .any(|share| share.root != path && share.root.starts_with(path))
    }

    /// Whether `path` is the folder a grantee was given, which the
    /// grantee may change beneath but not remove or rename.
    pub(crate) fn is_share_root(&self, path: &Path) -> bool {
        self.shares.iter().any(|share| share.root == path)
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
    /// For a grantee: why the access is less than the owner's.
    narrowing: Option<ShareNarrowing>,
}

impl Decision {
    pub fn allows_read(&self) -> bool {
        matches!(self.access, Access::ReadWrite | Access::ReadOnly)
    }

    pub fn allows_write(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// For a grantee: why the access is less than the owner would get.
    pub fn narrowing(&self) -> Option<&ShareNarrowing> {
        self.narrowing.as_ref()
    }

    /// One human line, e.g. `/home/u/data/x: read-write, allowed by config-paths line 2 (~/data,0,1)`.
    pub fn explain(&self) -> String {
        let path = show(&self.path);
        match (&self.rule, self.access, &self.narrowing) {
            (_, Access::Deny, Some(_)) => return format!("{path}: denied: {}", self.reason()),
            (Some(rule), Access::ReadOnly, Some(_)) => {
                return format!("{path}: read-only ({}), allowed by {rule}", self.reason());
            }
            _ => {}
        }
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
        match &self.narrowing {
            Some(ShareNarrowing::OutsideShare { root }) => {
                return format!("outside the folder shared with you ({})", show(root));
            }
            Some(ShareNarrowing::NotShared { rule }) => {
                return match self.source {
                    PolicySource::ConfigPaths => {
                        format!("{rule} does not allow sharing (its SHARING flag is 0)")
                    }
                    PolicySource::RestrictPaths => format!(
                        "{rule} does not allow sharing (-restrict-paths has no SHARING flag; config-paths does)"
                    ),
                };
            }
            Some(ShareNarrowing::ConfigDir { path }) => {
                return format!(
                    "it is inside the endpoint's config dir {}, which is never shared",
                    show(path)
                );
            }
            Some(ShareNarrowing::ReadOnlyShare) => return "shared with you read-only".into(),
            None => {}
        }
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

    fn grant(policy: &Policy, root: &str, write: bool) -> Policy {
        policy.for_grant(Path::new(root), write).unwrap()
    }

    fn reason(policy: &Policy, path: &str) -> String {
        policy.decide(Path::new(path)).unwrap().reason()
    }

    #[test]
    fn a_grantee_reaches_only_what_is_beneath_the_shared_folder() {
        let owner = policy("~/,1,1\n");
        let results = grant(&owner, "/~/project/results", true);
        assert_eq!(
            results.share_limits(),
            [ShareLimit {
                root: PathBuf::from("/home/u/project/results"),
                write: true
            }]
        );
        assert_eq!(
            access(&results, "/home/u/project/results"),
            Access::ReadWrite
        );
        assert_eq!(
            access(&results, "/home/u/project/results/a/b"),
            Access::ReadWrite
        );
        for outside in [
            "/home/u/project",
            "/home/u",
            "/",
            "/home/u/project/results2",
            "/home/u/project/resultsx/f",
            "/etc/passwd",
            "/home/u/.ssh/id",
        ] {
            assert_eq!(access(&results, outside), Access::Deny, "{outside}");
            assert_eq!(
                reason(&results, outside),
                "outside the folder shared with you (/home/u/project/results)",
                "{outside}"
            );
        }
        // The owner's policy is untouched.
        assert_eq!(access(&owner, "/home/u/project"), Access::ReadWrite);
        assert!(owner.share_limits().is_empty());
    }

    #[test]
    fn dot_dot_in_a_request_or_a_shared_root_is_refused() {
        let owner = policy("~/,1,1\n");
        let results = grant(&owner, "/~/project/results", true);
        for tricky in [
            "/home/u/project/results/..",
            "/home/u/project/results/../../.ssh/id",
            "/home/u/project/results/./../x",
        ] {
            assert!(
                matches!(
                    results.decide(Path::new(tricky)),
                    Err(PolicyError::BadRequestPath {
                        problem: RequestPathError::ParentDir,
                        ..
                    })
                ),
                "{tricky}"
            );
        }
        for bad_root in ["/~/project/results/..", "/~/../..", "project", ""] {
            let refused = owner.for_grant(Path::new(bad_root), true).unwrap_err();
            assert!(
                matches!(refused, PolicyError::BadShareRoot { .. }),
                "{bad_root}: {refused}"
            );
        }
        // `/~//x` is beneath home, as for every request path.
        assert_eq!(
            grant(&owner, "/~//project", false).share_limits()[0].root,
            PathBuf::from("/home/u/project")
        );
        assert_eq!(
            grant(&owner, "/srv/./data/", false).share_limits()[0].root,
            PathBuf::from("/srv/data")
        );
    }

    #[test]
    fn a_shared_root_under_a_rule_with_sharing_0_reaches_nothing() {
        let unshared = policy("~/,0,1\n~/public,1,0\n");
        let project = grant(&unshared, "/~/project", true);
        for path in ["/home/u/project", "/home/u/project/x/y"] {
            assert_eq!(access(&project, path), Access::Deny, "{path}");
            assert_eq!(
                reason(&project, path),
                "config-paths line 1 (~/,0,1) does not allow sharing (its SHARING flag is 0)"
            );
        }
        // A shared root above a SHARING=1 rule reaches that rule's area only.
        let home = grant(&unshared, "/~/", false);
        assert_eq!(access(&home, "/home/u/public/f"), Access::ReadOnly);
        assert_eq!(access(&home, "/home/u/other"), Access::Deny);
    }

    #[test]
    fn a_deeper_rule_with_sharing_0_stays_unshared_beneath_a_shared_one() {
        let owner = policy("~/,1,1\n~/project/private,0,1\n~/project/ro,1,0\n");
        let project = grant(&owner, "/~/project", true);
        assert_eq!(access(&project, "/home/u/project/x"), Access::ReadWrite);
        assert_eq!(access(&project, "/home/u/project/private"), Access::Deny);
        assert_eq!(
            reason(&project, "/home/u/project/private/k"),
            "config-paths line 2 (~/project/private,0,1) does not allow sharing (its SHARING flag is 0)"
        );
        // The owner's read-only rule stays read-only for a grantee with rw.
        assert_eq!(access(&project, "/home/u/project/ro/f"), Access::ReadOnly);
        assert_eq!(
            reason(&project, "/home/u/project/ro/f"),
            "read-only by config-paths line 3 (~/project/ro,1,0)"
        );
        assert!(project.has_boundary_strictly_beneath(Path::new("/home/u")));
        assert!(!project.has_boundary_strictly_beneath(Path::new("/home/u/project/x")));
        assert!(project.is_share_root(Path::new("/home/u/project")));
    }

    #[test]
    fn a_read_only_permission_never_writes() {
        let owner = policy("~/,1,1\n");
        let read = grant(&owner, "/~/data", false);
        let decision = read.decide(Path::new("/home/u/data/f")).unwrap();
        assert_eq!(decision.access, Access::ReadOnly);
        assert!(decision.allows_read() && !decision.allows_write());
        assert_eq!(decision.narrowing(), Some(&ShareNarrowing::ReadOnlyShare));
        assert_eq!(decision.reason(), "shared with you read-only");
        assert_eq!(
            decision.explain(),
            "/home/u/data/f: read-only (shared with you read-only), allowed by config-paths line 1 (~/,1,1)"
        );
        assert_eq!(
            read.decide(Path::new("/home/u/x")).unwrap().explain(),
            "/home/u/x: denied: outside the folder shared with you (/home/u/data)"
        );
    }

    #[test]
    fn the_config_dir_and_dot_entries_are_never_shared() {
        // The owner named the config dir with SHARING 1: still not shared.
        let owner = policy("~/,1,1\n~/.ferry,1,1\n~/.local,1,1\n");
        assert_eq!(
            access(&owner, "/home/u/.ferry/endpoint.key"),
            Access::ReadWrite
        );
        let home = grant(&owner, "/~/", true);
        let decision = home
            .decide(Path::new("/home/u/.ferry/endpoint.key"))
            .unwrap();
        assert_eq!(decision.access, Access::Deny);
        assert_eq!(
            decision.reason(),
            "it is inside the endpoint's config dir /home/u/.ferry, which is never shared"
        );
        let shared_config = grant(&owner, "/~/.ferry", false);
        assert_eq!(access(&shared_config, "/home/u/.ferry"), Access::Deny);
        // The built-in deny of dot-entries stands; a named one is the owner's choice.
        assert_eq!(access(&home, "/home/u/.ssh/id"), Access::Deny);
        assert_eq!(access(&home, "/home/u/.local/x"), Access::ReadWrite);
    }

    #[test]
    fn restrict_paths_share_nothing() {
        let restricted = Policy::from_restrict_paths(
            "~/data",
            Path::new("/home/u"),
            Path::new("/home/u/.ferry"),
        )
        .unwrap();
        let data = grant(&restricted, "/~/data", false);
        assert_eq!(access(&data, "/home/u/data/f"), Access::Deny);
        assert_eq!(
            reason(&data, "/home/u/data/f"),
            "-restrict-paths item 1 (~/data) does not allow sharing (-restrict-paths has no SHARING flag; config-paths does)"
        );
    }

    #[test]
    fn a_policy_narrowed_twice_keeps_both_limits() {
        let owner = policy("/,1,1\n");
        let both = grant(&grant(&owner, "/~/a", true), "/~/a/b", false);
        assert_eq!(access(&both, "/home/u/a/b/c"), Access::ReadOnly);
        assert_eq!(access(&both, "/home/u/a/x"), Access::Deny);
        let disjoint = grant(&grant(&owner, "/~/a", true), "/srv", true);
        assert_eq!(access(&disjoint, "/home/u/a/x"), Access::Deny);
        assert_eq!(access(&disjoint, "/srv/x"), Access::Deny);
    }

    #[test]
    fn a_grantees_temporaries_stay_inside_the_shared_folder() {
        let owner = policy("~/,1,1\n");
        let results = grant(&owner, "/~/results", true);
        assert_eq!(
            temporary(&results, "/home/u/results/f").access,
            Access::ReadWrite
        );
        // The temporary of the shared folder itself lies beside it.
        let beside = temporary(&results, "/home/u/results");
        assert_eq!(beside.access, Access::Deny);
        assert_eq!(
            beside.reason(),
            "outside the folder shared with you (/home/u/results)"
        );
        assert_eq!(temporary(&results, "/home/u/x").access, Access::Deny);
        // Sharing home: the owner's exemption for temporaries directly
        // under home still applies, the read-only permission too.
        let home = grant(&owner, "/~", true);
        assert_eq!(temporary(&home, "/home/u/x").access, Access::ReadWrite);
        let read = grant(&owner, "/~", false);
        assert_eq!(temporary(&read, "/home/u/x").access, Access::ReadOnly);
        assert_eq!(temporary(&read, "/home/u/.bashrc").access, Access::Deny);
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
