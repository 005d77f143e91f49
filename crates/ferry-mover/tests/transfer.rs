//! Two endpoints' movers talking over real TLS on loopback, without a hub:
//! certificates from a test CA, a capability signed by a test key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ferry_mover::metrics::Metrics;
use ferry_mover::tuner::Tuning;
use ferry_proto::filter::FilterRule;
use ferry_proto::task::{Capability, ChecksumAlgorithm, SyncLevel, TaskReport, TransferOptions};
use rcgen::SigningKey;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use support::{CHUNK, World, item, pattern, snapshot, world, world_with_umask};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_with_hostile_names_and_chunk_boundaries_arrives_byte_for_byte() {
    let mut w = world().await;
    let src = w.a.home.join("data");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for (i, size) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3]
        .into_iter()
        .enumerate()
    {
        std::fs::write(src.join(format!("size-{size}")), pattern(size, i as u8)).unwrap();
    }
    let odd = OsString::from_vec(b"caf\xe9 \xff\n%25 name".to_vec());
    std::fs::write(src.join("sub").join(&odd), b"odd").unwrap();
    std::fs::write(src.join("sub/deeper/-rf"), b"dash").unwrap();
    std::fs::create_dir(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("size-1"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();

    let (verdict, reports) = w
        .transfer(
            1,
            vec![item("/~/data", "/~/copy", true)],
            TransferOptions::default(),
        )
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(counters.files, 8);
    assert_eq!(counters.files_transferred, 8);

    let dst = w.b.home.join("copy");
    let mut expected = snapshot(&src);
    expected.retain(|(p, _)| p != b"link" && p != b"fifo");
    assert_eq!(snapshot(&dst), expected);
    let skipped: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r, TaskReport::Skipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 2, "{reports:?}");
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta(&dst.join("size-1")).permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        meta(&dst.join("size-1")).modified().unwrap(),
        meta(&src.join("size-1")).modified().unwrap()
    );
    // No temporary file is left behind, and the journal is gone.
    assert!(
        snapshot(&dst)
            .iter()
            .all(|(p, _)| !p.starts_with(b".ferry."))
    );
    assert!(
        std::fs::read_dir(w.b.ctx.state_dir.clone())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_levels_and_delete() {
    let mut w = world().await;
    let src = w.a.home.join("d");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("same"), b"same content").unwrap();
    std::fs::write(src.join("changed"), b"new content!").unwrap();
    let dst = w.b.home.join("d");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("same"), b"same content").unwrap();
    std::fs::write(dst.join("changed"), b"old content!").unwrap();
    std::fs::write(dst.join("extra"), b"not in source").unwrap();
    std::fs::create_dir_all(dst.join("extra-dir/x")).unwrap();

    let options = TransferOptions {
        sync_level: Some(SyncLevel::Size),
        ..TransferOptions::default()
    };
    let (verdict, _) = w
        .transfer(1, vec![item("/~/d", "/~/d", true)], options)
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (counters.files_transferred, counters.files_skipped),
        (0, 2),
        "same sizes: size level skips both"
    );
    assert_eq!(std::fs::read(dst.join("changed")).unwrap(), b"old content!");

    let options = TransferOptions {
        sync_level: Some(SyncLevel::Checksum),
        delete: true,
        ..TransferOptions::default()
    };
    let (verdict, reports) = w
        .transfer(2, vec![item("/~/d", "/~/d", true)], options)
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (counters.files_transferred, counters.files_skipped),
        (1, 1),
        "checksum sends only the changed one"
    );
    // Each removed entry is told, a directory after what it held.
    let mut deleted: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            TaskReport::Deleted { path } => Some(path.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    let inner = deleted.iter().position(|p| p.ends_with(b"extra-dir/x"));
    let outer = deleted.iter().position(|p| p.ends_with(b"extra-dir"));
    assert!(inner < outer, "{deleted:?}");
    deleted.sort();
    let at = |rel: &str| dst.join(rel).into_os_string().into_vec();
    assert_eq!(
        deleted,
        [at("extra"), at("extra-dir"), at("extra-dir/x")],
        "{reports:?}"
    );
    assert_eq!(std::fs::read(dst.join("changed")).unwrap(), b"new content!");
    assert!(
        !dst.join("extra").exists() && !dst.join("extra-dir").exists(),
        "--delete removes extras"
    );
    assert_eq!(snapshot(&dst), snapshot(&src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_file_and_a_resumed_partial_file() {
    let mut w = world().await;
    let big = pattern(3 * CHUNK + 100, 7);
    std::fs::write(w.a.home.join("big.bin"), &big).unwrap();
    std::fs::create_dir(w.b.home.join("in")).unwrap();
    // An earlier attempt left the first two chunks, journaled, and a third
    // chunk that is on disk but corrupt: only the good ones count.
    let task = "11111111-2222-4333-8444-555555555555";
    let final_path = w.b.home.join("in/big.bin");
    let temp = ferry_mover::plan::temp_path(&final_path, task);
    let mut partial = vec![0u8; big.len()];
    partial[..2 * CHUNK].copy_from_slice(&big[..2 * CHUNK]);
    partial[2 * CHUNK..3 * CHUNK].fill(0xAA);
    std::fs::write(&temp, &partial).unwrap();
    let sha256 = ferry_mover::digest::ChecksumAlgorithm::Sha256;
    let (mut journal, _) =
        ferry_mover::journal::Journal::open(&w.b.ctx.state_dir, task, sha256).unwrap();
    let key = ferry_mover::journal::file_key(0, b"");
    for i in 0..3u32 {
        let good = &big[i as usize * CHUNK..(i as usize + 1) * CHUNK];
        journal.chunk(key, i, &ferry_mover::digest::chunk_hash(sha256, good));
    }
    journal.sync().unwrap();
    drop(journal);

    let (verdict, _) = w
        .transfer(
            2,
            vec![item("/~/big.bin", "/~/in/", false)],
            TransferOptions::default(),
        )
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(std::fs::read(&final_path).unwrap(), big);
    assert!(!temp.exists());
    // Chunks 2 and 3 (the corrupt one and the tail) were sent; 0 and 1
    // were kept, and count as moved by this task: each byte once.
    assert_eq!(counters.bytes_transferred, big.len() as u64);
    assert_eq!(
        (counters.bytes, counters.bytes_resent),
        (big.len() as u64, 0)
    );
    assert!(counters.walk_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_algorithm_moves_a_tree_and_a_checksum_sync_by_it_sends_only_what_differs() {
    for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Blake3] {
        let mut w = world().await;
        let src = w.a.home.join("d");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("big"), pattern(2 * CHUNK + 5, 3)).unwrap();
        std::fs::write(src.join("sub/small"), b"small").unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let options = |sync_level| TransferOptions {
            sync_level,
            checksum_algorithm: algorithm,
            ..TransferOptions::default()
        };
        let items = vec![item("/~/d", "/~/d", true)];
        let (verdict, _) = w.transfer(1, items.clone(), options(None)).await;
        assert!(
            matches!(verdict, TaskReport::Succeeded { counters } if counters.files_transferred == 3),
            "{algorithm}: {verdict:?}"
        );
        assert_eq!(snapshot(&w.b.home.join("d")), snapshot(&src), "{algorithm}");
        // Same sizes and times, one content changed: only the digests tell.
        let dst_small = w.b.home.join("d/sub/small");
        let mtime = std::fs::metadata(&dst_small).unwrap().modified().unwrap();
        std::fs::write(&dst_small, b"SMALL").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&dst_small)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let (verdict, _) = w
            .transfer(2, items.clone(), options(Some(SyncLevel::Checksum)))
            .await;
        let TaskReport::Succeeded { counters } = verdict else {
            panic!("{algorithm}: {verdict:?}")
        };
        assert_eq!(
            (counters.files_transferred, counters.files_skipped),
            (1, 2),
            "{algorithm}"
        );
        assert_eq!(std::fs::read(&dst_small).unwrap(), b"small");
        let (verdict, _) = w
            .transfer(3, items, options(Some(SyncLevel::Checksum)))
            .await;
        let TaskReport::Succeeded { counters } = verdict else {
            panic!("{algorithm}: {verdict:?}")
        };
        assert_eq!(
            (counters.files_transferred, counters.files_skipped),
            (0, 3),
            "{algorithm}: in sync, nothing is sent"
        );
        assert_eq!(counters.bytes_transferred, 0, "{algorithm}");
    }
}

/// A re-sync of a tree wider than a manifest batch, where a few files
/// differ in content but not in size or time (small ones, hashed side by
/// side, and ones of several chunks): the mtime level sees none of them,
/// the checksum level sends exactly those, and no temporary file is left
/// behind for the files found unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_resync_of_many_files_sends_only_those_whose_content_differs() {
    let mut w = world().await;
    let src = w.a.home.join("many");
    for d in 0..3 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
    }
    let name = |i: usize| format!("d{}/f{i:04}", i % 3);
    for i in 0..700 {
        std::fs::write(src.join(name(i)), pattern(100 + i % 50, i as u8)).unwrap();
    }
    std::fs::write(src.join("big-a"), pattern(2 * CHUNK + 5, 1)).unwrap();
    std::fs::write(src.join("big-b"), pattern(3 * CHUNK, 2)).unwrap();
    let items = vec![item("/~/many", "/~/many", true)];
    let options = |sync_level| TransferOptions {
        sync_level: Some(sync_level),
        ..TransferOptions::default()
    };
    let (verdict, _) = w
        .transfer(1, items.clone(), TransferOptions::default())
        .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { counters } if counters.files_transferred == 702),
        "{verdict:?}"
    );
    let dst = w.b.home.join("many");
    assert_eq!(snapshot(&dst), snapshot(&src));
    // Changed behind the transfer's back, sizes and times kept.
    let differ = [
        name(3),
        name(511),
        name(512),
        name(699),
        "big-b".to_string(),
    ];
    for rel in &differ {
        let path = dst.join(rel);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    assert_ne!(snapshot(&dst), snapshot(&src));
    let (verdict, _) = w
        .transfer(2, items.clone(), options(SyncLevel::Mtime))
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (counters.files_transferred, counters.files_skipped),
        (0, 702)
    );
    let before = Metrics::get(&w.a.ctx.metrics.hashed_ahead_files);
    let (verdict, _) = w.transfer(3, items, options(SyncLevel::Checksum)).await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (counters.files_transferred, counters.files_skipped),
        (differ.len() as u64, 702 - differ.len() as u64)
    );
    let sent: u64 = differ
        .iter()
        .map(|rel| std::fs::metadata(src.join(rel)).unwrap().len())
        .sum();
    assert_eq!(counters.bytes_transferred, sent);
    assert_eq!(snapshot(&dst), snapshot(&src), "no temporary file is left");
    // The destination named the copies it hashed, and the source hashed
    // its own meanwhile (data protocol 6): each compared once, not twice.
    let hashed_ahead = Metrics::get(&w.a.ctx.metrics.hashed_ahead_files) - before;
    assert!(
        (1..=702).contains(&hashed_ahead),
        "{hashed_ahead} files hashed ahead"
    );
}

