//! ed25519 keys and signatures, with one verification rule everywhere.
//!
//! Every single signature is checked with `verify_strict` (canonical encodings, no
//! small-order key or nonce point). Batch verification checks the same equation
//! for many signatures at once; before a batch we apply the checks that make it
//! accept exactly what `verify_strict` accepts (canonical, non-small-order `R`;
//! weak keys are refused when a [`PublicKey`] is built), and when a batch fails we
//! verify one by one to say which signature is bad.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash as StdHash, Hasher};
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TypesError;

/// An ed25519 public key, checked when built to decompress to a point of large
/// order. Only the 32 bytes are kept (keys are copied into every vote and map);
/// the point is decompressed when a signature is checked.
#[derive(Copy, Clone)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    /// Parses and checks a key: it must be a valid, canonical curve point of large
    /// order.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, TypesError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| TypesError::Length {
            what: "public key",
            expected: 32,
            got: bytes.len(),
        })?;
        if key_cache::get(&arr).is_some() {
            return Ok(PublicKey { bytes: arr });
        }
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| TypesError::InvalidKey)?;
        if key.is_weak() || key.to_bytes() != arr {
            return Err(TypesError::InvalidKey);
        }
        key_cache::put(arr, key);
        Ok(PublicKey { bytes: arr })
    }

    /// The decompressed key. Cannot fail for a key built by [`PublicKey::from_bytes`];
    /// the error path exists only so no code here can panic.
    fn verifying_key(&self) -> Result<VerifyingKey, TypesError> {
        if let Some(k) = key_cache::get(&self.bytes) {
            return Ok(k);
        }
        let k = VerifyingKey::from_bytes(&self.bytes).map_err(|_| TypesError::InvalidKey)?;
        key_cache::put(self.bytes, k);
        Ok(k)
    }

    /// The 32 encoded bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Lower-case hex of the key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The first eight hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.bytes[..4])
    }

    /// Checks `sig` over `msg` with `verify_strict`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), TypesError> {
        let s = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.verifying_key()?
            .verify_strict(msg, &s)
            .map_err(|_| TypesError::BadSignature)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl StdHash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = TypesError;

    fn from_str(s: &str) -> Result<PublicKey, TypesError> {
        let bytes = hex::decode(s.trim()).map_err(|e| TypesError::Hex(e.to_string()))?;
        PublicKey::from_bytes(&bytes)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Keys already checked, with their decompressed points. Decompressing a key
/// (a field square root) and checking that its encoding is canonical (a field
/// inversion) cost about half a signature check, and a key was decompressed
/// every time a transaction was decoded and again when its signature was
/// checked; a chain sees the same senders and validators over and over. Only
/// keys that passed every check of [`PublicKey::from_bytes`] (or derived from a
/// secret key) are stored, so a hit means exactly what a fresh check would.
mod key_cache {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use ed25519_dalek::VerifyingKey;

    /// Entries held (about 230 bytes each: at most ~15 MB). When full the
    /// cache starts over: simple, bounded, and the working set refills it.
    const MAX_KEYS: usize = 1 << 16;

    fn map() -> &'static Mutex<HashMap<[u8; 32], VerifyingKey>> {
        static KEYS: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
        KEYS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        map()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bytes)
            .copied()
    }

    pub(super) fn put(bytes: [u8; 32], key: VerifyingKey) {
        let mut m = map().lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_KEYS {
            m.clear();
        }
        m.insert(bytes, key);
    }
}

/// A 64-byte ed25519 signature.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Parses exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Signature, TypesError> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| TypesError::Length {
            what: "signature",
            expected: 64,
            got: bytes.len(),
        })?;
        Ok(Signature(arr))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..4]))
    }
}

/// A private signing key and its public key.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Keypair {
        let secret = SigningKey::generate(&mut rand_core::OsRng);
        Keypair::from_signing_key(secret)
    }

    /// The key with this 32-byte seed. Deterministic: tests and the simulator use it.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair::from_signing_key(SigningKey::from_bytes(&seed))
    }

    fn from_signing_key(secret: SigningKey) -> Keypair {
        let public = PublicKey {
            bytes: secret.verifying_key().to_bytes(),
        };
        Keypair { secret, public }
    }

    /// The 32-byte seed, for writing the key to its file.
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `msg`. Deterministic (RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.secret.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public.short())
    }
}

