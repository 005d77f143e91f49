//! The destination's per-task journal: which files are committed and which
//! chunks of partial files are durable and verified, so a later attempt
//! after any crash resends neither.
//!
//! Append-only text lines in `state/<task>.journal`:
//! `C <key>` committed, `K <key> <index> <sha256>` chunk durable in the
//! temporary file, `D <key>` partial file discarded. A line is appended only
//! after the data it describes is fsynced, and the journal itself is
//! fsynced before the attempt reports progress, so the journal never claims
//! more than the disk holds. A torn last line (a crash mid-append) is
//! ignored.

use crate::digest::{from_hex, to_hex};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
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

/// Verified chunks of a partial file: (index, SHA-256).
pub type ChunkHashes = Vec<(u32, [u8; 32])>;

/// What earlier attempts left.
#[derive(Debug, Default)]
pub struct Recovered {
    pub committed: HashSet<FileKey>,
    pub partial: HashMap<FileKey, ChunkHashes>,
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

impl Journal {
    pub fn path_for(state_dir: &Path, task_id: &str) -> PathBuf {
        state_dir.join(format!("{task_id}.journal"))
    }

    /// Opens (creating) the task's journal and reads what it holds.
    pub fn open(state_dir: &Path, task_id: &str) -> io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(state_dir)?;
        let path = Self::path_for(state_dir, task_id);
        let mut recovered = Recovered::default();
        if let Ok(existing) = File::open(&path) {
            for line in BufReader::new(existing).split(b'\n') {
                let Ok(line) = line else { break };
                apply(&mut recovered, &line);
            }
        }
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

    pub fn chunk(&mut self, key: FileKey, index: u32, hash: &[u8; 32]) {
        self.pending
            .extend_from_slice(format!("K {key:032x} {index} {}\n", to_hex(hash)).as_bytes());
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

fn apply(r: &mut Recovered, line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
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
        "K" => {
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
        _ => {}
    }
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
            let (mut j, r) = Journal::open(dir.path(), "t").unwrap();
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
        let (j, r) = Journal::open(dir.path(), "t").unwrap();
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
}
