//! The data channel between two endpoints: a few TLS streams per task
//! attempt. Stream 0 carries the conversation (manifest, needs, summary) as
//! JSON frames; every stream carries file data as binary frames.
//!
//! Frame: `u32 length (big-endian) | u8 type | body`. The length counts the
//! type byte and the body and is checked against the reader's maximum
//! before any body byte is buffered: [`MAX_HANDSHAKE_FRAME`] (or, for an
//! `Open` carrying a large capability, [`MAX_OPEN_FRAME`]) until the
//! stream is authorised, [`MAX_AUTHORISED_FRAME`] after.
//!
//! Liveness (version 2): a side that has written nothing on a stream for
//! [`KEEP_ALIVE_EVERY`] writes a keep-alive frame on it (type
//! [`FRAME_KEEP_ALIVE`], no body), so a peer that is merely busy (hashing
//! a large file, committing a batch, reading a slow disk) is still heard.
//! Any byte from the peer is life; a side that waits [`IDLE_LIMIT`] for
//! one in vain ends the attempt as a fault to retry later, and so does
//! the destination when nothing it writes can leave for as long (the
//! source always reads its stream 0). The timers live in the mover.
//!
//! Protocol versions (one number, dated history), settled per stream by
//! TLS's ALPN ([`ALPN_PROTOCOLS`], newest first: the destination takes
//! the newest both speak, and an older peer is never sent what it does not
//! know; its `decode` refuses an unknown frame type):
//! - 1 (2026-11, `ferry-data/1`): `Open`/`Accepted`/`Refused`, the
//!   conversation, chunks. Later additions within 1, optional on the wire:
//!   the `Abort`'s `disposition` (2026-11-29), its `side` (2026-11-29)
//!   and `stopped` (an older peer takes such an abort for a fault to
//!   retry later, as it did).
//! - 2 (2026-11-29, `ferry-data/2`): keep-alive frames and the idle
//!   deadline. With a peer that speaks only 1, neither is used (a stall
//!   then waits, as it did).
//! - 3 (2026-12, `ferry-data/3`): the peer honours a capability's
//!   `filters` (a source walks only what they include, a destination's
//!   `--delete` spares what they exclude), and digests by the task's
//!   algorithm (`checksum_algorithm`). A task with filters is refused on a
//!   stream that settled on less, by either side ([`honours_filters`]): an
//!   older source would send everything, an older destination delete what
//!   was excluded. A peer that speaks only 1 or 2 hashes with SHA-256
//!   whatever the capability says, so with one both sides do
//!   ([`digest_algorithm`]): the transfer works and is verified, with
//!   SHA-256.
//! - 4 (2026-12, `ferry-data/4`): a resuming destination may answer
//!   [`Need::SendUnlessHeld`] for a file whose kept temporary holds chunks
//!   no journal vouches for (written just before a crash): their digests
//!   by the attempt's algorithm, re-hashed from its disk. The source sends
//!   those whose digest differs from its own as it sends missing ones, and
//!   names them in the file's `FileDone` (`rejected`); the others count as
//!   held, and the file's digest still checks every chunk. With a source
//!   that speaks only 3 or less, the destination sends such chunks again,
//!   as it did ([`rehashes_held_chunks`]).
//! - 5 (2026-12, `ferry-data/5`): an `Open`'s `streams` is the most the
//!   source will open, not how many: it may open more streams of the
//!   attempt while it runs, as its measured throughput asks
//!   ([`grows_streams`]). The destination takes any that come, up to
//!   that number, and judges the source gone once every stream it opened
//!   has closed. With a destination that speaks only 4 or less, the
//!   source opens every stream it names at the start, as it did.
//! - 6 (2026-12, `ferry-data/6`): at `--sync-level checksum` the
//!   destination names the files whose copies it is about to hash
//!   ([`Message::Comparing`]) before it hashes them, so the source hashes
//!   its own meanwhile and both ends hash at once; its `Needs` follow as
//!   before ([`announces_comparisons`]). With a source that speaks only 5
//!   or less, nothing is announced and the ends hash one after the other,
//!   as they did.

