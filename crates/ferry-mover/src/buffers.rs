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

/// A buffer of `len` bytes to be overwritten whole (a reused one holds
/// stale bytes: the caller must fill all of it or drop it).
pub fn take(len: usize) -> Vec<u8> {
    if len > POOLED_FROM && len <= CHUNK_SIZE as usize {
        let reused = FREE.lock().ok().and_then(|mut free| free.pop());
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(CHUNK_SIZE as usize));
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        return buf;
    }
    vec![0; len]
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
        assert_eq!(big.len(), CHUNK_SIZE as usize);
        give(big);
        let again = take(1024 * 1024);
        assert_eq!(again.len(), 1024 * 1024, "exactly as long as asked");
        assert_eq!(again.capacity(), CHUNK_SIZE as usize);
        give(again);
        assert_eq!(take(CHUNK_SIZE as usize).len(), CHUNK_SIZE as usize);
        let small = take(4096);
        assert_eq!(small.len(), 4096);
        give(small);
        for _ in 0..KEEP * 2 {
            give(Vec::with_capacity(CHUNK_SIZE as usize));
        }
        assert!(FREE.lock().unwrap().len() <= KEEP);
    }
}
