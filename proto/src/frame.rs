//! Length-prefixed framing: a 4-byte big-endian length, then that many bytes.
//!
//! [`parse_frame`] checks for a whole frame before anything is decoded; an incomplete frame is
//! `Ok(None)` ("read more"), never an error.

use crate::error::FrameError;
use crate::jute::{write_i32, Jute};
use crate::records::ReplyHeader;
use crate::response::Response;

/// Apache ZooKeeper's default `jute.maxbuffer`: 0xFFFFF bytes.
pub const DEFAULT_MAX_FRAME_LEN: usize = 0xFFFFF;

/// Length of the frame prefix.
pub const PREFIX_LEN: usize = 4;

/// Looks for a complete frame at the start of `buf`.
///
/// Returns the body length when `buf` holds the prefix and the whole body (the body is
/// `buf[4..4 + len]`), `Ok(None)` when more bytes are needed, and an error when the prefix is
/// negative or above `max_len`.
pub fn parse_frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_len => len,
        _ => {
            return Err(FrameError::BadLength {
                len: len.into(),
                max: max_len,
            })
        }
    };
    if buf.len() - PREFIX_LEN < len {
        return Ok(None);
    }
    Ok(Some(len))
}

/// Appends one frame whose body `body` writes, patching the length prefix afterwards.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    write_i32(out, 0);
    body(out);
    let len = out.len() - start - PREFIX_LEN;
    let len = i32::try_from(len).unwrap_or(i32::MAX);
    out[start..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Appends a reply frame: the header, then the body only when `header.err` is 0.
pub fn write_reply(out: &mut Vec<u8>, header: &ReplyHeader, body: &Response) {
    write_frame(out, |out| {
        header.encode(out);
        if header.err == 0 {
            body.encode(out);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(parse_frame(&[], 100), Ok(None));
        assert_eq!(parse_frame(&[0, 0], 100), Ok(None));
        assert_eq!(parse_frame(&[0, 0, 0, 3, 1, 2], 100), Ok(None));
        assert_eq!(parse_frame(&[0, 0, 0, 3, 1, 2, 3, 9], 100), Ok(Some(3)));
    }

    #[test]
    fn bad_lengths() {
        assert!(parse_frame(&[0xff, 0xff, 0xff, 0xfe], 100).is_err());
        assert!(parse_frame(&[0, 0, 0, 101], 100).is_err());
        assert_eq!(parse_frame(&[0, 0, 0, 100], 100), Ok(None));
    }

    #[test]
    fn write_frame_patches_length() {
        let mut out = vec![9];
        write_frame(&mut out, |o| o.extend_from_slice(b"abc"));
        assert_eq!(out, vec![9, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
