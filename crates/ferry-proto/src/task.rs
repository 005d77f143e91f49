//! Transfer tasks as they travel: what the hub tells a source endpoint to
//! send, the capability that authorises one task's data connections, and
//! what endpoints report back.
//!
//! A capability is `base64url(JSON body) "." base64url(signature)`, signed
//! by the hub's task-signing key (ECDSA P-256, SHA-256, ASN.1 signature).
//! Endpoints learn the verifying key in the control channel's welcome. The
//! destination checks the signature, the expiry, both endpoint ids (against
//! the TLS certificates) and the paths before touching its filesystem.

use crate::filter::FilterRule;
use crate::wire_path::WirePath;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest encoded capability accepted (a `--batch` task lists its items).
pub const MAX_CAPABILITY: usize = 1024 * 1024;

/// What decides that a destination file needs no transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum SyncLevel {
    /// The destination file exists.
    Exists,
    /// ... and has the same size.
    Size,
    /// ... and the same size and modification time.
    Mtime,
    /// ... and the same content (compared by digest).
    Checksum,
}

impl SyncLevel {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "exists" | "0" => Some(Self::Exists),
            "size" | "1" => Some(Self::Size),
            "mtime" | "2" => Some(Self::Mtime),
            "checksum" | "3" => Some(Self::Checksum),
            _ => None,
        }
    }
}

/// What a task's chunk and file digests are made with.
///
/// A file's digest is the algorithm over the concatenated digests (by the
/// same algorithm) of its 4 MiB chunks. SHA-256 is what every task meant
/// before the choice existed, and what a capability, a submission or a
/// stored task that does not name one still means; new submissions (the
/// CLI, the web app) name BLAKE3, about twice as fast a core. An
/// algorithm this build does not know (from a newer peer) does not parse:
/// a task is never verified with another algorithm than it names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ChecksumAlgorithm {
    /// SHA-256 (FIPS 180-4); what an absent field means.
    #[default]
    Sha256,
    /// BLAKE3 with its 256-bit output.
    Blake3,
}

impl ChecksumAlgorithm {
    /// What new submissions choose when the user does not.
    pub const PREFERRED: ChecksumAlgorithm = ChecksumAlgorithm::Blake3;

    /// The wire (and command-line) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Blake3 => "blake3",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sha256" => Some(Self::Sha256),
            "blake3" => Some(Self::Blake3),
            _ => None,
        }
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source path and where it lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TransferItem {
    pub source: WirePath,
    pub destination: WirePath,
    /// The source is a directory whose contents land in `destination`.
    pub recursive: bool,
}

/// Fields left out of a request take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TransferOptions {
    /// `None`: transfer every file, replacing what is there.
    pub sync_level: Option<SyncLevel>,
    /// Remove destination files that the source does not have.
    pub delete: bool,
    pub preserve_mtime: bool,
    pub preserve_mode: bool,
    /// Report unreadable source entries and go on, instead of failing.
    pub skip_source_errors: bool,
    /// Parallel data streams; `None` lets the endpoints choose.
    pub streams: Option<u32>,
    /// `--include`/`--exclude`, in order (see [`crate::filter`]): the
    /// source walks only what they include, and `--delete` spares what
    /// they exclude. Left out of the wire form when empty, so a task
    /// without filters signs the same capability body as before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterRule>,
    /// `--bwlimit`: the task's data rate cap, bytes per second, shared by
    /// all its streams (at least [`crate::rate::MIN_RATE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// The digests' algorithm; absent (an older client, hub or stored
    /// task): SHA-256, as it was. Both endpoints use it when both speak
    /// data protocol 3; with an older peer, SHA-256 (see
    /// [`crate::data::digest_algorithm`]).
    pub checksum_algorithm: ChecksumAlgorithm,
    /// `--on-success NAME`: the destination's hook (a command its owner
    /// named in its `endpoint.toml`, `[hooks.NAME]`) to run once every
    /// file landed. Only a name travels, never a command. Left out of the
    /// wire form when absent, so a task without one signs the same
    /// capability body as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
}

/// Longest hook name, in bytes.
pub const MAX_HOOK_NAME: usize = 64;

/// The one check of a hook's name (the CLI, the hub and the daemon's
/// `endpoint.toml` all run it): 1 to 64 of `A-Z a-z 0-9 _ -`, so a name
/// prints, fits a TOML key bare, and is never a path or an option.
pub fn check_hook_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_HOOK_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "hook name {:?} is not allowed: use 1 to {MAX_HOOK_NAME} letters, digits, '_' or '-'",
            name.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// How a refusal names an endpoint's hooks (the hub's and the
/// destination's words alike): `no hooks`, or `hooks 'a', 'b'`.
pub fn hook_list(names: &[String]) -> String {
    if names.is_empty() {
        return "no hooks".into();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("hooks {}", quoted.join(", "))
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            sync_level: None,
            delete: false,
            preserve_mtime: true,
            preserve_mode: true,
            skip_source_errors: false,
            streams: None,
            filters: Vec::new(),
            bwlimit: None,
            checksum_algorithm: ChecksumAlgorithm::Sha256,
            on_success: None,
        }
    }
}

