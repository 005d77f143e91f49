//! File operations the hub may ask for (list, mkdir, rename, remove),
//! carried out through the rooted filesystem, so config-paths decides every
//! one of them whatever the hub asks. For a grantee, config-paths narrowed
//! by the grant decides ([`ferry_mover::narrowed_policy`]): the hub's word
//! on whose behalf it asks can only take access away.

use ferry_paths::{EntryKind, FsError, Policy, RootedFs};
use ferry_proto::api::{FsEntry, FsEntryKind, FsOp, FsOutcome, MAX_LIST_ENTRIES};
use ferry_proto::share::ShareGrant;
use ferry_proto::wire_path::WirePath;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// A listing stops before its reply could outgrow a control frame.
const MAX_LIST_BYTES: usize = ferry_proto::control::MAX_FRAME * 3 / 4;
/// Per-entry JSON overhead besides the name, generously.
const ENTRY_OVERHEAD: usize = 96;

fn resolve(home: &Path, path: &WirePath) -> Result<PathBuf, String> {
    ferry_paths::resolve_endpoint_path(home, path.as_bytes())
}

fn kind(k: EntryKind) -> FsEntryKind {
    match k {
        EntryKind::File => FsEntryKind::File,
        EntryKind::Dir => FsEntryKind::Dir,
        EntryKind::Symlink => FsEntryKind::Symlink,
        EntryKind::Other => FsEntryKind::Other,
    }
}

fn failed(e: impl std::fmt::Display) -> FsOutcome {
    FsOutcome::Failed {
        message: e.to_string(),
    }
}

/// What an operation is called in the served log, its path, and a
/// rename's new path.
pub(crate) fn served_as(op: &FsOp) -> (&'static str, Vec<u8>, Option<Vec<u8>>) {
    match op {
        FsOp::List { path } => ("ls", path.as_bytes().to_vec(), None),
        FsOp::Mkdir { path } => ("mkdir", path.as_bytes().to_vec(), None),
        FsOp::Rename { from, to } => (
            "rename",
            from.as_bytes().to_vec(),
            Some(to.as_bytes().to_vec()),
        ),
        FsOp::Remove { path, .. } => ("delete", path.as_bytes().to_vec(), None),
    }
}

/// Carries out one operation for the owner (`grant` absent) or for a
/// grantee. Blocking: run it off the async threads.
pub(crate) fn execute(
    policy: Arc<Policy>,
    home: &Path,
    op: FsOp,
    grant: Option<&ShareGrant>,
) -> FsOutcome {
    let policy = match grant {
        None => policy,
        Some(grant) => match ferry_mover::narrowed_policy(&policy, grant) {
            Ok(narrowed) => Arc::new(narrowed),
            Err(e) => return failed(e),
        },
    };
    let fs = RootedFs::new(policy);
    let result = match op {
        FsOp::List { path } => return resolve(home, &path).map_or_else(failed, |p| list(&fs, &p)),
        FsOp::Mkdir { path } => resolve(home, &path)
            .map_err(Failure::Request)
            .and_then(|p| fs.mkdir(&p, 0o777).map_err(Failure::Fs)),
        FsOp::Rename { from, to } => resolve(home, &from)
            .and_then(|f| resolve(home, &to).map(|t| (f, t)))
            .map_err(Failure::Request)
            .and_then(|(f, t)| fs.rename(&f, &t).map_err(Failure::Fs)),
        FsOp::Remove { path, recursive } => resolve(home, &path)
            .map_err(Failure::Request)
            .and_then(|p| remove(&fs, &p, recursive)),
    };
    match result {
        Ok(()) => FsOutcome::Done,
        Err(e) => failed(e),
    }
}

#[derive(Debug)]
enum Failure {
    Request(String),
    Fs(FsError),
    DirNeedsRecursive(PathBuf),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Request(m) => f.write_str(m),
            Failure::Fs(e) => write!(f, "{e}"),
            Failure::DirNeedsRecursive(p) => write!(
                f,
                "cannot remove {}: it is a directory; use rm -r",
                p.display()
            ),
        }
    }
}

