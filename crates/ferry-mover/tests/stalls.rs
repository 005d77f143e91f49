//! Data connections that stall for good, and ones that are only quiet:
//! two endpoints' movers over loopback TLS, the data going through a
//! proxy this test controls, with the idle limit shortened to a second
//! (keep-alives every 200 ms). A stall ends the attempt at both ends as a
//! fault to retry later, with words that say so, and the next attempt
//! completes the tree; a stretch of real work longer than the idle limit
//! (hashing a large file for `--sync-level checksum` at both ends) ends
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ferry_mover::Disposition;
use ferry_mover::channel::Liveness;
use ferry_mover::source::SendError;
use ferry_proto::task::{SyncLevel, TaskReport, TransferOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{CHUNK, World, item, pattern, snapshot, world_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const LIVENESS: Liveness = Liveness {
    keep_alive_every: Duration::from_millis(200),
    idle: Duration::from_secs(1),
};
/// An attempt that has not ended by then waits on the stall for good: far
/// above the idle limit (a bound for a failing test, not a measurement).
const ENDS_WITHIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// Which way the proxy holds the bytes once it stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Source to destination only: the destination hears nothing, and
    /// the source's writes find no reader.
    Upstream,
    /// Both ways: neither side hears the other.
    Both,
}

impl Hold {
    fn holds(self, upstream: bool) -> bool {
        match self {
            Hold::Both => true,
            Hold::Upstream => upstream,
        }
    }
}

/// A loopback TCP proxy in front of the destination's data listener. It
/// forwards until `after` bytes went upstream over all its connections,
/// then holds what `hold` says for good: nothing more is read or written
/// that way (what the kernel buffered stays there), and every connection
/// stays open, as when the network holds the bytes.
async fn stalling_proxy(target: String, after: u64, hold: Hold) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (from_client, to_client) = client.into_split();
            let (from_server, to_server) = server.into_split();
            let pump = Pump {
                after,
                hold,
                upstream: upstream.clone(),
                stalled: stalled.clone(),
            };
            tokio::spawn(pump.clone().run(from_client, to_server, true));
            tokio::spawn(pump.run(from_server, to_client, false));
        }
    });
    addr
}

#[derive(Clone)]
struct Pump {
    after: u64,
    hold: Hold,
    upstream: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
}

impl Pump {
    async fn run(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        upstream: bool,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.hold.holds(upstream) && self.stalled.load(Ordering::SeqCst) {
                // Held for good, the connection open.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if upstream
                && self.upstream.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= self.after
            {
                self.stalled.store(true, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown().await;
    }
}

/// The destination's last word on `attempt`: succeeded, fault or failed.
async fn destination_verdict(w: &mut World, attempt: u32) -> TaskReport {
    loop {
        let next = tokio::time::timeout(ENDS_WITHIN, w.b.reports.recv()).await;
        let Ok(Some((_, n, report))) = next else {
            panic!("the destination reported no end of attempt {attempt}");
        };
        match report {
            _ if n != attempt => {}
            TaskReport::Succeeded { .. } | TaskReport::Failed { .. } | TaskReport::Fault { .. } => {
                return report;
            }
            _ => {}
        }
    }
}

/// Every file under a real name at the destination is the source's.
fn only_whole_files(src: &Path, dst: &Path) {
    let source = snapshot(src);
    for (rel, content) in snapshot(dst) {
        let Some(content) = content else { continue };
        let name = String::from_utf8_lossy(&rel).into_owned();
        if name
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".ferry."))
        {
            continue;
        }
        let theirs = source.iter().find(|(r, _)| *r == rel);
        assert!(
            theirs.is_some_and(|(_, c)| c.as_ref() == Some(&content)),
            "{name} stands under its real name, not whole"
        );
    }
}

/// A transfer of 32 MiB and a few small files whose data connections
/// stall after 6 MiB, holding `hold`. Returns how the source and the
/// destination ended the attempt, once the next attempt (straight to the
/// destination, as the hub's retry would go once the network heals)
/// completed the tree.
async fn stalled_attempt(hold: Hold) -> (SendError, String) {
    let mut w = world_with(0o022, LIVENESS).await;
    let src = w.a.home.join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("large.bin"), pattern(8 * CHUNK + 5, 1)).unwrap();
    for i in 0..20u8 {
        std::fs::write(
            src.join(format!("sub/small-{i}")),
            pattern(1000 * usize::from(i), i),
        )
        .unwrap();
    }
    let items = vec![item("/~/data", "/~/copy", true)];
    let proxy = stalling_proxy(w.addr.clone(), 6 * MIB, hold).await;
    let sealed = w.capability(1, items.clone(), TransferOptions::default());
    let (_cancel, cancel_rx) = watch::channel(false);
    let sent = tokio::time::timeout(
        ENDS_WITHIN,
        ferry_mover::source::send(w.a.ctx.clone(), sealed, proxy, cancel_rx),
    )
    .await
    .unwrap_or_else(|_| panic!("{hold:?}: the source waits on a stalled connection"));
    let Err(sent) = sent else {
        panic!("{hold:?}: the attempt succeeded through a stall")
    };
    let verdict = destination_verdict(&mut w, 1).await;
    let TaskReport::Fault { message, .. } = verdict else {
        panic!("{hold:?}: the destination ended {verdict:?}, not as a fault to retry")
    };
    let dst = w.b.home.join("copy");
    only_whole_files(&src, &dst);