/// The signed body of a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub task_id: String,
    /// Increases each time the hub (re)starts the task's data work.
    pub attempt: u32,
    pub source_endpoint: String,
    pub destination_endpoint: String,
    pub items: Vec<TransferItem>,
    pub options: TransferOptions,
    /// Unix seconds.
    pub issued: i64,
    pub expires: i64,
    /// The source acts for a grantee of its owner's (absent: the owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_grant: Option<crate::share::ShareGrant>,
    /// The destination acts for a grantee of its owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_grant: Option<crate::share::ShareGrant>,
    /// The task's label, for the destination's hook (`FERRY_LABEL`); only
    /// sent with `options.on_success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The part of the task this attempt's pair of nodes moves, when the
    /// hub spread it over several machines of both endpoints; absent: the
    /// whole task. Only sent to endpoints whose hello named
    /// [`FEATURE_SHARDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// The hello feature of an endpoint that moves a shard of a task (sends
/// only the entries [`Shard::holds`]).
pub const FEATURE_SHARDS: &str = "shards";

/// One of `count` parts of a task spread over several nodes: the source
/// node of shard `index` sends the files and other non-directory entries
/// whose [`shard_of`] is `index`, and every directory (so each shard makes
/// the directories its files land in; making one twice is no harm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    /// Every shard moves a part of each large file ([`Shard::splits`]),
    /// not only the file's own shard. Only set when every node of the
    /// attempt's hello named [`FEATURE_SPLIT_FILES`]; absent (an older
    /// hub): no file is split.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
    /// With `split`, files of up to [`MAX_SPLIT_CHUNKS_LARGE`] chunks are
    /// split too, not only up to [`MAX_SPLIT_CHUNKS`]. Only set when every
    /// node of the attempt's hello named [`FEATURE_SPLIT_LARGE_FILES`]:
    /// every node must cut the same files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub large: bool,
}

/// The hello feature of an endpoint that moves its part of a large file
/// of a spread task ([`Shard::split`]): a source sends only its
/// [`Shard::chunks`], a destination writes them into the file's shared
/// temporary and the file's own shard commits it.
pub const FEATURE_SPLIT_FILES: &str = "split_files";

/// The hello feature of an endpoint that splits files of up to
/// [`MAX_SPLIT_CHUNKS_LARGE`] chunks ([`Shard::large`]): its destination
/// sends a batch's needs in as many messages as their size asks
/// (`data::needs_messages`), so a part's list of chunks never outgrows a
/// message.
pub const FEATURE_SPLIT_LARGE_FILES: &str = "split_large_files";

/// A file of a spread task is split over its shards when it has at least
/// this many chunks per shard: with fewer, the cost of one more node
/// writing into it (a temporary opened twice, a sidecar, the owner's
/// wait) outweighs moving a few chunks side by side.
pub const SPLIT_MIN_CHUNKS_PER_SHARD: u64 = 2;
/// A file of more chunks (64 GiB) is not split: a destination node names
/// the chunks of its part one by one in a needs message, which must stay
/// well within [`crate::data::MAX_MESSAGE`].
pub const MAX_SPLIT_CHUNKS: u64 = 16_384;

/// A file of more chunks (1 TiB) is not split even with [`Shard::large`]:
/// a part's chunks (at most half the file's), named one by one, then
/// fill at most a quarter of a message (`data::MAX_MESSAGE`).
pub const MAX_SPLIT_CHUNKS_LARGE: u64 = 262_144;

/// What one shard moves of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Nothing: another shard's file.
    None,
    /// All of it: this shard's file.
    Whole,
    /// These chunks (by index) of a file split over every shard.
    Chunks(std::ops::Range<u32>),
}

impl Shard {
    /// Whether the entry at `rel` (bytes, relative to item `item`'s root;
    /// empty for an item that is one file) is this shard's.
    pub fn holds(&self, item: u32, rel: &[u8]) -> bool {
        self.count <= 1 || shard_of(item, rel, self.count) == self.index
    }

    /// Whether a file of `size` bytes is split over every shard.
    pub fn splits(&self, size: u64) -> bool {
        let chunks = chunks_of(size);
        self.split
            && self.count >= 2
            && chunks >= u64::from(self.count) * SPLIT_MIN_CHUNKS_PER_SHARD
            && chunks
                <= match self.large {
                    true => MAX_SPLIT_CHUNKS_LARGE,
                    false => MAX_SPLIT_CHUNKS,
                }
    }

    /// What this shard moves of the file at `rel` of `size` bytes.
    pub fn part(&self, item: u32, rel: &[u8], size: u64) -> Part {
        if self.splits(size) {
            Part::Chunks(chunk_range(self.index, self.count, chunks_of(size)))
        } else if self.holds(item, rel) {
            Part::Whole
        } else {
            Part::None
        }
    }
}

/// How many chunks of [`crate::data::CHUNK_SIZE`] a file of `size` bytes has.
pub fn chunks_of(size: u64) -> u64 {
    size.div_ceil(crate::data::CHUNK_SIZE)
}

