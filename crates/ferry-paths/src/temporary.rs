//! Ferry's temporary files: `.ferry.NAME.TAG.part` beside the file NAME
//! they become once verified, TAG from the task's id (so a resumed attempt
//! of the same task finds its partial file again).
//!
//! A temporary is never a path in its own right. It exists for one target,
//! and [`crate::RootedFs`] reaches it only through that target
//! ([`crate::RootedFs::create_temporary`] and its siblings): the policy
//! decides it as "the temporary of a permitted target"
//! ([`crate::Policy::decide_temporary`]). That is where the one exemption
//! lives: a temporary directly under home is a dot-entry there, and the
//! built-in deny of the user's own dot-files (`~/.ssh`, `~/.bashrc`) would
//! refuse it, which made every file sent to the top of a home fail. The
//! exemption is not a rule about names: a path handed to any other
//! operation (`ls`, `rm`, reading a transfer's source) is decided as it
//! always was, so a user's own `~/.ferry.*` file stays out of reach. It is
//! not a different temporary location either (a temporary elsewhere could
//! not be renamed into place atomically, nor stay on the target's
//! filesystem and quota).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const PREFIX: &[u8] = b".ferry.";
const SUFFIX: &[u8] = b".part";
/// The most of the target's name a temporary keeps as it is: with the
/// prefix, a tag and the suffix, within NAME_MAX (255).
const NAME_KEPT: usize = 200;
/// A longer name keeps this much, then a digest of the whole name, so two
/// long names that share their first bytes get different temporaries.
const LONG_NAME_KEPT: usize = 180;
/// The most characters of the task id in the tag.
const TAG_LEN: usize = 8;

/// The temporary file of one target in one task. Only names; it is
/// [`crate::RootedFs`] that decides and touches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Temporary {
    target: PathBuf,
    path: PathBuf,
}

impl Temporary {
    /// The temporary of `target` (a file path) in task `task_id`.
    pub fn new(target: &Path, task_id: &str) -> Temporary {
        let name = target.file_name().unwrap_or(OsStr::new("file"));
        let path = target.with_file_name(temp_name(name, task_id));
        Temporary {
            target: target.to_path_buf(),
            path,
        }
    }

    /// The file the temporary becomes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where the temporary is: beside its target.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary's own name.
    pub fn name(&self) -> &OsStr {
        self.path.file_name().unwrap_or(OsStr::new(""))
    }

    /// Another temporary of the same target, named as this one with
    /// `.LABEL` before the suffix (LABEL: its ASCII letters and digits):
    /// a file split over several nodes has one for each attempt, which
    /// every node names alike, and each part's sidecar one of its own.
    /// Still a temporary's shape, so never taken for a user's file.
    pub fn labelled(&self, label: &str) -> Temporary {
        let name = self.name().as_bytes();
        let stem = name.strip_suffix(SUFFIX).unwrap_or(name);
        let mut temp = stem.to_vec();
        temp.push(b'.');
        temp.extend(label.bytes().filter(u8::is_ascii_alphanumeric));
        temp.extend_from_slice(SUFFIX);
        Temporary {
            target: self.target.clone(),
            path: self.path.with_file_name(OsString::from_vec(temp)),
        }
    }
}

/// `.ferry.NAME.TAG.part` for a target named `name` in task `task_id`.
pub fn temp_name(name: &OsStr, task_id: &str) -> OsString {
    let name = name.as_bytes();
    let tag: String = task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(TAG_LEN)
        .collect();
    let mut temp = PREFIX.to_vec();
    if name.len() <= NAME_KEPT {
        temp.extend_from_slice(name);
    } else {
        temp.extend_from_slice(&name[..LONG_NAME_KEPT]);
        temp.extend_from_slice(format!("~{:016x}", fnv1a(name)).as_bytes());
    }
    temp.extend_from_slice(format!(".{tag}").as_bytes());
    temp.extend_from_slice(SUFFIX);
    OsString::from_vec(temp)
}

/// Whether a name has the shape of a temporary (never offered as source
/// data, never removed by `--delete` as a stranger, not listed).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// FNV-1a, 64 bits: tells long names apart (nothing here is adversarial:
/// a peer choosing colliding names of its own only hurts its own task,
/// whose files are verified by digest anyway).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_sits_beside_its_target_with_the_tasks_tag() {
        let t = Temporary::new(Path::new("/d/data.h5"), "0b5e3a52-8d1c");
        assert_eq!(t.path(), Path::new("/d/.ferry.data.h5.0b5e3a52.part"));
        assert_eq!(t.target(), Path::new("/d/data.h5"));
        assert_eq!(t.name(), ".ferry.data.h5.0b5e3a52.part");
        assert!(is_temp_name(t.name().as_bytes()));
        let top = Temporary::new(Path::new("/home/u/x"), "abc");
        assert_eq!(top.path(), Path::new("/home/u/.ferry.x.abc.part"));
    }

    #[test]
    fn a_labelled_temporary_keeps_its_target_and_a_temporarys_shape() {
        let t = Temporary::new(Path::new("/d/data.h5"), "0b5e3a52-8d1c");
        let split = t.labelled("a3");
        assert_eq!(
            split.path(),
            Path::new("/d/.ferry.data.h5.0b5e3a52.a3.part")
        );
        assert_eq!(split.target(), Path::new("/d/data.h5"));
        let side = split.labelled("s1/..");
        assert_eq!(side.name(), ".ferry.data.h5.0b5e3a52.a3.s1.part");
        assert!(is_temp_name(side.name().as_bytes()));
        let long = Temporary::new(Path::new(&format!("/d/{}", "x".repeat(255))), "t");
        let longest = long.labelled("a4294967295").labelled("s4294967295");
        assert!(longest.name().len() <= 255, "{}", longest.name().len());
    }

    #[test]
    fn long_names_stay_within_name_max_and_apart() {
        let long_a = format!("{}a", "x".repeat(254));
        let long_b = format!("{}b", "x".repeat(254));
        let a = temp_name(OsStr::new(&long_a), "0b5e3a52-8d1c");
        let b = temp_name(OsStr::new(&long_b), "0b5e3a52-8d1c");
        assert!(a.len() <= 255 && b.len() <= 255, "{}", a.len());
        assert_ne!(a, b, "names that differ only at the end");
        assert!(is_temp_name(a.as_bytes()));
        let just = "y".repeat(NAME_KEPT);
        assert_eq!(
            temp_name(OsStr::new(&just), "t").len(),
            PREFIX.len() + NAME_KEPT + 2 + SUFFIX.len()
        );
    }

    #[test]
    fn only_temporary_shapes_are_temporary_names() {
        for name in [&b".ferry.x.1234.part"[..], b".ferry.\xff.t.part"] {
            assert!(is_temp_name(name), "{name:?}");
        }
        for name in [
            &b".ferry"[..],
            b".ferry.part",
            b"ferry.x.part",
            b".ferry.x",
            b"x.part",
        ] {
            assert!(!is_temp_name(name), "{name:?}");
        }
    }
}
