//! Checks a client runs alone, against a trust root the user holds: that a
//! header is signed by more than 2/3 of a validator set the user trusts, and
//! that a state entry or a transaction is under it.
//!
//! Nothing the node under check says is believed on its word. The chain id and
//! the validator set come from the [`TrustRoot`]: the genesis file, or a
//! header whose height and hash the user got from a source they trust (then
//! the node's validator set is accepted only if it hashes to that header's
//! `validators_hash`). A [`Verifier`] built from the root checks a light block
//! (header and commit) into a [`VerifiedHeader`], and only a verified header
//! checks proofs.
//!
//! Two changes of the chain are planned and have one place each here:
//! - execution after the decision moves the state root of height `h` into
//!   header `h + 1`: [`VerifiedHeader::state_root`] says which height's state a
//!   header commits to;
//! - validator sets changed by governance: [`Verifier::validators_for`] picks
//!   the set that must sign a header; today the set is fixed, so a header
//!   naming any other set is refused rather than followed.

use std::future::Future;

use crate::app::state::{Proven, StateProof, Terminal};
use crate::client::ClientError;
use crate::codec::{CodecError, Wire, hash_field};
use crate::config::Genesis;
use crate::pb;
use crate::types::{
    BlockId, Commit, CommitError, Hash, Header, Height, TypesError, Validator, ValidatorSet, merkle,
};

