//! The inner paths every transferred byte or file goes through, measured
//! alone: chunk hashing,
//! data-frame encode and decode, and opening a file through the rooted
//! filesystem. `cargo bench -p ferry-mover`; end-to-end figures against the
//! peers come from `bench/run.sh`.

use divan::{Bencher, black_box, counter::BytesCount};
use ferry_paths::{Policy, RootedFs};
use ferry_proto::data::{self, ChunkHeader, Entry, EntryKind, Message};
use ferry_proto::wire_path::WirePath;
use std::path::PathBuf;
use std::sync::Arc;

fn main() {
    divan::main();
}

const CHUNK: usize = ferry_mover::digest::CHUNK_SIZE as usize;

fn random_chunk(len: usize) -> Vec<u8> {
    // xorshift: incompressible enough for a hash, no RNG dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Once per chunk on each end (sha2 picks SHA-NI at run time).
#[divan::bench(args = [4096, CHUNK])]
fn chunk_hash(bencher: Bencher, len: usize) {
    let data = random_chunk(len);
    bencher.counter(BytesCount::new(len)).bench(|| {
        ferry_mover::digest::chunk_hash(
            ferry_mover::digest::ChecksumAlgorithm::Sha256,
            black_box(&data),
        )
    });
}

/// The same with BLAKE3, the default of new tasks (SIMD picked at run time).
#[divan::bench(args = [4096, CHUNK])]
fn chunk_hash_blake3(bencher: Bencher, len: usize) {
    let data = random_chunk(len);
    bencher.counter(BytesCount::new(len)).bench(|| {
        ferry_mover::digest::chunk_hash(
            ferry_mover::digest::ChecksumAlgorithm::Blake3,
            black_box(&data),
        )
    });
}

#[divan::bench]
fn chunk_frame_prefix(bencher: Bencher) {
    let header = ChunkHeader {
        file: 7,
        index: 3,
        digest: [5; 32],
    };
    bencher.bench(|| data::chunk_prefix(black_box(&header), CHUNK));
}

/// Reading a 4 MiB chunk frame off a stream (here: memory), as the
/// destination does: header first, then the data into its own buffer.
#[divan::bench]
fn chunk_frame_read(bencher: Bencher) {
    let header = ChunkHeader {
        file: 7,
        index: 3,
        digest: [5; 32],
    };
    let mut wire = data::chunk_prefix(&header, CHUNK).to_vec();
    wire.extend_from_slice(&random_chunk(CHUNK));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    bencher.counter(BytesCount::new(CHUNK)).bench(|| {
        runtime.block_on(async {
            let mut reader = black_box(wire.as_slice());
            ferry_mover::channel::read_frame(&mut reader).await
        })
    });
}

fn manifest_batch(entries: u64) -> Message {
    Message::Manifest {
        entries: (0..entries)
            .map(|id| Entry {
                id,
                item: 0,
                path: WirePath::from_bytes(
                    format!("run-{}/sample_{id:06}.dat", id / 200).as_bytes(),
                ),
                kind: EntryKind::File,
                size: 4096,
                mtime_ns: 1_700_000_000_000_000_000,
                mode: 0o644,
            })
            .collect(),
    }
}

/// A manifest batch of 1,000 small files, as the source sends it.
#[divan::bench]
fn manifest_encode(bencher: Bencher) {
    let message = manifest_batch(1000);
    bencher.bench(|| data::encode_message(black_box(&message)));
}

#[divan::bench]
fn manifest_decode(bencher: Bencher) {
    let frame = data::encode_message(&manifest_batch(1000));
    bencher
        .with_inputs(|| frame[4..].to_vec())
        .bench_values(data::decode);
}

struct Tree {
    _dir: tempfile::TempDir,
    fs: RootedFs,
    file: PathBuf,
}

fn tree() -> Tree {
    tree_with(RootedFs::new)
}

fn tree_with(rooted: fn(Arc<Policy>) -> RootedFs) -> Tree {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let home = dir.path().to_path_buf();
    let deep = home.join("data/run-1/raw");
    std::fs::create_dir_all(&deep).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let file = deep.join("sample.dat");
    std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("write: {e}"));
    let policy = Policy::from_config_paths("~/data,0,1\n", &home, &home.join(".ferry"))
        .unwrap_or_else(|e| panic!("policy: {e}"));
    Tree {
        fs: rooted(Arc::new(policy)),
        file,
        _dir: dir,
    }
}

/// Policy decision, openat2 beneath the rule root, fstat: once per file sent.
#[divan::bench]
fn rooted_open_read(bencher: Bencher) {
    let t = tree();
    bencher.bench(|| t.fs.open_read(black_box(&t.file)));
}

/// The same with the rule's root kept open, as a task attempt does.
#[divan::bench]
fn rooted_open_read_cached_root(bencher: Bencher) {
    let t = tree_with(RootedFs::with_cached_roots);
    bencher.bench(|| t.fs.open_read(black_box(&t.file)));
}

/// The same open without the rooted filesystem, for comparison.
#[divan::bench]
fn plain_open_read(bencher: Bencher) {
    let t = tree();
    bencher.bench(|| std::fs::File::open(black_box(&t.file)));
}
