//! The canonical byte encoding (docs/FORMAT.md §2): big-endian fixed-width integers,
//! `u32` length prefixes for strings, byte strings and lists, a `0`/`1` byte for options.
//!
//! Decoding is strict: every value has exactly one encoding, so re-encoding a decoded value
//! gives back the input byte for byte and a changed byte can not go unnoticed.

use crate::error::DecodeError;

/// Appends canonical values to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn fixed(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn len(&mut self, n: usize) {
        // Lengths above u32::MAX can not occur: payloads live outside events and every
        // string is bounded far below 4 GiB by the types that carry it.
        self.u32(u32::try_from(n).expect("length fits in u32"));
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.fixed(s.as_bytes());
    }
    pub(crate) fn bool(&mut self, b: bool) {
        self.u8(u8::from(b));
    }
}

/// Reads canonical values from a byte slice.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() - self.pos < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                what,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { offset, what }),
        }
    }
    /// A `u32` count that is checked against the bytes left (each item at least
    /// `min_item` bytes), so a forged count can not make the decoder allocate.
    pub(crate) fn count(
        &mut self,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.data.len() - self.pos {
            return Err(DecodeError::Truncated { offset, what });
        }
        Ok(n)
    }
    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.count(1, what)?;
        let offset = self.pos;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| DecodeError::Invalid { offset, what })
    }
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.data.len() {
            return Err(DecodeError::TrailingBytes { offset: self.pos });
        }
        Ok(())
    }
}