/// The chunks shard `index` of `count` moves of a file of `chunks`
/// chunks split over all of them: contiguous (each node reads and writes
/// one stretch of the file), disjoint, together all of them, the first
/// `chunks % count` shards one chunk more than the rest. Empty for an
/// index out of range.
pub fn chunk_range(index: u32, count: u32, chunks: u64) -> std::ops::Range<u32> {
    if count == 0 || index >= count {
        return 0..0;
    }
    let (count, index) = (u64::from(count), u64::from(index));
    let (base, extra) = (chunks / count, chunks % count);
    let start = index * base + index.min(extra);
    let len = base + u64::from(index < extra);
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    clamp(start)..clamp(start + len)
}

/// What a destination node that is not a split file's own shard leaves
/// beside the file's shared temporary once its part is written, durable
/// and verified: the file's own shard commits the file only once every
/// other shard's is there, and checks the file's digest over all the
/// chunks' digests. Found by name ([`SplitPart::matches`] says whether
/// one is of this attempt and file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPart {
    pub task_id: String,
    pub attempt: u32,
    pub shard: u32,
    pub count: u32,
    /// The file as its source offered it: every part must be of the same.
    pub size: u64,
    pub mtime_ns: i64,
    /// The digests (hex) of the part's chunks, in order.
    pub digests: Vec<String>,
}

impl SplitPart {
    /// The most bytes a sidecar of a file of `size` bytes takes.
    pub fn max_len(size: u64) -> u64 {
        4096 + chunks_of(size).saturating_mul(70)
    }

    /// Whether this part is the one shard `shard` of `count` was to write
    /// of this attempt's file of `size` bytes and `mtime_ns`: its chunks
    /// and nothing else.
    pub fn matches(
        &self,
        task_id: &str,
        attempt: u32,
        shard: u32,
        count: u32,
        size: u64,
        mtime_ns: i64,
    ) -> bool {
        self.task_id == task_id
            && self.attempt == attempt
            && self.shard == shard
            && self.count == count
            && self.size == size
            && self.mtime_ns == mtime_ns
            && self.digests.len() == chunk_range(shard, count, chunks_of(size)).len()
    }
}

/// What the destination nodes of a split file knew of its chunks when
/// their attempt ended and its shared temporary was kept for a retry:
/// each chunk's digest (hex) that some node verified against its source's,
/// by index. Left beside the kept temporary (`.ferry.NAME.TAG.kept.part`),
/// so the retry's nodes, whichever they are, take those chunks as held
/// once each hashes them again from disk; the file's digest is checked
/// against the source's all the same. [`KeptChunks::matches`] says
/// whether it is of the file as the retry's source offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptChunks {
    pub task_id: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub digests: Vec<(u32, String)>,
}

impl KeptChunks {
    /// The most bytes a record of a file of `size` bytes takes.
    pub fn max_len(size: u64) -> u64 {
        4096 + chunks_of(size).saturating_mul(84)
    }

    /// Whether it is of this task's file of `size` bytes and `mtime_ns`.
    pub fn matches(&self, task_id: &str, size: u64, mtime_ns: i64) -> bool {
        self.task_id == task_id && self.size == size && self.mtime_ns == mtime_ns
    }
}

/// Which of `count` shards an entry belongs to: FNV-1a (64 bits) of the
/// item's index and the entry's path bytes, modulo `count`. Fixed by this
/// definition (no seeded hasher), so every node computes the same.
pub fn shard_of(item: u32, rel: &[u8], count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in u64::from(item).to_le_bytes().iter().chain(rel) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % u64::from(count.max(1))) as u32
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CapabilityError {
    #[error("capability is too large")]
    TooLarge,
    #[error("capability is malformed")]
    Malformed,
    #[error("capability signature does not verify")]
    BadSignature,
    #[error("capability expired")]
    Expired,
    #[error("capability is for another endpoint")]
    WrongEndpoint,
}

impl Capability {
    /// The bytes the hub signs.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Joins a body and its signature into the travelling form.
    pub fn seal(body: &[u8], signature: &[u8]) -> String {
        format!("{}.{}", B64.encode(body), B64.encode(signature))
    }

    /// Splits the travelling form into (body, signature) without trusting it.
    pub fn open(sealed: &str) -> Result<(Vec<u8>, Vec<u8>), CapabilityError> {
        if sealed.len() > MAX_CAPABILITY {
            return Err(CapabilityError::TooLarge);
        }
        let (body, sig) = sealed.split_once('.').ok_or(CapabilityError::Malformed)?;
        let body = B64.decode(body).map_err(|_| CapabilityError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| CapabilityError::Malformed)?;
        Ok((body, sig))
    }

    /// Parses a body whose signature the caller has verified.
    pub fn parse_verified(body: &[u8]) -> Result<Self, CapabilityError> {
        serde_json::from_slice(body).map_err(|_| CapabilityError::Malformed)
    }
}