use crate::task::{ChecksumAlgorithm, Side, TaskCounters};
use crate::wire_path::WirePath;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Files are hashed in chunks of this size: a file's digest is the task's
/// algorithm (SHA-256 or BLAKE3) over the concatenated digests, by the
/// same algorithm, of its chunks (the last one may be shorter; an empty
/// file has no chunks). Fixed: it defines the digest.
pub const CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// A chunk frame: type, file id, index, hash, data.
pub const MAX_FRAME: usize = CHUNK_SIZE as usize + 64;
/// Largest JSON message (a manifest batch or a needs batch).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Largest frame of an authorised stream.
pub const MAX_AUTHORISED_FRAME: usize = if MAX_FRAME > MAX_MESSAGE + 1 {
    MAX_FRAME
} else {
    MAX_MESSAGE + 1
};
/// Largest frame before a stream is authorised (its `Open`, or the answer
/// to one): an `Open` with an everyday capability fits many times over.
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;
/// Largest `Open` at all: one carrying the largest capability (a `--batch`
/// task lists its items), with room for the rest of the message. Readers
/// accept one above [`MAX_HANDSHAKE_FRAME`] only within a budget they keep.
pub const MAX_OPEN_FRAME: usize = crate::task::MAX_CAPABILITY + 1024;
/// The newest data protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 6;
/// The oldest version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The ALPN ids of data connections, newest first: the version a stream
/// speaks is the one TLS settled ([`negotiated_version`]).
pub const ALPN_PROTOCOLS: &[&[u8]] = &[
    b"ferry-data/6",
    b"ferry-data/5",
    b"ferry-data/4",
    b"ferry-data/3",
    b"ferry-data/2",
    b"ferry-data/1",
];

/// The version a stream speaks, from the ALPN id its TLS handshake settled
/// (none: version 1, which did not look). `None` for an id this build
/// does not speak.
pub fn negotiated_version(alpn: Option<&[u8]>) -> Option<u32> {
    let Some(alpn) = alpn else {
        return Some(MIN_PROTOCOL_VERSION);
    };
    let version = std::str::from_utf8(alpn.strip_prefix(b"ferry-data/")?)
        .ok()?
        .parse::<u32>()
        .ok()?;
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION)
        .contains(&version)
        .then_some(version)
}

/// Whether a stream of `version` carries keep-alives and is held to
/// [`IDLE_LIMIT`].
pub fn keeps_alive(version: u32) -> bool {
    version >= 2
}

/// Whether a source on a stream of `version` answers
/// [`Need::SendUnlessHeld`] (and says in `FileDone` which chunks it sent).
pub fn rehashes_held_chunks(version: u32) -> bool {
    version >= 4
}

/// Whether a source on a stream of `version` may open more streams of
/// the attempt while it runs, up to its `Open`'s `streams`.
pub fn grows_streams(version: u32) -> bool {
    version >= 5
}

/// Whether a destination on a stream of `version` announces the files it
/// is about to hash to compare ([`Message::Comparing`]): only a source of
/// 6 or later knows the message.
pub fn announces_comparisons(version: u32) -> bool {
    version >= 6
}

/// Most chunk digests one [`Need::SendUnlessHeld`] carries (1 GiB of
/// chunks, far more than a crash leaves unjournaled between two
/// checkpoints): a larger answer would not fit a message.
pub const MAX_HELD: usize = 256;

/// Whether a peer on a stream of `version` honours a capability's filters.
pub fn honours_filters(version: u32) -> bool {
    version >= 3
}

/// The algorithm an attempt's chunk and file digests are made with, on a
/// stream of `version`: the task's from version 3 on; before, SHA-256 (a
/// peer of version 1 or 2 knows no other). Both sides settle the same
/// version, so they hash alike; and whichever it is, every byte is
/// verified.
pub fn digest_algorithm(requested: ChecksumAlgorithm, version: u32) -> ChecksumAlgorithm {
    if version >= 3 {
        requested
    } else {
        ChecksumAlgorithm::Sha256
    }
}

/// A side writes a keep-alive on a stream it has written nothing on for
/// this long (version 2).
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(10);
/// A side that hears nothing from its peer on a stream it waits on for
/// this long (six keep-alives missed), or cannot write anything for as
/// long where the peer always reads, ends the attempt (version 2).
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

