//! The destination's per-task journal: which files are committed and which
//! chunks of partial files are durable and verified, so a later attempt
//! after any crash resends neither.
//!
//! Append-only text lines in `state/<task>.journal`:
//! `C <key>` committed, `K <key> <index> <sha256>` or `B <key> <index>
//! <blake3>` chunk durable in the temporary file, with its digest by the
//! attempt's algorithm, `D <key>` partial file discarded, `T <hex path>` a
//! temporary file may stand beside this target (so the temporaries a task
//! kept can be removed once the task is over, with no attempt running).
//! A `C` or `K` line is appended only after the data it describes is
//! fsynced, and the journal itself is fsynced before the attempt reports
//! progress, so the journal never claims more than the disk holds (a `T`
//! line claims nothing: its temporary may be gone). A torn last line (a
//! crash mid-append) is ignored.
//!
//! What a crash left beyond these lines (chunks written since the last
//! sync) is not recovered here: a resuming attempt re-hashes it and lets
//! the source's digests decide (`dest`, data protocol 4).
//!
//! A journal is read for one algorithm (the resuming attempt's): chunks
//! journaled with the other are left out, and so sent again, never taken
//! on a digest of another algorithm. `K` is the line every earlier
//! release wrote, SHA-256; such a release ignores a `B` line, so a
//! downgraded daemon resends those chunks too.

use crate::digest::{ChecksumAlgorithm, from_hex, to_hex};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file's identity in the journal: 128 bits of SHA-256 of its key, so
/// resuming a million-file task keeps memory small.
pub type FileKey = u128;

pub fn file_key(item: u32, path: &[u8]) -> FileKey {
    let mut h = Sha256::new();
    h.update(item.to_be_bytes());
    h.update(path);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    u128::from_be_bytes(k)
}

/// Verified chunks of a partial file: (index, digest by the journal's algorithm).
pub type ChunkHashes = Vec<(u32, [u8; 32])>;

/// What earlier attempts left.
#[derive(Debug, Default)]
pub struct Recovered {
    pub committed: HashSet<FileKey>,
    pub partial: HashMap<FileKey, ChunkHashes>,
    /// Targets beside which earlier attempts may have left a temporary.
    pub temporaries: HashSet<PathBuf>,
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Whose chunk lines this attempt writes and reads.
    algorithm: ChecksumAlgorithm,
}

/// The letter of a chunk line of `algorithm`.
fn chunk_op(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Sha256 => "K",
        ChecksumAlgorithm::Blake3 => "B",
    }
}

impl Journal {
    pub fn path_for(state_dir: &Path, task_id: &str) -> PathBuf {
        state_dir.join(format!("{task_id}.journal"))
    }

