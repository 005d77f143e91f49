//! Length-prefixed frames with an explicit, small maximum.
//!
//! A frame is a 4-byte big-endian body length followed by the body. The
//! maximum is checked on the header, before any body byte is buffered, so a
//! hostile peer cannot make us allocate more than the limit.

use thiserror::Error;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// Why a frame was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
}

/// Encodes `body` as one frame; refuses bodies over `max`.
pub fn encode(body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    check_len(body.len(), max)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Reads the body length out of a header, checking it against `max`.
pub fn decode_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    check_len(len, max)?;
    Ok(len)
}

fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(())
}

/// What a decoder keeps allocated once a large frame has gone through.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Splits a byte stream into frames as bytes arrive, never holding more than
/// one maximal frame plus one read's worth of input.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete frame body, `Ok(None)` if more bytes are
    /// needed, or an error once the stream is known to be invalid.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = decode_header(*header, self.max)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        // One large frame must not pin its memory for the connection's life
        // (thousands of idle connections each keep their decoder).
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() <= KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_in_one_push() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&encode(b"hello", 16).unwrap());
        assert_eq!(dec.next_frame().unwrap().unwrap(), b"hello");
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_header_is_refused_before_the_body_arrives() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&17u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        assert!(encode(&[0; 17], 16).is_err());
    }

    #[test]
    fn a_large_frame_does_not_pin_its_memory() {
        let mut decoder = FrameDecoder::new(1 << 20);
        decoder.push(&encode(&vec![7u8; 512 * 1024], 1 << 20).unwrap());
        decoder.push(&encode(b"small", 1 << 20).unwrap());
        assert_eq!(decoder.next_frame().unwrap().unwrap().len(), 512 * 1024);
        assert!(decoder.buf.capacity() <= KEEP_CAPACITY);
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"small");
    }

    #[test]
    fn empty_frames_are_refused() {
        assert_eq!(decode_header([0; 4], 16), Err(FrameError::Empty));
        assert_eq!(encode(b"", 16), Err(FrameError::Empty));
    }

    proptest! {
        #[test]
        fn any_split_of_a_frame_sequence_decodes_the_same(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..8),
            cut in 1usize..40,
        ) {
            let mut wire = Vec::new();
            for b in &bodies {
                wire.extend(encode(b, 64).unwrap());
            }
            let mut dec = FrameDecoder::new(64);
            let mut got = Vec::new();
            for piece in wire.chunks(cut) {
                dec.push(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, bodies);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut dec = FrameDecoder::new(64);
            dec.push(&bytes);
            for _ in 0..300 {
                match dec.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.len() <= 64),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
