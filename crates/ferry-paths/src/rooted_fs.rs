//! The rooted filesystem: every open of a user path goes through the policy and
//! is then resolved with `openat2(RESOLVE_BENEATH)` below the matched rule's root.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::UnlinkatFlags;

use crate::policy::{Decision, Policy, PolicyError};
use crate::rule_path::show;
use crate::temporary::Temporary;

/// Why a rooted filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The policy refuses the path, or resolving it would leave the rule's area.
    #[error("path not allowed by config-paths: {}: {reason}", show(.path))]
    NotAllowed { path: PathBuf, reason: String },
    /// The operating system refused or failed the operation.
    #[error("cannot {op} {}: {source}", show(.path))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The path exists but is not the kind of object the operation works on.
    #[error("cannot {op} {}: it is a {found}, expected {expected}", show(.path))]
    WrongKind {
        op: &'static str,
        path: PathBuf,
        found: EntryKind,
        expected: &'static str,
    },
}

impl FsError {
    /// The underlying I/O error kind, e.g. to tell "not found" apart from other failures.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FsError::Io { source, .. } => Some(source.kind()),
            FsError::NotAllowed { .. } | FsError::WrongKind { .. } => None,
        }
    }

    pub fn is_not_allowed(&self) -> bool {
        matches!(self, FsError::NotAllowed { .. })
    }
}

/// The type of a directory entry, never following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "regular file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "special file",
        })
    }
}

/// What `lstat` tells about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// One directory entry; `name` is the raw bytes from the directory, not necessarily UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub metadata: Metadata,
}

type OpenRoots = Mutex<HashMap<PathBuf, Arc<OwnedFd>>>;

/// Directories held open at most, per instance (see [`RootedFs::holding_dirs`]).
pub const HELD_DIRS_MAX: usize = 64;
/// Operations through held directories in one batch at most: a caller that
/// never calls [`RootedFs::next_batch`] still has each held directory
/// resolved again after this many.
const HELD_BATCH_OPS: u64 = 512;

/// A directory held open across the operations of a batch.
#[derive(Debug)]
struct HeldDir {
    /// `O_PATH` handle, resolved beneath the rule's root when the batch began.
    fd: Arc<OwnedFd>,
    /// Where it really was then, as a logical path, where rules nest
    /// beneath the root (`None`: nothing to decide again).
    real: Option<PathBuf>,
    /// The batch it was resolved in: in a later one it is resolved again.
    batch: u64,
    /// For eviction, the least recently used first.
    last_used: u64,
}

/// Held directories, keyed by rule root and the directory below it.
#[derive(Debug, Default)]
struct HeldDirs {
    dirs: Mutex<HashMap<(PathBuf, PathBuf), HeldDir>>,
    batch: AtomicU64,
    ops: AtomicU64,
}

/// The parent directory of an operation's final component: held across a
/// batch, or opened for this one operation.
struct Parent {
    fd: Arc<OwnedFd>,
    real: Option<PathBuf>,
}

/// An opened parent directory, the final component, and the decision at
/// its real location.
type OpenedParent<'p> = (Arc<OwnedFd>, &'p OsStr, Decision);

/// The only way the daemon opens user paths. See the crate documentation for the invariants.
#[derive(Debug, Clone)]
pub struct RootedFs {
    policy: Arc<Policy>,
    /// Rule roots already opened, for [`RootedFs::with_cached_roots`].
    roots: Option<Arc<OpenRoots>>,
    /// Parent directories held across a batch, for [`RootedFs::holding_dirs`].
    held: Option<Arc<HeldDirs>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// A path that the policy allows, with its rule's root directory opened.
#[derive(Debug)]
struct Prepared {
    decision: Decision,
    rule_root: PathBuf,
    root_fd: Arc<OwnedFd>,
    /// The part of the path below the rule root; empty for the root itself.
    below_root: PathBuf,
    /// Whether some more specific rule lies beneath this rule's root, so a
    /// symlink could lead into it and real locations must be checked.
    has_nested_rules: bool,
    /// For a temporary file: the name of its target, beside it. Its real
    /// location is then decided as the temporary of that target
    /// ([`Policy::decide_temporary`]).
    temporary_of: Option<OsString>,
}

/// Transient EAGAIN from openat2 (a concurrent rename or mount) is worth a few retries.
const OPENAT2_ATTEMPTS: usize = 8;

const ESCAPE_REASON: &str = "via `..`, an absolute path or a symlink";

impl RootedFs {
    pub fn new(policy: Arc<Policy>) -> Self {
        RootedFs {
            policy,
            roots: None,
            held: None,
        }
    }

    /// Like [`RootedFs::new`], but each rule's root is opened once and kept
    /// (not once per operation): for one task attempt, which touches
    /// thousands of paths under the same few roots. Everything beneath a
    /// root is still resolved per operation. A root replaced while the
    /// instance lives (a re-pointed symlink) is not noticed, so keep such
    /// an instance no longer than one unit of work.
    pub fn with_cached_roots(policy: Arc<Policy>) -> Self {
        RootedFs {
            policy,
            roots: Some(Arc::default()),
            held: None,
        }
    }

    /// Also holds the parent directories of the paths it works on (up to
    /// [`HELD_DIRS_MAX`], the least recently used closed first) across the
    /// operations of a batch, instead of resolving each from its rule's
    /// root: many files in a few directories cost no resolution each. A
    /// held directory is resolved again beneath its root (and its real
    /// location decided again) once per batch: after
    /// [`RootedFs::next_batch`], or every few hundred operations. Within a
    /// batch, an operation acts in the very directory that was resolved,
    /// wherever its owner moves it meanwhile; a symlink put in place of its
    /// path is seen by the next batch. See ARCHITECTURE.md.
    pub fn holding_dirs(self) -> Self {
        RootedFs {
            held: Some(Arc::default()),
            ..self
        }
    }

    /// Begins a new batch: every held directory is resolved again before
    /// its next use.
    pub fn next_batch(&self) {
        if let Some(held) = &self.held {
            held.batch.fetch_add(1, Ordering::Relaxed);
            held.ops.store(0, Ordering::Relaxed);
        }
    }

