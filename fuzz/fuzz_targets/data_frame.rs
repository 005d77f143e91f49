//! The data channel's frames (`ferry_proto::data`), read from a hostile
//! stream by the mover's real readers (`ferry_mover::channel`) and by the
//! buffer decoder (`data::frame_len` + `data::decode`).
//!
//! Input: byte 0 even: an authorised stream, read frame by frame with
//! `read_frame`; odd: byte 1 sizes a shared handshake budget (0: none,
//! else that many 16 KiB), and the stream is an unauthorised stream's
//! first frame, read with `read_handshake`. The rest is the raw stream
//! (`u32 length | u8 type | body` frames).
//!
//! Asserts:
//! - both readers agree frame by frame, and on where and why they stop;
//! - before authorisation: a frame over `MAX_HANDSHAKE_FRAME` is refused
//!   unless the budget has room for it now, nothing over `MAX_OPEN_FRAME`
//!   ever, a chunk never; the body buffer grows only with the bytes that
//!   really arrive (a peer announcing 1 MiB and sending 10 bytes costs a
//!   few KiB); the budget's room comes back after each read;
//! - a message re-encodes (`encode_message`) to a frame that decodes to an
//!   equal message, and its JSON is stable under a second round-trip;
//! - a chunk re-encodes (`chunk_prefix` + data) to exactly the bytes read;
//! - after authorisation a header over `MAX_AUTHORISED_FRAME` is refused,
//!   and nothing the reader allocates is larger than that, whatever length
//!   a header announces (allocations are seen by a counting allocator).
#![no_main]

use ferry_fuzz::{Bytes, peak_alloc};
use ferry_mover::channel::{ChannelError, HandshakeBudget, read_frame, read_handshake};
use ferry_proto::data::{
    self, CHUNK_HEADER, CHUNK_SIZE, DataError, FRAME_CHUNK, FRAME_MESSAGE, Frame,
    MAX_AUTHORISED_FRAME, MAX_HANDSHAKE_FRAME, MAX_MESSAGE, MAX_OPEN_FRAME,
};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Largest length a header may announce on an authorised stream.
const LIMIT: usize = MAX_AUTHORISED_FRAME;

/// Reading from a slice never waits: one poll finishes the future.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading from memory returned Pending"),
    }
}

/// How the buffer decoder sees the next frame of `stream`.
enum Step {
    Frame(Frame, usize),
    End,
    /// The stream ends inside a frame.
    Short,
    Refused(DataError),
}

fn buffer_step(stream: &[u8]) -> Step {
    if stream.is_empty() {
        return Step::End;
    }
    let Some(header) = stream.first_chunk::<4>() else {
        return Step::Short;
    };
    let len = match data::frame_len(*header, LIMIT) {
        Ok(len) => len,
        Err(e) => {
            let announced = u32::from_be_bytes(*header) as usize;
            match e {
                DataError::Truncated => assert_eq!(announced, 0),
                DataError::TooLarge(n) => assert!(n == announced && n > LIMIT),
                ref other => panic!("frame_len gave {other:?}"),
            }
            return Step::Refused(e);
        }
    };
    assert!((1..=LIMIT).contains(&len));
    let Some(body) = stream.get(4..4 + len) else {
        return Step::Short;
    };
    match data::decode(body.to_vec()) {
        Ok(frame) => Step::Frame(frame, 4 + len),
        Err(e) => Step::Refused(e),
    }
}

fn check_frame(frame: &Frame, wire: &[u8]) {
    match frame {
        Frame::Message(message) => {
            assert_eq!(wire[4], FRAME_MESSAGE);
            assert!(wire.len() - 5 <= MAX_MESSAGE);
            let again = data::encode_message(message);
            let len =
                data::frame_len(again[..4].try_into().unwrap(), LIMIT).expect("own frame refused");
            assert_eq!(len, again.len() - 4);
            match data::decode(again[4..].to_vec()) {
                Ok(Frame::Message(m)) => assert_eq!(&m, message, "message round-trip"),
                other => panic!("re-encoded message decodes as {other:?}"),
            }
            // Canonical JSON: a second trip gives the same bytes.
            let json = serde_json::to_vec(message).unwrap();
            let back: data::Message = serde_json::from_slice(&json).unwrap();
            assert_eq!(serde_json::to_vec(&back).unwrap(), json);
        }
        Frame::KeepAlive => assert_eq!(wire, data::KEEP_ALIVE, "keep-alive round-trip"),
        Frame::Chunk(header, bytes) => {
            assert_eq!(wire[4], FRAME_CHUNK);
            assert!(bytes.len() as u64 <= CHUNK_SIZE);
            assert_eq!(bytes.len(), wire.len() - 5 - CHUNK_HEADER);
            let mut again = data::chunk_prefix(header, bytes.len()).to_vec();
            again.extend_from_slice(bytes);
            assert_eq!(again.as_slice(), wire, "chunk round-trip");
        }
    }
}