/// A task's running totals, as the destination counts them in one attempt.
///
/// They count the task, not the attempt: what an earlier attempt committed
/// or kept (the destination's journal says so) counts as transferred
/// again in every later one, so an attempt's last counters are the task's
/// and nothing adds up twice across attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounters {
    /// Files seen in the source.
    pub files: u64,
    /// Files this task committed at the destination (in any attempt).
    pub files_transferred: u64,
    /// Files not sent: already there per the sync level.
    pub files_skipped: u64,
    /// Bytes this task moved into files (each byte once; see `bytes_resent`).
    pub bytes_transferred: u64,
    /// Bytes of the files seen in the source (final once `walk_done`).
    #[serde(default)]
    pub bytes: u64,
    /// Bytes of the files skipped (already there): with
    /// `bytes_transferred`, what of `bytes` is done.
    #[serde(default)]
    pub bytes_skipped: u64,
    /// Bytes that arrived more than once (a file sent again after it
    /// failed verification, or after it changed at the source).
    #[serde(default)]
    pub bytes_resent: u64,
    /// The source has walked every item: `files` and `bytes` are totals.
    #[serde(default)]
    pub walk_done: bool,
}

impl TaskCounters {
    /// The furthest of two views of the same task (two attempts' last
    /// counters, say): each counter at its largest.
    pub fn furthest(self, other: TaskCounters) -> TaskCounters {
        TaskCounters {
            files: self.files.max(other.files),
            files_transferred: self.files_transferred.max(other.files_transferred),
            files_skipped: self.files_skipped.max(other.files_skipped),
            bytes_transferred: self.bytes_transferred.max(other.bytes_transferred),
            bytes: self.bytes.max(other.bytes),
            bytes_skipped: self.bytes_skipped.max(other.bytes_skipped),
            bytes_resent: self.bytes_resent.max(other.bytes_resent),
            walk_done: self.walk_done || other.walk_done,
        }
    }
}

/// What an endpoint reports about a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskReport {
    /// Data is flowing (destination).
    Started,
    Progress {
        counters: TaskCounters,
    },
    /// A source entry was not transferred (a symlink, a FIFO, unreadable).
    Skipped {
        path: WirePath,
        reason: String,
    },
    /// A file's content did not verify and is being sent again.
    Resent {
        path: WirePath,
        reason: String,
    },
    /// Something went wrong that a later attempt may get past.
    Fault {
        message: String,
        /// Where it happened, when the reporter knows: the hub names that
        /// endpoint instead of the reporter (a destination relays the
        /// source's abort). Absent from older endpoints.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "lenient_side"
        )]
        side: Option<Side>,
    },
    /// Every file is committed and verified (destination).
    Succeeded {
        counters: TaskCounters,
    },
    /// Something no retry will fix.
    Failed {
        message: String,
        /// As for [`TaskReport::Fault`].
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "lenient_side"
        )]
        side: Option<Side>,
    },
    /// `--delete` removed an entry the source does not have (destination;
    /// one report per file or directory, a directory's contents first).
    Deleted {
        path: WirePath,
    },
    /// The task's `--on-success` hook ran (destination, after
    /// `succeeded`; at most once per task): how it ended and its last
    /// lines of output. An older hub ignores it.
    Hook {
        name: String,
        ended: HookEnd,
        /// Its last lines of output (stdout and stderr as they came),
        /// oldest first; at most [`MAX_HOOK_LINES`] of at most
        /// [`MAX_HOOK_LINE`] bytes each.
        #[serde(default)]
        output: Vec<String>,
    },
    /// A kind of report this build does not know (from a newer endpoint):
    /// ignored rather than a broken control link.
    #[serde(other)]
    Unknown,
}

/// Most output lines a hook report carries.
pub const MAX_HOOK_LINES: usize = 20;
/// Longest output line a hook report carries, in bytes.
pub const MAX_HOOK_LINE: usize = 512;

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum HookEnd {
    Exited {
        code: i32,
    },
    /// Killed by a signal it did not catch.
    Signaled {
        signal: i32,
    },
    /// Ran past its `timeout` and was killed (its process group).
    TimedOut {
        after_secs: u64,
    },
    /// It could not be started, or the endpoint has no such hook.
    NotRun {
        reason: String,
    },
    #[serde(other)]
    Unknown,
}

impl HookEnd {
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

impl std::fmt::Display for HookEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with status {code}"),
            Self::Signaled { signal } => write!(f, "was killed by signal {signal}"),
            Self::TimedOut { after_secs } => {
                write!(f, "timed out after {after_secs}s and was killed")
            }
            Self::NotRun { reason } => write!(f, "did not run: {reason}"),
            Self::Unknown => f.write_str("ended"),
        }
    }
}

/// Which endpoint of a transfer something happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Destination,
}

/// A side from the wire; one this version does not know (a newer peer's)
/// is as good as none: the message is still shown, as its reporter's.
pub(crate) fn lenient_side<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Side>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// An algorithm from a hub's answer; one this version does not know is as
/// good as none.
fn lenient_algorithm<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ChecksumAlgorithm>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

