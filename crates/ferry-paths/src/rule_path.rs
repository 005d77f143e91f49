//! Turning rule paths and requested paths into one normalized absolute form, and
//! printing paths safely in one-line messages.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a path written in `config-paths` or `-restrict-paths` is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulePathError {
    #[error("the path is empty")]
    Empty,
    #[error("~user paths are not supported (only ~ and ~/...), got {0:?}")]
    TildeUser(String),
    #[error("the path {0:?} is relative; it must start with / or ~")]
    Relative(String),
    #[error("`..` components are not allowed in a rule path, got {0:?}")]
    ParentDir(String),
    #[error("the path contains a NUL byte")]
    NulByte,
}

/// Why a path handed to `Policy::decide` cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestPathError {
    #[error("it is not an absolute path")]
    NotAbsolute,
    #[error("`..` components are not allowed")]
    ParentDir,
}

/// Expands a leading `~` to `home` and normalizes the result.
pub(crate) fn expand_rule_path(raw: &str, home: &Path) -> Result<PathBuf, RulePathError> {
    if raw.is_empty() {
        return Err(RulePathError::Empty);
    }
    if raw.contains('\0') {
        return Err(RulePathError::NulByte);
    }
    let expanded = if let Some(after_tilde) = raw.strip_prefix('~') {
        if after_tilde.is_empty() {
            home.to_path_buf()
        } else if let Some(below_home) = after_tilde.strip_prefix('/') {
            // `~//data` is `~/data`: joining a rest that still starts with
            // `/` would discard `home` and name `/data`.
            home.join(below_home.trim_start_matches('/'))
        } else {
            return Err(RulePathError::TildeUser(raw.to_owned()));
        }
    } else if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        return Err(RulePathError::Relative(raw.to_owned()));
    };
    normalize_absolute(&expanded).map_err(|problem| match problem {
        // `home` is absolute by contract, so only `..` can end up here.
        RequestPathError::NotAbsolute => RulePathError::Relative(raw.to_owned()),
        RequestPathError::ParentDir => RulePathError::ParentDir(raw.to_owned()),
    })
}

/// Drops `.`, repeated `/` and a trailing `/`, refusing relative paths and `..`.
///
/// This is lexical only: it never consults the filesystem, because the policy is
/// about the names the owner wrote, and symlinks are dealt with at open time.
pub fn normalize_absolute(path: &Path) -> Result<PathBuf, RequestPathError> {
    if !path.has_root() {
        return Err(RequestPathError::NotAbsolute);
    }
    let mut normalized = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => normalized.push(name),
            Component::ParentDir => return Err(RequestPathError::ParentDir),
            // Windows-only; cannot occur on Unix, but refusing is the safe answer.
            Component::Prefix(_) => return Err(RequestPathError::NotAbsolute),
        }
    }
    Ok(normalized)
}

/// Shows a path on one line: invalid UTF-8 bytes become `\xNN` and control
/// characters are escaped, so a hostile file name cannot forge log lines.
pub fn show(path: &Path) -> ShowPath<'_> {
    ShowPath(path.as_os_str())
}

/// See [`show`].
#[derive(Debug, Clone, Copy)]
pub struct ShowPath<'a>(&'a OsStr);

impl fmt::Display for ShowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.as_bytes().utf8_chunks() {
            for ch in chunk.valid().chars() {
                if ch.is_control() {
                    write!(f, "{}", ch.escape_default())?;
                } else {
                    write!(f, "{ch}")?;
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// A path as users and the hub spell it on an endpoint: absolute, or
/// starting with `/~/` (or `~/`) for the endpoint owner's home, as in
/// Globus. Bytes in, bytes out.
pub fn resolve_endpoint_path(home: &Path, path: &[u8]) -> Result<PathBuf, String> {
    if path == b"/~" || path == b"~" {
        return Ok(home.to_path_buf());
    }
    if let Some(rest) = path
        .strip_prefix(b"/~/")
        .or_else(|| path.strip_prefix(b"~/"))
    {
        // `/~//x` is `/~/x`, not `/x` (a join with an absolute rest
        // discards `home`).
        let start = rest.iter().take_while(|b| **b == b'/').count();
        return Ok(home.join(OsStr::from_bytes(&rest[start..])));
    }
    if path.first() != Some(&b'/') {
        return Err(format!(
            "path {} must be absolute, or start with /~/ for the home directory",
            show(Path::new(OsStr::from_bytes(path)))
        ));
    }
    Ok(PathBuf::from(OsStr::from_bytes(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn normalize_drops_dots_repeated_and_trailing_slashes() {
        assert_eq!(
            normalize_absolute(Path::new("//a/./b//c/")).unwrap(),
            PathBuf::from("/a/b/c")
        );
        assert_eq!(
            normalize_absolute(Path::new("/")).unwrap(),
            PathBuf::from("/")
        );
        assert_eq!(
            normalize_absolute(Path::new("/./")).unwrap(),
            PathBuf::from("/")
        );
    }

    #[test]
    fn normalize_refuses_relative_and_parent() {
        assert_eq!(
            normalize_absolute(Path::new("a/b")),
            Err(RequestPathError::NotAbsolute)
        );
        assert_eq!(
            normalize_absolute(Path::new("")),
            Err(RequestPathError::NotAbsolute)
        );
        assert_eq!(
            normalize_absolute(Path::new("/a/../b")),
            Err(RequestPathError::ParentDir)
        );
        assert_eq!(
            normalize_absolute(Path::new("/a/..")),
            Err(RequestPathError::ParentDir)
        );
    }

    #[test]
    fn expand_tilde_forms() {
        let home = Path::new("/home/u");
        assert_eq!(
            expand_rule_path("~", home).unwrap(),
            PathBuf::from("/home/u")
        );
        assert_eq!(
            expand_rule_path("~/", home).unwrap(),
            PathBuf::from("/home/u")
        );
        assert_eq!(
            expand_rule_path("~/data/", home).unwrap(),
            PathBuf::from("/home/u/data")
        );
        assert_eq!(
            expand_rule_path("~bob/x", home),
            Err(RulePathError::TildeUser("~bob/x".into()))
        );
        assert_eq!(
            expand_rule_path("data", home),
            Err(RulePathError::Relative("data".into()))
        );
        assert_eq!(
            expand_rule_path("~/../etc", home),
            Err(RulePathError::ParentDir("~/../etc".into()))
        );
        assert_eq!(expand_rule_path("", home), Err(RulePathError::Empty));
        assert_eq!(expand_rule_path("/a\0b", home), Err(RulePathError::NulByte));
        // Found by fuzzing: an extra slash after `~` must not escape home.
        assert_eq!(
            expand_rule_path("~//data", home).unwrap(),
            PathBuf::from("/home/u/data")
        );
    }

    #[test]
    fn endpoint_paths_with_extra_slashes_stay_under_home() {
        let home = Path::new("/home/u");
        for spelled in [&b"/~//etc/passwd"[..], b"~///etc/passwd", b"/~/etc/passwd"] {
            assert_eq!(
                resolve_endpoint_path(home, spelled).unwrap(),
                PathBuf::from("/home/u/etc/passwd"),
                "{spelled:?}"
            );
        }
    }

    #[test]
    fn show_escapes_control_and_invalid_bytes() {
        let path = PathBuf::from(OsString::from_vec(b"/a\nb/\xff\xfe/\xc3\xa9".to_vec()));
        assert_eq!(show(&path).to_string(), "/a\\nb/\\xff\\xfe/\u{e9}");
    }
}
