//! File digests: SHA-256 over the concatenated SHA-256 digests of the
//! file's [`CHUNK_SIZE`] chunks (the scheme of Dropbox's content hash).
//! Chunks hash independently (in parallel, or one at a time on resume) and
//! the file digest follows from the chunk digests alone.
//!
//! Reproduce one with standard tools:
//!
//! ```sh
//! split -b 4194304 -a 6 -d FILE chunk. && for c in chunk.*; do
//!   sha256sum "$c" | cut -c1-64 | xxd -r -p; done | sha256sum
//! ```
//! (an empty file has no chunks: its digest is the SHA-256 of nothing).

pub use ferry_proto::data::CHUNK_SIZE;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub fn chunk_hash(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The file digest from its chunk digests, in order.
pub fn file_digest<'a>(chunks: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c);
    }
    h.finalize().into()
}

/// Hashes the chunks of the first `size` bytes of `file`, reading and
/// hashing on up to `threads` threads: chunks are independent, so a large
/// file's digest takes the time of one core's share, not of the whole.
pub fn read_chunk_hashes(file: &File, size: u64, threads: usize) -> io::Result<Vec<[u8; 32]>> {
    let count = chunk_count(size) as usize;
    let threads = threads.clamp(1, count.max(1));
    let hash_every = |first: usize| -> io::Result<Vec<(usize, [u8; 32])>> {
        let mut buf = vec![0u8; size.min(CHUNK_SIZE) as usize];
        let mut out = Vec::new();
        for index in (first..count).step_by(threads) {
            let offset = index as u64 * CHUNK_SIZE;
            let len = (size - offset).min(CHUNK_SIZE) as usize;
            file.read_exact_at(&mut buf[..len], offset)?;
            out.push((index, chunk_hash(&buf[..len])));
        }
        Ok(out)
    };
    let parts = if threads == 1 {
        vec![hash_every(0)?]
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|first| scope.spawn(move || hash_every(first)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked")))
                })
                .collect::<io::Result<Vec<_>>>()
        })?
    };
    let mut hashes = vec![[0u8; 32]; count];
    for (index, hash) in parts.into_iter().flatten() {
        hashes[index] = hash;
    }
    Ok(hashes)
}

/// Threads for hashing one whole file: the cores there are, up to 4.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// How many chunks a file of `size` bytes has.
pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_SIZE) as u32
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_the_documented_scheme() {
        // Empty file: SHA-256 of the empty string.
        assert_eq!(
            to_hex(&file_digest([])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // One short chunk: SHA-256 of the chunk's SHA-256.
        let c = chunk_hash(b"abc");
        assert_eq!(file_digest([&c]), chunk_hash(&c));
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
        assert_eq!(from_hex(&to_hex(&c)), Some(c));
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn parallel_chunk_hashes_match_one_thread() {
        let mut file = tempfile::tempfile().unwrap();
        let size = 2 * CHUNK_SIZE + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::io::Write::write_all(&mut file, &data).unwrap();
        let expected: Vec<[u8; 32]> = data.chunks(CHUNK_SIZE as usize).map(chunk_hash).collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(read_chunk_hashes(&file, size, threads).unwrap(), expected);
        }
        assert!(read_chunk_hashes(&file, 0, 2).unwrap().is_empty());
        // A file shorter than claimed is an error, not a short digest.
        assert!(read_chunk_hashes(&file, size + 1, 2).is_err());
    }
}
