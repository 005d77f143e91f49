//! The endpoint's path policy (`config-paths`, `-restrict-paths`) and the rooted
//! filesystem that is the only way the daemon opens user paths.
//!
//! Invariants the rest of the daemon relies on:
//!
//! - [`RootedFs`] is the only code that opens, creates, removes or renames user
//!   paths. Anything else that touches a peer-supplied path is a bug.
//! - The policy is decided *before* anything beneath a rule's root is touched:
//!   a denied path is refused without a single syscall on it, and every write
//!   (create, open for writing, mkdir, remove, both ends of rename) on a
//!   read-only path is refused before anything changes.
//! - Matching is by whole path component and the longest rule wins; the config
//!   dir and every dot-entry directly under home are denied unless a rule names
//!   them or something beneath them.
//! - Paths are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//!   below the matched rule's root, so `..`, absolute symlinks and symlinks that
//!   leave the root are refused by the kernel. Where a more specific rule lies
//!   beneath the root, the opened descriptor's real location is decided again,
//!   so a symlink into a denied or read-only area is refused too.
//! - A directory handle held across a batch ([`RootedFs::holding_dirs`]) was
//!   resolved as above when the batch began and is resolved again in the
//!   next; within a batch an operation through it acts in that same
//!   directory object, wherever its owner moves it (not an escape), and a
//!   symlink swapped in for its path is refused by the next resolution.
//! - A symlink at the final component is never followed by a write, a removal,
//!   a rename or `stat`.
//! - Ferry's temporary files (`.ferry.NAME.TAG.part`) are reached only through
//!   their target ([`RootedFs::create_temporary`] and siblings) and decided as
//!   the temporary of that target: the deny of dot-entries directly under
//!   home does not refuse them, every other rule does, and no other
//!   operation gets that exemption (see [`Temporary`]).
//! - For a grantee, the owner's policy narrowed by the grant decides
//!   ([`Policy::for_grant`]): nothing outside the shared folder, nothing
//!   whose deciding rule has SHARING 0, never the config dir, no write for
//!   a read-only permission. The shared folder counts as a nested area, so
//!   a symlink out of it is refused like one into a denied area, and it
//!   cannot itself be removed or renamed. The owner's denies stand.
//! - Names are bytes (`OsStr`); nothing assumes UTF-8.

mod config_paths;
mod policy;
mod restrict_paths;
mod rooted_fs;
mod rule_path;
mod temporary;

pub use config_paths::LineProblem;
pub use policy::{
    Access, Decision, Policy, PolicyError, PolicySource, Rule, RuleOrigin, ShareLimit,
    ShareNarrowing,
};
pub use restrict_paths::ItemProblem;
pub use rooted_fs::{Entry, EntryKind, FsError, Metadata, RootedFs};
pub use rule_path::{
    RequestPathError, RulePathError, ShowPath, normalize_absolute, resolve_endpoint_path, show,
};
pub use temporary::{Temporary, is_temp_name, temp_name};
