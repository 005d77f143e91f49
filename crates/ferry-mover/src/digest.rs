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
}