/// A daemon upgraded while a task was half done: its journal holds
/// SHA-256 chunk digests (`K` lines, as every earlier release wrote), and
/// the resumed attempt hashes with BLAKE3. The kept chunks cannot be
/// vouched for by a BLAKE3 digest, so they are sent again, never taken on
/// trust; and the other way round, the next SHA-256 attempt does not take
/// BLAKE3 digests either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_journaled_with_sha256_is_sent_again_when_resumed_with_blake3() {
    use ferry_mover::digest::{chunk_hash, to_hex};
    let mut w = world().await;
    let big = pattern(3 * CHUNK + 100, 9);
    std::fs::write(w.a.home.join("big.bin"), &big).unwrap();
    // The task of `World::capability`.
    let task = "11111111-2222-4333-8444-555555555555";
    let final_path = w.b.home.join("big.bin");
    let temp = ferry_mover::plan::temp_path(&final_path, task);
    // Two good chunks on disk, journaled by an older daemon.
    let mut partial = vec![0u8; big.len()];
    partial[..2 * CHUNK].copy_from_slice(&big[..2 * CHUNK]);
    std::fs::write(&temp, &partial).unwrap();
    let sha256 = ChecksumAlgorithm::Sha256;
    let (mut journal, _) =
        ferry_mover::journal::Journal::open(&w.b.ctx.state_dir, task, sha256).unwrap();
    let key = ferry_mover::journal::file_key(0, b"");
    for i in 0..2u32 {
        let good = &big[i as usize * CHUNK..(i as usize + 1) * CHUNK];
        journal.chunk(key, i, &chunk_hash(sha256, good));
    }
    journal.sync().unwrap();
    drop(journal);
    let text = std::fs::read_to_string(ferry_mover::journal::Journal::path_for(
        &w.b.ctx.state_dir,
        task,
    ))
    .unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("K ")).count(), 2);
    assert!(
        text.contains(&to_hex(&chunk_hash(sha256, &big[..CHUNK]))),
        "{text}"
    );

    let options = TransferOptions {
        checksum_algorithm: ChecksumAlgorithm::Blake3,
        ..TransferOptions::default()
    };
    let (verdict, _) = w
        .transfer(2, vec![item("/~/big.bin", "/~/big.bin", false)], options)
        .await;
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(std::fs::read(&final_path).unwrap(), big);
    assert!(!temp.exists());
    assert_eq!(counters.bytes_transferred, big.len() as u64);
}

