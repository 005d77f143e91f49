//! Who may hold a data connection open before it is authorised: a few per
//! peer address, a bounded number in all, and each only until its
//! capability is judged (within the handshake deadline).
//!
//! Any endpoint of the hub can reach this endpoint's data port, and the
//! TLS handshake and the `Open` cost memory before the capability says
//! whether the peer has any business here. A peer over its share is closed
//! at once, before the TLS handshake. A source opens its streams one after
//! another, so one task holds at most one unauthorised connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Unauthorised connections one peer address may hold at once (IPv6: one
/// /64, which one host commonly has to itself).
pub const UNAUTHORISED_PER_PEER: usize = 16;
/// Unauthorised connections from everyone at once.
pub const UNAUTHORISED_TOTAL: usize = 256;

/// Counts unauthorised connections by peer.
#[derive(Debug)]
pub struct Admission {
    per_peer: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_peer: HashMap<IpAddr, usize>,
    total: usize,
}

/// One unauthorised connection's place; given back when dropped.
#[derive(Debug)]
pub struct Unauthorised {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(UNAUTHORISED_PER_PEER, UNAUTHORISED_TOTAL)
    }
}

impl Admission {
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            per_peer,
            total,
            held: Mutex::default(),
        }
    }

    /// A place for a new connection from `peer`, or `None` if the peer or
    /// everyone together already holds all there are.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Unauthorised> {
        let peer = group(peer);
        let mut held = self.held.lock().ok()?;
        let mine = held.by_peer.get(&peer).copied().unwrap_or(0);
        if mine >= self.per_peer || held.total >= self.total {
            return None;
        }
        held.by_peer.insert(peer, mine + 1);
        held.total += 1;
        Some(Unauthorised {
            admission: self.clone(),
            peer,
        })
    }

    /// Unauthorised connections held now.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.total).unwrap_or(0)
    }
}

impl Drop for Unauthorised {
    fn drop(&mut self) {
        let Ok(mut held) = self.admission.held.lock() else {
            return;
        };
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

/// The unit a peer is counted by: its IPv4 address, or its IPv6 /64.
fn group(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_no_more_until_one_is_given_back() {
        let admission = Arc::new(Admission::new(3, 5));
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let mut held: Vec<_> = (0..3).map(|_| admission.admit(a).unwrap()).collect();
        assert!(admission.admit(a).is_none(), "the 4th from one peer");
        assert!(
            admission.admit(b).is_some(),
            "another peer has its own share"
        );
        held.pop();
        assert!(admission.admit(a).is_some(), "a place given back is free");
        assert_eq!(admission.held(), 2, "dropped places are counted out");
    }

    #[test]
    fn all_peers_together_are_bounded() {
        let admission = Arc::new(Admission::new(3, 4));
        let held: Vec<_> = (1..=4u8)
            .map(|i| admission.admit([192, 0, 2, i].into()).unwrap())
            .collect();
        assert!(admission.admit([192, 0, 2, 9].into()).is_none());
        drop(held);
        assert_eq!(admission.held(), 0);
        assert!(admission.admit([192, 0, 2, 9].into()).is_some());
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_a_mapped_ipv4_as_itself() {
        let admission = Arc::new(Admission::new(1, 10));
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = admission.admit(first).unwrap();
        assert!(admission.admit(same_64).is_none());
        assert!(admission.admit(other_64).is_some());
        let _v4 = admission.admit([192, 0, 2, 1].into()).unwrap();
        assert!(
            admission
                .admit("::ffff:192.0.2.1".parse().unwrap())
                .is_none()
        );
    }
}