fn authorised(stream: &[u8]) {
    let mut reader: &[u8] = stream;
    let mut at = 0;
    loop {
        let before = reader.len();
        let (read, peak) = peak_alloc(|| now(read_frame(&mut reader)));
        assert!(
            peak <= LIMIT,
            "reading one frame allocated {peak} bytes (limit {LIMIT})"
        );
        let step = buffer_step(&stream[at..]);
        match (read, step) {
            (Ok(Some(frame)), Step::Frame(expected, used)) => {
                assert_eq!(frame, expected, "the two readers disagree");
                assert_eq!(before - reader.len(), used);
                check_frame(&frame, &stream[at..at + used]);
                at += used;
            }
            (Ok(None), Step::End) => return,
            // A header cut short reads as a clean end; the rest as an error.
            (Ok(None), Step::Short) => {
                assert!(stream.len() - at < 4);
                return;
            }
            (Err(ChannelError::Io(e)), Step::Short) => {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                return;
            }
            (Err(ChannelError::Frame(e)), Step::Refused(expected)) => {
                assert_eq!(e, expected);
                return;
            }
            // A chunk frame too short for its header: the reader refuses it
            // from the length alone, the buffer decoder once it has it.
            (Err(ChannelError::Frame(DataError::Truncated)), Step::Short) => return,
            (read, _) => panic!("the readers disagree: read_frame gave {read:?}"),
        }
    }
}

fn handshake(budget_16k: u8, stream: &[u8]) {
    let budget =
        (budget_16k > 0).then(|| HandshakeBudget::new(usize::from(budget_16k) * 16 * 1024));
    let read = |budget: Option<&HandshakeBudget>| {
        let mut reader: &[u8] = stream;
        peak_alloc(|| now(read_handshake(&mut reader, budget)))
    };
    let (got, peak) = read(budget.as_ref());
    // The buffer follows the bytes that arrive, not the length announced.
    assert!(
        peak <= 8192 + 8 * stream.len(),
        "a {}-byte handshake allocated {peak} bytes",
        stream.len()
    );
    // The budget's room is back: the same read gives the same answer.
    let (again, _) = read(budget.as_ref());
    assert_eq!(
        format!("{got:?}"),
        format!("{again:?}"),
        "the budget leaked"
    );

    let Some(header) = stream.first_chunk::<4>() else {
        assert!(matches!(got, Err(ChannelError::Protocol(_))), "{got:?}");
        return;
    };
    let announced = u32::from_be_bytes(*header) as usize;
    let room = usize::from(budget_16k) * 16;
    let expected_len = match data::frame_len(*header, MAX_OPEN_FRAME) {
        Err(e) => {
            assert!(announced == 0 || announced > MAX_OPEN_FRAME);
            match got {
                Err(ChannelError::Frame(g)) => assert_eq!(g, e),
                other => panic!("{announced}-byte header: {other:?}"),
            }
            return;
        }
        Ok(len) => len,
    };
    if expected_len > MAX_HANDSHAKE_FRAME && expected_len.div_ceil(1024) > room {
        match got {
            Err(ChannelError::Frame(DataError::TooLarge(n))) => assert_eq!(n, expected_len),
            other => panic!("{expected_len} bytes over the budget: {other:?}"),
        }
        return;
    }
    match stream.get(4) {
        None => assert!(matches!(got, Err(ChannelError::Io(_))), "{got:?}"),
        Some(&FRAME_MESSAGE) => match (stream.get(4..4 + expected_len), got) {
            (None, Err(ChannelError::Protocol(_))) => {}
            (Some(body), got) => match (data::decode(body.to_vec()), got) {
                (Ok(Frame::Message(m)), Ok(g)) => {
                    assert_eq!(g, m);
                    check_frame(&Frame::Message(m), &stream[..4 + expected_len]);
                }
                (Err(e), Err(ChannelError::Frame(g))) => assert_eq!(g, e),
                (want, got) => panic!("handshake gave {got:?}, the decoder {want:?}"),
            },
            (None, got) => panic!("a short body gave {got:?}"),
        },
        Some(_) => assert!(
            matches!(got, Err(ChannelError::Protocol(_))),
            "a non-message before authorisation: {got:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    if input.u8() % 2 == 0 {
        authorised(input.rest());
    } else {
        let budget = input.u8();
        handshake(budget, input.rest());
    }
});
