//! Deciding, per source entry, what the destination needs: the sync levels
//! as a pure function, where an entry lands, and the permissions it gets.

use ferry_paths::{EntryKind as FsKind, Metadata, Temporary};
use ferry_proto::data::Entry;
use ferry_proto::task::SyncLevel;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination has it.
    Skip,
    Send,
    /// Same size, content unknown: compare digests.
    CompareDigest,
}

/// What a destination file's state means under `level`, in attempt
/// `attempt` of its task. `None` (no sync level) sends, except in a
/// retry a file whose size and modification time (to the nanosecond) are
/// the source's: most likely one an earlier attempt committed that this
/// side's journal does not name (a kill -9 between its rename and its
/// journal line, or another node of the endpoint, whose journal is its
/// own). Its digests are compared instead: it is sent again only if its
/// content differs.
pub fn verdict(
    level: Option<SyncLevel>,
    source: &Entry,
    existing: Option<&Metadata>,
    attempt: u32,
) -> Verdict {
    let Some(existing) = existing.filter(|e| e.kind == FsKind::File) else {
        return Verdict::Send;
    };
    let Some(level) = level else {
        let source_mtime = u64::try_from(source.mtime_ns).map(Duration::from_nanos);
        let moved_before = attempt > 1
            && existing.size == source.size
            && matches!(
                (existing.mtime.duration_since(UNIX_EPOCH), source_mtime),
                (Ok(ours), Ok(theirs)) if ours == theirs
            );
        return if moved_before {
            Verdict::CompareDigest
        } else {
            Verdict::Send
        };
    };
    let same_size = existing.size == source.size;
    match level {
        SyncLevel::Exists => Verdict::Skip,
        SyncLevel::Size if same_size => Verdict::Skip,
        SyncLevel::Mtime if same_size && same_second(existing, source.mtime_ns) => Verdict::Skip,
        SyncLevel::Checksum if same_size => Verdict::CompareDigest,
        _ => Verdict::Send,
    }
}

/// Modification times compared to the second, as rsync does by default:
/// not every filesystem keeps nanoseconds.
fn same_second(existing: &Metadata, source_ns: i64) -> bool {
    let existing_secs = match existing.mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    existing_secs == source_ns.div_euclid(1_000_000_000)
}

/// What a received entry gets of its source's attributes.
///
/// Ownership is not preserved (files belong to the daemon's account, root
/// for a system service), so, as `cp -p` and rsync do then, no setuid,
/// setgid or sticky bit is ever created, and the receiving endpoint's umask
/// narrows what the source allows: a 0666 file arrives 0644 under umask
/// 022, a 04755 one 0755.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub preserve_mode: bool,
    pub preserve_mtime: bool,
    /// The receiving endpoint's umask (only its permission bits count).
    pub umask: u32,
}

impl Attributes {
    /// A received file's permission bits.
    pub fn file_mode(&self, source_mode: u32) -> u32 {
        let base = if self.preserve_mode {
            source_mode
        } else {
            0o666
        };
        base & 0o777 & !self.umask
    }

    /// A created directory's permission bits; its owner keeps full access
    /// (the transfer writes into it).
    pub fn dir_mode(&self, source_mode: u32) -> u32 {
        let base = if self.preserve_mode {
            source_mode
        } else {
            0o777
        };
        (base & 0o777 & !self.umask) | 0o700
    }

    /// A directory made above a destination path that lacks it (`ferry
    /// transfer a:/~/f b:/~/new/sub/f`, as `mkdir -p` or `cp --parents`
    /// would): no source directory stands for it, so it gets what a new
    /// directory gets here, the umask's narrowing of 0777, its owner
    /// keeping full access as in [`Attributes::dir_mode`].
    pub fn parent_dir_mode(&self) -> u32 {
        (0o777 & !self.umask) | 0o700
    }
}

/// Where a file goes, decided before anything is written, from what
/// stands at its destination path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// At the destination path: nothing is there, or something a file
    /// replaces (a file, a symlink: the link itself).
    Here,
    /// Inside the directory at the destination path, under this name: a
    /// single file sent onto an existing directory lands in it, as
    /// `cp FILE DIR` does (and `DST/` says outright).
    Inside(OsString),
    /// Nowhere: a directory has the file's name, and a file never
    /// replaces a directory (`cp` refuses it too).
    OntoDirectory,
}

/// Where a file whose destination path holds `existing` lands.
/// `into_directory` names the file when a directory there may take it:
/// the source's name, for an item that is a single file whose destination
/// was written without a trailing `/` (with one, it already names the
/// place inside the directory).
pub fn landing(existing: Option<FsKind>, into_directory: Option<&OsStr>) -> Landing {
    match (existing, into_directory) {
        (Some(FsKind::Dir), Some(name)) => Landing::Inside(name.to_os_string()),
        (Some(FsKind::Dir), None) => Landing::OntoDirectory,
        _ => Landing::Here,
    }
}