    let (verdict, _) = w.transfer(2, items, TransferOptions::default()).await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{hold:?}: the retry ended {verdict:?}"
    );
    assert_eq!(snapshot(&dst), snapshot(&src));
    (sent, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_both_ways_ends_the_attempt_at_both_ends_to_be_retried_later() {
    let (source, destination) = stalled_attempt(Hold::Both).await;
    // Each side noticed the silence by itself: nothing else got through.
    assert_eq!(source.disposition(), Disposition::RetryLater, "{source}");
    assert_eq!(
        source.to_string(),
        "no word from the destination for 1s: the data connection stalled"
    );
    assert_eq!(
        destination,
        "no word from the source for 1s: the data connection stalled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_data_never_arrives_is_noticed_by_the_destination() {
    let (source, destination) = stalled_attempt(Hold::Upstream).await;
    // The destination heard nothing and said so; its word reached the
    // source (that way the network still carried bytes).
    assert_eq!(
        destination,
        "no word from the source for 1s: the data connection stalled"
    );
    assert_eq!(source.disposition(), Disposition::RetryLater, "{source}");
    assert_eq!(
        source.to_string(),
        "the destination gave up: no word from the source for 1s: the data connection stalled"
    );
}

/// A file of `size` bytes that takes no disk: a hole, all zeros.
fn sparse(path: &Path, size: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
}

/// `--sync-level checksum` over a large file both sides have: the
/// destination hashes its copy before it answers (its conversation
/// stream unread meanwhile), then the source hashes its own before it
/// says "unchanged" (nothing to send meanwhile). Each takes seconds on a
/// small machine, longer than the idle limit; only keep-alives tell each
/// side the other is still there. (Slow operations of every kind, each
/// three times the limit whatever the machine, are in the fault matrix:
/// `quiet_stretches_longer_than_the_idle_limit_end_nothing`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_quiet_stretch_of_hashing_at_both_ends_ends_nothing() {
    let mut w = world_with(0o022, LIVENESS).await;
    let size = 1024 * MIB;
    sparse(&w.a.home.join("huge.img"), size);
    std::fs::create_dir(w.b.home.join("in")).unwrap();
    sparse(&w.b.home.join("in/huge.img"), size);
    std::fs::write(w.a.home.join("after.txt"), pattern(5000, 3)).unwrap();
    let options = TransferOptions {
        sync_level: Some(SyncLevel::Checksum),
        ..TransferOptions::default()
    };
    let (verdict, reports) = w
        .transfer(
            1,
            vec![
                item("/~/huge.img", "/~/in/huge.img", false),
                item("/~/after.txt", "/~/in/after.txt", false),
            ],
            options,
        )
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?} {reports:?}")
    };
    assert_eq!(
        (counters.files_skipped, counters.files_transferred),
        (1, 1),
        "the large file was the same on both sides"
    );
    assert_eq!(
        std::fs::read(w.b.home.join("in/after.txt")).unwrap(),
        pattern(5000, 3)
    );
    assert!(
        std::fs::read_dir(&w.b.ctx.state_dir)
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the task's journal is gone"
    );
}