pub const FRAME_MESSAGE: u8 = 1;
pub const FRAME_CHUNK: u8 = 2;
/// Version 2: nothing but "still here"; no body.
pub const FRAME_KEEP_ALIVE: u8 = 3;
/// A keep-alive frame as it goes on the wire.
pub const KEEP_ALIVE: [u8; 5] = [0, 0, 0, 1, FRAME_KEEP_ALIVE];

/// The first message on every stream, from the connecting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub capability: String,
    /// This stream's index; 0 carries the conversation.
    pub stream: u16,
    pub streams: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
}

/// One source entry, named relative to its transfer item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub item: u32,
    /// Relative to the item's destination; empty for the item itself.
    pub path: WirePath,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
}

/// What the destination wants done with one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "need", rename_all = "snake_case")]
pub enum Need {
    /// Already there (per the sync level, or committed by an earlier attempt).
    Skip,
    /// Send these chunks (all of them unless a partial file was kept).
    Send { missing: ChunkSet },
    /// Send only if the source's digest differs from this one.
    SendUnlessDigest { digest: String },
    /// Send the `missing` chunks, and of the `held` ones (index, hex
    /// digest of what the destination's temporary holds) those whose
    /// digest differs from the source's; `FileDone` names the latter
    /// (version 4, at most [`MAX_HELD`]).
    SendUnlessHeld {
        missing: ChunkSet,
        held: Vec<(u32, String)>,
    },
}

/// Which chunks of a file: all, or an explicit list of indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkSet {
    All,
    Only(Vec<u32>),
}

impl Need {
    /// At least as many bytes as this need takes in a `Needs` message's
    /// JSON (with its file id), for [`needs_messages`] to keep each
    /// message within [`MAX_MESSAGE`].
    pub fn encoded_len_bound(&self) -> usize {
        // An index: its digits and a comma.
        fn listed(set: &ChunkSet) -> usize {
            match set {
                ChunkSet::All => 8,
                ChunkSet::Only(list) => {
                    16 + list.iter().map(|i| decimal_digits(*i) + 1).sum::<usize>()
                }
            }
        }
        64 + match self {
            Need::Skip => 8,
            Need::Send { missing } => listed(missing),
            Need::SendUnlessDigest { digest } => 32 + digest.len(),
            Need::SendUnlessHeld { missing, held } => {
                listed(missing)
                    + 16
                    + held
                        .iter()
                        .map(|(i, d)| decimal_digits(*i) + d.len() + 8)
                        .sum::<usize>()
            }
        }
    }
}

fn decimal_digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Most bytes of needs [`needs_messages`] puts in one message: half of
/// [`MAX_MESSAGE`], for the margin its estimate leaves.
pub const NEEDS_PER_MESSAGE: usize = MAX_MESSAGE / 2;

/// A destination's needs, in order, as `Needs` messages of at most
/// [`NEEDS_PER_MESSAGE`] bytes each (a need larger than that alone in one):
/// a batch of large files resumed, or the parts of large split files,
/// name many chunks each, and one message must stay within
/// [`MAX_MESSAGE`]. A source takes each need as it comes, whatever message
/// it came in.
pub fn needs_messages(needs: Vec<(u64, Need)>) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut current: Vec<(u64, Need)> = Vec::new();
    let mut bytes = 0usize;
    for (id, need) in needs {
        let len = need.encoded_len_bound();
        if !current.is_empty() && bytes + len > NEEDS_PER_MESSAGE {
            messages.push(Message::Needs {
                needs: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += len;
        current.push((id, need));
    }
    if !current.is_empty() {
        messages.push(Message::Needs { needs: current });
    }
    messages
}

/// Conversation messages (stream 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Source → destination, first on every stream.
    Open(Open),
    /// Destination → source, once per stream: the stream is accepted.
    Accepted,
    /// Destination → source: the stream is refused, and why.
    Refused { reason: String },
    /// Source → destination: entries in walk order.
    Manifest { entries: Vec<Entry> },
    /// Destination → source.
    Needs { needs: Vec<(u64, Need)> },
    /// Destination → source (version 6): the destination is hashing its
    /// copies of these offered files to compare them (`--sync-level
    /// checksum`), and its `Needs` for them follow; the source may hash its
    /// own meanwhile. At most one manifest batch's files; an id the
    /// source did not offer, or names twice, means nothing.
    Comparing { ids: Vec<u64> },
    /// Source → destination: a file's content is as the destination has it.
    Unchanged { id: u64 },
    /// Source → destination: all chunks of a file were sent; its digest.
    FileDone {
        id: u64,
        digest: String,
        /// Chunks the destination said it held that differ from the
        /// source's, sent with the missing ones (version 4; absent: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rejected: Vec<u32>,
    },
    /// Source → destination: the file changed while being read; discard it
    /// (it will be offered again).
    FileChanged { id: u64 },
    /// Source → destination: the manifest is complete; `files` entries in all.
    End { files: u64 },
    /// Destination → source: every file is committed; the attempt is over.
    Done { counters: TaskCounters },
    /// Either side: giving up on this attempt, why (for people), and what
    /// that means for the task (for both endpoints' reports to the hub).
    Abort {
        reason: String,
        /// Absent from an older peer's abort, and unknown to this version:
        /// [`Disposition::RetryLater`].
        #[serde(default, deserialize_with = "lenient_disposition")]
        disposition: Disposition,
        /// Where the failure happened, when the sender knows: the other
        /// endpoint's report then names that endpoint, as the sender's
        /// does. Absent from an older peer.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "crate::task::lenient_side"
        )]
        side: Option<Side>,
        /// Nothing failed: this side was told to stop the attempt (its
        /// endpoint paused, or the hub ended the attempt), and its hub
        /// knows. The peer ends its side without a report of its own, so a
        /// pause is not counted as a fault.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stopped: bool,
    },
}