/// One signature to check in a batch.
#[derive(Debug, Clone, Copy)]
pub struct SignedItem<'a> {
    /// Who claims to have signed.
    pub key: &'a PublicKey,
    /// The signed bytes.
    pub msg: &'a [u8],
    /// The signature.
    pub sig: &'a Signature,
}

/// Checks the parts of a signature that `verify_strict` checks and the batch
/// equation does not: `R` is a canonical encoding of a point of large order.
fn nonce_is_strict(sig: &Signature) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig.0[..32]);
    let compressed = CompressedEdwardsY(r);
    match compressed.decompress() {
        Some(point) => !point.is_small_order() && point.compress() == compressed,
        None => false,
    }
}

/// Verifies many signatures at once. Accepts exactly what checking each with
/// [`PublicKey::verify`] accepts. On failure returns the index of the first bad
/// signature.
pub fn verify_batch(items: &[SignedItem<'_>]) -> Result<(), usize> {
    // Below a handful of signatures the batch setup costs more than it saves.
    if items.len() < 4 {
        return verify_each(items);
    }
    if let Some(i) = items.iter().position(|it| !nonce_is_strict(it.sig)) {
        return Err(i);
    }
    let msgs: Vec<&[u8]> = items.iter().map(|it| it.msg).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|it| ed25519_dalek::Signature::from_bytes(&it.sig.0))
        .collect();
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        keys.push(it.key.verifying_key().map_err(|_| i)?);
    }
    match ed25519_dalek::verify_batch(&msgs, &sigs, &keys) {
        Ok(()) => Ok(()),
        Err(_) => verify_each(items),
    }
}

fn verify_each(items: &[SignedItem<'_>]) -> Result<(), usize> {
    for (i, it) in items.iter().enumerate() {
        if it.key.verify(it.msg, it.sig).is_err() {
            return Err(i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(i: u8) -> Keypair {
        Keypair::from_seed([i; 32])
    }

    #[test]
    fn sign_and_verify() {
        let k = kp(1);
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig).is_ok());
        assert!(k.public().verify(b"hellp", &sig).is_err());
        assert!(kp(2).public().verify(b"hello", &sig).is_err());
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(PublicKey::from_bytes(&[0u8; 31]).is_err());
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
        let good = kp(3).public();
        assert_eq!(PublicKey::from_bytes(good.as_bytes()).unwrap(), good);
        assert_eq!(good.to_hex().parse::<PublicKey>().unwrap(), good);
    }

    #[test]
    fn batch_finds_the_bad_signature() {
        let keys: Vec<Keypair> = (1..=8).map(kp).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        let items = |sigs: &[Signature]| -> Vec<(PublicKey, Vec<u8>, Signature)> {
            (0..8)
                .map(|i| (pubs[i], msgs[i].clone(), sigs[i]))
                .collect()
        };
        let owned = items(&sigs);
        let batch: Vec<SignedItem<'_>> = owned
            .iter()
            .map(|(k, m, s)| SignedItem {
                key: k,
                msg: m,
                sig: s,
            })
            .collect();
        assert_eq!(verify_batch(&batch), Ok(()));

        sigs[5].0[40] ^= 1;
        let owned = items(&sigs);
        let batch: Vec<SignedItem<'_>> = owned
            .iter()
            .map(|(k, m, s)| SignedItem {
                key: k,
                msg: m,
                sig: s,
            })
            .collect();
        assert_eq!(verify_batch(&batch), Err(5));
    }

    #[test]
    fn batch_rejects_small_order_nonce_like_strict() {
        let k = kp(9);
        let mut sig = k.sign(b"m");
        // Replace R by the identity point: verify_strict refuses it.
        sig.0[..32].copy_from_slice(&{
            let mut id = [0u8; 32];
            id[0] = 1;
            id
        });
        let pk = k.public();
        let items: Vec<SignedItem<'_>> = (0..5)
            .map(|_| SignedItem {
                key: &pk,
                msg: b"m",
                sig: &sig,
            })
            .collect();
        assert!(pk.verify(b"m", &sig).is_err());
        assert_eq!(verify_batch(&items), Err(0));
    }
}
