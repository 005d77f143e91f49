//! A destination killed with -9 mid-transfer resumes what it already
//! holds: chunks written but not yet journaled are re-hashed against the
//! source's digests and not sent again, and nothing unverified is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, closed_loopback_port, pattern, tree, wait_until};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;

/// `ferry_endpoint_sent_bytes_total` of the daemon serving metrics on `port`.
fn sent_bytes(port: u16) -> u64 {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| l.strip_prefix("ferry_endpoint_sent_bytes_total "))
        .unwrap_or_else(|| panic!("no sent bytes in {answer}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// Bytes the destination's files hold on disk (temporaries are made at
/// full length as holes, so their size says nothing).
fn allocated(root: &Path) -> u64 {
    let mut total = 0;
    let Ok(dir) = fs::read_dir(root) else {
        return 0;
    };
    for entry in dir.filter_map(Result::ok) {
        let Ok(m) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if m.is_dir() {
            total += allocated(&entry.path());
        } else if m.is_file() {
            total += (m.blocks() * 512).min(m.len());
        }
    }
    total
}

/// A few large files and many small ones, about 1 GB (like the
/// benchmark's dataset C): what is in flight when the destination dies
/// (a few chunks in socket buffers and in its hands) is lost whatever it
/// does, and must stay well under 2% of it. Returns the source tree and
/// its size.
fn dataset(lab: &Lab) -> (std::path::PathBuf, u64) {
    let src = lab.src.home.join("mixed");
    fs::create_dir_all(src.join("small")).unwrap();
    let mut bytes = 0;
    let block = pattern(64 * MIB, 1);
    for i in 0..3u8 {
        let mut data = Vec::with_capacity(5 * block.len());
        for b in 0..5u8 {
            let start = data.len();
            data.extend_from_slice(&block);
            // Every block of every file differs from the others.
            data[start..start + 2].copy_from_slice(&[i, b]);
        }
        data.truncate(data.len() - 4321 * usize::from(i));
        bytes += data.len() as u64;
        fs::write(src.join(format!("large-{i}.bin")), data).unwrap();
    }
    for i in 0..200 {
        let data = pattern(20_000 + 977 * i, 100 + i as u32);
        bytes += data.len() as u64;
        fs::write(src.join(format!("small/f{i}")), data).unwrap();
    }
    (src, bytes)
}

#[test]
fn kill_9_of_the_destination_at_30_percent_resends_under_2_percent() {
    let port = closed_loopback_port();
    let mut lab = Lab::builder()
        .src_setting(&format!("metrics_listen = \"127.0.0.1:{port}\""))
        .start();
    let (src, bytes) = dataset(&lab);
    let copy = lab.dst.home.join("mixed");
    // A cap makes the kill point reliable on a busy machine: about 25 s in all.
    let id = lab.transfer(&["-r", "--bwlimit", "40M", "src:/~/mixed", "dst:/~/mixed"]);
    wait_until(LIMIT, "30% of the bytes at the destination", || {
        allocated(&copy) * 10 >= bytes * 3
    });
    let at_kill = allocated(&copy);
    lab.kill_dst();
    let sent_first = sent_bytes(port);
    lab.start_dst();
    let task = lab.wait(&id);
    assert_eq!(tree(&copy), tree(&src));
    let sent = sent_bytes(port);
    eprintln!(
        "dataset {bytes} B, on disk at the kill {at_kill} B ({:.1}%), sent {sent_first} B before the restart, {sent} B in all: {:.2}% sent twice",
        at_kill as f64 * 100.0 / bytes as f64,
        (sent as f64 - bytes as f64) * 100.0 / bytes as f64
    );
    // What the destination held at the kill is not sent again (only what
    // it lacked then; it wrote on a little after the look). Blocks are
    // not bytes, and the kill may cut one write short: one chunk of slack.
    assert!(
        sent - sent_first <= bytes - at_kill + 4 * MIB as u64,
        "after the restart the source sent {} bytes; the destination lacked {}",
        sent - sent_first,
        bytes - at_kill
    );
    assert!(
        sent * 100 < bytes * 102,
        "the source sent {sent} bytes for a dataset of {bytes} ({} in flight at the kill): {task}",
        sent_first.saturating_sub(at_kill)
    );
}
