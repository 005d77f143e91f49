//! File digests: the task's algorithm over the concatenated digests, by
//! the same algorithm, of the file's [`CHUNK_SIZE`] chunks (the scheme of
//! Dropbox's content hash), with SHA-256 or BLAKE3 ([`ChecksumAlgorithm`];
//! SHA-256 is what a task that names none means). Chunks hash
//! independently (in parallel, or one at a time on resume) and the file
//! digest follows from the chunk digests alone.
//!
//! Reproduce one with standard tools (`b3sum` for BLAKE3, Debian's
//! package of that name; `sha256sum` for SHA-256):
//!
//! ```sh
//! split -b 4194304 -a 6 -d FILE chunk. && for c in chunk.*; do
//!   b3sum --raw "$c"; done | b3sum --no-names
//! split -b 4194304 -a 6 -d FILE chunk. && for c in chunk.*; do
//!   sha256sum "$c" | cut -c1-64 | xxd -r -p; done | sha256sum
//! ```
//! (an empty file has no chunks: its digest is the algorithm's digest of
//! nothing).

pub use ferry_proto::data::CHUNK_SIZE;
pub use ferry_proto::task::ChecksumAlgorithm;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A chunk's digest.
pub fn chunk_hash(algorithm: ChecksumAlgorithm, data: &[u8]) -> [u8; 32] {
    match algorithm {
        ChecksumAlgorithm::Sha256 => Sha256::digest(data).into(),
        ChecksumAlgorithm::Blake3 => blake3::hash(data).into(),
    }
}

/// The file digest from its chunk digests, in order.
pub fn file_digest<'a>(
    algorithm: ChecksumAlgorithm,
    chunks: impl IntoIterator<Item = &'a [u8; 32]>,
) -> [u8; 32] {
    match algorithm {
        ChecksumAlgorithm::Sha256 => {
            let mut h = Sha256::new();
            for c in chunks {
                h.update(c);
            }
            h.finalize().into()
        }
        ChecksumAlgorithm::Blake3 => {
            let mut h = blake3::Hasher::new();
            for c in chunks {
                h.update(c);
            }
            h.finalize().into()
        }
    }
}