/// The directories to make, outermost first, so that `dir` exists, given
/// that `existing` (an ancestor of `dir`) does.
pub fn dirs_to_make(existing: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| *d != existing && d.starts_with(existing))
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// A relative path from a peer, checked: only plain components.
pub fn relative(path: &[u8]) -> Result<PathBuf, String> {
    let p = Path::new(OsStr::from_bytes(path));
    if path.is_empty() {
        return Ok(PathBuf::new());
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) || path.contains(&0) {
        return Err(format!(
            "invalid relative path {:?} from the source",
            String::from_utf8_lossy(path)
        ));
    }
    Ok(p.to_path_buf())
}

/// The recognisable temporary name beside `final_path`, stable per task so
/// a resumed attempt finds its partial file (see [`Temporary`]: the rooted
/// filesystem reaches it only through its target).
pub fn temp_path(final_path: &Path, task_id: &str) -> PathBuf {
    Temporary::new(final_path, task_id).path().to_path_buf()
}

/// Whether a name is one of our temporary files (never deleted by
/// `--delete` as a stranger, never offered as source data, not listed).
pub fn is_temp_name(name: &[u8]) -> bool {
    ferry_paths::is_temp_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::data::EntryKind;
    use ferry_proto::wire_path::WirePath;
    use std::time::Duration;

    fn entry(size: u64, mtime_s: i64) -> Entry {
        Entry {
            id: 1,
            item: 0,
            path: WirePath::from_bytes("f"),
            kind: EntryKind::File,
            size,
            mtime_ns: mtime_s * 1_000_000_000 + 5,
            mode: 0o644,
        }
    }
    fn meta(size: u64, mtime_s: u64) -> Metadata {
        Metadata {
            kind: FsKind::File,
            size,
            mtime: UNIX_EPOCH + Duration::from_secs(mtime_s),
            mode: 0o644,
        }
    }

    #[test]
    fn sync_levels_decide_as_documented() {
        let src = entry(10, 100);
        assert_eq!(verdict(None, &src, Some(&meta(10, 100)), 1), Verdict::Send);
        assert_eq!(
            verdict(Some(SyncLevel::Exists), &src, None, 1),
            Verdict::Send
        );
        assert_eq!(
            verdict(Some(SyncLevel::Exists), &src, Some(&meta(3, 1)), 1),
            Verdict::Skip
        );
        assert_eq!(
            verdict(Some(SyncLevel::Size), &src, Some(&meta(10, 1)), 1),
            Verdict::Skip
        );
        assert_eq!(
            verdict(Some(SyncLevel::Size), &src, Some(&meta(11, 100)), 1),
            Verdict::Send
        );
        assert_eq!(
            verdict(Some(SyncLevel::Mtime), &src, Some(&meta(10, 100)), 1),
            Verdict::Skip
        );
        assert_eq!(
            verdict(Some(SyncLevel::Mtime), &src, Some(&meta(10, 101)), 1),
            Verdict::Send
        );
        assert_eq!(
            verdict(Some(SyncLevel::Checksum), &src, Some(&meta(10, 1)), 1),
            Verdict::CompareDigest
        );
        assert_eq!(
            verdict(Some(SyncLevel::Checksum), &src, Some(&meta(9, 100)), 1),
            Verdict::Send
        );
        let dir = Metadata {
            kind: FsKind::Dir,
            ..meta(10, 100)
        };
        assert_eq!(
            verdict(Some(SyncLevel::Exists), &src, Some(&dir), 1),
            Verdict::Send
        );
    }

    #[test]
    fn a_retry_compares_a_file_that_matches_the_source_to_the_nanosecond() {
        let src = entry(10, 100);
        let moved = Metadata {
            mtime: UNIX_EPOCH + Duration::from_nanos(src.mtime_ns as u64),
            ..meta(10, 100)
        };
        assert_eq!(verdict(None, &src, Some(&moved), 1), Verdict::Send);
        assert_eq!(verdict(None, &src, Some(&moved), 2), Verdict::CompareDigest);
        // The same second is not enough, nor the same time at another size.
        assert_eq!(verdict(None, &src, Some(&meta(10, 100)), 2), Verdict::Send);
        let grown = Metadata { size: 11, ..moved };
        assert_eq!(verdict(None, &src, Some(&grown), 2), Verdict::Send);
        let dir = Metadata {
            kind: FsKind::Dir,
            ..moved
        };
        assert_eq!(verdict(None, &src, Some(&dir), 2), Verdict::Send);
        // Times before 1970 do not count as equal for being unreadable.
        let old = Entry {
            mtime_ns: -5,
            ..entry(10, 100)
        };
        let before_epoch = Metadata {
            mtime: UNIX_EPOCH - Duration::from_secs(1),
            ..meta(10, 100)
        };
        assert_eq!(verdict(None, &old, Some(&before_epoch), 2), Verdict::Send);
        // A sync level decides as it always does.
        assert_eq!(
            verdict(Some(SyncLevel::Size), &src, Some(&moved), 2),
            Verdict::Skip
        );
    }

    #[test]
    fn received_modes_lose_special_bits_and_honour_the_umask() {
        let under = |umask| Attributes {
            preserve_mode: true,
            preserve_mtime: true,
            umask,
        };
        let files = [
            (0o4755, 0o022, 0o755),
            (0o2755, 0o022, 0o755),
            (0o6777, 0o022, 0o755),
            (0o1755, 0o022, 0o755),
            (0o666, 0o022, 0o644),
            (0o666, 0o027, 0o640),
            (0o4750, 0o027, 0o750),
            (0o600, 0o022, 0o600),
            (0o777, 0o000, 0o777),
            (0o644, 0o7777, 0o000),
        ];
        for (source, umask, want) in files {
            let got = under(umask).file_mode(source);
            assert_eq!(got, want, "file {source:04o} under {umask:03o}: {got:04o}");
        }
        let dirs = [
            (0o2775, 0o022, 0o755),
            (0o1777, 0o022, 0o755),
            (0o2770, 0o027, 0o750),
            (0o555, 0o022, 0o755),
            (0o755, 0o077, 0o700),
        ];
        for (source, umask, want) in dirs {
            let got = under(umask).dir_mode(source);
            assert_eq!(got, want, "dir {source:04o} under {umask:03o}: {got:04o}");
        }
        let fresh = Attributes {
            preserve_mode: false,
            ..under(0o027)
        };
        assert_eq!(
            (fresh.file_mode(0o4777), fresh.dir_mode(0o3777)),
            (0o640, 0o750)
        );
    }

    #[test]
    fn a_single_file_onto_a_directory_lands_inside_it_and_never_replaces_one() {
        let name = OsStr::new("f.txt");
        assert_eq!(landing(None, Some(name)), Landing::Here);
        assert_eq!(landing(Some(FsKind::File), Some(name)), Landing::Here);
        assert_eq!(landing(Some(FsKind::Symlink), None), Landing::Here);
        assert_eq!(landing(Some(FsKind::Other), None), Landing::Here);
        assert_eq!(
            landing(Some(FsKind::Dir), Some(name)),
            Landing::Inside(name.to_os_string()),
            "as `cp f.txt dir` does"
        );
        // In a tree, or once inside: a directory of that name is refused.
        assert_eq!(landing(Some(FsKind::Dir), None), Landing::OntoDirectory);
    }

    #[test]
    fn missing_parents_are_made_outermost_first_with_the_receiving_mode() {
        assert_eq!(
            dirs_to_make(Path::new("/h/u"), Path::new("/h/u/new/deeper")),
            [PathBuf::from("/h/u/new"), PathBuf::from("/h/u/new/deeper")]
        );
        assert!(dirs_to_make(Path::new("/h/u"), Path::new("/h/u")).is_empty());
        assert!(
            dirs_to_make(Path::new("/elsewhere"), Path::new("/h/u/x")).is_empty(),
            "nothing above what exists"
        );
        let under = |umask| Attributes {
            preserve_mode: true,
            preserve_mtime: true,
            umask,
        };
        assert_eq!(under(0o022).parent_dir_mode(), 0o755);
        assert_eq!(under(0o027).parent_dir_mode(), 0o750);
        assert_eq!(under(0o077).parent_dir_mode(), 0o700);
        assert_eq!(
            under(0o777).parent_dir_mode(),
            0o700,
            "the owner keeps access"
        );
        assert_eq!(under(0).parent_dir_mode(), 0o777);
    }

    #[test]
    fn peer_paths_must_be_plain_and_temp_names_are_recognisable() {
        assert!(relative(b"a/b").is_ok());
        assert!(relative(b"").unwrap().as_os_str().is_empty());
        for bad in [&b"../x"[..], b"/etc", b"a/../b", b"./a", b"a\0b"] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
        let t = temp_path(Path::new("/d/data.h5"), "0b5e3a52-8d1c");
        assert_eq!(t, Path::new("/d/.ferry.data.h5.0b5e3a52.part"));
        assert!(is_temp_name(t.file_name().unwrap().as_bytes()));
        let long = "x".repeat(255);
        assert!(
            temp_path(&Path::new("/d").join(&long), "t")
                .file_name()
                .unwrap()
                .len()
                <= 255
        );
    }
}
