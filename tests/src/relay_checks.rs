//! What the relay tests (`relay.rs` on loopback, `relay_netns.rs` across
//! network namespaces) check the same way: a marker no ciphertext holds
//! by chance, and that it never crossed the hub in the clear.

use crate::wait_until;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// 32 random bytes as hex: a string no ciphertext holds by chance.
pub fn marker() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read /dev/urandom: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hub held ciphertext only: what it relayed (its debug-build tee,
/// `FERRY_HUB_RELAY_TEE`) is at least `at_least` bytes, and `marker` is
/// nowhere in them.
pub fn assert_only_ciphertext(tee: &Path, marker: &str, at_least: u64) {
    let relayed = fs::read(tee).unwrap_or_default();
    assert!(
        relayed.len() as u64 >= at_least,
        "the hub relayed {} bytes, fewer than {at_least}",
        relayed.len()
    );
    let needle = marker.as_bytes();
    assert!(
        !relayed.windows(needle.len()).any(|w| w == needle),
        "the marker crossed the hub in the clear"
    );
}

/// Waits (at most `limit`) until the destination has begun a file in
/// `dir` (its temporary exists).
pub fn wait_for_temp(dir: &Path, limit: Duration) {
    wait_until(limit, "a temporary file at the destination", || {
        fs::read_dir(dir).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().as_bytes().starts_with(b".ferry."))
        })
    });
}