    /// How many directories it holds open now.
    pub fn held_dirs(&self) -> usize {
        self.held
            .as_deref()
            .and_then(|h| h.dirs.lock().ok().map(|d| d.len()))
            .unwrap_or(0)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Opens an existing regular file or directory for reading; symlinks are
    /// followed only while they stay beneath the rule's root.
    pub fn open_read(&self, path: &Path) -> Result<File, FsError> {
        self.open_read_with_metadata(path).map(|(file, _)| file)
    }

    /// Like [`RootedFs::open_read`], with the metadata of what it opened
    /// (the `fstat` that checked its kind: a caller needs no second one).
    pub fn open_read_with_metadata(
        &self,
        path: &Path,
    ) -> Result<(File, std::fs::Metadata), FsError> {
        const OP: &str = "open for reading";
        let prepared = self.prepare(path, Want::Read)?;
        // O_NONBLOCK keeps a FIFO from hanging the open; it is cleared again below.
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let fd = match self.open_read_held(OP, &prepared, flags)? {
            Some(fd) => fd,
            None => {
                let fd = self.open_beneath(OP, &prepared, &prepared.below_root, flags)?;
                self.verify_real_location(&prepared, &fd, None, Want::Read)?;
                fd
            }
        };
        let file = File::from(fd);
        let metadata = file
            .metadata()
            .map_err(|source| io_error(OP, &prepared, source))?;
        let file_type = metadata.file_type();
        if !(file_type.is_file() || file_type.is_dir()) {
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else {
                EntryKind::Other
            };
            return Err(wrong_kind(OP, &prepared, kind, "regular file or directory"));
        }
        // Some cluster filesystems honour O_NONBLOCK on regular files (a
        // read answers EAGAIN while a lock is contended): clear it.
        clear_nonblock(OP, &prepared, file.as_fd(), flags)?;
        Ok((file, metadata))
    }

    /// Opens the final component in its held parent directory, decided at
    /// that directory's real location before it is touched. `None` when
    /// no directory is held, or the final component is a symlink (it may
    /// lead anywhere beneath the root: resolved from there, as without
    /// held directories) or missing (the held one may be stale).
    fn open_read_held(
        &self,
        op: &'static str,
        prepared: &Prepared,
        flags: OFlag,
    ) -> Result<Option<OwnedFd>, FsError> {
        let (Some(_), Some(leaf)) = (&self.held, prepared.below_root.file_name()) else {
            return Ok(None);
        };
        let parent = self.parent_dir(op, prepared)?;
        self.decide_real(prepared, parent.real.as_deref(), Some(leaf), Want::Read)?;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match nix::fcntl::openat2(&*parent.fd, leaf, how) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ELOOP | Errno::EAGAIN | Errno::EXDEV) => Ok(None),
            Err(Errno::ENOENT) => {
                self.forget_held(prepared);
                Ok(None)
            }
            Err(errno) => Err(errno_error(op, prepared, errno)),
        }
    }

    /// Opens an existing directory for listing.
    ///
    /// The descriptor must not be used to open paths beneath it: that would
    /// bypass the policy. Use the methods of `RootedFs` instead.
    pub fn open_dir(&self, path: &Path) -> Result<OwnedFd, FsError> {
        let prepared = self.prepare(path, Want::Read)?;
        let (fd, _) = self.open_dir_prepared("open directory", &prepared)?;
        Ok(fd)
    }

    /// Lists a directory without following symlinks in it. `.` and `..` are
    /// skipped, and so are entries the policy denies (e.g. `~/.ssh` when listing home).
    pub fn read_dir(&self, path: &Path) -> Result<Vec<Entry>, FsError> {
        const OP: &str = "list directory";
        let prepared = self.prepare(path, Want::Read)?;
        let (fd, real_decision) = self.open_dir_prepared(OP, &prepared)?;
        let stat_fd = fd
            .try_clone()
            .map_err(|source| io_error(OP, &prepared, source))?;
        let mut dir =
            nix::dir::Dir::from_fd(fd).map_err(|errno| errno_error(OP, &prepared, errno))?;
        let mut entries = Vec::new();
        for dir_entry in dir.iter() {
            let dir_entry = dir_entry.map_err(|errno| errno_error(OP, &prepared, errno))?;
            let name = OsStr::from_bytes(dir_entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if prepared.has_nested_rules {
                let child = real_decision.path.join(name);
                if !self.policy.decide_normalized(child).allows_read() {
                    continue;
                }
            }
            let stat = match nix::sys::stat::fstatat(&stat_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed between readdir and stat: it is simply no longer there.
                Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(errno_error(OP, &prepared, errno)),
            };
            entries.push(Entry {
                name: name.to_os_string(),
                metadata: metadata_from(&stat),
            });
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(entries)
    }

    /// Metadata of the path itself; a symlink at the final component is not followed.
    pub fn stat(&self, path: &Path) -> Result<Metadata, FsError> {
        const OP: &str = "stat";
        let prepared = self.prepare(path, Want::Read)?;
        let Some((parent_fd, leaf, _)) = self.open_parent(OP, &prepared, Want::Read)? else {
            return Ok(metadata_from(&fstat_raw(OP, &prepared, &prepared.root_fd)?));
        };
        let stat = nix::sys::stat::fstatat(&parent_fd, leaf, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|errno| errno_error(OP, &prepared, errno))?;
        Ok(metadata_from(&stat))
    }

    /// Creates a new regular file for writing; fails if anything (even a dangling
    /// symlink) already has that name.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<File, FsError> {
        let prepared = self.prepare(path, Want::Write)?;
        self.create_prepared(&prepared, mode)
    }

    fn create_prepared(&self, prepared: &Prepared, mode: u32) -> Result<File, FsError> {
        const OP: &str = "create";
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let mut fresh = self.held.is_none();
        loop {
            let Some((parent_fd, leaf, _)) = self.open_parent(OP, prepared, Want::Write)? else {
                return Err(io_error(OP, prepared, io::ErrorKind::AlreadyExists.into()));
            };
            match nix::fcntl::openat(&*parent_fd, leaf, flags, Mode::from_bits_truncate(mode)) {
                Ok(fd) => return Ok(File::from(fd)),
                // A held directory removed meanwhile: resolved afresh once.
                Err(Errno::ENOENT) if !fresh => {
                    self.forget_held(prepared);
                    fresh = true;
                }
                Err(errno) => return Err(errno_error(OP, prepared, errno)),
            }
        }
    }

    /// Opens an existing regular file for writing (no truncation); a symlink at
    /// the final component is refused, never followed.
    pub fn open_write(&self, path: &Path) -> Result<File, FsError> {
        const OP: &str = "open for writing";
        let prepared = self.prepare(path, Want::Write)?;
        let Some((parent_fd, leaf, _)) = self.open_parent(OP, &prepared, Want::Write)? else {
            return Err(wrong_kind(OP, &prepared, EntryKind::Dir, "regular file"));
        };
        let flags = OFlag::O_WRONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY
            | OFlag::O_NONBLOCK;
        let fd = open_no_follow(OP, &prepared, &parent_fd, leaf, flags)?;
        let kind = fstat(OP, &prepared, &fd)?.kind;
        if kind != EntryKind::File {
            return Err(wrong_kind(OP, &prepared, kind, "regular file"));
        }
        clear_nonblock(OP, &prepared, &fd, flags)?;
        Ok(File::from(fd))
    }

    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<(), FsError> {
        const OP: &str = "create directory";
        let prepared = self.prepare(path, Want::Write)?;
        let Some((parent_fd, leaf, _)) = self.open_parent(OP, &prepared, Want::Write)? else {
            return Err(io_error(OP, &prepared, io::ErrorKind::AlreadyExists.into()));
        };
        nix::sys::stat::mkdirat(&parent_fd, leaf, Mode::from_bits_truncate(mode))
            .map_err(|errno| errno_error(OP, &prepared, errno))
    }

    /// Creates a directory with exactly the permission bits `mode & 0o777`:
    /// the process umask does not narrow them, and no setuid, setgid or
    /// sticky bit is taken from `mode`. A setgid bit the new directory
    /// inherits from a setgid parent (the destination's own group sharing)
    /// stays.
    pub fn mkdir_exact(&self, path: &Path, mode: u32) -> Result<(), FsError> {
        const OP: &str = "create directory";
        let prepared = self.prepare(path, Want::Write)?;
        let Some((parent_fd, leaf, _)) = self.open_parent(OP, &prepared, Want::Write)? else {
            return Err(io_error(OP, &prepared, io::ErrorKind::AlreadyExists.into()));
        };
        let bits = mode & 0o777;
        nix::sys::stat::mkdirat(&parent_fd, leaf, Mode::from_bits_truncate(bits))
            .map_err(|errno| errno_error(OP, &prepared, errno))?;
        // The umask may have narrowed it. What is at the name now is
        // changed only if it is a directory, never through a symlink.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&parent_fd, leaf, flags, Mode::empty())
            .map_err(|errno| errno_error(OP, &prepared, errno))?;
        let now = fstat_raw(OP, &prepared, &fd)?.st_mode & 0o7777;
        let want = bits | (now & nix::libc::S_ISGID);
        if now != want {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(want))
                .map_err(|errno| errno_error(OP, &prepared, errno))?;
        }
        Ok(())
    }

