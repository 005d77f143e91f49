//! Chunk buffers, reused. A fresh 4 MiB allocation is fresh memory: the
//! kernel faults in and zeroes every page of it on first touch, which
//! measured several percent of all CPU on large files. Buffers of large
//! chunks come back here once written, and a few are kept.

use crate::digest::CHUNK_SIZE;
use std::sync::Mutex;

/// Buffers at most this long come from the allocator as usual (its free
/// lists serve small sizes without new pages).
const POOLED_FROM: usize = 64 * 1024;
/// Idle buffers kept (4 MiB each), bounding what the pool holds.
const KEEP: usize = 8;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer that can hold `len` bytes without growing.
pub fn take(len: usize) -> Vec<u8> {
    if len > POOLED_FROM && len <= CHUNK_SIZE as usize {
        if let Some(mut buf) = FREE.lock().ok().and_then(|mut free| free.pop()) {
            buf.clear();
            return buf;
        }
        return Vec::with_capacity(CHUNK_SIZE as usize);
    }
    Vec::with_capacity(len)
}

/// Hands a buffer back once its bytes are no longer needed.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() != CHUNK_SIZE as usize {
        return;
    }
    if let Ok(mut free) = FREE.lock()
        && free.len() < KEEP
    {
        free.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_small_ones_do_not() {
        let big = take(CHUNK_SIZE as usize);
        assert!(big.capacity() >= CHUNK_SIZE as usize && big.is_empty());
        let mut used = big;
        used.extend_from_slice(b"old bytes");
        give(used);
        let again = take(1024 * 1024);
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert_eq!(again.capacity(), CHUNK_SIZE as usize);
        let small = take(4096);
        assert!(small.capacity() >= 4096);
        give(small);
        for _ in 0..KEEP * 2 {
            give(Vec::with_capacity(CHUNK_SIZE as usize));
        }
        assert!(FREE.lock().unwrap().len() <= KEEP);
    }
}