/// During an upgrade one endpoint may still run a release that speaks data
/// protocol 2 and knows only SHA-256: a BLAKE3 task between the two is
/// hashed with SHA-256 on both sides (not refused, not misverified), and
/// a checksum sync then compares SHA-256 with SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_older_peer_either_way_a_blake3_task_is_verified_with_sha256() {
    for (source, destination) in [(2, 3), (3, 2), (1, 3)] {
        let mut w = support::world_speaking(source, destination).await;
        let src = w.a.home.join("d");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("big"), pattern(CHUNK + 7, 1)).unwrap();
        std::fs::write(src.join("small"), b"small").unwrap();
        let options = |sync_level| TransferOptions {
            sync_level,
            checksum_algorithm: ChecksumAlgorithm::Blake3,
            ..TransferOptions::default()
        };
        let items = vec![item("/~/d", "/~/d", true)];
        let (verdict, reports) = w.transfer(1, items.clone(), options(None)).await;
        let TaskReport::Succeeded { counters } = verdict else {
            panic!("{source}->{destination}: {verdict:?}")
        };
        assert_eq!(counters.files_transferred, 2, "{source}->{destination}");
        assert!(
            !reports
                .iter()
                .any(|r| matches!(r, TaskReport::Resent { .. })),
            "{source}->{destination}: {reports:?}"
        );
        assert_eq!(snapshot(&w.b.home.join("d")), snapshot(&src));
        let (verdict, _) = w
            .transfer(2, items, options(Some(SyncLevel::Checksum)))
            .await;
        let TaskReport::Succeeded { counters } = verdict else {
            panic!("{source}->{destination}: {verdict:?}")
        };
        assert_eq!(
            (counters.files_skipped, counters.bytes_transferred),
            (2, 0),
            "{source}->{destination}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_capability_is_refused_before_any_file_is_touched() {
    let w = world().await;
    std::fs::write(w.a.home.join("f"), b"x").unwrap();
    let sealed = w.capability(
        1,
        vec![item("/~/f", "/~/f", false)],
        TransferOptions::default(),
    );
    let (body, _) = Capability::open(&sealed).unwrap();
    let forged = Capability::seal(&body, &w.signer.sign(b"something else").unwrap());
    let (_c, cancel) = watch::channel(false);
    // The source checks too; call the destination directly with a raw stream.
    let err = ferry_mover::source::send(w.a.ctx.clone(), forged, w.addr.clone(), cancel)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert!(!w.b.home.join("f").exists());
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(mode_of(path), mode, "the source holds the mode under test");
}