// --- The tasks REST API (`/api/v1/tasks`) ---

/// Most items one task may list (a `--batch` file's lines).
pub const MAX_TASK_ITEMS: usize = 10_000;
/// Longest path in an item, in bytes (PATH_MAX).
pub const MAX_ITEM_PATH: usize = 4096;
/// Longest task label, in bytes.
pub const MAX_LABEL: usize = 256;

/// `POST /api/v1/tasks`: both endpoints by id or by the caller's display
/// name for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SubmitTask {
    pub source_endpoint: String,
    pub destination_endpoint: String,
    pub items: Vec<TransferItem>,
    #[serde(default)]
    pub options: TransferOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Unix seconds; an ACTIVE task still running then fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// Which ends to e-mail the submitter about (`--notify`); absent:
    /// succeeded and failed. The hub's business alone: it never reaches
    /// an endpoint, so no capability carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyEvents>,
    /// A UUID the client made (or got from `GET /api/v1/submission_id`):
    /// the same one again, from the same user, answers the task it made
    /// instead of making another, so a retry after a lost answer is safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
}

/// `GET /api/v1/submission_id`: a fresh id for [`SubmitTask::submission_id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SubmissionId {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SubmittedTask {
    pub task_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TaskStatus {
    Active,
    Succeeded,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(Self::Active),
            "SUCCEEDED" => Some(Self::Succeeded),
            "FAILED" => Some(Self::Failed),
            "CANCELED" => Some(Self::Canceled),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Active)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn one_node() -> u32 {
    1
}

/// `GET /api/v1/tasks/{id}` (and each entry of the list).
///
/// The counters are the task's (see [`TaskCounters`]), the most any
/// attempt reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskInfo {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(default)]
    pub label: Option<String>,
    pub source_endpoint: String,
    pub source_endpoint_name: String,
    pub destination_endpoint: String,
    pub destination_endpoint_name: String,
    pub files: u64,
    pub files_transferred: u64,
    pub files_skipped: u64,
    pub bytes_transferred: u64,
    /// Bytes of the files seen in the source.
    #[serde(default)]
    pub bytes: u64,
    /// Bytes of the skipped files (already there).
    #[serde(default)]
    pub bytes_skipped: u64,
    #[serde(default)]
    pub bytes_resent: u64,
    /// Encrypted bytes the hub's relay carried for this task (both ways,
    /// all attempts): nonzero only when its endpoints could not connect
    /// directly. Absent from an older hub.
    #[serde(default)]
    pub bytes_relayed: u64,
    /// `files` and `bytes` are totals (the source walked every item);
    /// until then they count what was seen so far.
    #[serde(default)]
    pub walk_done: bool,
    pub faults: u64,
    /// How many times the hub started the data work.
    pub attempt: u32,
    /// Over how many nodes (machines) of each endpoint the latest attempt
    /// was spread: 1 when one machine of each moved it all (and from an
    /// older hub).
    #[serde(default = "one_node")]
    pub nodes: u32,
    /// How many items (source/destination pairs) the task lists.
    pub item_count: u64,
    /// The task's digest algorithm (endpoints of an older release hash
    /// with SHA-256 whatever it says). Absent from an older hub; one this
    /// build does not know (a newer hub's) reads as absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_algorithm"
    )]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// The destination's hook the task runs once its files landed
    /// (`--on-success`); absent when none (and from an older hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// `--include`/`--exclude`, in order: in one task's answer (`task
    /// show`), never in lists; absent when the task has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterRule>,
    /// `--bwlimit`, bytes per second: as `filters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// Unix seconds.
    pub created: i64,
    #[serde(default)]
    pub completed: Option<i64>,
    #[serde(default)]
    pub deadline: Option<i64>,
    #[serde(default)]
    pub last_fault: Option<String>,
    /// Why a FAILED task failed.
    #[serde(default)]
    pub fatal_error: Option<String>,
    /// Why an ACTIVE task is not moving data now, e.g. an endpoint is offline.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// What the task copies: each item's source path (on the source
    /// endpoint) and destination path (on the destination endpoint). Only
    /// when asked for (`?items=true`): a batch may list many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<TransferItem>>,
}

/// One entry of `GET /api/v1/tasks/{id}/events`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskEvent {
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// A stable word: SUBMITTED, STARTED, TRANSFERRING, FAULT,
    /// ENDPOINT_OFFLINE, SKIPPED, RESENT, DELETED, SUCCEEDED, FAILED, CANCELED,
    /// ...
    pub code: String,
    pub is_error: bool,
    pub description: String,
}

/// Shortest interval a timer may have, in seconds.
pub const MIN_TIMER_INTERVAL: i64 = 3;
/// Longest interval a timer may have, in seconds (a year).
pub const MAX_TIMER_INTERVAL: i64 = 366 * 86_400;

