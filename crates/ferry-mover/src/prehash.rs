//! The source's digests of the files a destination said it is comparing
//! (`Message::Comparing`, data protocol 6), hashed while the destination
//! hashes its copies, so that at `--sync-level checksum` both ends hash
//! at once instead of one after the other.
//!
//! A digest hashed ahead is only a head start: the destination's need for
//! the file decides, and whoever comes first does the work. The reader
//! that takes a file still queued hashes it itself, as without this; one
//! being hashed is waited for (it would be hashed no sooner again); one
//! that could not be hashed ahead is hashed the careful way, with its
//! errors and retries. Nothing here does I/O: the hashing is the caller's.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Where one announced file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Queued,
    Hashing,
    /// `None`: it could not be hashed ahead (an error, a changed size).
    Done(Option<[u8; 32]>),
}

/// Announced files by id: at most one slot each, and only for files the
/// source offered and the destination has not answered yet, so they are
/// bounded by the source's window.
#[derive(Debug, Default)]
pub struct Prehashed {
    slots: Mutex<HashMap<u64, Slot>>,
    settled: Condvar,
}

impl Prehashed {
    fn slots(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `id` to be hashed ahead; `false` if it is already (an id
    /// named twice).
    pub fn queue(&self, id: u64) -> bool {
        let mut slots = self.slots();
        if slots.contains_key(&id) {
            return false;
        }
        slots.insert(id, Slot::Queued);
        true
    }

    /// Claims for hashing those of `ids` still queued (the reader may have
    /// taken some meanwhile). Whatever the claim does not [`Claim::settle`]
    /// is settled as not hashed when it is dropped, so no reader waits for
    /// it in vain.
    pub fn claim(&self, ids: impl IntoIterator<Item = u64>) -> Claim<'_> {
        let mut slots = self.slots();
        let claimed = ids
            .into_iter()
            .filter(|id| match slots.get_mut(id) {
                Some(slot @ Slot::Queued) => {
                    *slot = Slot::Hashing;
                    true
                }
                _ => false,
            })
            .collect();
        Claim {
            owner: self,
            claimed,
        }
    }

    /// The source's digest of `id` if it was hashed ahead, waiting while
    /// it is being hashed; `None` if it was not announced, is still
    /// queued (the caller hashes it: it is taken from the queue), or could
    /// not be hashed ahead. The slot is gone afterwards.
    pub fn take(&self, id: u64) -> Option<[u8; 32]> {
        let mut slots = self.slots();
        loop {
            match slots.get(&id) {
                None => return None,
                Some(Slot::Hashing) => {
                    slots = self.settled.wait(slots).unwrap_or_else(|p| p.into_inner());
                }
                Some(Slot::Queued) | Some(Slot::Done(_)) => {
                    return match slots.remove(&id) {
                        Some(Slot::Done(digest)) => digest,
                        _ => None,
                    };
                }
            }
        }
    }

    /// Drops `id`'s slot whatever it holds: the destination asked for
    /// something other than a comparison. A claim still hashing it
    /// settles into nothing.
    pub fn forget(&self, id: u64) {
        self.slots().remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().len()
    }
}

/// Files claimed for hashing ahead (see [`Prehashed::claim`]).
#[derive(Debug)]
pub struct Claim<'a> {
    owner: &'a Prehashed,
    claimed: Vec<u64>,
}

impl Claim<'_> {
    /// The claimed ids, in the order they were named.
    pub fn ids(&self) -> &[u64] {
        &self.claimed
    }

    /// Records the digests of the claimed files, in [`Claim::ids`]' order.
    pub fn settle(mut self, digests: impl IntoIterator<Item = Option<[u8; 32]>>) {
        let mut slots = self.owner.slots();
        for (id, digest) in std::mem::take(&mut self.claimed).into_iter().zip(digests) {
            // Forgotten meanwhile: nobody wants it.
            if let Some(slot) = slots.get_mut(&id) {
                *slot = Slot::Done(digest);
            }
        }
        drop(slots);
        self.owner.settled.notify_all();
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.claimed.is_empty() {
            return;
        }
        let mut slots = self.owner.slots();
        for id in &self.claimed {
            if let Some(slot @ Slot::Hashing) = slots.get_mut(id) {
                *slot = Slot::Done(None);
            }
        }
        drop(slots);
        self.owner.settled.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_digest_hashed_ahead_is_taken_once() {
        let p = Prehashed::default();
        assert!(p.queue(1) && p.queue(2));
        assert!(!p.queue(1), "named twice, queued once");
        let claim = p.claim([1, 2, 3]);
        assert_eq!(claim.ids(), &[1, 2], "3 was never announced");
        claim.settle([Some([7; 32]), None]);
        assert_eq!(p.take(1), Some([7; 32]));
        assert_eq!(p.take(1), None, "taken already");
        assert_eq!(p.take(2), None, "could not be hashed ahead");
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn the_reader_takes_a_queued_file_itself_and_the_claim_skips_it() {
        let p = Prehashed::default();
        p.queue(4);
        assert_eq!(p.take(4), None);
        assert!(p.claim([4]).ids().is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_forgotten_file_settles_into_nothing() {
        let p = Prehashed::default();
        p.queue(5);
        let claim = p.claim([5]);
        p.forget(5);
        claim.settle([Some([1; 32])]);
        assert_eq!(p.take(5), None);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_reader_waits_for_a_file_being_hashed() {
        let p = Arc::new(Prehashed::default());
        p.queue(6);
        let claim_owner = p.clone();
        let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let hasher = std::thread::spawn(move || {
            let claim = claim_owner.claim([6]);
            claimed_tx.send(()).unwrap();
            go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            claim.settle([Some([6; 32])]);
        });
        claimed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let reader_owner = p.clone();
        let reader = std::thread::spawn(move || reader_owner.take(6));
        go_tx.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), Some([6; 32]));
        hasher.join().unwrap();
    }

    #[test]
    fn a_claim_dropped_unsettled_releases_its_waiters() {
        let p = Arc::new(Prehashed::default());
        p.queue(8);
        let claim = p.claim([8]);
        let reader_owner = p.clone();
        let reader = std::thread::spawn(move || reader_owner.take(8));
        std::thread::sleep(Duration::from_millis(20));
        drop(claim);
        assert_eq!(reader.join().unwrap(), None);
        assert_eq!(p.len(), 0);
    }
}