/// Hashes the chunks of the first `size` bytes of `file`, reading and
/// hashing on up to `threads` threads: chunks are independent, so a large
/// file's digest takes the time of one core's share, not of the whole.
pub fn read_chunk_hashes(
    algorithm: ChecksumAlgorithm,
    file: &File,
    size: u64,
    threads: usize,
) -> io::Result<Vec<[u8; 32]>> {
    let count = chunk_count(size) as usize;
    let threads = threads.clamp(1, count.max(1));
    let hash_every = |first: usize| -> io::Result<Vec<(usize, [u8; 32])>> {
        let mut buf = vec![0u8; size.min(CHUNK_SIZE) as usize];
        let mut out = Vec::new();
        for index in (first..count).step_by(threads) {
            let offset = index as u64 * CHUNK_SIZE;
            let len = (size - offset).min(CHUNK_SIZE) as usize;
            file.read_exact_at(&mut buf[..len], offset)?;
            out.push((index, chunk_hash(algorithm, &buf[..len])));
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
/// Asked of the system once: `available_parallelism` reads the cgroup's
/// CPU quota from /proc and /sys each time (about 20 system calls), which
/// cost more than hashing a small file.
pub fn hashing_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// `work` done on every item, on up to `threads` threads, the results in
/// the items' order. A batch of small files hashes on every core this
/// way, where [`read_chunk_hashes`] spreads only a large file's chunks.
pub fn map_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(at) else {
                            return out;
                        };
                        out.push((at, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(at, _)| *at);
    done.into_iter().map(|(_, r)| r).collect()
}

/// How many chunks a file of `size` bytes has.
pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_SIZE) as u32
}

/// Lower-case hex; a `format!` per byte cost a tenth of a checksum
/// re-sync's CPU at the destination (one digest per file).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
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
    use ChecksumAlgorithm::{Blake3, Sha256};

    /// The test file of `parallel_chunk_hashes_match_one_thread`: two whole
    /// chunks and a short one, byte `i` being `i * 7 % 251`.
    fn patterned() -> Vec<u8> {
        (0..2 * CHUNK_SIZE + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    fn digest_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
        let chunks: Vec<[u8; 32]> = data
            .chunks(CHUNK_SIZE as usize)
            .map(|c| chunk_hash(algorithm, c))
            .collect();
        to_hex(&file_digest(algorithm, chunks.iter()))
    }

    #[test]
    fn digests_follow_the_documented_scheme() {
        // Empty file: the algorithm's digest of nothing (`sha256sum
        // </dev/null`, `b3sum </dev/null`).
        assert_eq!(
            to_hex(&file_digest(Sha256, [])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            to_hex(&file_digest(Blake3, [])),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        for algorithm in [Sha256, Blake3] {
            // One short chunk: the digest of the chunk's digest.
            let c = chunk_hash(algorithm, b"abc");
            assert_eq!(file_digest(algorithm, [&c]), chunk_hash(algorithm, &c));
            assert_eq!(from_hex(&to_hex(&c)), Some(c));
        }
        // `b3sum` and `sha256sum` of the 3 bytes "abc".
        assert_eq!(
            to_hex(&chunk_hash(Blake3, b"abc")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(
            to_hex(&chunk_hash(Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    /// The values of the README's pipelines, computed with `b3sum` 1.2 and
    /// coreutils' `sha256sum`, not with this code:
    ///
    /// ```sh
    /// python3 -c "import sys; sys.stdout.buffer.write(bytes(i*7%251 for i in range(2*4194304+12345)))" >f
    /// split -b 4194304 -a 6 -d f chunk. && for c in chunk.*; do
    ///   b3sum --raw "$c"; done | b3sum --no-names
    /// for c in chunk.*; do sha256sum "$c" | cut -c1-64 | xxd -r -p; done | sha256sum
    /// printf abc >f   # ... and the same two lines
    /// ```
    #[test]
    fn digests_match_the_shell_pipelines() {
        let data = patterned();
        assert_eq!(
            digest_of(Blake3, &data),
            "66f79b58b1109c41641e9db513e0c05aa1ea45d0bdc48ddcb9c7ca5855aff3b4"
        );
        assert_eq!(
            digest_of(Sha256, &data),
            "6a72c6d4ead46500bdf27b0f59d0c9a9df58f3cbc103a82d38f7c205d1544af9"
        );
        assert_eq!(
            digest_of(Blake3, b"abc"),
            "dc2f738d17b8a7ec03efdd0a95e8d3924b8e05965040ab6dcafd992994012bd4"
        );
        assert_eq!(
            digest_of(Sha256, b"abc"),
            "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"
        );
    }

    #[test]
    fn parallel_work_comes_back_in_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [1, 2, 3, 16] {
            // Uneven work, so threads finish out of order.
            let got = map_parallel(&items, threads, |i| {
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                i * 3
            });
            assert_eq!(got, items.iter().map(|i| i * 3).collect::<Vec<_>>());
        }
        assert!(map_parallel(&[] as &[u8], 4, |b| *b).is_empty());
        let data = patterned();
        let pieces: Vec<&[u8]> = data.chunks(100_000).collect();
        assert_eq!(
            map_parallel(&pieces, 4, |p| chunk_hash(Blake3, p)),
            pieces
                .iter()
                .map(|p| chunk_hash(Blake3, p))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn parallel_chunk_hashes_match_one_thread() {
        let mut file = tempfile::tempfile().unwrap();
        let data = patterned();
        let size = data.len() as u64;
        std::io::Write::write_all(&mut file, &data).unwrap();
        for algorithm in [Sha256, Blake3] {
            let expected: Vec<[u8; 32]> = data
                .chunks(CHUNK_SIZE as usize)
                .map(|c| chunk_hash(algorithm, c))
                .collect();
            for threads in [1, 2, 3, 8] {
                assert_eq!(
                    read_chunk_hashes(algorithm, &file, size, threads).unwrap(),
                    expected
                );
            }
            assert!(
                read_chunk_hashes(algorithm, &file, 0, 2)
                    .unwrap()
                    .is_empty()
            );
            // A file shorter than claimed is an error, not a short digest.
            assert!(read_chunk_hashes(algorithm, &file, size + 1, 2).is_err());
        }
        assert_ne!(
            read_chunk_hashes(Sha256, &file, size, 1).unwrap(),
            read_chunk_hashes(Blake3, &file, size, 1).unwrap()
        );
    }
}