    /// Makes a directory's entries durable (fsync), as a rename into it or
    /// a creation in it needs before anything relies on it. A failure is
    /// reported: the entries may not be on disk.
    pub fn sync_dir(&self, path: &Path) -> Result<(), FsError> {
        const OP: &str = "sync directory";
        let prepared = self.prepare(path, Want::Read)?;
        let (fd, _) = self.open_dir_prepared(OP, &prepared)?;
        nix::unistd::fsync(&fd).map_err(|errno| errno_error(OP, &prepared, errno))
    }

    /// Removes a file or symlink (the link itself, never its target).
    pub fn remove_file(&self, path: &Path) -> Result<(), FsError> {
        self.remove(path, "remove", UnlinkatFlags::NoRemoveDir)
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &Path) -> Result<(), FsError> {
        self.remove(path, "remove directory", UnlinkatFlags::RemoveDir)
    }

    /// Refuses, without changing anything, what [`RootedFs::remove_dir`]
    /// would refuse on `path` for the policy's sake: a path not writable,
    /// a rule's root, a grantee's shared folder. A tree removal asks first,
    /// so it does not empty a directory it may not then remove.
    pub fn check_removable(&self, path: &Path) -> Result<(), FsError> {
        const OP: &str = "remove";
        let prepared = self.prepare(path, Want::Write)?;
        let Some((_, _, real_decision)) = self.open_parent(OP, &prepared, Want::Write)? else {
            return Err(is_rule_root(&prepared, &prepared.decision));
        };
        self.refuse_structural_change(&prepared, &real_decision, false)
    }

    fn remove(&self, path: &Path, op: &'static str, flag: UnlinkatFlags) -> Result<(), FsError> {
        let prepared = self.prepare(path, Want::Write)?;
        self.remove_prepared(&prepared, op, flag)
    }

    fn remove_prepared(
        &self,
        prepared: &Prepared,
        op: &'static str,
        flag: UnlinkatFlags,
    ) -> Result<(), FsError> {
        let Some((parent_fd, leaf, real_decision)) = self.open_parent(op, prepared, Want::Write)?
        else {
            return Err(is_rule_root(prepared, &prepared.decision));
        };
        self.refuse_structural_change(prepared, &real_decision, false)?;
        nix::unistd::unlinkat(&*parent_fd, leaf, flag)
            .map_err(|errno| errno_error(op, prepared, errno))?;
        self.forget_held_under(prepared);
        Ok(())
    }

    /// Creates the temporary file of a target, for writing; fails if
    /// anything (even a dangling symlink) already has its name.
    ///
    /// The temporary-file operations take the target, never the
    /// temporary's path: the temporary is decided as the temporary of
    /// that target ([`Policy::decide_temporary`]), which the built-in deny
    /// of dot-entries directly under home does not refuse. Nothing else
    /// reaches a path by that exemption. Like every operation here, each
    /// acts on the final name relative to its parent directory's handle,
    /// resolved beneath the rule's root, with the real location decided
    /// again where rules nest.
    pub fn create_temporary(&self, temp: &Temporary, mode: u32) -> Result<File, FsError> {
        let prepared = self.prepare_temporary(temp)?;
        self.create_prepared(&prepared, mode)
    }

    /// Opens an existing temporary file for reading and writing (a resumed
    /// partial file); a symlink at its name is refused, never followed.
    pub fn open_temporary(&self, temp: &Temporary) -> Result<File, FsError> {
        const OP: &str = "open for writing";
        let prepared = self.prepare_temporary(temp)?;
        let Some((parent_fd, leaf, _)) = self.open_parent(OP, &prepared, Want::Write)? else {
            return Err(wrong_kind(OP, &prepared, EntryKind::Dir, "regular file"));
        };
        let flags = OFlag::O_RDWR
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY
            | OFlag::O_NONBLOCK;
        let fd = open_no_follow(OP, &prepared, &parent_fd, leaf, flags)?;
        let kind = fstat(OP, &prepared, &fd)?.kind;
        if kind != EntryKind::File {
            return Err(wrong_kind(OP, &prepared, kind, "regular file"));
        }
        clear_nonblock(OP, &prepared, &fd, flags)?;
        Ok(File::from(fd))
    }

    /// Removes a temporary file (a symlink at its name: the link itself).
    pub fn remove_temporary(&self, temp: &Temporary) -> Result<(), FsError> {
        let prepared = self.prepare_temporary(temp)?;
        self.remove_prepared(&prepared, "remove", UnlinkatFlags::NoRemoveDir)
    }