/// Why an answer does not verify, or a verifier cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No trust root was given: checking a node against what the same node
    /// says proves nothing.
    #[error(
        "nothing to trust: a proof is checked against the chain's genesis or a trusted \
         header (height and hash) that you hold, never against what the node under check says"
    )]
    NoTrustRoot,
    /// The trust root itself is unusable.
    #[error("the trust root's validator set is invalid: {0}")]
    InvalidTrustRoot(#[source] TypesError),
    /// Fetching what anchors a trusted header failed.
    #[error("fetching from the node: {0}")]
    Fetch(#[source] ClientError),
    /// The answer is malformed.
    #[error("malformed proof data: {0}")]
    Malformed(#[from] CodecError),
    /// A part is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The node answered with a header of another height than asked.
    #[error("asked for the header of height {asked}, the node sent height {got}")]
    WrongHeight {
        /// Height asked for.
        asked: Height,
        /// Height of the header sent.
        got: Height,
    },
    /// The node's header at the trusted height is not the trusted one.
    #[error(
        "the node's header at the trusted height {height} hashes to {got}, not the trusted {trusted}"
    )]
    NotTheTrustedHeader {
        /// The trusted height.
        height: Height,
        /// The trusted hash.
        trusted: BlockId,
        /// What the node's header hashes to.
        got: BlockId,
    },
    /// The node's validator set is not the one the trusted header names.
    #[error("the node's validator set hashes to {got}, the trusted header names {trusted}")]
    NotTheTrustedValidators {
        /// `validators_hash` of the trusted header.
        trusted: Hash,
        /// Hash of the set the node sent.
        got: Hash,
    },
    /// The node's validator set does not form a valid set.
    #[error("the node's validator set is invalid: {0}")]
    InvalidValidators(#[source] TypesError),
    /// The header is of another chain.
    #[error("header is of chain {got:?}, the trusted chain is {trusted:?}")]
    WrongChain {
        /// The trusted chain id.
        trusted: String,
        /// The header's chain id.
        got: String,
    },
    /// The header names a validator set other than the trusted one.
    #[error("header {height} names validator set {got}, the trusted set is {trusted}")]
    UntrustedValidators {
        /// Height of the header.
        height: Height,
        /// Hash of the trusted set.
        trusted: Hash,
        /// `validators_hash` of the header.
        got: Hash,
    },
    /// The commit does not certify the header for the trusted set.
    #[error("header not certified by the trusted validators: {0}")]
    Commit(#[source] CommitError),
    /// The transaction sent is not the one asked for.
    #[error("asked for transaction {asked}, the node sent {got}")]
    WrongTx {
        /// Hash asked for.
        asked: Hash,
        /// Hash of the transaction sent.
        got: Hash,
    },
    /// The proof does not lead to the header's root.
    #[error("proof does not match the signed root")]
    Mismatch,
}

/// What a user trusts without asking the node it checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustRoot {
    /// The chain's genesis: its chain id and its validator set.
    Genesis {
        /// The chain id.
        chain_id: String,
        /// The genesis validator set.
        validators: ValidatorSet,
    },
    /// A header the user got from a source they trust (their own node, their
    /// organization): its height and its hash (the block id). Its chain id
    /// and its `validators_hash` become trusted once a node's header of that
    /// height hashes to `hash`.
    Header {
        /// Height of the trusted header.
        height: Height,
        /// Its hash.
        hash: BlockId,
    },
}

impl TrustRoot {
    /// The root a genesis file gives.
    pub fn from_genesis(g: &Genesis) -> Result<TrustRoot, VerifyError> {
        Ok(TrustRoot::Genesis {
            chain_id: g.chain_id.clone(),
            validators: g.validator_set().map_err(VerifyError::InvalidTrustRoot)?,
        })
    }

    /// The root a user gave: a genesis, or a trusted height and hash (the
    /// genesis wins if both are given); [`VerifyError::NoTrustRoot`] if none.
    pub fn from_options(
        genesis: Option<&Genesis>,
        header: Option<(Height, BlockId)>,
    ) -> Result<TrustRoot, VerifyError> {
        match (genesis, header) {
            (Some(g), _) => TrustRoot::from_genesis(g),
            (None, Some((height, hash))) => Ok(TrustRoot::Header { height, hash }),
            (None, None) => Err(VerifyError::NoTrustRoot),
        }
    }
}

/// Where a verifier fetches what anchors a [`TrustRoot::Header`]: a node,
/// whose answers are checked against the root, never believed.
pub trait LightSource {
    /// The header and commit of `height`.
    fn light_block(
        &self,
        height: Height,
    ) -> impl Future<Output = Result<(Header, Commit), ClientError>> + Send;

    /// The validator set that signs `height`.
    fn validators(
        &self,
        height: Height,
    ) -> impl Future<Output = Result<Vec<Validator>, ClientError>> + Send;
}

impl LightSource for super::Client {
    async fn light_block(&self, height: Height) -> Result<(Header, Commit), ClientError> {
        super::Client::light_block(self, height.0).await
    }

    /// The node's set: the API has no height for it yet, and the set is fixed.
    async fn validators(&self, _height: Height) -> Result<Vec<Validator>, ClientError> {
        super::Client::validators(self).await
    }
}

/// Checks headers and proofs against a trust root.
#[derive(Clone, Debug)]
pub struct Verifier {
    chain_id: String,
    validators: ValidatorSet,
    validators_hash: Hash,
}

impl Verifier {
    /// A verifier trusting `chain_id` and `validators` (a genesis).
    pub fn from_genesis(chain_id: impl Into<String>, validators: ValidatorSet) -> Verifier {
        let validators_hash = validators.hash();
        Verifier {
            chain_id: chain_id.into(),
            validators,
            validators_hash,
        }
    }

    /// A verifier for `root`. A trusted header is anchored by fetching that
    /// height's header from `source` (it must hash to the trusted hash) and
    /// the validator set (it must hash to that header's `validators_hash`).
    pub async fn new(root: TrustRoot, source: &impl LightSource) -> Result<Verifier, VerifyError> {
        match root {
            TrustRoot::Genesis {
                chain_id,
                validators,
            } => Ok(Verifier::from_genesis(chain_id, validators)),
            TrustRoot::Header { height, hash } => {
                let (header, _) = source
                    .light_block(height)
                    .await
                    .map_err(VerifyError::Fetch)?;
                let set = source
                    .validators(height)
                    .await
                    .map_err(VerifyError::Fetch)?;
                Verifier::from_trusted_header(height, hash, &header, set)
            }
        }
    }

    /// A verifier anchored at a trusted header: `header` must be of `height`
    /// and hash to `hash`, and `validators` must hash to its
    /// `validators_hash`. The chain id is the header's.
    pub fn from_trusted_header(
        height: Height,
        hash: BlockId,
        header: &Header,
        validators: Vec<Validator>,
    ) -> Result<Verifier, VerifyError> {
        if header.height != height {
            return Err(VerifyError::WrongHeight {
                asked: height,
                got: header.height,
            });
        }
        let got = header.id();
        if got != hash {
            return Err(VerifyError::NotTheTrustedHeader {
                height,
                trusted: hash,
                got,
            });
        }
        let set = ValidatorSet::new(validators).map_err(VerifyError::InvalidValidators)?;
        let set_hash = set.hash();
        if set_hash != header.validators_hash {
            return Err(VerifyError::NotTheTrustedValidators {
                trusted: header.validators_hash,
                got: set_hash,
            });
        }
        Ok(Verifier::from_genesis(header.chain_id.clone(), set))
    }

    /// The trusted chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The validator set that must sign `header`. The set is fixed today: a
    /// header naming another set is refused. When governance changes the
    /// set, this is where the verifier follows the chain of changes from its
    /// root.
    pub fn validators_for(&self, header: &Header) -> Result<&ValidatorSet, VerifyError> {
        if header.validators_hash != self.validators_hash {
            return Err(VerifyError::UntrustedValidators {
                height: header.height,
                trusted: self.validators_hash,
                got: header.validators_hash,
            });
        }
        Ok(&self.validators)
    }

    /// Checks that `commit` certifies `header` of the trusted chain with more
    /// than 2/3 of the trusted validators' power.
    pub fn verify_light_block(
        &self,
        header: Header,
        commit: &Commit,
    ) -> Result<VerifiedHeader, VerifyError> {
        if header.chain_id != self.chain_id {
            return Err(VerifyError::WrongChain {
                trusted: self.chain_id.clone(),
                got: header.chain_id,
            });
        }
        let set = self.validators_for(&header)?;
        commit
            .verify(&self.chain_id, set, header.height, &header.id())
            .map_err(VerifyError::Commit)?;
        Ok(VerifiedHeader { header })
    }

    /// [`Verifier::verify_light_block`] of a header and commit on the wire
    /// (as query answers carry them).
    pub fn verify_signed_header(
        &self,
        signed: Option<&pb::SignedHeader>,
    ) -> Result<VerifiedHeader, VerifyError> {
        let signed = signed.ok_or(VerifyError::Missing("signed header"))?;
        let header = Header::from_proto(
            signed
                .header
                .clone()
                .ok_or(VerifyError::Missing("header"))?,
        )?;
        let commit = Commit::from_proto(
            signed
                .commit
                .clone()
                .ok_or(VerifyError::Missing("commit"))?,
        )?;
        self.verify_light_block(header, &commit)
    }
}

/// A header certified by the trusted validators. Only a [`Verifier`] makes
/// one, so a proof is only ever checked against a root the user trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedHeader {
    header: Header,
}