/// Sends a tree of files and directories with every kind of mode to an
/// endpoint with `umask`; returns the modes they arrived with.
async fn received_modes(umask: u32) -> Vec<(&'static str, String)> {
    let mut w = world_with_umask(umask).await;
    let src = w.a.home.join("modes");
    std::fs::create_dir(&src).unwrap();
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("world-writable", 0o666),
        ("private", 0o600),
    ] {
        std::fs::write(src.join(name), name).unwrap();
        set_mode(&src.join(name), mode);
    }
    for (name, mode) in [("setgid-dir", 0o2775), ("sticky-dir", 0o1777)] {
        std::fs::create_dir(src.join(name)).unwrap();
        std::fs::write(src.join(name).join("inside"), b"x").unwrap();
        set_mode(&src.join(name), mode);
    }
    let (verdict, _) = w
        .transfer(
            1,
            vec![item("/~/modes", "/~/modes", true)],
            TransferOptions::default(),
        )
        .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    let dst = w.b.home.join("modes");
    [
        "setuid",
        "setgid",
        "world-writable",
        "private",
        "setgid-dir",
        "sticky-dir",
    ]
    .into_iter()
    .map(|name| (name, format!("{:04o}", mode_of(&dst.join(name)))))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_files_never_get_setuid_setgid_or_sticky_bits() {
    let expected = [
        ("setuid", "0755"),
        ("setgid", "0755"),
        ("world-writable", "0644"),
        ("private", "0600"),
        ("setgid-dir", "0755"),
        ("sticky-dir", "0755"),
    ];
    let got = received_modes(0o022).await;
    assert_eq!(got, expected.map(|(n, m)| (n, m.to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_files_and_directories_are_narrowed_by_the_receiving_umask() {
    let expected = [
        ("setuid", "0750"),
        ("setgid", "0750"),
        ("world-writable", "0640"),
        ("private", "0600"),
        ("setgid-dir", "0750"),
        ("sticky-dir", "0750"),
    ];
    let got = received_modes(0o027).await;
    assert_eq!(got, expected.map(|(n, m)| (n, m.to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_connection_beyond_the_per_peer_limit_is_closed_at_once() {
    let w = world().await;
    // Connections that never get past the TLS handshake hold every slot
    // one peer address may have.
    let mut idle = Vec::new();
    for _ in 0..ferry_mover::dest::UNAUTHORISED_PER_PEER {
        idle.push(tokio::net::TcpStream::connect(&w.addr).await.unwrap());
    }
    // One more, even a well-behaved one, is closed before its handshake.
    let config = w.a.ctx.identity.client_config().unwrap();
    let name = rustls_pki_types::ServerName::try_from(ferry_proto::api::endpoint_dns_name(
        &w.b.ctx.identity.endpoint_id,
    ))
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(&w.addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await;
    assert!(refused.is_err(), "the connection over the limit was served");
    // Once the idle ones are gone, the peer is served again.
    drop(idle);
    let mut admitted = false;
    for _ in 0..200 {
        let tcp = tokio::net::TcpStream::connect(&w.addr).await.unwrap();
        if tokio_rustls::TlsConnector::from(config.clone())
            .connect(name.clone(), tcp)
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "slots are given back when connections end");
}

/// Sends attempt `attempt` of the usual one-file task; the source's verdict.
async fn send_attempt(w: &World, attempt: u32) -> Result<(), ferry_mover::source::SendError> {
    let sealed = w.capability(
        attempt,
        vec![item("/~/f", "/~/in/f", false)],
        TransferOptions::default(),
    );
    let (_cancel, cancel_rx) = watch::channel(false);
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        ferry_mover::source::send(w.a.ctx.clone(), sealed, w.addr.clone(), cancel_rx),
    )
    .await
    .expect("send timed out")
}

async fn replay_world() -> World {
    let w = world().await;
    std::fs::write(w.a.home.join("f"), b"payload").unwrap();
    std::fs::create_dir(w.b.home.join("in")).unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_replay_after_the_attempt_ended_is_refused() {
    let mut w = replay_world().await;
    let (verdict, _) = w
        .transfer(
            1,
            vec![item("/~/f", "/~/in/f", false)],
            TransferOptions::default(),
        )
        .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    std::fs::remove_file(w.b.home.join("in/f")).unwrap();
    // The same capability again, while it is still unexpired.
    let err = send_attempt(&w, 1).await.unwrap_err();
    assert!(err.to_string().contains("has ended"), "{err}");
    assert!(!w.b.home.join("in/f").exists(), "nothing was written");
    // The hub's next attempt is served.
    send_attempt(&w, 2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_replay_after_a_cancel_is_refused() {
    let w = replay_world().await;
    w.sessions
        .cancel_through("11111111-2222-4333-8444-555555555555", Some(3));
    for attempt in [1, 3] {
        let err = send_attempt(&w, attempt).await.unwrap_err();
        assert!(err.to_string().contains("has ended"), "{attempt}: {err}");
    }
    assert!(!w.b.home.join("in/f").exists());
    send_attempt(&w, 4).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_replay_from_a_revoked_endpoint_is_refused() {
    let w = replay_world().await;
    let source = w.a.ctx.identity.endpoint_id.clone();
    w.sessions
        .revoke(std::collections::HashSet::from([source.clone()]), false);
    let err = send_attempt(&w, 1).await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(!w.b.home.join("in/f").exists());
    // The hub's complete list no longer names it (a test of replacing).
    w.sessions.revoke(std::collections::HashSet::new(), true);
    send_attempt(&w, 1).await.unwrap();
}

/// The hub restarted mid-task: its new attempt reaches the destination
/// while the old attempt's data connections still run. The new session
/// starts only once the old one stopped (both would write the same
/// temporaries and journal), and the tree arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_attempt_waits_for_the_one_it_replaces() {
    let w = world().await;
    let src = w.a.home.join("tree");
    for d in 0..8 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..150 {
            std::fs::write(
                src.join(format!("d{d}/f{f}")),
                pattern(1000 + f * 37, (d * 7 + f) as u8),
            )
            .unwrap();
        }
    }
    std::fs::write(src.join("big"), pattern(3 * 4 * 1024 * 1024 + 5, 9)).unwrap();
    let items = vec![item("/~/tree", "/~/copy", true)];
    let first = w.capability(1, items.clone(), TransferOptions::default());
    let (_cancel1, cancel1_rx) = watch::channel(false);
    let old = tokio::spawn(ferry_mover::source::send(
        w.a.ctx.clone(),
        first,
        w.addr.clone(),
        cancel1_rx,
    ));
    // Attempt 1 is writing when attempt 2 arrives.
    let copy = w.b.home.join("copy");
    for _ in 0..2000 {
        if copy.join("d0").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let second = w.capability(2, items, TransferOptions::default());
    let (_cancel2, cancel2_rx) = watch::channel(false);
    let new = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        ferry_mover::source::send(w.a.ctx.clone(), second, w.addr.clone(), cancel2_rx),
    )
    .await
    .expect("attempt 2 timed out");
    assert!(new.is_ok(), "attempt 2: {new:?}");
    // Attempt 1 was stopped by the destination, or had finished.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), old).await;
    let (got, want) = (snapshot(&copy), snapshot(&src));
    let names = |s: &[(Vec<u8>, Option<Vec<u8>>)]| -> Vec<String> {
        s.iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    let differing: Vec<String> = got
        .iter()
        .filter(|g| !want.contains(g))
        .map(|(n, c)| {
            format!(
                "{} ({:?} bytes)",
                String::from_utf8_lossy(n),
                c.as_ref().map(Vec::len)
            )
        })
        .collect();
    assert!(
        got == want,
        "differing or extra: {differing:?}\nmissing: {:?}",
        names(&want)
            .into_iter()
            .filter(|n| !names(&got).contains(n))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_what_is_walked_and_what_delete_spares() {
    let mut w = world().await;
    let src = w.a.home.join("d");
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::create_dir_all(src.join("scratch")).unwrap();
    std::fs::write(src.join("a.csv"), b"a").unwrap();
    std::fs::write(src.join("b.tmp"), b"b").unwrap();
    std::fs::write(src.join(OsStr::from_bytes(b"\xff.tmp")), b"c").unwrap();
    std::fs::write(src.join("keep/x.csv"), b"x").unwrap();
    std::fs::write(src.join("keep/y.txt"), b"y").unwrap();
    std::fs::write(src.join("scratch/z"), b"z").unwrap();
    // Not descended: were it listed, this would fail the walk (but as root).
    set_mode(&src.join("scratch"), 0o000);
    let dst = w.b.home.join("d");
    std::fs::create_dir_all(dst.join("scratch")).unwrap();
    std::fs::write(dst.join("old.tmp"), b"kept").unwrap();
    std::fs::write(dst.join("scratch/old"), b"kept").unwrap();
    std::fs::write(dst.join("stale.txt"), b"gone").unwrap();

    let options = TransferOptions {
        delete: true,
        filters: vec![
            FilterRule::exclude("*.tmp"),
            FilterRule::exclude("scratch/"),
        ],
        ..TransferOptions::default()
    };
    let (verdict, reports) = w
        .transfer(1, vec![item("/~/d", "/~/d", true)], options)
        .await;
    set_mode(&src.join("scratch"), 0o755);
    let TaskReport::Succeeded { counters } = verdict else {
        panic!("{verdict:?} {reports:?}")
    };
    assert_eq!(counters.files_transferred, 3, "{reports:?}");
    let names: Vec<_> = snapshot(&dst).into_iter().map(|(rel, _)| rel).collect();
    let mut expected: Vec<Vec<u8>> = [
        "a.csv",
        "keep",
        "keep/x.csv",
        "keep/y.txt",
        "old.tmp",
        "scratch",
        "scratch/old",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    expected.sort();
    let mut names = names;
    names.sort();
    assert_eq!(names, expected, "{reports:?}");
    // Only the extra that no filter protects went.
    let deleted: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            TaskReport::Deleted { path } => Some(path.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [dst.join("stale.txt").into_os_string().into_vec()]);
    // Excluded entries are not even reported as skipped.
    assert!(
        !reports
            .iter()
            .any(|r| matches!(r, TaskReport::Skipped { .. })),
        "{reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_then_exclude_everything_sends_only_what_is_included() {
    let mut w = world().await;
    let src = w.a.home.join("d");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.csv"), b"a").unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("sub/b.csv"), b"b").unwrap();
    let top_only = TransferOptions {
        filters: vec![FilterRule::include("*.csv"), FilterRule::exclude("*")],
        ..TransferOptions::default()
    };
    let (verdict, _) = w
        .transfer(1, vec![item("/~/d", "/~/top", true)], top_only)
        .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    let names = |root: &Path| {
        let mut n: Vec<_> = snapshot(root).into_iter().map(|(rel, _)| rel).collect();
        n.sort();
        n
    };
    assert_eq!(names(&w.b.home.join("top")), [b"a.csv".to_vec()]);
    let every_level = TransferOptions {
        filters: vec![
            FilterRule::include("*/"),
            FilterRule::include("*.csv"),
            FilterRule::exclude("*"),
        ],
        ..TransferOptions::default()
    };
    let (verdict, _) = w
        .transfer(2, vec![item("/~/d", "/~/deep", true)], every_level)
        .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    assert_eq!(
        names(&w.b.home.join("deep")),
        [b"a.csv".to_vec(), b"sub".to_vec(), b"sub/b.csv".to_vec()]
    );
}

/// A temporary an earlier attempt left with chunks no journal line names
/// (a kill -9 between two checkpoints) is re-hashed on resume: chunks the
/// source's digests agree with are not sent again, a corrupted one is,
/// and the file arrives exact. A source older than data protocol 4 is
/// asked for everything, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unjournaled_chunks_of_a_kept_temporary_count_only_where_the_source_agrees() {
    use ferry_mover::metrics::Metrics;
    use std::os::unix::fs::FileExt;
    let newest = ferry_proto::data::PROTOCOL_VERSION;
    for source in [newest, 3] {
        let mut w = support::world_speaking(source, newest).await;
        let src = w.a.home.join("d");
        std::fs::create_dir_all(&src).unwrap();
        let content = pattern(5 * CHUNK + 100, 7);
        std::fs::write(src.join("big"), &content).unwrap();
        let copy = w.b.home.join("d");
        std::fs::create_dir_all(&copy).unwrap();
        let temp =
            ferry_paths::Temporary::new(&copy.join("big"), "11111111-2222-4333-8444-555555555555");
        // As the killed attempt left it: at full length, chunks 0 to 3
        // written (2 then damaged on disk), 4 and 5 never.
        let f = std::fs::File::create(temp.path()).unwrap();
        f.set_len(content.len() as u64).unwrap();
        f.write_all_at(&content[..4 * CHUNK], 0).unwrap();
        f.write_all_at(b"damage", 2 * CHUNK as u64 + 17).unwrap();
        drop(f);
        let before = Metrics::get(&w.a.ctx.metrics.sent_bytes);
        let (verdict, reports) = w
            .transfer(
                2,
                vec![item("/~/d", "/~/d", true)],
                TransferOptions::default(),
            )
            .await;
        assert!(
            matches!(verdict, TaskReport::Succeeded { .. }),
            "{source}: {verdict:?} {reports:?}"
        );
        assert_eq!(
            std::fs::read(copy.join("big")).unwrap(),
            content,
            "{source}"
        );
        assert!(!temp.path().exists(), "{source}");
        let sent = Metrics::get(&w.a.ctx.metrics.sent_bytes) - before;
        let expected = if source >= 4 {
            // Chunk 2 (damaged), 4 and 5 (never written).
            2 * CHUNK as u64 + 100
        } else {
            content.len() as u64
        };
        assert_eq!(sent, expected, "source speaking {source}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_adds_streams_while_it_sends_and_an_older_destination_gets_the_count_it_was_told()
{
    let newest = ferry_proto::data::PROTOCOL_VERSION;
    for destination in [newest, 4] {
        // Grows at every other period, whatever it measures: this is the
        // growth itself, not the tuner's judgement (unit-tested in `tuner`).
        let tuning = Tuning::always_grow(std::time::Duration::from_millis(20), 16);
        let mut w = support::world_tuned_speaking(tuning, destination).await;
        let src = w.a.home.join("d");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("big.bin"), pattern(24 * CHUNK + 5, 3)).unwrap();
        std::fs::write(src.join("small-1"), pattern(4096, 1)).unwrap();
        std::fs::write(src.join("small-2"), b"").unwrap();
        let (verdict, _) = w
            .transfer(
                1,
                vec![item("/~/d", "/~/d", true)],
                TransferOptions::default(),
            )
            .await;
        assert!(
            matches!(verdict, TaskReport::Succeeded { .. }),
            "{verdict:?}"
        );
        assert_eq!(snapshot(&w.b.home.join("d")), snapshot(&src));
        // Large files start with four streams.
        let opened = Metrics::get(&w.b.ctx.metrics.streams_opened);
        if destination == newest {
            assert!(opened > 4, "the destination took {opened} streams");
        } else {
            assert_eq!(
                opened, 4,
                "an older destination waits for what the Open said"
            );
        }
    }
}