    /// Renames a temporary file onto its target, replacing what stands
    /// there (as rename(2) does; a directory there fails it).
    pub fn commit_temporary(&self, temp: &Temporary) -> Result<(), FsError> {
        let from = self.prepare_temporary(temp)?;
        let to = self.prepare(temp.target(), Want::Write)?;
        self.rename_prepared(&from, &to, true)
    }

    /// Renames one temporary of a target onto another of the same target
    /// (a split file's shared temporary onto the one a later attempt
    /// resumes), replacing it; each decided as a temporary of its target.
    pub fn rename_temporary(&self, from: &Temporary, to: &Temporary) -> Result<(), FsError> {
        let from = self.prepare_temporary(from)?;
        let to = self.prepare_temporary(to)?;
        self.rename_prepared(&from, &to, true)
    }

    /// Like [`RootedFs::rename_temporary`], only if nothing has `to`'s name
    /// (a link, then the old name's removal: what NFS does too), so that a
    /// file another process made there, and writes into, is never replaced
    /// (an earlier attempt's kept temporary becoming a split file's shared
    /// one, which another node may have made first). An error of kind
    /// `AlreadyExists` if something has that name; after a crash between
    /// the two steps, both names are left to the same file.
    pub fn adopt_temporary(&self, from: &Temporary, to: &Temporary) -> Result<(), FsError> {
        let from = self.prepare_temporary(from)?;
        let to = self.prepare_temporary(to)?;
        self.rename_prepared(&from, &to, false)
    }