/// What a failure in a transfer calls for. Decided where the failure
/// arises, by its kind (for an operating-system error, by its errno), and
/// never from its message.
///
/// Within an attempt the first three are handled where they arise; an
/// attempt that ends hands the hub only [`Disposition::RetryLater`] or
/// [`Disposition::FailTask`] (see [`Disposition::at_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Do the failed operation again at once (an interrupted system call).
    RetryChunk,
    /// Start the file over: a fresh temporary file, its data asked for
    /// again (an I/O error on the device); once, then retry later.
    RetryFile,
    /// End this attempt; the hub retries the task with backoff until its
    /// deadline (a full disk or quota, too many open files, a stale NFS
    /// handle, a lost connection).
    #[default]
    RetryLater,
    /// Leave this source entry out and report it: only with
    /// `--skip-source-errors`, for what would otherwise fail the task.
    SkipFile,
    /// End the task: no retry fixes it (permission, a read-only
    /// filesystem, a path the policy refuses, a missing source).
    FailTask,
}

impl Disposition {
    /// What an attempt that ends on a failure of this disposition asks of
    /// the hub: the task fails only for [`Disposition::FailTask`]; anything
    /// else (a retry within the attempt that did not help) is retried later.
    pub fn at_end(self) -> Disposition {
        match self {
            Disposition::FailTask => Disposition::FailTask,
            _ => Disposition::RetryLater,
        }
    }
}

/// A disposition from the wire; one this version does not know (a newer
/// peer's) is [`Disposition::RetryLater`], so the hub's deadline bounds it.
fn lenient_disposition<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Disposition, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DataError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("empty or truncated frame")]
    Truncated,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Message),
    Chunk(ChunkHeader, Vec<u8>),
    /// The peer is still there (version 2).
    KeepAlive,
}

/// Everything about a chunk but its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub file: u64,
    pub index: u32,
    /// The chunk's digest by the attempt's algorithm ([`digest_algorithm`]).
    pub digest: [u8; 32],
}

/// Bytes of a chunk frame's body before the chunk's data.
pub const CHUNK_HEADER: usize = 8 + 4 + 32;

impl ChunkHeader {
    pub fn from_bytes(bytes: &[u8; CHUNK_HEADER]) -> Self {
        let mut file = [0u8; 8];
        file.copy_from_slice(&bytes[..8]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[8..12]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[12..]);
        ChunkHeader {
            file: u64::from_be_bytes(file),
            index: u32::from_be_bytes(index),
            digest,
        }
    }
}

/// The length of a chunk's data in a chunk frame of `frame_len` bytes
/// (type byte included), if that is a possible chunk frame.
pub fn chunk_data_len(frame_len: usize) -> Result<usize, DataError> {
    frame_len
        .checked_sub(1 + CHUNK_HEADER)
        .filter(|len| *len as u64 <= CHUNK_SIZE)
        .ok_or(DataError::Truncated)
}