/// Lists a directory. Ferry's temporary files (`.ferry.NAME.TASK.part`,
/// files still arriving) are left out: they are not the user's data, and
/// the contract has no flag to ask for them. They stay reachable by name
/// (`ferry rm` of a leftover) where the policy allows the path.
fn list(fs: &RootedFs, path: &Path) -> FsOutcome {
    let entries = match fs.read_dir(path) {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    let visible = entries
        .into_iter()
        .filter(|e| !ferry_paths::is_temp_name(e.name.as_bytes()));
    for entry in visible {
        let name = WirePath::from(entry.name.as_os_str());
        bytes += name.encode().len() + ENTRY_OVERHEAD;
        if out.len() >= MAX_LIST_ENTRIES || bytes > MAX_LIST_BYTES {
            truncated = true;
            break;
        }
        let m = entry.metadata;
        out.push(FsEntry {
            name,
            kind: kind(m.kind),
            size: m.size,
            mtime: m
                .mtime
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
            mode: m.mode,
        });
    }
    FsOutcome::Listing {
        entries: out,
        truncated,
    }
}

/// Removes a file, an empty directory, or (with `recursive`) a tree,
/// depth first, never following a symlink.
fn remove(fs: &RootedFs, path: &Path, recursive: bool) -> Result<(), Failure> {
    let meta = fs.stat(path).map_err(Failure::Fs)?;
    if meta.kind != EntryKind::Dir {
        return fs.remove_file(path).map_err(Failure::Fs);
    }
    if !recursive {
        return Err(Failure::DirNeedsRecursive(path.to_path_buf()));
    }
    // A top that may not go (a rule's root, a grantee's shared folder)
    // is refused before anything beneath it is removed.
    fs.check_removable(path).map_err(Failure::Fs)?;
    // Explicit stack: deep trees must not exhaust the thread's stack.
    let mut stack = vec![(path.to_path_buf(), false)];
    while let Some((dir, emptied)) = stack.pop() {
        if emptied {
            fs.remove_dir(&dir).map_err(Failure::Fs)?;
            continue;
        }
        stack.push((dir.clone(), true));
        for entry in fs.read_dir(&dir).map_err(Failure::Fs)? {
            let child = dir.join(&entry.name);
            if entry.metadata.kind == EntryKind::Dir {
                stack.push((child, false));
            } else {
                fs.remove_file(&child).map_err(Failure::Fs)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(home: &Path) -> Arc<Policy> {
        let text = format!("{},0,1\n{}/ro,0,0\n", home.display(), home.display());
        Arc::new(Policy::from_config_paths(&text, home, &home.join(".ferry")).unwrap())
    }

    fn as_owner(policy: Arc<Policy>, home: &Path, op: FsOp) -> FsOutcome {
        execute(policy, home, op, None)
    }

    fn wp(p: &str) -> WirePath {
        WirePath::from_bytes(p)
    }

    #[test]
    fn list_mkdir_rename_remove_under_home() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let p = policy(home);
        assert_eq!(
            as_owner(p.clone(), home, FsOp::Mkdir { path: wp("/~/a") }),
            FsOutcome::Done
        );
        std::fs::write(home.join("a/f"), "x").unwrap();
        std::fs::create_dir_all(home.join("a/b/c")).unwrap();
        let FsOutcome::Listing { entries, truncated } =
            as_owner(p.clone(), home, FsOp::List { path: wp("/~/a") })
        else {
            panic!("not a listing")
        };
        assert!(!truncated);
        let names: Vec<_> = entries.iter().map(|e| e.name.encode()).collect();
        assert_eq!(names, ["b", "f"]);
        assert_eq!(
            as_owner(
                p.clone(),
                home,
                FsOp::Rename {
                    from: wp("/~/a"),
                    to: wp("/~/z")
                }
            ),
            FsOutcome::Done
        );
        let refused = as_owner(
            p.clone(),
            home,
            FsOp::Remove {
                path: wp("/~/z"),
                recursive: false,
            },
        );
        assert!(
            matches!(refused, FsOutcome::Failed { ref message } if message.contains("rm -r")),
            "{refused:?}"
        );
        assert_eq!(
            as_owner(
                p.clone(),
                home,
                FsOp::Remove {
                    path: wp("/~/z"),
                    recursive: true
                }
            ),
            FsOutcome::Done
        );
        assert!(!home.join("z").exists());
    }

    #[test]
    fn listings_leave_out_ferrys_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        std::fs::create_dir(home.join("d")).unwrap();
        for name in [".ferry.big.bin.0b5e3a52.part", ".ferry", "x.part", "kept"] {
            std::fs::write(home.join("d").join(name), b"").unwrap();
        }
        let FsOutcome::Listing { entries, .. } =
            as_owner(policy(home), home, FsOp::List { path: wp("/~/d") })
        else {
            panic!("not a listing")
        };
        let names: Vec<_> = entries.iter().map(|e| e.name.encode()).collect();
        assert_eq!(names, [".ferry", "kept", "x.part"]);
    }

    #[test]
    fn policy_refusals_name_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        std::fs::create_dir(home.join("ro")).unwrap();
        let p = policy(home);
        let ro = as_owner(
            p.clone(),
            home,
            FsOp::Mkdir {
                path: wp("/~/ro/x"),
            },
        );
        assert!(
            matches!(ro, FsOutcome::Failed { ref message } if message.contains("path not allowed") && message.contains("read-only")),
            "{ro:?}"
        );
        let outside = as_owner(p.clone(), home, FsOp::List { path: wp("/etc") });
        assert!(
            matches!(outside, FsOutcome::Failed { ref message } if message.contains("path not allowed")),
            "{outside:?}"
        );
        let relative = as_owner(p, home, FsOp::List { path: wp("etc") });
        assert!(
            matches!(relative, FsOutcome::Failed { ref message } if message.contains("absolute")),
            "{relative:?}"
        );
    }
}
