//! ed25519 keys and signatures, with one verification rule everywhere.
//!
//! The rule is ZIP-215 (the `ed25519-zebra` crate, as used by Zcash; the same
//! rule as `ed25519-consensus` in Penumbra and the Tendermint light client):
//! `A` and `R` must decode to curve points (non-canonical encodings accepted),
//! `s` must be below the group order, and the *cofactored* equation
//! `[8][s]B = [8]R + [8][k]A` must hold. Its batch equation multiplies the
//! random linear combination by the cofactor too, so a batch accepts exactly
//! the signatures that pass one by one, whatever their torsion components and
//! whatever the random coefficients: no node's verdict depends on how its
//! signatures happened to be grouped. (The rule it replaces, `verify_strict`
//! alone and ed25519-dalek's cofactorless batch, disagreed on a nonce `R` with
//! a torsion component: the batch passed it whenever its coefficient killed the
//! torsion, so replaying a block was a coin toss.)
//!
//! Identities are stricter than signatures: a [`PublicKey`] must be the
//! canonical encoding of a point of large order. A small-order ("weak") key
//! verifies a signature with `s = 0` on any message under the cofactored rule,
//! so no such key may become a validator, a node or an account; every key is
//! built through [`PublicKey::from_bytes`], so the refusal is the same on every
//! path (genesis, a transfer to a new account, a decoded vote or transaction).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash as StdHash, Hasher};
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signer as _, SigningKey};
use ed25519_zebra::VerificationKey;
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
        let compressed = CompressedEdwardsY(arr);
        let point = compressed.decompress().ok_or(TypesError::InvalidKey)?;
        if point.is_small_order() || point.compress() != compressed {
            return Err(TypesError::InvalidKey);
        }
        let key = VerificationKey::try_from(arr).map_err(|_| TypesError::InvalidKey)?;
        key_cache::put(arr, key);
        Ok(PublicKey { bytes: arr })
    }

    /// The decompressed key. Cannot fail for a key built by [`PublicKey::from_bytes`];
    /// the error path exists only so no code here can panic.
    fn verification_key(&self) -> Result<VerificationKey, TypesError> {
        if let Some(k) = key_cache::get(&self.bytes) {
            return Ok(k);
        }
        let k = VerificationKey::try_from(self.bytes).map_err(|_| TypesError::InvalidKey)?;
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

    /// Checks `sig` over `msg` with the ZIP-215 rule (see the module notes).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), TypesError> {
        let s = ed25519_zebra::Signature::from_bytes(&sig.0);
        self.verification_key()?
            .verify(&s, msg)
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
    use parking_lot::Mutex;
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use ed25519_zebra::VerificationKey as VerifyingKey;

    /// Entries held (about 230 bytes each: at most ~15 MB). When full the
    /// cache starts over: simple, bounded, and the working set refills it.
    const MAX_KEYS: usize = 1 << 16;

    fn map() -> &'static Mutex<HashMap<[u8; 32], VerifyingKey>> {
        static KEYS: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
        KEYS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        map().lock().get(bytes).copied()
    }

    pub(super) fn put(bytes: [u8; 32], key: VerifyingKey) {
        let mut m = map().lock();
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

/// Below this many signatures a batch costs more than checking each.
const MIN_BATCH: usize = 4;

/// Verifies many signatures at once. Accepts exactly what checking each with
/// [`PublicKey::verify`] accepts, on every input (the cofactored batch
/// equation; see the module notes). On failure returns the index of the first
/// bad signature.
pub fn verify_batch(items: &[SignedItem<'_>]) -> Result<(), usize> {
    if items.len() < MIN_BATCH {
        return verify_each(items);
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for it in items {
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(it.key.bytes),
            ed25519_zebra::Signature::from_bytes(&it.sig.0),
            it.msg,
        ));
    }
    match batch.verify(rand_core::OsRng) {
        Ok(()) => Ok(()),
        // Which one: the single checks give the same verdicts, one by one.
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
    fn a_nonce_that_does_not_match_is_refused_on_both_paths() {
        let k = kp(9);
        let mut sig = k.sign(b"m");
        // Replace R by the identity point: the equation no longer holds.
        let mut id = [0u8; 32];
        id[0] = 1;
        sig.0[..32].copy_from_slice(&id);
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

    /// Signatures built by hand from scalars and points, so that keys and nonces
    /// can carry torsion components, be of small order, or be encoded in
    /// non-canonical ways.
    mod forge {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};

        /// A deterministic stream of bytes (SHA-512 in counter mode).
        pub struct Rng(pub u64);

        impl Rng {
            pub fn bytes64(&mut self) -> [u8; 64] {
                self.0 += 1;
                Sha512::digest(self.0.to_le_bytes()).into()
            }
            pub fn below(&mut self, n: u64) -> u64 {
                u64::from_le_bytes(self.bytes64()[..8].try_into().unwrap()) % n
            }
            pub fn scalar(&mut self) -> Scalar {
                Scalar::from_bytes_mod_order_wide(&self.bytes64())
            }
            pub fn torsion(&mut self) -> EdwardsPoint {
                EIGHT_TORSION[self.below(8) as usize]
            }
        }

        /// `k = H(R || A || M)` reduced mod l, as both rules compute it.
        pub fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
            let h: [u8; 64] = Sha512::new()
                .chain_update(r)
                .chain_update(a)
                .chain_update(msg)
                .finalize()
                .into();
            Scalar::from_bytes_mod_order_wide(&h)
        }

        /// `s = r + k a`, for the encoded `R` and `A` given.
        pub fn sign(
            a: &Scalar,
            a_bytes: &[u8; 32],
            r: &Scalar,
            r_bytes: &[u8; 32],
            msg: &[u8],
        ) -> [u8; 64] {
            let s = r + challenge(r_bytes, a_bytes, msg) * a;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(r_bytes);
            sig[32..].copy_from_slice(s.as_bytes());
            sig
        }

        /// `x B + T` for a random `x` and a torsion point `T` (possibly the
        /// identity), encoded.
        pub fn point(rng: &mut Rng, torsion: bool) -> (Scalar, [u8; 32]) {
            let x = rng.scalar();
            let t = if torsion {
                rng.torsion()
            } else {
                EdwardsPoint::default()
            };
            (x, (x * B + t).compress().to_bytes())
        }

        /// A non-canonical encoding (y + p, y below 19) of a point of small
        /// order, used as a nonce with `r = 0`.
        pub fn non_canonical(rng: &mut Rng) -> [u8; 32] {
            loop {
                let small = rng.below(19) as u8;
                let mut e = [0xffu8; 32];
                e[0] = 0xed + small;
                e[31] = if rng.below(2) == 0 { 0x7f } else { 0xff };
                let point = curve25519_dalek::edwards::CompressedEdwardsY(e).decompress();
                if point.is_some_and(|p| p.is_small_order()) {
                    return e;
                }
            }
        }
    }

    /// One signed item of the property test, owned.
    struct Case {
        key: PublicKey,
        msg: Vec<u8>,
        sig: Signature,
        kind: &'static str,
    }

    /// A random case of one of the kinds that split the old rules.
    fn random_case(rng: &mut forge::Rng) -> Case {
        use curve25519_dalek::scalar::Scalar;
        let msg = rng.bytes64()[..(rng.below(64) as usize)].to_vec();
        let kind = rng.below(9);
        // The key: clean, or with a torsion component (a large-order point
        // still, so it is a valid identity).
        let torsioned_key = kind == 2 || kind == 6;
        let (a, a_bytes) = loop {
            let (a, bytes) = forge::point(rng, torsioned_key);
            if PublicKey::from_bytes(&bytes).is_ok() {
                break (a, bytes);
            }
        };
        let key = PublicKey::from_bytes(&a_bytes).unwrap();
        let (r, r_bytes) = match kind {
            1 | 6 => forge::point(rng, true),
            // A nonce of small order: r = 0, R = T.
            3 => (Scalar::ZERO, rng.torsion().compress().to_bytes()),
            // A non-canonical nonce encoding (of a small-order point).
            4 => (Scalar::ZERO, forge::non_canonical(rng)),
            _ => forge::point(rng, false),
        };
        let mut sig = forge::sign(&a, &a_bytes, &r, &r_bytes, &msg);
        let kind = match kind {
            0 => "clean",
            1 => "torsioned R",
            2 => "torsioned A",
            3 => "small-order R",
            4 => "non-canonical R",
            5 => {
                // s + l: the same scalar, not reduced.
                let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
                let mut wide = [0u8; 32];
                // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
                let mut lb = [0u8; 32];
                lb[..16].copy_from_slice(&[
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde,
                    0xf9, 0xde, 0x14,
                ]);
                lb[31] = 0x10;
                // s + l fits 254 bits: add with carries.
                let sb = s.as_bytes();
                let mut carry = 0u16;
                for i in 0..32 {
                    let v = u16::from(sb[i]) + u16::from(lb[i]) + carry;
                    wide[i] = v as u8;
                    carry = v >> 8;
                }
                sig[32..].copy_from_slice(&wide);
                "non-canonical s"
            }
            6 => "torsioned A and R",
            7 => {
                sig[(rng.below(64)) as usize] ^= 1 << rng.below(8);
                "flipped bit"
            }
            _ => {
                sig = rng.bytes64();
                "random bytes"
            }
        };
        Case {
            key,
            msg,
            sig: Signature(sig),
            kind,
        }
    }

    /// The single and the batch path give the same verdict on every input:
    /// random batches mixing clean signatures with torsioned keys and nonces,
    /// small-order and non-canonical nonces, unreduced scalars and garbage.
    #[test]
    fn single_and_batch_verdicts_agree_on_every_input() {
        let mut rng = forge::Rng(215);
        let mut accepted = std::collections::HashMap::<&str, (usize, usize)>::new();
        for round in 0..400 {
            let n = 1 + rng.below(40) as usize;
            let cases: Vec<Case> = (0..n).map(|_| random_case(&mut rng)).collect();
            let single: Vec<bool> = cases
                .iter()
                .map(|c| c.key.verify(&c.msg, &c.sig).is_ok())
                .collect();
            for (c, ok) in cases.iter().zip(&single) {
                let e = accepted.entry(c.kind).or_default();
                e.0 += usize::from(*ok);
                e.1 += 1;
            }
            let items: Vec<SignedItem<'_>> = cases
                .iter()
                .map(|c| SignedItem {
                    key: &c.key,
                    msg: &c.msg,
                    sig: &c.sig,
                })
                .collect();
            let expected = match single.iter().position(|ok| !ok) {
                Some(i) => Err(i),
                None => Ok(()),
            };
            // Several times: the batch's coefficients are random each time.
            for _ in 0..3 {
                assert_eq!(verify_batch(&items), expected, "round {round}");
            }
            // And the good ones alone, as one batch, all pass.
            let good: Vec<SignedItem<'_>> = items
                .iter()
                .zip(&single)
                .filter(|(_, ok)| **ok)
                .map(|(it, _)| *it)
                .collect();
            assert_eq!(verify_batch(&good), Ok(()), "round {round}");
        }
        // What the rule decides, kind by kind: a signature whose equation holds
        // up to torsion is valid, whatever carries the torsion; a broken
        // signature is not.
        for (kind, (ok, all)) in &accepted {
            assert!(*all > 100, "too few cases of {kind}: {all}");
            match *kind {
                "clean" | "torsioned R" | "torsioned A" | "torsioned A and R" | "small-order R"
                | "non-canonical R" => assert_eq!(ok, all, "{kind}"),
                _ => assert_eq!(*ok, 0, "{kind}"),
            }
        }
    }

    /// Small-order keys never become identities, whatever their encoding.
    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            let b = t.compress().to_bytes();
            assert!(PublicKey::from_bytes(&b).is_err(), "{}", hex::encode(b));
            let mut neg = b;
            neg[31] ^= 0x80;
            assert!(PublicKey::from_bytes(&neg).is_err(), "{}", hex::encode(neg));
        }
        let mut rng = forge::Rng(7);
        for _ in 0..20 {
            let e = forge::non_canonical(&mut rng);
            assert!(PublicKey::from_bytes(&e).is_err(), "{}", hex::encode(e));
        }
        // A large-order point with a torsion component is a valid identity.
        let (_, torsioned) = forge::point(&mut rng, true);
        let _ = PublicKey::from_bytes(&torsioned);
    }
}