/// `POST /api/v1/timers`: a recurring transfer. Each run submits
/// `transfer` as a task of its own (its `deadline` must be absent:
/// `run_deadline` gives each run's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateTimer {
    pub transfer: SubmitTask,
    /// Seconds between runs ([`MIN_TIMER_INTERVAL`]..=[`MAX_TIMER_INTERVAL`]).
    pub interval: i64,
    /// Unix seconds of the first run; now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// The timer ends after this many runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_runs: Option<u64>,
    /// The timer ends before the first run due after this (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_date: Option<i64>,
    /// Each run's task fails if it has not completed this many seconds
    /// after it was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_deadline: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedTimer {
    pub id: String,
}

/// A timer, as `GET /api/v1/timers[/{id}]` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TimerInfo {
    pub id: String,
    /// Seconds between runs.
    pub interval: i64,
    /// Unix seconds of the next due run; absent once finished.
    pub next_run: Option<i64>,
    /// Runs that made a task.
    pub runs: u64,
    /// The newest run's task.
    pub last_task_id: Option<String>,
    /// `active` or `finished`.
    pub status: String,
    /// Due times passed over because the previous run was still ACTIVE.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub label: Option<String>,
    pub source_endpoint: String,
    pub destination_endpoint: String,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub stop_after_runs: Option<u64>,
    #[serde(default)]
    pub stop_after_date: Option<i64>,
    #[serde(default)]
    pub created: i64,
    /// The latest events (runs, skips, refusals, its end), oldest first;
    /// only when one timer is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<TaskEvent>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_entries_the_same_everywhere_and_cover_each_once() {
        // Fixed values: the definition, not this build's hasher.
        assert_eq!(shard_of(0, b"", 7), shard_of(0, b"", 7));
        assert_eq!(shard_of(0, b"a", 1), 0);
        let fnv = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        let mut input = 3u64.to_le_bytes().to_vec();
        input.extend_from_slice(b"dir/f\xff");
        assert_eq!(u64::from(shard_of(3, b"dir/f\xff", 5)), fnv(&input) % 5);
        let mut per = [0u32; 3];
        for n in 0..300 {
            let rel = format!("d/file-{n}");
            let owners: Vec<u32> = (0..3)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: 3,
                        split: false,
                        large: false,
                    }
                    .holds(0, rel.as_bytes())
                })
                .collect();
            assert_eq!(owners.len(), 1, "{rel}");
            per[owners[0] as usize] += 1;
        }
        assert!(per.iter().all(|n| *n > 50), "{per:?}");
        assert!(
            Shard {
                index: 0,
                count: 1,
                split: false,
                large: false,
            }
            .holds(9, b"x")
        );
    }

    #[test]
    fn a_split_files_chunks_are_cut_into_contiguous_disjoint_ranges_covering_all() {
        assert_eq!(chunk_range(0, 2, 10), 0..5);
        assert_eq!(chunk_range(1, 2, 10), 5..10);
        assert_eq!(chunk_range(0, 3, 10), 0..4);
        assert_eq!(chunk_range(1, 3, 10), 4..7);
        assert_eq!(chunk_range(2, 3, 10), 7..10);
        assert_eq!(chunk_range(3, 3, 10), 0..0, "no such shard");
        assert_eq!(chunk_range(0, 0, 10), 0..0);
        assert_eq!(chunk_range(1, 4, 2), 1..2);
        assert_eq!(chunk_range(3, 4, 2), 2..2);
        for count in 1..9u32 {
            for chunks in 0..70u64 {
                let mut next = 0u32;
                let mut lens = Vec::new();
                for index in 0..count {
                    let r = chunk_range(index, count, chunks);
                    assert_eq!(r.start, next, "{index}/{count} of {chunks}");
                    next = r.end;
                    lens.push(r.len());
                }
                assert_eq!(u64::from(next), chunks, "{count} cover {chunks}");
                let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(max - min <= 1, "{lens:?}");
            }
        }
    }

    #[test]
    fn only_a_large_file_of_a_splitting_shard_is_split() {
        use crate::data::CHUNK_SIZE;
        let shard = |index, count, split| Shard {
            index,
            count,
            split,
            large: false,
        };
        // Two shards: four chunks is the least that is split.
        let just = 3 * CHUNK_SIZE + 1;
        assert!(shard(0, 2, true).splits(just));
        assert!(!shard(0, 2, true).splits(3 * CHUNK_SIZE));
        assert!(!shard(0, 2, false).splits(just), "an older hub's shard");
        assert!(!shard(0, 1, true).splits(1 << 30));
        assert!(shard(1, 2, true).splits(MAX_SPLIT_CHUNKS * CHUNK_SIZE));
        assert!(!shard(1, 2, true).splits(MAX_SPLIT_CHUNKS * CHUNK_SIZE + 1));
        // Larger ones only where every node agreed to cut them.
        let large = Shard {
            large: true,
            ..shard(1, 2, true)
        };
        assert!(large.splits(MAX_SPLIT_CHUNKS * CHUNK_SIZE + 1));
        assert!(large.splits(MAX_SPLIT_CHUNKS_LARGE * CHUNK_SIZE));
        assert!(!large.splits(MAX_SPLIT_CHUNKS_LARGE * CHUNK_SIZE + 1));
        assert!(
            !Shard {
                split: false,
                ..large
            }
            .splits(1 << 40)
        );
        // The largest part of the largest, named chunk by chunk, fits a
        // message four times over.
        let chunks = MAX_SPLIT_CHUNKS_LARGE as u32;
        let part = crate::data::Need::Send {
            missing: crate::data::ChunkSet::Only(chunk_range(1, 2, chunks.into()).collect()),
        };
        assert!(part.encoded_len_bound() <= crate::data::MAX_MESSAGE / 4);
        assert_eq!(shard(0, 2, true).part(0, b"f", just), Part::Chunks(0..2));
        assert_eq!(shard(1, 2, true).part(0, b"f", just), Part::Chunks(2..4));
        assert_eq!(chunks_of(0), 0);
        assert_eq!(chunks_of(1), 1);
        assert_eq!(chunks_of(CHUNK_SIZE), 1);
        // A small file stays whole with the one shard that holds it.
        let owner = shard_of(0, b"f", 2);
        for index in 0..2 {
            let want = if index == owner {
                Part::Whole
            } else {
                Part::None
            };
            assert_eq!(shard(index, 2, true).part(0, b"f", 10), want);
        }
        // What an older hub's capability carries reads as unsplit, and
        // an unsplit shard is written as an older endpoint reads it.
        let older: Shard = serde_json::from_str(r#"{"index":1,"count":2}"#).unwrap();
        assert_eq!(older, shard(1, 2, false));
        assert_eq!(
            serde_json::to_string(&shard(1, 2, false)).unwrap(),
            r#"{"index":1,"count":2}"#
        );
    }

    #[test]
    fn a_split_part_matches_only_its_attempt_shard_and_file() {
        let part = SplitPart {
            task_id: "t".into(),
            attempt: 3,
            shard: 1,
            count: 2,
            size: 10 * crate::data::CHUNK_SIZE,
            mtime_ns: 7,
            digests: vec!["00".into(); 5],
        };
        let size = 10 * crate::data::CHUNK_SIZE;
        assert!(part.matches("t", 3, 1, 2, size, 7));
        assert!(!part.matches("u", 3, 1, 2, size, 7));
        assert!(!part.matches("t", 2, 1, 2, size, 7), "an older attempt's");
        assert!(!part.matches("t", 3, 0, 2, size, 7));
        assert!(!part.matches("t", 3, 1, 3, size, 7));
        assert!(!part.matches("t", 3, 1, 2, size + 1, 7), "another size");
        assert!(!part.matches("t", 3, 1, 2, size, 8), "another mtime");
        let short = SplitPart {
            digests: vec!["00".into(); 4],
            ..part.clone()
        };
        assert!(!short.matches("t", 3, 1, 2, size, 7), "a chunk missing");
        let text = serde_json::to_vec(&part).unwrap();
        assert!(text.len() as u64 <= SplitPart::max_len(size));
    }

    #[test]
    fn task_bodies_keep_their_wire_spelling() {
        let submit: SubmitTask = serde_json::from_str(
            r#"{"source_endpoint":"a","destination_endpoint":"b","items":[{"source":"/x","destination":"/~/y","recursive":false}]}"#,
        )
        .unwrap();
        assert_eq!(submit.options, TransferOptions::default());
        assert_eq!(submit.deadline, None);
        assert_eq!(
            serde_json::to_string(&TaskStatus::Canceled).unwrap(),
            "\"CANCELED\""
        );
        for s in ["ACTIVE", "SUCCEEDED", "FAILED", "CANCELED"] {
            assert_eq!(TaskStatus::parse(s).unwrap().as_str(), s);
        }
        let bad = serde_json::from_str::<TransferOptions>(
            r#"{"sync_level":"fast","delete":false,"preserve_mtime":true,"preserve_mode":true,"skip_source_errors":false,"streams":null}"#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn reports_name_their_side_and_older_or_newer_peers_still_parse() {
        let failed = TaskReport::Failed {
            message: "cannot stat /x: no such file or directory".into(),
            side: Some(Side::Source),
        };
        let text = serde_json::to_string(&failed).unwrap();
        assert!(text.contains(r#""side":"source""#), "{text}");
        assert_eq!(serde_json::from_str::<TaskReport>(&text).unwrap(), failed);
        let older = r#"{"kind":"failed","message":"m"}"#;
        assert_eq!(
            serde_json::from_str::<TaskReport>(older).unwrap(),
            TaskReport::Failed {
                message: "m".into(),
                side: None
            }
        );
        let unknown_side = r#"{"kind":"fault","message":"m","side":"relay"}"#;
        assert!(matches!(
            serde_json::from_str::<TaskReport>(unknown_side).unwrap(),
            TaskReport::Fault { side: None, .. }
        ));
        let newer = r#"{"kind":"renamed","from":"a","to":"b"}"#;
        assert_eq!(
            serde_json::from_str::<TaskReport>(newer).unwrap(),
            TaskReport::Unknown
        );
        let deleted = TaskReport::Deleted {
            path: WirePath::from_bytes("/d/stale"),
        };
        let text = serde_json::to_string(&deleted).unwrap();
        assert!(text.contains(r#""kind":"deleted""#), "{text}");
        assert_eq!(serde_json::from_str::<TaskReport>(&text).unwrap(), deleted);
    }

    #[test]
    fn sealed_capabilities_open_to_the_same_bytes() {
        let cap = Capability {
            task_id: "t".into(),
            attempt: 1,
            source_endpoint: "a".into(),
            destination_endpoint: "b".into(),
            items: vec![TransferItem {
                source: WirePath::from_bytes("/x"),
                destination: WirePath::from_bytes("/y"),
                recursive: true,
            }],
            options: TransferOptions::default(),
            issued: 1,
            expires: 2,
            source_grant: None,
            destination_grant: None,
            label: None,
            shard: None,
        };
        let body = cap.body();
        let sealed = Capability::seal(&body, b"sig");
        let (b, s) = Capability::open(&sealed).unwrap();
        assert_eq!((b.as_slice(), s.as_slice()), (body.as_slice(), &b"sig"[..]));
        assert_eq!(Capability::parse_verified(&b).unwrap(), cap);
        assert_eq!(Capability::open("nodot"), Err(CapabilityError::Malformed));
        assert_eq!(
            Capability::open(&"a".repeat(MAX_CAPABILITY + 1)),
            Err(CapabilityError::TooLarge)
        );
    }

    #[test]
    fn an_absent_checksum_algorithm_means_sha256_and_an_unknown_one_is_refused() {
        // What an older CLI submits, and an older hub signs or stored.
        let older = r#"{"sync_level":"checksum","delete":false,"preserve_mtime":true,"preserve_mode":true,"skip_source_errors":false,"streams":null}"#;
        let options: TransferOptions = serde_json::from_str(older).unwrap();
        assert_eq!(options.checksum_algorithm, ChecksumAlgorithm::Sha256);
        assert_eq!(
            TransferOptions::default().checksum_algorithm,
            ChecksumAlgorithm::Sha256
        );
        let newer = TransferOptions {
            checksum_algorithm: ChecksumAlgorithm::Blake3,
            ..TransferOptions::default()
        };
        let text = serde_json::to_string(&newer).unwrap();
        assert!(text.contains(r#""checksum_algorithm":"blake3""#), "{text}");
        assert_eq!(
            serde_json::from_str::<TransferOptions>(&text).unwrap(),
            newer
        );
        let unknown = r#"{"checksum_algorithm":"md5"}"#;
        assert!(serde_json::from_str::<TransferOptions>(unknown).is_err());
        for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Blake3] {
            assert_eq!(
                serde_json::to_string(&algorithm).unwrap(),
                format!("\"{algorithm}\"")
            );
            assert_eq!(
                ChecksumAlgorithm::parse(algorithm.as_str()),
                Some(algorithm)
            );
        }
        assert_eq!(ChecksumAlgorithm::parse("SHA-256"), None);
        assert_eq!(ChecksumAlgorithm::PREFERRED, ChecksumAlgorithm::Blake3);
    }

    #[test]
    fn a_hook_travels_by_name_only_and_its_report_round_trips() {
        let plain = serde_json::to_string(&TransferOptions::default()).unwrap();
        assert!(!plain.contains("on_success"), "{plain}");
        let hooked = TransferOptions {
            on_success: Some("slurm".into()),
            ..TransferOptions::default()
        };
        let text = serde_json::to_string(&hooked).unwrap();
        assert!(text.contains(r#""on_success":"slurm""#), "{text}");
        assert_eq!(
            serde_json::from_str::<TransferOptions>(&text).unwrap(),
            hooked
        );
        for good in ["a", "submit-job", "Run_2", &"x".repeat(MAX_HOOK_NAME)] {
            assert!(check_hook_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "../x",
            &"x".repeat(MAX_HOOK_NAME + 1),
            "é",
            "a\n",
        ] {
            assert!(check_hook_name(bad).is_err(), "{bad:?}");
        }
        let report = TaskReport::Hook {
            name: "slurm".into(),
            ended: HookEnd::Exited { code: 3 },
            output: vec!["12".into()],
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<TaskReport>(&text).unwrap(), report);
        let newer = r#"{"kind":"hook","name":"x","ended":{"how":"vanished"}}"#;
        assert!(matches!(
            serde_json::from_str::<TaskReport>(newer).unwrap(),
            TaskReport::Hook {
                ended: HookEnd::Unknown,
                ..
            }
        ));
        assert!(HookEnd::Exited { code: 0 }.succeeded());
        assert_eq!(
            HookEnd::TimedOut { after_secs: 2 }.to_string(),
            "timed out after 2s and was killed"
        );
    }

    #[test]
    fn sync_levels_parse_by_name_and_number() {
        assert_eq!(SyncLevel::parse("checksum"), Some(SyncLevel::Checksum));
        assert_eq!(SyncLevel::parse("1"), Some(SyncLevel::Size));
        assert_eq!(SyncLevel::parse("fast"), None);
    }
}