impl VerifiedHeader {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The height of the state this header commits to, and its root. Today a
    /// header carries the root after its own block; once execution follows
    /// the decision, header `h + 1` carries the root after `h`, and this is
    /// the one place that says so.
    pub fn state_root(&self) -> (Height, Hash) {
        (self.header.height, self.header.app_hash)
    }

    /// Checks that the state this header commits to holds `value` at `key`
    /// (or, for `None`, nothing).
    pub fn verify_state(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        proof: &pb::StateProof,
    ) -> Result<(), VerifyError> {
        let (_, root) = self.state_root();
        let p = state_proof_from_proto(proof)?;
        let expected = match value {
            Some(v) => Proven::Present(Hash::digest(v)),
            None => Proven::Absent,
        };
        match p.verify(&Hash::digest(key), &root) {
            Some(got) if got == expected => Ok(()),
            _ => Err(VerifyError::Mismatch),
        }
    }

    /// Checks that `tx`, the transaction of hash `asked`, is in this header's
    /// block.
    pub fn verify_tx(
        &self,
        asked: &Hash,
        tx: &[u8],
        proof: &pb::MerkleProof,
    ) -> Result<(), VerifyError> {
        let got = Hash::digest(tx);
        if got != *asked {
            return Err(VerifyError::WrongTx { asked: *asked, got });
        }
        let siblings = proof
            .siblings
            .iter()
            .map(|s| hash_field("proof.siblings", s))
            .collect::<Result<Vec<_>, _>>()?;
        let p = merkle::MerkleProof {
            index: proof.index,
            total: proof.total,
            siblings,
        };
        if p.verify(&merkle::leaf_hash(tx), &self.header.data_hash) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

/// The proof from its wire form.
pub fn state_proof_from_proto(p: &pb::StateProof) -> Result<StateProof, VerifyError> {
    let siblings = p
        .siblings
        .iter()
        .map(|s| hash_field("proof.siblings", s))
        .collect::<Result<Vec<_>, _>>()?;
    if siblings.len() > 256 {
        return Err(VerifyError::Malformed(CodecError::Invalid {
            field: "proof.siblings",
            reason: "deeper than 256 levels".into(),
        }));
    }
    let terminal = if p.leaf_key_hash.is_empty() {
        Terminal::Empty
    } else {
        Terminal::Leaf {
            kh: hash_field("proof.leaf_key_hash", &p.leaf_key_hash)?,
            value_hash: hash_field("proof.leaf_value_hash", &p.leaf_value_hash)?,
        }
    };
    Ok(StateProof { siblings, terminal })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::smt;
    use crate::types::{Keypair, Round, Timestamp, Vote, VoteType};
    use bytes::Bytes;

    const CHAIN: &str = "consort-test";

    fn keys(seed: u8, n: u8) -> Vec<Keypair> {
        (0..n).map(|i| Keypair::from_seed([seed + i; 32])).collect()
    }

    fn set_of(keys: &[Keypair]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    public_key: k.public(),
                    power: 1,
                    name: String::new(),
                })
                .collect(),
        )
        .unwrap()
    }

    /// A node's answer: a header of `chain` at `height` naming `set`, whose
    /// state holds `key = value` and whose block holds `tx`, signed by
    /// `signers`.
    struct Answer {
        header: Header,
        commit: Commit,
        state: pb::StateProof,
        tx: pb::MerkleProof,
    }

    const KEY: &[u8] = b"account";
    const VALUE: &[u8] = b"balance 10";
    const TX: &[u8] = b"a transaction";

    fn answer(chain: &str, height: u64, set: &ValidatorSet, signers: &[Keypair]) -> Answer {
        // A state of one entry: its root is the entry's leaf.
        let kh = Hash::digest(KEY);
        let vh = Hash::digest(VALUE);
        let txs = [Bytes::from_static(TX), Bytes::from_static(b"another")];
        let leaves: Vec<Hash> = txs.iter().map(|t| merkle::leaf_hash(t)).collect();
        let tx_proof = merkle::MerkleProof::build(&leaves, 0).unwrap();
        let header = Header {
            chain_id: chain.into(),
            height: Height(height),
            time: Timestamp(1_000),
            last_block_id: None,
            last_commit_hash: Hash::ZERO,
            data_hash: merkle::root(&txs),
            app_hash: smt::leaf_hash(&kh, &vh),
            validators_hash: set.hash(),
            evidence_hash: Hash::ZERO,
            proposer: signers[0].public(),
        };
        let id = header.id();
        let votes: Vec<Vote> = signers
            .iter()
            .map(|k| {
                Vote::new_signed(
                    k,
                    chain,
                    VoteType::Precommit,
                    Height(height),
                    Round(0),
                    Some(id),
                    Timestamp(1_000),
                )
            })
            .collect();
        let commit = Commit::from_precommits(Height(height), Round(0), id, &votes);
        Answer {
            header,
            commit,
            state: pb::StateProof {
                siblings: vec![],
                leaf_key_hash: Bytes::copy_from_slice(kh.as_bytes()),
                leaf_value_hash: Bytes::copy_from_slice(vh.as_bytes()),
            },
            tx: pb::MerkleProof {
                index: tx_proof.index,
                total: tx_proof.total,
                siblings: tx_proof
                    .siblings
                    .iter()
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .collect(),
            },
        }
    }

    /// A node that answers with fixed light blocks and a fixed validator set,
    /// honest or not.
    struct Node {
        blocks: Vec<(Header, Commit)>,
        validators: Vec<Validator>,
    }

    impl LightSource for Node {
        async fn light_block(&self, height: Height) -> Result<(Header, Commit), ClientError> {
            self.blocks
                .iter()
                .find(|(h, _)| h.height == height)
                .cloned()
                .ok_or(ClientError::Missing("block"))
        }

        async fn validators(&self, _height: Height) -> Result<Vec<Validator>, ClientError> {
            Ok(self.validators.clone())
        }
    }

    fn genesis_root(set: &ValidatorSet) -> TrustRoot {
        TrustRoot::Genesis {
            chain_id: CHAIN.into(),
            validators: set.clone(),
        }
    }

    fn check(v: &Verifier, a: &Answer) -> Result<(), VerifyError> {
        let h = v.verify_light_block(a.header.clone(), &a.commit)?;
        h.verify_state(KEY, Some(VALUE), &a.state)?;
        h.verify_tx(&Hash::digest(TX), TX, &a.tx)
    }

    fn honest() -> (Vec<Keypair>, ValidatorSet, Node) {
        let k = keys(1, 4);
        let set = set_of(&k);
        let a = answer(CHAIN, 5, &set, &k[..3]);
        let node = Node {
            blocks: vec![(a.header, a.commit)],
            validators: set.validators().to_vec(),
        };
        (k, set, node)
    }

    #[tokio::test]
    async fn the_right_genesis_accepts_an_honest_answer() {
        let (k, set, node) = honest();
        let v = Verifier::new(genesis_root(&set), &node).await.unwrap();
        assert_eq!(v.chain_id(), CHAIN);
        let a = answer(CHAIN, 7, &set, &k[1..]);
        check(&v, &a).unwrap();
        let h = v.verify_light_block(a.header.clone(), &a.commit).unwrap();
        assert_eq!(h.state_root(), (Height(7), a.header.app_hash));
        // A value or a transaction other than the proven one is refused.
        assert!(matches!(
            h.verify_state(KEY, Some(b"balance 11"), &a.state),
            Err(VerifyError::Mismatch)
        ));
        assert!(matches!(
            h.verify_state(KEY, None, &a.state),
            Err(VerifyError::Mismatch)
        ));
        assert!(matches!(
            h.verify_tx(&Hash::digest(b"other"), TX, &a.tx),
            Err(VerifyError::WrongTx { .. })
        ));
        assert!(matches!(
            h.verify_tx(&Hash::digest(b"another"), b"another", &a.tx),
            Err(VerifyError::Mismatch)
        ));
    }

    #[tokio::test]
    async fn the_right_trusted_header_accepts_an_honest_answer() {
        let (k, set, node) = honest();
        let trusted = node.blocks[0].0.id();
        let root = TrustRoot::Header {
            height: Height(5),
            hash: trusted,
        };
        let v = Verifier::new(root, &node).await.unwrap();
        // The chain id comes from the trusted header.
        assert_eq!(v.chain_id(), CHAIN);
        check(&v, &answer(CHAIN, 9, &set, &k[..3])).unwrap();
        // Heights below the trusted one too, while the set is fixed.
        check(&v, &answer(CHAIN, 2, &set, &k[..3])).unwrap();
    }

    #[tokio::test]
    async fn a_node_with_its_own_validators_is_refused() {
        let (_, set, _) = honest();
        // The node runs a chain of the same id signed by keys of its own.
        let evil = keys(100, 4);
        let evil_set = set_of(&evil);
        let lie = answer(CHAIN, 5, &evil_set, &evil[..3]);
        // Against the genesis: the header names a set that is not trusted,
        // and its signers are unknown to the trusted set.
        let v = Verifier::from_genesis(CHAIN, set.clone());
        assert!(matches!(
            check(&v, &lie),
            Err(VerifyError::UntrustedValidators { .. })
        ));
        // A header naming the trusted set but signed by the node's keys.
        let same_set = answer(CHAIN, 5, &set, &evil[..3]);
        assert!(matches!(
            check(&v, &same_set),
            Err(VerifyError::Commit(CommitError::UnknownSigner(_)))
        ));
        // Against a trusted header: the node's set does not hash to the
        // trusted header's validators_hash.
        let honest_header = answer(CHAIN, 5, &set, &keys(1, 3)).header;
        let node = Node {
            blocks: vec![(honest_header.clone(), lie.commit.clone())],
            validators: evil_set.validators().to_vec(),
        };
        let root = TrustRoot::Header {
            height: Height(5),
            hash: honest_header.id(),
        };
        assert!(matches!(
            Verifier::new(root.clone(), &node).await,
            Err(VerifyError::NotTheTrustedValidators { .. })
        ));
        // Nor can it pass its own header off as the trusted one.
        let node = Node {
            blocks: vec![(lie.header.clone(), lie.commit.clone())],
            validators: evil_set.validators().to_vec(),
        };
        assert!(matches!(
            Verifier::new(root, &node).await,
            Err(VerifyError::NotTheTrustedHeader { .. })
        ));
    }

    #[tokio::test]
    async fn a_node_of_another_chain_is_refused() {
        let (k, set, _) = honest();
        let v = Verifier::from_genesis(CHAIN, set.clone());
        let other = answer("other-chain", 5, &set, &k[..3]);
        assert!(matches!(
            check(&v, &other),
            Err(VerifyError::WrongChain { .. })
        ));
        // Signed for another chain but claiming ours: the signatures fail.
        let mut relabelled = other;
        relabelled.header.chain_id = CHAIN.into();
        let id = relabelled.header.id();
        relabelled.commit.block_id = id;
        assert!(matches!(
            check(&v, &relabelled),
            Err(VerifyError::Commit(CommitError::BadSignature(_)))
        ));
    }

    #[tokio::test]
    async fn forged_headers_and_thin_commits_are_refused() {
        let (k, set, _) = honest();
        let v = Verifier::from_genesis(CHAIN, set.clone());
        // A state root the validators did not sign.
        let mut forged = answer(CHAIN, 5, &set, &k[..3]);
        let kh = Hash::digest(KEY);
        let fake = Hash::digest(b"balance 1000000");
        forged.header.app_hash = smt::leaf_hash(&kh, &fake);
        forged.state.leaf_value_hash = Bytes::copy_from_slice(fake.as_bytes());
        assert!(matches!(
            v.verify_light_block(forged.header.clone(), &forged.commit),
            Err(VerifyError::Commit(CommitError::WrongBlock { .. }))
        ));
        // Two of four signers are not more than 2/3.
        let thin = answer(CHAIN, 5, &set, &k[..2]);
        assert!(matches!(
            check(&v, &thin),
            Err(VerifyError::Commit(CommitError::InsufficientPower { .. }))
        ));
        // A header missing from the answer.
        assert!(matches!(
            v.verify_signed_header(None),
            Err(VerifyError::Missing(_))
        ));
        let signed = pb::SignedHeader {
            header: Some(thin.header.to_proto()),
            commit: None,
        };
        assert!(matches!(
            v.verify_signed_header(Some(&signed)),
            Err(VerifyError::Missing("commit"))
        ));
    }

    #[tokio::test]
    async fn a_trusted_header_is_checked_for_its_height() {
        let (_, _, node) = honest();
        let (header, _) = node.blocks[0].clone();
        let r =
            Verifier::from_trusted_header(Height(6), header.id(), &header, node.validators.clone());
        assert!(matches!(r, Err(VerifyError::WrongHeight { .. })));
        // A height the node does not have: its error, not a verdict.
        let root = TrustRoot::Header {
            height: Height(6),
            hash: header.id(),
        };
        assert!(matches!(
            Verifier::new(root, &node).await,
            Err(VerifyError::Fetch(_))
        ));
    }

    #[test]
    fn without_a_root_there_is_nothing_to_trust() {
        let e = TrustRoot::from_options(None, None).unwrap_err();
        assert!(matches!(e, VerifyError::NoTrustRoot));
        assert!(e.to_string().starts_with("nothing to trust"), "{e}");
        let g = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 0,
            validators: keys(1, 2)
                .iter()
                .map(|k| crate::config::GenesisValidator {
                    name: String::new(),
                    public_key: k.public(),
                    power: 3,
                })
                .collect(),
            organizations: vec![],
            accounts: vec![],
        };
        let root = TrustRoot::from_options(Some(&g), None).unwrap();
        let TrustRoot::Genesis {
            chain_id,
            validators,
        } = root
        else {
            panic!("a genesis root");
        };
        assert_eq!(chain_id, CHAIN);
        assert_eq!(validators.total_power(), 6);
        let root = TrustRoot::from_options(None, Some((Height(3), Hash::digest(b"h")))).unwrap();
        assert!(matches!(
            root,
            TrustRoot::Header {
                height: Height(3),
                ..
            }
        ));
    }
}
