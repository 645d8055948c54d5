//! Canonical byte encoding for what is hashed or signed. It is independent of the
//! protobuf encoding so that a signature never depends on how a message travelled:
//! fixed-width big-endian integers, length-prefixed byte strings, and a domain tag
//! up front so that bytes signed as one kind of message can never be read as another.

use super::{Hash, Height, Round, Timestamp};

/// Builder of canonical bytes.
#[derive(Debug, Default)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    /// Starts a message with its domain tag.
    pub fn tagged(tag: &str) -> Canonical {
        let mut c = Canonical(Vec::with_capacity(128));
        c.str(tag);
        c
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Lengths beyond u32 never reach here: every message is bounded far below.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Appends a 32-byte hash (fixed width, no prefix).
    pub fn hash(&mut self, h: &Hash) -> &mut Self {
        self.0.extend_from_slice(h.as_bytes());
        self
    }

    /// Appends an optional hash: a 0 byte for none, 1 and the hash for some.
    pub fn opt_hash(&mut self, h: Option<&Hash>) -> &mut Self {
        match h {
            None => self.u8(0),
            Some(h) => self.u8(1).hash(h),
        }
    }

    /// Appends a height.
    pub fn height(&mut self, h: Height) -> &mut Self {
        self.u64(h.0)
    }

    /// Appends a round.
    pub fn round(&mut self, r: Round) -> &mut Self {
        self.u32(r.0)
    }

    /// Appends an optional round: a 0 byte for none, 1 and the round for some.
    pub fn opt_round(&mut self, r: Option<Round>) -> &mut Self {
        match r {
            None => self.u8(0),
            Some(r) => self.u8(1).round(r),
        }
    }

    /// Appends a timestamp.
    pub fn time(&mut self, t: Timestamp) -> &mut Self {
        self.u64(t.0)
    }

    /// The bytes built so far.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }

    /// The SHA-256 of the bytes built so far.
    pub fn digest(&self) -> Hash {
        Hash::digest(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed() {
        let mut c = Canonical::tagged("t");
        c.u8(7)
            .u32(1)
            .u64(2)
            .opt_hash(None)
            .opt_round(Some(Round(3)));
        assert_eq!(
            c.finish(),
            vec![
                0, 0, 0, 1, b't', 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 3
            ]
        );
    }

    #[test]
    fn tags_separate_domains() {
        let mut a = Canonical::tagged("a");
        a.u64(1);
        let mut b = Canonical::tagged("b");
        b.u64(1);
        assert_ne!(a.digest(), b.digest());
    }
}
