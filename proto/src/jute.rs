//! Jute binary archive primitives: big-endian ints, length-prefixed buffers and strings, and
//! counted vectors.
//!
//! Decoding reads from a [`Reader`] over one complete frame. Every length read from the wire is
//! checked against the bytes that remain before anything is allocated, so a hostile length can
//! never make the decoder allocate more than the frame holds.

use crate::error::DecodeError;

/// A cursor over the bytes of one frame.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Wraps `buf`; reading starts at its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a big-endian `int`.
    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian `long`.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// Reads a `boolean`: any non-zero byte is true, as Java readers do.
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// Reads a length prefix: `-1` means null (`None`); other negatives and lengths past the end
    /// of the frame are errors.
    fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::NegativeLength(len))?;
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        Ok(Some(len))
    }

    /// Reads a `buffer`; `None` for the null buffer (length -1).
    pub fn read_buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// Reads a `ustring`. Null (-1) reads as the empty string; invalid UTF-8 is replaced rather
    /// than rejected, because Java writes non-BMP characters in a CESU-8 style.
    pub fn read_string(&mut self) -> Result<String, DecodeError> {
        match self.read_len()? {
            None => Ok(String::new()),
            Some(n) => Ok(String::from_utf8_lossy(self.take(n)?).into_owned()),
        }
    }

    /// Reads a vector count. Null (-1) reads as zero. Each element takes at least
    /// `min_elem_len` bytes, so a count that cannot fit in the rest of the frame is an error.
    pub fn read_count(&mut self, min_elem_len: usize) -> Result<usize, DecodeError> {
        let count = self.read_i32()?;
        if count == -1 {
            return Ok(0);
        }
        let count = usize::try_from(count).map_err(|_| DecodeError::NegativeLength(count))?;
        if count.saturating_mul(min_elem_len.max(1)) > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        Ok(count)
    }
}

/// Appends a big-endian `int`.
pub fn write_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `long`.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a `boolean` as 0 or 1.
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

/// Appends a length as a jute `int`. Lengths above `i32::MAX` cannot be framed at all; the frame
/// limit rejects them long before, so saturating here is never observable on the wire.
fn write_len(out: &mut Vec<u8>, len: usize) {
    write_i32(out, i32::try_from(len).unwrap_or(i32::MAX));
}

/// Appends a `buffer`; `None` is written as length -1.
pub fn write_buffer(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => write_i32(out, -1),
        Some(b) => {
            write_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

/// Appends a `ustring`.
pub fn write_string(out: &mut Vec<u8>, v: &str) {
    write_len(out, v.len());
    out.extend_from_slice(v.as_bytes());
}

/// A value with a jute encoding.
pub trait Jute: Sized {
    /// The fewest bytes one encoded value takes; used to bound vector counts.
    const MIN_LEN: usize;
    /// Appends the encoding of `self`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes one value.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Marker for jute records, so that `Vec<T>` of records is a jute vector while `Vec<u8>` is a
/// jute buffer.
pub trait Record: Jute {}

impl Jute for i32 {
    const MIN_LEN: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_i32(out, *self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_i32()
    }
}

impl Jute for i64 {
    const MIN_LEN: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        write_i64(out, *self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_i64()
    }
}

impl Jute for bool {
    const MIN_LEN: usize = 1;
    fn encode(&self, out: &mut Vec<u8>) {
        write_bool(out, *self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_bool()
    }
}

impl Jute for String {
    const MIN_LEN: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_string()
    }
}

impl Record for String {}

/// A non-null buffer; null decodes as empty.
impl Jute for Vec<u8> {
    const MIN_LEN: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_buffer(out, Some(self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(r.read_buffer()?.unwrap_or_default())
    }
}

/// A nullable buffer (znode data may be null).
impl Jute for Option<Vec<u8>> {
    const MIN_LEN: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_buffer(out, self.as_deref());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_buffer()
    }
}

impl<T: Record> Jute for Vec<T> {
    const MIN_LEN: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_len(out, self.len());
        for item in self {
            item.encode(out);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.read_count(T::MIN_LEN)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode(r)?);
        }
        Ok(items)
    }
}

/// Declares a jute record: a struct whose fields are encoded in declaration order.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::jute::Jute for $name {
            const MIN_LEN: usize = 0 $( + <$ty as $crate::jute::Jute>::MIN_LEN )*;
            #[allow(unused_variables)]
            fn encode(&self, out: &mut Vec<u8>) {
                $( $crate::jute::Jute::encode(&self.$field, out); )*
            }
            #[allow(unused_variables)]
            fn decode(r: &mut $crate::jute::Reader<'_>) -> Result<Self, $crate::error::DecodeError> {
                Ok($name { $( $field: <$ty as $crate::jute::Jute>::decode(r)? ),* })
            }
        }

        impl $crate::jute::Record for $name {}
    };
}

pub(crate) use record;

/// Encodes any jute value into a fresh buffer.
pub fn to_vec<T: Jute>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

/// Decodes a value that must take up all of `buf`.
pub fn from_slice<T: Jute>(buf: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(buf);
    let v = T::decode(&mut r)?;
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_buffer_and_string_and_vector() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.read_buffer().unwrap(), None);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.read_string().unwrap(), "");
        let v: Vec<String> = from_slice(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(v.is_empty());
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        // A buffer claiming 2 GiB in a 4-byte frame.
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(r.read_buffer(), Err(DecodeError::UnexpectedEof));
        let mut r = Reader::new(&[0x80, 0, 0, 0]);
        assert!(matches!(
            r.read_buffer(),
            Err(DecodeError::NegativeLength(_))
        ));
        let v: Result<Vec<String>, _> = from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(v, Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn bool_accepts_any_nonzero() {
        assert!(Reader::new(&[7]).read_bool().unwrap());
        assert!(!Reader::new(&[0]).read_bool().unwrap());
    }
}