/// The 5-byte prefix and JSON body of a message frame.
pub fn encode_message(message: &Message) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(5 + body.len());
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(FRAME_MESSAGE);
    out.extend_from_slice(&body);
    out
}

/// The prefix of a chunk frame; the chunk's bytes follow it on the wire, so
/// data is never copied into a frame buffer.
pub fn chunk_prefix(header: &ChunkHeader, len: usize) -> [u8; 5 + CHUNK_HEADER] {
    let mut out = [0u8; 5 + CHUNK_HEADER];
    out[..4].copy_from_slice(&((1 + CHUNK_HEADER + len) as u32).to_be_bytes());
    out[4] = FRAME_CHUNK;
    out[5..13].copy_from_slice(&header.file.to_be_bytes());
    out[13..17].copy_from_slice(&header.index.to_be_bytes());
    out[17..49].copy_from_slice(&header.digest);
    out
}

/// Length of the frame (type byte + body) announced by a header, refused
/// above `max` ([`MAX_HANDSHAKE_FRAME`] before the stream is authorised,
/// [`MAX_AUTHORISED_FRAME`] after).
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, DataError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(DataError::Truncated);
    }
    if len > max {
        return Err(DataError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame's type byte and body (`frame` = what [`frame_len`] sized).
pub fn decode(mut frame: Vec<u8>) -> Result<Frame, DataError> {
    let Some(&kind) = frame.first() else {
        return Err(DataError::Truncated);
    };
    match kind {
        FRAME_MESSAGE => {
            if frame.len() - 1 > MAX_MESSAGE {
                return Err(DataError::TooLarge(frame.len()));
            }
            serde_json::from_slice(&frame[1..])
                .map(Frame::Message)
                .map_err(|e| DataError::Malformed(e.to_string()))
        }
        FRAME_CHUNK => {
            chunk_data_len(frame.len())?;
            let mut header = [0u8; CHUNK_HEADER];
            header.copy_from_slice(&frame[1..1 + CHUNK_HEADER]);
            frame.drain(..1 + CHUNK_HEADER);
            Ok(Frame::Chunk(ChunkHeader::from_bytes(&header), frame))
        }
        FRAME_KEEP_ALIVE if frame.len() == 1 => Ok(Frame::KeepAlive),
        FRAME_KEEP_ALIVE => Err(DataError::Malformed("a keep-alive carries no body".into())),
        other => Err(DataError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many chunks a batch's needs name, each message stays
    /// within the limit, and the needs arrive whole and in order.
    #[test]
    fn needs_go_in_as_many_messages_as_their_size_asks() {
        let part = |n: u32| Need::Send {
            missing: ChunkSet::Only((0..n).map(|i| i * 7 + 4_000_000_000).collect()),
        };
        let mut needs: Vec<(u64, Need)> = (0..40u64).map(|id| (id, part(65_536))).collect();
        needs.push((40, Need::Skip));
        needs.push((
            41,
            Need::SendUnlessHeld {
                missing: ChunkSet::All,
                held: (0..MAX_HELD as u32).map(|i| (i, "ab".repeat(32))).collect(),
            },
        ));
        let messages = needs_messages(needs.clone());
        assert!(messages.len() > 1, "{}", messages.len());
        let mut back = Vec::new();
        for message in messages {
            let encoded = encode_message(&message);
            assert!(encoded.len() <= MAX_MESSAGE, "{}", encoded.len());
            let Message::Needs { needs: part } = message else {
                panic!("{message:?}");
            };
            // The estimate bounds what JSON makes of them.
            let json = serde_json::to_vec(&part).unwrap().len();
            let bound: usize = part.iter().map(|(_, n)| n.encoded_len_bound()).sum();
            assert!(json <= bound, "{json} > {bound}");
            back.extend(part);
        }
        assert_eq!(back, needs);
        assert!(needs_messages(Vec::new()).is_empty());
        assert_eq!(needs_messages(vec![(1, Need::Skip)]).len(), 1);
    }
    use proptest::prelude::*;

    fn roundtrip(bytes: &[u8]) -> Frame {
        let len = frame_len(bytes[..4].try_into().unwrap(), MAX_AUTHORISED_FRAME).unwrap();
        assert_eq!(len, bytes.len() - 4);
        decode(bytes[4..].to_vec()).unwrap()
    }

    #[test]
    fn messages_and_chunks_round_trip() {
        let m = Message::Needs {
            needs: vec![
                (
                    3,
                    Need::Send {
                        missing: ChunkSet::Only(vec![1, 4]),
                    },
                ),
                (4, Need::Skip),
                (
                    5,
                    Need::SendUnlessHeld {
                        missing: ChunkSet::Only(vec![0]),
                        held: vec![(1, "ab".repeat(32))],
                    },
                ),
            ],
        };
        assert_eq!(roundtrip(&encode_message(&m)), Frame::Message(m));
        let m = Message::Comparing { ids: vec![5, 9] };
        let wire = encode_message(&m);
        assert!(String::from_utf8_lossy(&wire).contains(r#"{"type":"comparing","ids":[5,9]}"#));
        assert_eq!(roundtrip(&wire), Frame::Message(m));
        let header = ChunkHeader {
            file: 7,
            index: 2,
            digest: [9; 32],
        };
        let mut wire = chunk_prefix(&header, 3).to_vec();
        wire.extend_from_slice(b"abc");
        assert_eq!(roundtrip(&wire), Frame::Chunk(header, b"abc".to_vec()));
    }

    #[test]
    fn a_file_done_names_rejected_chunks_only_when_there_are_some() {
        // What a source of version 3 or older sends, and one with nothing
        // rejected: the same bytes, so either peer reads the other's.
        let older = br#"{"type":"file_done","id":1,"digest":"00"}"#;
        let done = Message::FileDone {
            id: 1,
            digest: "00".into(),
            rejected: Vec::new(),
        };
        assert_eq!(serde_json::to_vec(&done).unwrap(), older.to_vec());
        assert_eq!(serde_json::from_slice::<Message>(older).unwrap(), done);
        let rejected = Message::FileDone {
            id: 1,
            digest: "00".into(),
            rejected: vec![3, 9],
        };
        assert_eq!(
            roundtrip(&encode_message(&rejected)),
            Frame::Message(rejected)
        );
    }

    #[test]
    fn hostile_frames_are_refused() {
        assert_eq!(
            frame_len([0xff; 4], MAX_AUTHORISED_FRAME),
            Err(DataError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            frame_len([0; 4], MAX_AUTHORISED_FRAME),
            Err(DataError::Truncated)
        );
        assert_eq!(decode(vec![9, 1, 2]), Err(DataError::UnknownType(9)));
        assert_eq!(decode(vec![FRAME_CHUNK, 1, 2]), Err(DataError::Truncated));
        assert!(matches!(
            decode(vec![FRAME_MESSAGE, b'{']),
            Err(DataError::Malformed(_))
        ));
    }

    #[test]
    fn before_authorisation_only_a_small_frame_is_announced() {
        let chunk_sized = (MAX_FRAME as u32).to_be_bytes();
        assert_eq!(frame_len(chunk_sized, MAX_AUTHORISED_FRAME), Ok(MAX_FRAME));
        assert_eq!(
            frame_len(chunk_sized, MAX_HANDSHAKE_FRAME),
            Err(DataError::TooLarge(MAX_FRAME))
        );
        let open = Message::Open(Open {
            capability: "c".repeat(crate::task::MAX_CAPABILITY),
            stream: u16::MAX,
            streams: u16::MAX,
        });
        let wire = encode_message(&open);
        assert!(wire.len() - 4 <= MAX_OPEN_FRAME, "the largest Open fits");
        const { assert!(MAX_HANDSHAKE_FRAME < MAX_OPEN_FRAME && MAX_OPEN_FRAME < MAX_FRAME) };
    }

    #[test]
    fn an_abort_carries_its_disposition_and_an_older_peers_abort_is_retried_later() {
        for disposition in [
            Disposition::RetryChunk,
            Disposition::RetryFile,
            Disposition::RetryLater,
            Disposition::SkipFile,
            Disposition::FailTask,
        ] {
            let abort = Message::Abort {
                reason: "why".into(),
                disposition,
                side: Some(Side::Source),
                stopped: false,
            };
            assert_eq!(roundtrip(&encode_message(&abort)), Frame::Message(abort));
        }
        let fail = encode_message(&Message::Abort {
            reason: "no".into(),
            disposition: Disposition::FailTask,
            side: None,
            stopped: false,
        });
        let text = String::from_utf8_lossy(&fail);
        assert!(text.contains(r#""disposition":"fail_task""#));
        assert!(
            !text.contains("side") && !text.contains("stopped"),
            "an older peer sees the abort it knows: {text}"
        );
        let stopped = Message::Abort {
            reason: "paused".into(),
            disposition: Disposition::RetryLater,
            side: None,
            stopped: true,
        };
        assert_eq!(
            roundtrip(&encode_message(&stopped)),
            Frame::Message(stopped)
        );
        for body in [
            r#"{"type":"abort","reason":"fatal: old words"}"#,
            r#"{"type":"abort","reason":"x","disposition":"retry_sometime"}"#,
            r#"{"type":"abort","reason":"x","disposition":7}"#,
            r#"{"type":"abort","reason":"x","side":"relay"}"#,
        ] {
            let mut frame = vec![FRAME_MESSAGE];
            frame.extend_from_slice(body.as_bytes());
            assert!(
                matches!(
                    decode(frame),
                    Ok(Frame::Message(Message::Abort {
                        disposition: Disposition::RetryLater,
                        stopped: false,
                        ..
                    }))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn an_attempt_ends_as_a_failed_task_or_a_retry_later() {
        assert_eq!(Disposition::FailTask.at_end(), Disposition::FailTask);
        for d in [
            Disposition::RetryChunk,
            Disposition::RetryFile,
            Disposition::RetryLater,
            Disposition::SkipFile,
        ] {
            assert_eq!(d.at_end(), Disposition::RetryLater);
        }
    }

    #[test]
    fn a_keep_alive_is_five_bytes_with_no_body() {
        assert_eq!(roundtrip(&KEEP_ALIVE), Frame::KeepAlive);
        assert!(matches!(
            decode(vec![FRAME_KEEP_ALIVE, 0]),
            Err(DataError::Malformed(_))
        ));
        // What a version-1 peer makes of one: refused, so none is sent to it.
        assert_eq!(decode(vec![4]), Err(DataError::UnknownType(4)));
    }

    #[test]
    fn the_version_comes_from_the_alpn_id_tls_settled() {
        assert_eq!(ALPN_PROTOCOLS[0], b"ferry-data/6", "newest first");
        for (alpn, version) in [
            (Some(&b"ferry-data/6"[..]), Some(6)),
            (Some(b"ferry-data/5"), Some(5)),
            (Some(b"ferry-data/4"), Some(4)),
            (Some(b"ferry-data/3"), Some(3)),
            (Some(b"ferry-data/2"), Some(2)),
            (Some(b"ferry-data/1"), Some(1)),
            (None, Some(1)),
            (Some(b"ferry-data/7"), None),
            (Some(b"ferry-data/0"), None),
            (Some(b"ferry-data/"), None),
            (Some(b"ferry-control/1"), None),
            (Some(b"ferry-data/\xff"), None),
        ] {
            assert_eq!(negotiated_version(alpn), version, "{alpn:?}");
        }
        for alpn in ALPN_PROTOCOLS {
            assert!(negotiated_version(Some(alpn)).is_some());
        }
        assert!(keeps_alive(3) && keeps_alive(2) && !keeps_alive(1));
        assert!(honours_filters(3) && !honours_filters(2));
        assert!(rehashes_held_chunks(4) && !rehashes_held_chunks(3));
        assert!(grows_streams(5) && !grows_streams(4));
        assert!(announces_comparisons(6) && !announces_comparisons(5));
        const { assert!(IDLE_LIMIT.as_secs() >= 3 * KEEP_ALIVE_EVERY.as_secs()) };
    }

    #[test]
    fn the_tasks_algorithm_holds_from_version_3_and_an_older_peer_hashes_with_sha256() {
        use ChecksumAlgorithm::{Blake3, Sha256};
        for requested in [Sha256, Blake3] {
            assert_eq!(digest_algorithm(requested, PROTOCOL_VERSION), requested);
            assert_eq!(digest_algorithm(requested, 3), requested);
            for older in [1, 2] {
                assert_eq!(digest_algorithm(requested, older), Sha256);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(body);
        }
    }
}
