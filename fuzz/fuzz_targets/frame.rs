//! `ferry_proto::frame`: the length-prefixed frames of the control channel
//! and the local API, fed as a hostile byte stream in arbitrary pieces.
//!
//! Input: `max selector (1 byte) | piece sizes (1 byte) | stream`.
//!
//! Asserts:
//! - every frame returned is non-empty and at most `max` bytes;
//! - whenever the decoder wants more bytes it holds less than one header
//!   plus one maximal frame (it never buffers more than its maximum);
//! - re-encoding the frames gives back exactly the bytes consumed
//!   (decode → encode round-trip), and how the stream is cut into pieces
//!   changes nothing (frames, error, bytes left);
//! - a refused header is refused as soon as its 4 bytes are in, before any
//!   body byte: a fresh decoder given only those 4 bytes gives the same error;
//! - the decoder never allocates more than the stream it was given.
#![no_main]

use ferry_fuzz::{Bytes, counted, peak, reset_peak};
use ferry_proto::frame::{self, FrameDecoder, FrameError, HEADER_LEN};
use ferry_proto::{control, local_api};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<FrameError>,
    left: usize,
}

/// Feeds `stream` in pieces of the given sizes (cycled; 0 means "the
/// rest"), taking frames out after each piece as a connection would.
fn run(stream: &[u8], max: usize, sizes: &[usize]) -> Outcome {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let size = match sizes.get(i % sizes.len().max(1)) {
            Some(0) | None => stream.len() - at,
            Some(n) => (*n).min(stream.len() - at),
        };
        i += 1;
        counted(|| decoder.push(&stream[at..at + size]));
        at += size;
        loop {
            match counted(|| decoder.next_frame()) {
                Ok(Some(body)) => {
                    assert!(!body.is_empty(), "empty frame returned");
                    assert!(body.len() <= max, "frame of {} > max {max}", body.len());
                    frames.push(body);
                }
                Ok(None) => {
                    assert!(
                        decoder.buffered() < HEADER_LEN + max,
                        "decoder waits holding {} bytes (max frame {max})",
                        decoder.buffered()
                    );
                    break;
                }
                Err(error) => {
                    let consumed: usize = frames.iter().map(|f| HEADER_LEN + f.len()).sum();
                    let header: [u8; HEADER_LEN] = stream[consumed..consumed + HEADER_LEN]
                        .try_into()
                        .expect("an error needs a whole header");
                    // Refused on the header alone, before any body byte.
                    let mut fresh = FrameDecoder::new(max);
                    fresh.push(&header);
                    assert_eq!(fresh.next_frame().as_ref(), Err(&error));
                    assert_eq!(frame::decode_header(header, max).as_ref(), Err(&error));
                    let len = u32::from_be_bytes(header) as usize;
                    match &error {
                        FrameError::Empty => assert_eq!(len, 0),
                        FrameError::TooLarge { len: l, max: m } => {
                            assert_eq!((*l, *m), (len, max));
                            assert!(len > max);
                        }
                    }
                    return Outcome {
                        frames,
                        error: Some(error),
                        left: stream.len() - consumed,
                    };
                }
            }
        }
    }
    let left = decoder.buffered();
    Outcome {
        frames,
        error: None,
        left,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let max = match input.u8() {
        0 => control::MAX_FRAME,
        1 => local_api::MAX_FRAME,
        n => usize::from(n % 64) + 1,
    };
    let n_sizes = usize::from(input.u8() % 8);
    let sizes: Vec<usize> = input
        .take(n_sizes)
        .iter()
        .map(|b| usize::from(*b))
        .collect();
    let stream = input.rest();

    reset_peak();
    let pieces = run(stream, max, &sizes);
    // Bodies are copied out and the buffer grows by doubling at most.
    assert!(
        peak() <= 2 * stream.len().max(64),
        "the decoder allocated {} bytes for a {}-byte stream",
        peak(),
        stream.len()
    );
    let whole = run(stream, max, &[]);
    let bytes = run(stream, max, &[1]);
    assert_eq!(pieces, whole, "cutting the stream changed the frames");
    assert_eq!(bytes, whole, "byte-by-byte feeding changed the frames");

    // decode → encode gives back exactly the bytes consumed.
    let mut again = Vec::new();
    for body in &whole.frames {
        again.extend(frame::encode(body, max).expect("a decoded frame re-encodes"));
    }
    assert_eq!(again.as_slice(), &stream[..stream.len() - whole.left]);
    if whole.error.is_none() {
        // What is left is a frame still arriving: less than header + max.
        assert!(whole.left < HEADER_LEN + max);
    }
});
