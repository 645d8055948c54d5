//! The encoding of a block's state changes in the block log: a compact binary
//! list, checked field by field when read back.

use super::backend::{Change, Entry};
use crate::types::Hash;

/// Largest key accepted when decoding.
const MAX_KEY: usize = 4 * 1024;
/// Largest value accepted when decoding.
const MAX_VALUE: usize = 1024 * 1024;

/// Encodes changes: count, then per change the key hash, a presence byte, and
/// for a set entry its length-prefixed key and value.
pub fn encode(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + changes.len() * 80);
    out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for (kh, e) in changes {
        out.extend_from_slice(kh.as_bytes());
        match e {
            None => out.push(0),
            Some(e) => {
                out.push(1);
                out.extend_from_slice(&(e.key.len() as u32).to_be_bytes());
                out.extend_from_slice(&e.key);
                out.extend_from_slice(&(e.value.len() as u32).to_be_bytes());
                out.extend_from_slice(&e.value);
            }
        }
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("truncated state delta".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Decodes [`encode`]'s output, checking that every key hash matches its key.
pub fn decode(bytes: &[u8]) -> Result<Vec<Change>, String> {
    let mut r = Reader { b: bytes };
    let n = r.u32()?;
    // Each change takes at least 33 bytes: bound the allocation by the input.
    if n > bytes.len() / 33 {
        return Err(format!(
            "state delta claims {n} changes in {} bytes",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kh = Hash::from_slice(r.take(32)?).map_err(|e| e.to_string())?;
        match r.take(1)?[0] {
            0 => out.push((kh, None)),
            1 => {
                let kl = r.u32()?;
                if kl > MAX_KEY {
                    return Err(format!("key of {kl} bytes in state delta"));
                }
                let key = r.take(kl)?.to_vec();
                let vl = r.u32()?;
                if vl > MAX_VALUE {
                    return Err(format!("value of {vl} bytes in state delta"));
                }
                let value = r.take(vl)?.to_vec();
                let e = Entry { key, value };
                if e.kh() != kh {
                    return Err("key hash does not match its key in state delta".into());
                }
                out.push((kh, Some(e)));
            }
            x => return Err(format!("bad presence byte {x} in state delta")),
        }
    }
    if !r.b.is_empty() {
        return Err("trailing bytes after state delta".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let e = Entry {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let changes = vec![(e.kh(), Some(e.clone())), (Hash::digest(b"gone"), None)];
        let bytes = encode(&changes);
        assert_eq!(decode(&bytes).unwrap(), changes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[5] ^= 1; // inside the first key hash
        assert!(decode(&flipped).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