    /// Renames `from` to `to`, replacing `to` if it exists (as rename(2) does).
    /// Neither end's final component is followed if it is a symlink.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        // Both ends are judged before either is touched.
        let from_prepared = self.prepare(from, Want::Write)?;
        let to_prepared = self.prepare(to, Want::Write)?;
        self.rename_prepared(&from_prepared, &to_prepared, true)
    }

    fn rename_prepared(
        &self,
        from_prepared: &Prepared,
        to_prepared: &Prepared,
        replace: bool,
    ) -> Result<(), FsError> {
        const OP: &str = "rename";
        let Some(from_leaf) = from_prepared.below_root.file_name() else {
            return Err(is_rule_root(from_prepared, &from_prepared.decision));
        };
        let Parent {
            fd: from_parent,
            real: from_parent_real,
        } = self.parent_dir(OP, from_prepared)?;
        let from_real = self.decide_real(
            from_prepared,
            from_parent_real.as_deref(),
            Some(from_leaf),
            Want::Write,
        )?;
        // A rename within one directory (a temporary into place) resolves
        // that directory once.
        let same_dir = from_prepared.rule_root == to_prepared.rule_root
            && from_prepared.below_root.parent() == to_prepared.below_root.parent();
        let to_parent_opened;
        let (to_parent, to_leaf, to_real) = match to_prepared.below_root.file_name() {
            Some(leaf) if same_dir => {
                let real = self.decide_real(
                    to_prepared,
                    from_parent_real.as_deref(),
                    Some(leaf),
                    Want::Write,
                )?;
                (&from_parent, leaf, real)
            }
            _ => {
                let Some((fd, leaf, real)) = self.open_parent(OP, to_prepared, Want::Write)? else {
                    return Err(is_rule_root(to_prepared, &to_prepared.decision));
                };
                to_parent_opened = fd;
                (&to_parent_opened, leaf, real)
            }
        };
        self.refuse_structural_change(from_prepared, &from_real, true)?;
        self.refuse_structural_change(to_prepared, &to_real, false)?;
        if replace {
            nix::fcntl::renameat(&*from_parent, from_leaf, &**to_parent, to_leaf)
        } else {
            nix::unistd::linkat(
                &*from_parent,
                from_leaf,
                &**to_parent,
                to_leaf,
                nix::fcntl::AtFlags::empty(),
            )
            .and_then(|()| {
                nix::unistd::unlinkat(&*from_parent, from_leaf, UnlinkatFlags::NoRemoveDir)
            })
        }
        .map_err(|errno| errno_error(OP, from_prepared, errno))?;
        // A directory moved away or replaced: what was held beneath it is not there.
        self.forget_held_under(from_prepared);
        self.forget_held_under(to_prepared);
        Ok(())
    }

    /// Decides on `path` and opens its rule's root. Nothing beneath the root is
    /// touched, so a refusal here leaves the filesystem as it was.
    fn prepare(&self, path: &Path, want: Want) -> Result<Prepared, FsError> {
        let decision = self.policy.decide(path).map_err(|e| refusal(path, e))?;
        self.prepare_decided(decision, want, None)
    }

    /// Like [`RootedFs::prepare`], for the temporary of a target: decided
    /// as such ([`Policy::decide_temporary`]), here and again at its real
    /// location.
    fn prepare_temporary(&self, temp: &Temporary) -> Result<Prepared, FsError> {
        let decision = self
            .policy
            .decide_temporary(temp.target(), temp.name())
            .map_err(|e| refusal(temp.path(), e))?;
        let target_name = temp.target().file_name().map(OsStr::to_os_string);
        self.prepare_decided(decision, Want::Write, target_name)
    }

    fn prepare_decided(
        &self,
        decision: Decision,
        want: Want,
        temporary_of: Option<OsString>,
    ) -> Result<Prepared, FsError> {
        let allowed = match want {
            Want::Read => decision.allows_read(),
            Want::Write => decision.allows_write(),
        };
        let rule = match &decision.rule {
            Some(rule) if allowed => rule,
            _ => {
                return Err(FsError::NotAllowed {
                    path: decision.path.clone(),
                    reason: decision.reason(),
                });
            }
        };
        let rule_root = rule.path.clone();
        let below_root = decision
            .path
            .strip_prefix(&rule_root)
            .map(Path::to_path_buf)
            .map_err(|_| FsError::NotAllowed {
                path: decision.path.clone(),
                reason: format!("it is not beneath the root of {rule}"),
            })?;
        let root_fd = self.open_rule_root(&rule_root)?;
        // A grantee's shared folder beneath the rule's root counts as a
        // nested area: a symlink inside the share could lead out of it and
        // still stay beneath the root, which openat2 alone would allow.
        let has_nested_rules = self.policy.has_boundary_strictly_beneath(&rule_root);
        Ok(Prepared {
            decision,
            rule_root,
            root_fd,
            below_root,
            has_nested_rules,
            temporary_of,
        })
    }

    fn open_rule_root(&self, rule_root: &Path) -> Result<Arc<OwnedFd>, FsError> {
        let cached = |roots: &OpenRoots| roots.lock().ok().and_then(|r| r.get(rule_root).cloned());
        if let Some(fd) = self.roots.as_deref().and_then(cached) {
            return Ok(fd);
        }
        // The rule path is the owner's choice and may itself be a symlink they set up.
        let fd = nix::fcntl::open(
            rule_root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(Arc::new)
        .map_err(|errno| FsError::Io {
            op: "open the root of its rule",
            path: rule_root.to_path_buf(),
            source: errno.into(),
        })?;
        if let Some(Ok(mut roots)) = self.roots.as_deref().map(Mutex::lock) {
            roots.insert(rule_root.to_path_buf(), fd.clone());
        }
        Ok(fd)
    }

    fn open_dir_prepared(
        &self,
        op: &'static str,
        prepared: &Prepared,
    ) -> Result<(OwnedFd, Decision), FsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = self.open_beneath(op, prepared, &prepared.below_root, flags)?;
        let real_decision = self.verify_real_location(prepared, &fd, None, Want::Read)?;
        Ok((fd, real_decision))
    }

    /// Opens the parent of the final component beneath the root and checks the
    /// final component's real location. `None` means the path is the root itself.
    fn open_parent<'p>(
        &self,
        op: &'static str,
        prepared: &'p Prepared,
        want: Want,
    ) -> Result<Option<OpenedParent<'p>>, FsError> {
        let Some(leaf) = prepared.below_root.file_name() else {
            return Ok(None);
        };
        let parent = self.parent_dir(op, prepared)?;
        let real_decision = self.decide_real(prepared, parent.real.as_deref(), Some(leaf), want)?;
        Ok(Some((parent.fd, leaf, real_decision)))
    }

    /// The parent directory of the final component: the held one if it was
    /// resolved in this batch, else resolved beneath the root now (and held,
    /// if this instance holds directories).
    fn parent_dir(&self, op: &'static str, prepared: &Prepared) -> Result<Parent, FsError> {
        let below = prepared.below_root.parent().unwrap_or(Path::new(""));
        let open = || -> Result<(Arc<OwnedFd>, Option<PathBuf>), FsError> {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let fd = self.open_beneath(op, prepared, below, flags)?;
            let real = self.real_location(prepared, &fd)?;
            Ok((Arc::new(fd), real))
        };
        let Some(held) = self.held.as_deref() else {
            let (fd, real) = open()?;
            return Ok(Parent { fd, real });
        };
        let used = held.ops.fetch_add(1, Ordering::Relaxed) + 1;
        if used % HELD_BATCH_OPS == 0 {
            held.batch.fetch_add(1, Ordering::Relaxed);
        }
        let batch = held.batch.load(Ordering::Relaxed);
        let key = (prepared.rule_root.clone(), below.to_path_buf());
        if let Some(dir) = lock(&held.dirs).get_mut(&key) {
            if dir.batch == batch {
                dir.last_used = used;
                return Ok(Parent {
                    fd: dir.fd.clone(),
                    real: dir.real.clone(),
                });
            }
        }
        // Not held, or held since an earlier batch: resolved again.
        let (fd, real) = open()?;
        let mut dirs = lock(&held.dirs);
        if dirs.len() >= HELD_DIRS_MAX && !dirs.contains_key(&key) {
            let oldest = dirs
                .iter()
                .min_by_key(|(_, dir)| dir.last_used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                dirs.remove(&oldest);
            }
        }
        dirs.insert(
            key,
            HeldDir {
                fd: fd.clone(),
                real: real.clone(),
                batch,
                last_used: used,
            },
        );
        Ok(Parent { fd, real })
    }

    /// Stops holding the parent directory of `prepared`.
    fn forget_held(&self, prepared: &Prepared) {
        if let Some(held) = &self.held {
            let below = prepared.below_root.parent().unwrap_or(Path::new(""));
            lock(&held.dirs).remove(&(prepared.rule_root.clone(), below.to_path_buf()));
        }
    }

    /// Stops holding `prepared` and every directory beneath it. Runs at
    /// every rename (each file's temporary into place), so the paths are
    /// compared as bytes: `Path::starts_with` and `Path`'s `==` compare
    /// component by component, and took a tenth of a small-file copy's CPU.
    fn forget_held_under(&self, prepared: &Prepared) {
        if let Some(held) = &self.held {
            let root = prepared.rule_root.as_os_str().as_bytes();
            let under = prepared.below_root.as_os_str().as_bytes();
            lock(&held.dirs).retain(|(held_root, below), _| {
                held_root.as_os_str().as_bytes() != root
                    || !bytes_beneath(below.as_os_str().as_bytes(), under)
            });
        }
    }

    /// Removing or renaming a rule's root, or moving away a directory with
    /// another rule's area inside it, would take that area out from under its rule.
    fn refuse_structural_change(
        &self,
        prepared: &Prepared,
        real_decision: &Decision,
        moves_away: bool,
    ) -> Result<(), FsError> {
        if real_decision
            .rule
            .as_ref()
            .is_some_and(|rule| rule.path == real_decision.path)
        {
            return Err(is_rule_root(prepared, real_decision));
        }
        if self.policy.is_share_root(&real_decision.path) {
            return Err(not_allowed(
                prepared,
                "it is the folder shared with you, which cannot be removed or renamed".to_owned(),
            ));
        }
        if moves_away {
            for candidate in [&prepared.decision.path, &real_decision.path] {
                if let Some(inner) = self.policy.rule_strictly_beneath(candidate) {
                    return Err(not_allowed(
                        prepared,
                        format!("renaming it would move the area of {inner} inside it"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn open_beneath(
        &self,
        op: &'static str,
        prepared: &Prepared,
        below_root: &Path,
        flags: OFlag,
    ) -> Result<OwnedFd, FsError> {
        let target = if below_root.as_os_str().is_empty() {
            Path::new(".")
        } else {
            below_root
        };
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let mut attempt = 1;
        loop {
            match nix::fcntl::openat2(&prepared.root_fd, target, how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::EAGAIN) if attempt < OPENAT2_ATTEMPTS => attempt += 1,
                Err(Errno::EXDEV) => {
                    return Err(not_allowed(
                        prepared,
                        format!(
                            "it escapes the root of {} {ESCAPE_REASON}",
                            rule_of(prepared)
                        ),
                    ));
                }
                Err(Errno::ELOOP) => {
                    return Err(not_allowed(
                        prepared,
                        "it resolves through a symlink loop, too many symlinks or a /proc magic link"
                            .to_owned(),
                    ));
                }
                Err(errno) => return Err(errno_error(op, prepared, errno)),
            }
        }
    }

    /// Maps an opened descriptor back to the logical path it really is and
    /// decides again, so a symlink into a more specific rule's area (a denied
    /// dot-entry, a read-only subtree) is refused. Checking the descriptor that
    /// will be used leaves no window for a race.
    fn verify_real_location(
        &self,
        prepared: &Prepared,
        fd: &OwnedFd,
        leaf: Option<&OsStr>,
        want: Want,
    ) -> Result<Decision, FsError> {
        let real = self.real_location(prepared, fd)?;
        self.decide_real(prepared, real.as_deref(), leaf, want)
    }

    /// The logical path `fd` really is, where rules nest beneath the root
    /// (`None`: the decision on the path stands as it is).
    fn real_location(&self, prepared: &Prepared, fd: &OwnedFd) -> Result<Option<PathBuf>, FsError> {
        if !prepared.has_nested_rules {
            return Ok(None);
        }
        let real_root = fd_real_path(&prepared.root_fd).map_err(|source| FsError::Io {
            op: "find the real location of",
            path: prepared.rule_root.clone(),
            source,
        })?;
        let real_target = fd_real_path(fd)
            .map_err(|source| io_error("find the real location of", prepared, source))?;
        let Ok(real_below_root) = real_target.strip_prefix(&real_root) else {
            return Err(not_allowed(
                prepared,
                format!(
                    "its real location {} is outside the root of {}",
                    show(&real_target),
                    rule_of(prepared)
                ),
            ));
        };
        Ok(Some(prepared.rule_root.join(real_below_root)))
    }

    /// Decides again at the real location `logical` (of the parent, when
    /// `leaf` is given), as [`RootedFs::real_location`] found it.
    fn decide_real(
        &self,
        prepared: &Prepared,
        logical: Option<&Path>,
        leaf: Option<&OsStr>,
        want: Want,
    ) -> Result<Decision, FsError> {
        let Some(logical) = logical else {
            return Ok(prepared.decision.clone());
        };
        let real_decision = match (leaf, &prepared.temporary_of) {
            (Some(leaf), Some(target)) => self
                .policy
                .decide_temporary_normalized(logical.join(target), leaf),
            (Some(leaf), None) => self.policy.decide_normalized(logical.join(leaf)),
            (None, _) => self.policy.decide_normalized(logical.to_path_buf()),
        };
        let allowed = match want {
            Want::Read => real_decision.allows_read(),
            Want::Write => real_decision.allows_write(),
        };
        if !allowed {
            return Err(not_allowed(
                prepared,
                format!(
                    "it resolves through a symlink to {}, which is {}",
                    show(&real_decision.path),
                    real_decision.reason()
                ),
            ));
        }
        Ok(real_decision)
    }
}

/// Opens `leaf` in `parent_fd` without following a symlink there: one
/// there is refused as such.
fn open_no_follow(
    op: &'static str,
    prepared: &Prepared,
    parent_fd: &OwnedFd,
    leaf: &OsStr,
    flags: OFlag,
) -> Result<OwnedFd, FsError> {
    match nix::fcntl::openat(parent_fd, leaf, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(not_allowed(
            prepared,
            "it is a symlink, and writes never follow a symlink at the final component".to_owned(),
        )),
        Err(errno) => Err(errno_error(op, prepared, errno)),
    }
}

/// A policy error on `path` as a refusal.
fn refusal(path: &Path, error: PolicyError) -> FsError {
    FsError::NotAllowed {
        path: path.to_path_buf(),
        reason: match error {
            PolicyError::BadRequestPath { problem, .. } => problem.to_string(),
            other => other.to_string(),
        },
    }
}

/// A poisoned lock still holds a consistent map: each change is one call.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn fd_real_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    Ok(PathBuf::from(nix::fcntl::readlink(link.as_str())?))
}

fn rule_of(prepared: &Prepared) -> String {
    prepared
        .decision
        .rule
        .as_ref()
        .map_or_else(|| "its rule".to_owned(), ToString::to_string)
}

fn is_rule_root(prepared: &Prepared, decision: &Decision) -> FsError {
    let rule = decision
        .rule
        .as_ref()
        .map_or_else(|| "its rule".to_owned(), ToString::to_string);
    not_allowed(
        prepared,
        format!("it is the root of {rule}, which cannot be removed or renamed"),
    )
}

fn not_allowed(prepared: &Prepared, reason: String) -> FsError {
    FsError::NotAllowed {
        path: prepared.decision.path.clone(),
        reason,
    }
}

fn io_error(op: &'static str, prepared: &Prepared, source: io::Error) -> FsError {
    FsError::Io {
        op,
        path: prepared.decision.path.clone(),
        source,
    }
}

fn errno_error(op: &'static str, prepared: &Prepared, errno: Errno) -> FsError {
    io_error(op, prepared, errno.into())
}

fn wrong_kind(
    op: &'static str,
    prepared: &Prepared,
    found: EntryKind,
    expected: &'static str,
) -> FsError {
    FsError::WrongKind {
        op,
        path: prepared.decision.path.clone(),
        found,
        expected,
    }
}

fn fstat_raw(op: &'static str, prepared: &Prepared, fd: &OwnedFd) -> Result<FileStat, FsError> {
    nix::sys::stat::fstat(fd).map_err(|errno| errno_error(op, prepared, errno))
}

fn fstat(op: &'static str, prepared: &Prepared, fd: &OwnedFd) -> Result<Metadata, FsError> {
    fstat_raw(op, prepared, fd).map(|stat| metadata_from(&stat))
}

/// Clears `O_NONBLOCK` on `fd`, opened with `opened`: F_SETFL changes only
/// the status flags, all of which the caller chose, so no F_GETFL first.
fn clear_nonblock(
    op: &'static str,
    prepared: &Prepared,
    fd: impl AsFd,
    opened: OFlag,
) -> Result<(), FsError> {
    let flags = opened & !OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(flags))
        .map(drop)
        .map_err(|errno| errno_error(op, prepared, errno))
}

fn metadata_from(stat: &FileStat) -> Metadata {
    let kind = match stat.st_mode & nix::libc::S_IFMT {
        nix::libc::S_IFREG => EntryKind::File,
        nix::libc::S_IFDIR => EntryKind::Dir,
        nix::libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    Metadata {
        kind,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        mtime: system_time(stat.st_mtime, stat.st_mtime_nsec),
        mode: stat.st_mode & 0o7777,
    }
}

fn system_time(seconds: i64, nanoseconds: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nanoseconds).unwrap_or(0));
    let whole = Duration::from_secs(seconds.unsigned_abs());
    let base = if seconds >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    base.and_then(|time| time.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

/// Whether the normalized relative path `path` is `prefix` or lies beneath
/// it (`prefix` empty: the rule's root, beneath which everything lies).
fn bytes_beneath(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beneath_is_decided_at_component_boundaries() {
        assert!(bytes_beneath(b"a/b", b"a"));
        assert!(bytes_beneath(b"a", b"a"));
        assert!(!bytes_beneath(b"ab", b"a"));
        assert!(!bytes_beneath(b"a", b"a/b"));
        assert!(bytes_beneath(b"x/y", b""));
        assert!(bytes_beneath(b"", b""));
        assert!(!bytes_beneath(b"", b"a"));
    }
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn rooted(home: &Path) -> RootedFs {
        let policy = Policy::from_config_paths("~/,0,1\n", home, &home.join(".ferry")).unwrap();
        RootedFs::new(Arc::new(policy))
    }

    #[test]
    fn mkdir_exact_sets_exactly_the_permission_bits_and_keeps_an_inherited_setgid() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        // 0o077 is narrowed away by any usual umask: it is set anyway.
        fs.mkdir_exact(&home.join("open"), 0o777).unwrap();
        assert_eq!(mode_of(&home.join("open")), 0o777);
        fs.mkdir_exact(&home.join("special"), 0o7750).unwrap();
        assert_eq!(
            mode_of(&home.join("special")),
            0o750,
            "no special bit from the mode"
        );
        std::fs::create_dir(home.join("shared")).unwrap();
        std::fs::set_permissions(home.join("shared"), std::fs::Permissions::from_mode(0o2770))
            .unwrap();
        fs.mkdir_exact(&home.join("shared/sub"), 0o750).unwrap();
        assert_eq!(
            mode_of(&home.join("shared/sub")),
            0o2750,
            "the setgid of a group-shared parent is inherited"
        );
        let again = fs.mkdir_exact(&home.join("open"), 0o700).unwrap_err();
        assert_eq!(again.io_kind(), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(
            mode_of(&home.join("open")),
            0o777,
            "an existing one is left alone"
        );
    }

    const TASK: &str = "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11";

    #[test]
    fn a_temporary_at_the_top_of_home_is_created_resumed_committed_and_removed() {
        use std::io::{Read, Write};
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        let temp = Temporary::new(&home.join("x"), TASK);
        let mut file = fs.create_temporary(&temp, 0o600).unwrap();
        file.write_all(b"data").unwrap();
        assert_eq!(mode_of(temp.path()), 0o600);
        let again = fs.create_temporary(&temp, 0o600).unwrap_err();
        assert_eq!(again.io_kind(), Some(io::ErrorKind::AlreadyExists));
        let mut resumed = fs.open_temporary(&temp).unwrap();
        let mut read = String::new();
        resumed.read_to_string(&mut read).unwrap();
        assert_eq!(read, "data");
        fs.commit_temporary(&temp).unwrap();
        assert_eq!(std::fs::read(home.join("x")).unwrap(), b"data");
        assert!(!temp.path().exists());
        fs.create_temporary(&temp, 0o600).unwrap();
        fs.remove_temporary(&temp).unwrap();
        assert!(!temp.path().exists());
    }

    /// An adopted temporary takes the other name only while it is free: a
    /// file another process made there stays, and so does the one adopted.
    #[test]
    fn a_temporary_is_adopted_under_another_name_only_if_that_is_free() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        let kept = Temporary::new(&home.join("x"), TASK);
        let shared = kept.labelled("a2");
        fs.create_temporary(&kept, 0o600)
            .unwrap()
            .write_all(b"kept")
            .unwrap();
        fs.adopt_temporary(&kept, &shared).unwrap();
        assert!(!kept.path().exists());
        assert_eq!(std::fs::read(shared.path()).unwrap(), b"kept");
        // The name is taken now: nothing is replaced.
        fs.create_temporary(&kept, 0o600)
            .unwrap()
            .write_all(b"other")
            .unwrap();
        let taken = fs.adopt_temporary(&kept, &shared).unwrap_err();
        assert_eq!(taken.io_kind(), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(shared.path()).unwrap(), b"kept");
        assert_eq!(std::fs::read(kept.path()).unwrap(), b"other");
        fs.remove_temporary(&kept).unwrap();
        let gone = fs
            .adopt_temporary(&kept, &shared.labelled("b"))
            .unwrap_err();
        assert_eq!(gone.io_kind(), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn a_users_own_ferry_dot_file_stays_out_of_reach() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        let temp = Temporary::new(&home.join("x"), TASK);
        std::fs::write(temp.path(), b"the user's own").unwrap();
        // By its path, through every other operation: the dot-file deny.
        assert!(fs.open_read(temp.path()).unwrap_err().is_not_allowed());
        assert!(fs.stat(temp.path()).unwrap_err().is_not_allowed());
        assert!(fs.remove_file(temp.path()).unwrap_err().is_not_allowed());
        assert!(
            fs.create_file(&home.join(".ferry.y.0b5e3a52.part"), 0o600)
                .unwrap_err()
                .is_not_allowed()
        );
        assert!(
            fs.rename(temp.path(), &home.join("z"))
                .unwrap_err()
                .is_not_allowed()
        );
        let listed = fs.read_dir(home).unwrap();
        assert!(listed.iter().all(|e| e.name != temp.name()), "{listed:?}");
        assert_eq!(std::fs::read(temp.path()).unwrap(), b"the user's own");
    }

    #[test]
    fn a_temporary_is_refused_where_its_target_is() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        std::fs::create_dir(home.join("ro")).unwrap();
        std::fs::create_dir(home.join(".ssh")).unwrap();
        let text = "~/,0,1\n~/ro,0,0\n";
        let policy = Policy::from_config_paths(text, home, &home.join(".ferry")).unwrap();
        let fs = RootedFs::new(Arc::new(policy));
        for target in [
            home.join("ro/x"),
            home.join(".ssh/authorized_keys"),
            home.join(".bashrc"),
        ] {
            let temp = Temporary::new(&target, TASK);
            let refused = fs.create_temporary(&temp, 0o600).unwrap_err();
            assert!(refused.is_not_allowed(), "{}: {refused}", target.display());
            assert!(!temp.path().exists());
        }
        // Nor through a symlink leading into a refused area.
        std::os::unix::fs::symlink(".ssh", home.join("keys")).unwrap();
        let through = Temporary::new(&home.join("keys/authorized_keys"), TASK);
        let refused = fs.create_temporary(&through, 0o600).unwrap_err();
        assert!(refused.to_string().contains("symlink"), "{refused}");
        assert_eq!(std::fs::read_dir(home.join(".ssh")).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_at_a_temporarys_name_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        std::fs::write(home.join("victim"), b"untouched").unwrap();
        let temp = Temporary::new(&home.join("d/x"), TASK);
        std::fs::create_dir(home.join("d")).unwrap();
        std::os::unix::fs::symlink("../victim", temp.path()).unwrap();
        let exists = fs.create_temporary(&temp, 0o600).unwrap_err();
        assert_eq!(exists.io_kind(), Some(io::ErrorKind::AlreadyExists));
        assert!(fs.open_temporary(&temp).unwrap_err().is_not_allowed());
        fs.remove_temporary(&temp).unwrap();
        assert!(
            std::fs::symlink_metadata(temp.path()).is_err(),
            "the link went"
        );
        assert_eq!(std::fs::read(home.join("victim")).unwrap(), b"untouched");
    }

    #[test]
    fn sync_dir_syncs_a_directory_and_reports_what_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let fs = rooted(home);
        std::fs::create_dir(home.join("d")).unwrap();
        fs.sync_dir(&home.join("d")).unwrap();
        let missing = fs.sync_dir(&home.join("missing")).unwrap_err();
        assert_eq!(missing.io_kind(), Some(io::ErrorKind::NotFound));
        assert!(
            fs.sync_dir(&home.join(".ferry"))
                .unwrap_err()
                .is_not_allowed()
        );
    }

    /// Home and an `outside` beside it, seen through a rooted filesystem
    /// that holds directories (the `~/` rule has nested denies: the
    /// dot-entries, so real locations are decided).
    fn holding(top: &Path) -> (PathBuf, PathBuf, RootedFs) {
        let home = top.join("home");
        let outside = top.join("outside");
        std::fs::create_dir_all(home.join("d")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let policy = Policy::from_config_paths("~/,0,1\n", &home, &home.join(".ferry")).unwrap();
        let fs = RootedFs::with_cached_roots(Arc::new(policy)).holding_dirs();
        (home, outside, fs)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_symlink_put_in_place_of_a_held_directory_is_seen_by_the_next_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let (home, outside, fs) = holding(&top);
        fs.create_file(&home.join("d/a"), 0o600).unwrap();
        assert_eq!(fs.held_dirs(), 1);
        std::fs::rename(home.join("d"), home.join("d.old")).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("d")).unwrap();
        // Within the batch: into the very directory that was resolved.
        fs.create_file(&home.join("d/b"), 0o600).unwrap();
        assert_eq!(names(&home.join("d.old")), ["a", "b"]);
        fs.next_batch();
        let refused = fs.create_file(&home.join("d/c"), 0o600).unwrap_err();
        assert!(refused.is_not_allowed(), "{refused}");
        assert!(
            fs.open_read(&home.join("d/b"))
                .unwrap_err()
                .is_not_allowed()
        );
        // Nor into a denied area beneath the root.
        std::fs::remove_file(home.join("d")).unwrap();
        std::os::unix::fs::symlink(".ssh", home.join("d")).unwrap();
        fs.next_batch();
        let refused = fs.create_file(&home.join("d/c"), 0o600).unwrap_err();
        assert!(refused.to_string().contains("symlink"), "{refused}");
        assert!(names(&outside).is_empty());
        assert!(names(&home.join(".ssh")).is_empty());
    }

    #[test]
    fn a_batch_ends_by_itself_after_so_many_operations() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let (home, outside, fs) = holding(&top);
        fs.create_file(&home.join("d/a"), 0o600).unwrap();
        std::fs::rename(home.join("d"), home.join("d.old")).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("d")).unwrap();
        // Never told of a new batch: the held directory is still resolved
        // again within a bounded number of operations.
        let refused = (0..=HELD_BATCH_OPS)
            .find_map(|i| fs.create_file(&home.join(format!("d/f{i}")), 0o600).err());
        assert!(refused.is_some_and(|e| e.is_not_allowed()));
        assert!(names(&outside).is_empty());
    }

    #[test]
    fn writes_through_a_held_directory_the_owner_moved_stay_in_that_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let (home, outside, fs) = holding(&top);
        fs.create_file(&home.join("d/a"), 0o600).unwrap();
        // The owner moves it out from under the rule's root.
        std::fs::rename(home.join("d"), outside.join("moved")).unwrap();
        let temp = Temporary::new(&home.join("d/x"), TASK);
        fs.create_temporary(&temp, 0o600).unwrap();
        fs.commit_temporary(&temp).unwrap();
        assert_eq!(names(&outside.join("moved")), ["a", "x"]);
        assert!(
            !home.join("d").exists(),
            "nothing recreated it at its old path"
        );
        fs.next_batch();
        let gone = fs.create_file(&home.join("d/y"), 0o600).unwrap_err();
        assert_eq!(gone.io_kind(), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn a_held_directory_removed_and_made_again_is_resolved_afresh() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let (home, _, fs) = holding(&top);
        fs.create_file(&home.join("d/a"), 0o600).unwrap();
        // By someone else: the handle held is of a removed directory.
        std::fs::remove_dir_all(home.join("d")).unwrap();
        std::fs::create_dir(home.join("d")).unwrap();
        fs.create_file(&home.join("d/b"), 0o600).unwrap();
        assert_eq!(names(&home.join("d")), ["b"]);
        // Through it: what was held beneath is forgotten.
        fs.create_file(&home.join("d/e/f"), 0o600).unwrap_err();
        fs.mkdir(&home.join("d/e"), 0o700).unwrap();
        fs.create_file(&home.join("d/e/f"), 0o600).unwrap();
        fs.remove_file(&home.join("d/e/f")).unwrap();
        fs.remove_dir(&home.join("d/e")).unwrap();
        fs.mkdir(&home.join("d/e"), 0o700).unwrap();
        fs.create_file(&home.join("d/e/g"), 0o600).unwrap();
        assert_eq!(names(&home.join("d/e")), ["g"]);
    }

    #[test]
    fn held_directories_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let (home, _, fs) = holding(&top);
        for i in 0..HELD_DIRS_MAX + 10 {
            let dir = home.join(format!("d{i}"));
            fs.mkdir(&dir, 0o700).unwrap();
            fs.create_file(&dir.join("f"), 0o600).unwrap();
            assert!(fs.held_dirs() <= HELD_DIRS_MAX);
        }
        assert_eq!(fs.held_dirs(), HELD_DIRS_MAX);
        // The least recently used went: the newest are still read through.
        let last = home.join(format!("d{}/f", HELD_DIRS_MAX + 9));
        assert!(fs.open_read(&last).is_ok());
    }
}