    /// Opens (creating) the task's journal and reads what it holds, for
    /// an attempt whose digests are by `algorithm`: chunks journaled with
    /// another are not recovered.
    pub fn open(
        state_dir: &Path,
        task_id: &str,
        algorithm: ChecksumAlgorithm,
    ) -> io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(state_dir)?;
        let path = Self::path_for(state_dir, task_id);
        let recovered = match File::open(&path) {
            Ok(existing) => read(existing, algorithm),
            Err(_) => Recovered::default(),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok((
            Self {
                path,
                file,
                pending: Vec::new(),
                algorithm,
            },
            recovered,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn committed(&mut self, key: FileKey) {
        self.pending
            .extend_from_slice(format!("C {key:032x}\n").as_bytes());
    }

    /// A chunk is durable; `hash` is its digest by the journal's algorithm.
    pub fn chunk(&mut self, key: FileKey, index: u32, hash: &[u8; 32]) {
        let op = chunk_op(self.algorithm);
        self.pending
            .extend_from_slice(format!("{op} {key:032x} {index} {}\n", to_hex(hash)).as_bytes());
    }

    /// A temporary file may stand beside `target` from now on.
    pub fn temporary(&mut self, target: &Path) {
        self.pending.extend_from_slice(b"T ");
        for byte in target.as_os_str().as_bytes() {
            self.pending
                .extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        self.pending.push(b'\n');
    }

    /// What a task's journal holds, if it has one, without opening it for
    /// writing (a task that is over, with no attempt running; its
    /// temporaries are what counts, and its SHA-256 chunks are read).
    pub fn recover(state_dir: &Path, task_id: &str) -> io::Result<Option<Recovered>> {
        match File::open(Self::path_for(state_dir, task_id)) {
            Ok(file) => Ok(Some(read(file, ChecksumAlgorithm::Sha256))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a task's journal, if it has one.
    pub fn remove(state_dir: &Path, task_id: &str) -> io::Result<()> {
        match std::fs::remove_file(Self::path_for(state_dir, task_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn discarded(&mut self, key: FileKey) {
        self.pending
            .extend_from_slice(format!("D {key:032x}\n").as_bytes());
    }

    /// Writes what was recorded and makes it durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.pending.clear();
        self.file.sync_data()
    }

    /// The task is over: its journal goes.
    pub fn finish(self) -> io::Result<()> {
        drop(self.file);
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn read(file: File, algorithm: ChecksumAlgorithm) -> Recovered {
    let mut recovered = Recovered::default();
    for line in BufReader::new(file).split(b'\n') {
        let Ok(line) = line else { break };
        apply(&mut recovered, &line, chunk_op(algorithm));
    }
    recovered
}

/// Applies one line; `chunks` is the letter of the chunk lines that count.
fn apply(r: &mut Recovered, line: &[u8], chunks: &str) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    if let Some(hex) = text.strip_prefix("T ") {
        if let Some(target) = path_from_hex(hex) {
            r.temporaries.insert(target);
        }
        return;
    }
    let mut parts = text.split(' ');
    let (Some(op), Some(key)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(key) = u128::from_str_radix(key, 16) else {
        return;
    };
    match op {
        "C" => {
            r.partial.remove(&key);
            r.committed.insert(key);
        }
        op if op == chunks => {
            let (Some(index), Some(hash)) = (
                parts.next().and_then(|i| i.parse().ok()),
                parts.next().and_then(from_hex),
            ) else {
                return;
            };
            r.partial.entry(key).or_default().push((index, hash));
        }
        "D" => {
            r.partial.remove(&key);
        }
        // Chunks by another algorithm than the attempt's, or a line of a
        // newer release.
        _ => {}
    }
}

/// An absolute path from a `T` line; a torn or malformed one is none.
fn path_from_hex(hex: &str) -> Option<PathBuf> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let path = Path::new(OsStr::from_bytes(&bytes));
    (path.is_absolute() && !bytes.contains(&0)).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_committed_and_partial_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (file_key(0, b"a"), file_key(0, b"b"), file_key(1, b"a"));
        assert_ne!(a, c, "the item is part of the key");
        {
            let (mut j, r) = Journal::open(dir.path(), "t", ChecksumAlgorithm::Sha256).unwrap();
            assert!(r.committed.is_empty());
            j.chunk(a, 0, &[1; 32]);
            j.committed(a);
            j.chunk(b, 0, &[2; 32]);
            j.chunk(b, 2, &[3; 32]);
            j.chunk(c, 0, &[4; 32]);
            j.discarded(c);
            j.sync().unwrap();
        }
        let path = Journal::path_for(dir.path(), "t");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"K 0000ff 1 abc").unwrap();
        let (j, r) = Journal::open(dir.path(), "t", ChecksumAlgorithm::Sha256).unwrap();
        assert!(r.committed.contains(&a));
        assert_eq!(
            r.partial.get(&b).unwrap(),
            &vec![(0, [2; 32]), (2, [3; 32])]
        );
        assert!(!r.partial.contains_key(&a) && !r.partial.contains_key(&c));
        assert_eq!(r.partial.len(), 1);
        j.finish().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn chunks_are_recovered_only_for_the_algorithm_that_journaled_them() {
        use ChecksumAlgorithm::{Blake3, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (file_key(0, b"a"), file_key(0, b"b"));
        // An older daemon's attempt (SHA-256, `K` lines), then a newer
        // one's with BLAKE3 over the same journal.
        {
            let (mut j, _) = Journal::open(dir.path(), "t", Sha256).unwrap();
            j.chunk(a, 0, &[1; 32]);
            j.chunk(b, 0, &[2; 32]);
            j.sync().unwrap();
        }
        let text = std::fs::read_to_string(Journal::path_for(dir.path(), "t")).unwrap();
        assert!(text.starts_with("K "), "what older releases wrote: {text}");
        {
            let (mut j, r) = Journal::open(dir.path(), "t", Blake3).unwrap();
            assert!(r.partial.is_empty(), "no SHA-256 digest taken for BLAKE3");
            j.chunk(a, 1, &[3; 32]);
            j.committed(b);
            j.sync().unwrap();
        }
        let text = std::fs::read_to_string(Journal::path_for(dir.path(), "t")).unwrap();
        assert!(text.lines().any(|l| l.starts_with("B ")), "{text}");
        let (_, r) = Journal::open(dir.path(), "t", Blake3).unwrap();
        assert_eq!(r.partial.get(&a), Some(&vec![(1, [3; 32])]));
        assert!(
            r.committed.contains(&b),
            "a commit holds whatever verified it"
        );
        let (_, r) = Journal::open(dir.path(), "t", Sha256).unwrap();
        assert_eq!(r.partial.get(&a), Some(&vec![(0, [1; 32])]));
        assert_eq!(r.partial.len(), 1);
    }

    #[test]
    fn temporaries_are_recovered_byte_for_byte_and_a_journal_can_go_without_an_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let odd = Path::new(OsStr::from_bytes(b"/h/u/caf\xe9 \nnew line"));
        assert_eq!(
            Journal::recover(dir.path(), "t")
                .unwrap()
                .map(|r| r.temporaries),
            None
        );
        {
            let (mut j, _) = Journal::open(dir.path(), "t", ChecksumAlgorithm::Sha256).unwrap();
            j.temporary(Path::new("/h/u/x"));
            j.temporary(odd);
            j.sync().unwrap();
        }
        let path = Journal::path_for(dir.path(), "t");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"T 2f682f752").unwrap();
        let recovered = Journal::recover(dir.path(), "t").unwrap().unwrap();
        assert_eq!(
            recovered.temporaries,
            HashSet::from([PathBuf::from("/h/u/x"), odd.to_path_buf()]),
            "the torn line is ignored"
        );
        assert_eq!(path_from_hex("782f"), None, "relative");
        assert_eq!(path_from_hex("2f00"), None, "a NUL byte");
        Journal::remove(dir.path(), "t").unwrap();
        assert!(!path.exists());
        Journal::remove(dir.path(), "t").unwrap();
    }
}
