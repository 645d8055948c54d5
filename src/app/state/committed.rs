//! The committed state and its root: the backend's entries plus, in memory, the
//! top of the tree and every bucket's leaves (key hash and leaf hash, 64 bytes
//! an entry), kept consistent under one lock.
//!
//! The leaves are in memory so that computing a block's root never reads the
//! backend: a bucket's root needs all of its leaves, and reading them back was
//! a range scan per touched bucket, the slowest operation of the store.

use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::backend::{AsLeaf, Change, Entry, StateBackend, StateError, bucket_start};
use super::smt::{self, BUCKET_BITS, BUCKETS, Leaf, StateProof, TopNode, TopTree};
use crate::types::{Hash, Height};

struct Inner {
    top: TopTree,
    /// Every bucket's leaves, sorted by key hash.
    leaves: Vec<Vec<Leaf>>,
    height: Height,
    /// A snapshot being taken: the state as of its height is the backend
    /// overlaid with the entries changed since, as they were.
    freeze: Option<Freeze>,
}

struct Freeze {
    height: Height,
    /// Entries (or their absence) as of `height`, for keys changed since.
    preserved: BTreeMap<Hash, Option<Entry>>,
}

/// Most entries preserved for a snapshot in progress before it is abandoned, so
/// that a slow snapshot under heavy load cannot exhaust memory.
pub const MAX_PRESERVED: usize = 2_000_000;

/// The committed state of the chain.
pub struct CommittedState {
    backend: Arc<dyn StateBackend>,
    inner: RwLock<Inner>,
}

/// Changes of one block with the bucket roots they lead to.
#[derive(Clone, Debug)]
pub struct PreparedChanges {
    /// The changes, sorted by key hash.
    pub changes: Vec<Change>,
    /// New (root, count) of every touched bucket.
    pub buckets: BTreeMap<usize, TopNode>,
    /// The state root after the changes.
    pub root: Hash,
}

/// Root and count of a bucket from its sorted leaves.
fn bucket_node(leaves: &[Leaf]) -> TopNode {
    TopNode {
        hash: smt::subtree_root(leaves, BUCKET_BITS),
        count: leaves.len() as u64,
    }
}

/// Sets (or, with `None`, removes) the leaf of `kh` in a sorted bucket.
fn edit_leaf(leaves: &mut Vec<Leaf>, kh: &Hash, entry: Option<&Entry>) {
    let at = leaves.binary_search_by(|l| l.kh.cmp(kh));
    match (at, entry) {
        (Ok(i), Some(e)) => leaves[i] = e.leaf(*kh),
        (Err(i), Some(e)) => leaves.insert(i, e.leaf(*kh)),
        (Ok(i), None) => {
            leaves.remove(i);
        }
        (Err(_), None) => {}
    }
}

impl CommittedState {
    /// Opens the state over `backend`, rebuilding the leaves and the top of the
    /// tree from every entry: one ordered pass over each of a few ranges of
    /// buckets, in parallel (reading and hashing a million entries is seconds
    /// of CPU, and a node waits for it at start and at the end of state sync).
    pub fn open(backend: Arc<dyn StateBackend>) -> Result<CommittedState, StateError> {
        let parts = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_OPEN_THREADS);
        let per = BUCKETS.div_ceil(parts);
        let scanned: Vec<Result<Vec<Vec<Leaf>>, StateError>> = std::thread::scope(|s| {
            let scans: Vec<_> = (0..parts)
                .map(|p| {
                    let b = &*backend;
                    s.spawn(move || scan_buckets(b, p * per, ((p + 1) * per).min(BUCKETS)))
                })
                .collect();
            scans
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StateError::Invalid("a state scan panicked".into()))
                    })
                })
                .collect()
        });
        let mut leaves: Vec<Vec<Leaf>> = Vec::with_capacity(BUCKETS);
        for part in scanned {
            leaves.extend(part?);
        }
        Self::from_leaves(backend, leaves)
    }

    /// Opens the state over `backend` from every bucket's leaves, computed by
    /// the caller from the very entries it wrote to the backend (a snapshot
    /// restore, which checked each chunk's leaves against the manifest): the
    /// backend's entries are not read back.
    pub fn from_leaves(
        backend: Arc<dyn StateBackend>,
        leaves: Vec<Vec<Leaf>>,
    ) -> Result<CommittedState, StateError> {
        let nodes: Vec<TopNode> = leaves.iter().map(|ls| bucket_node(ls)).collect();
        let top = TopTree::from_buckets(&nodes)
            .ok_or_else(|| StateError::Invalid("bucket count mismatch".into()))?;
        let height = backend.applied_height()?;
        Ok(CommittedState {
            backend,
            inner: RwLock::new(Inner {
                top,
                leaves,
                height,
                freeze: None,
            }),
        })
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, Inner> {
        self.inner.read()
    }

    /// Height and root of the committed state.
    pub fn committed(&self) -> (Height, Hash) {
        let g = self.read();
        (g.height, g.top.root())
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.read().top.count()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The committed entry under `kh`.
    pub fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError> {
        self.backend.get(kh)
    }

    /// The root the state would have after `changes`, without applying them.
    pub fn prepare(
        &self,
        changes: BTreeMap<Hash, Option<Entry>>,
    ) -> Result<PreparedChanges, StateError> {
        Ok(Self::prepare_locked(&self.read(), changes))
    }

    /// Like [`CommittedState::prepare`], for changes computed from reads of the
    /// state at height `parent`; `None` if the state is no longer at `parent`.
    /// A block applied while the changes were computed (a decision from peers
    /// arriving while a proposal of the same height is checked) may have
    /// changed what was read midway: the reads then mix two heights, and the
    /// root would be neither block's.
    pub fn prepare_on(
        &self,
        parent: Height,
        changes: BTreeMap<Hash, Option<Entry>>,
    ) -> Option<PreparedChanges> {
        let g = self.read();
        (g.height == parent).then(|| Self::prepare_locked(&g, changes))
    }

    fn prepare_locked(g: &Inner, changes: BTreeMap<Hash, Option<Entry>>) -> PreparedChanges {
        let touched: BTreeSet<usize> = changes.keys().map(smt::bucket_of).collect();
        let mut buckets = BTreeMap::new();
        for b in touched {
            let mut leaves = g.leaves[b].clone();
            for (kh, e) in changes
                .range(bucket_start(b)..)
                .take_while(|(kh, _)| smt::bucket_of(kh) == b)
            {
                edit_leaf(&mut leaves, kh, e.as_ref());
            }
            buckets.insert(b, bucket_node(&leaves));
        }
        let root = g.top.root_with(&buckets);
        PreparedChanges {
            changes: changes.into_iter().collect(),
            buckets,
            root,
        }
    }

    /// Applies prepared changes as block `height`.
    pub fn apply(&self, height: Height, prepared: &PreparedChanges) -> Result<Hash, StateError> {
        let mut g = self.inner.write();
        // Copy on write for a snapshot in progress: keep what each changed entry
        // was at the snapshot's height.
        let mut abandon = false;
        if let Some(f) = g.freeze.as_mut() {
            for (kh, _) in &prepared.changes {
                if !f.preserved.contains_key(kh) {
                    let old = self.backend.get(kh)?;
                    f.preserved.insert(*kh, old);
                }
            }
            abandon = f.preserved.len() > MAX_PRESERVED;
        }
        if abandon {
            tracing::warn!("snapshot abandoned: too many entries changed while it was taken");
            g.freeze = None;
        }
        self.backend.apply(height, &prepared.changes)?;
        for (kh, e) in &prepared.changes {
            edit_leaf(&mut g.leaves[smt::bucket_of(kh)], kh, e.as_ref());
        }
        for (b, n) in &prepared.buckets {
            debug_assert_eq!(bucket_node(&g.leaves[*b]), *n, "bucket {b}");
            g.top.set_bucket(*b, *n);
        }
        g.height = height;
        Ok(g.top.root())
    }

    /// A proof for `kh` under the committed root, with the entry if present, and
    /// the height it holds at.
    pub fn prove(&self, kh: &Hash) -> Result<(Option<Entry>, StateProof, Height), StateError> {
        let g = self.read();
        let entry = self.backend.get(kh)?;
        let failure = std::cell::RefCell::new(None);
        // A bucket holds a few leaves; their value hashes come from point reads.
        let proof = smt::prove(&g.top, kh, |b| {
            let mut out = Vec::with_capacity(g.leaves[b].len());
            for leaf in &g.leaves[b] {
                match self.backend.get(&leaf.kh) {
                    Ok(Some(e)) => out.push((*leaf, e.value_hash())),
                    Ok(None) => {
                        *failure.borrow_mut() = Some(StateError::Invalid(format!(
                            "state entry {} is in the tree but not in the store",
                            leaf.kh.short()
                        )));
                    }
                    Err(e) => *failure.borrow_mut() = Some(e),
                }
            }
            out
        });
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        Ok((entry, proof, g.height))
    }

    /// Freezes a view of the committed state for a snapshot; `None` if one is
    /// already being taken.
    pub fn begin_snapshot(&self) -> Option<(Height, Hash, Vec<TopNode>)> {
        let mut g = self.inner.write();
        if g.freeze.is_some() {
            return None;
        }
        let out = (g.height, g.top.root(), g.top.buckets().to_vec());
        g.freeze = Some(Freeze {
            height: g.height,
            preserved: BTreeMap::new(),
        });
        Some(out)
    }

    /// Up to `limit` entries from key hash `from` on, as of the frozen snapshot
    /// height, and whether more may follow; an error if the snapshot was
    /// abandoned (or never begun). Pages in key order cost one range read each,
    /// whatever the number of buckets.
    pub fn snapshot_page(
        &self,
        height: Height,
        from: &Hash,
        limit: usize,
    ) -> Result<(Vec<(Hash, Entry)>, bool), StateError> {
        let g = self.read();
        let Some(f) = g.freeze.as_ref().filter(|f| f.height == height) else {
            return Err(StateError::Invalid(format!(
                "no snapshot of height {height} in progress"
            )));
        };
        let page = self.backend.range(from, limit)?;
        let more = page.len() == limit;
        // The page covers [from, last] if full, [from, end) otherwise; preserved
        // entries of that interval replace what the backend holds now.
        let upper = if more {
            page.last().map(|(k, _)| *k)
        } else {
            None
        };
        let mut entries: BTreeMap<Hash, Entry> = page.into_iter().collect();
        let preserved = f.preserved.range(*from..);
        for (kh, old) in preserved {
            if upper.is_some_and(|u| *kh > u) {
                break;
            }
            match old {
                Some(e) => {
                    entries.insert(*kh, e.clone());
                }
                None => {
                    entries.remove(kh);
                }
            }
        }
        Ok((entries.into_iter().collect(), more))
    }

    /// Ends the snapshot of `height`.
    pub fn end_snapshot(&self, height: Height) {
        let mut g = self.inner.write();
        if g.freeze.as_ref().is_some_and(|f| f.height == height) {
            g.freeze = None;
        }
    }

    /// The (root, count) of every bucket, for snapshots.
    pub fn bucket_nodes(&self) -> Vec<TopNode> {
        self.read().top.buckets().to_vec()
    }

    /// The backend, for snapshots.
    pub fn backend(&self) -> &Arc<dyn StateBackend> {
        &self.backend
    }
}

/// Most threads that read the state when it is opened.
const MAX_OPEN_THREADS: usize = 4;

/// The sorted leaves of buckets `first..end`, read from the backend in order.
pub fn scan_buckets(
    backend: &dyn StateBackend,
    first: usize,
    end: usize,
) -> Result<Vec<Vec<Leaf>>, StateError> {
    let mut leaves: Vec<Vec<Leaf>> = vec![Vec::new(); end.saturating_sub(first)];
    if first >= end {
        return Ok(leaves);
    }
    let mut from = bucket_start(first);
    'pages: loop {
        let page = backend.range(&from, 4096)?;
        let done = page.len() < 4096;
        for (kh, e) in page {
            let b = smt::bucket_of(&kh);
            if b >= end {
                break 'pages;
            }
            // Pages come in key order, so each bucket's leaves arrive sorted.
            leaves[b - first].push(e.leaf(kh));
            from = next_hash(&kh);
        }
        if done || from == Hash::ZERO {
            break;
        }
    }
    for ls in &mut leaves {
        ls.shrink_to_fit();
    }
    Ok(leaves)
}

/// The key hash right after `h` (wrapping to zero after the last).
pub fn next_hash(h: &Hash) -> Hash {
    let mut b = h.0;
    for i in (0..32).rev() {
        let (v, carry) = b[i].overflowing_add(1);
        b[i] = v;
        if !carry {
            break;
        }
    }
    Hash(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::backend::MemBackend;
    use crate::app::state::smt::Proven;

    fn entry(i: u32) -> Entry {
        Entry {
            key: format!("key{i}").into_bytes(),
            value: format!("value{i}").into_bytes(),
        }
    }

    #[test]
    fn prepare_apply_reopen_and_prove() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let s = CommittedState::open(backend.clone()).unwrap();
        let changes: BTreeMap<Hash, Option<Entry>> =
            (0..500).map(|i| (entry(i).kh(), Some(entry(i)))).collect();
        let p = s.prepare(changes).unwrap();
        // Nothing changes until applied.
        assert_eq!(s.committed().1, smt::EMPTY);
        let root = s.apply(Height(1), &p).unwrap();
        assert_eq!(root, p.root);
        assert_eq!(s.len(), 500);
        // Removing and changing entries.
        let mut more = BTreeMap::new();
        more.insert(entry(3).kh(), None);
        let mut e7 = entry(7);
        e7.value = b"new".to_vec();
        more.insert(e7.kh(), Some(e7.clone()));
        let p2 = s.prepare(more).unwrap();
        let root2 = s.apply(Height(2), &p2).unwrap();
        // A reopened state recomputes the same root from the entries.
        let again = CommittedState::open(backend).unwrap();
        assert_eq!(again.committed(), (Height(2), root2));
        // Proofs.
        let (got, proof, h) = again.prove(&e7.kh()).unwrap();
        assert_eq!(h, Height(2));
        assert_eq!(got, Some(e7.clone()));
        assert_eq!(
            proof.verify(&e7.kh(), &root2),
            Some(Proven::Present(e7.value_hash()))
        );
        let (gone, proof, _) = again.prove(&entry(3).kh()).unwrap();
        assert_eq!(gone, None);
        assert_eq!(proof.verify(&entry(3).kh(), &root2), Some(Proven::Absent));
    }

    #[test]
    fn changes_read_at_an_older_height_are_not_prepared() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let s = CommittedState::open(backend).unwrap();
        let one: BTreeMap<Hash, Option<Entry>> = [(entry(1).kh(), Some(entry(1)))].into();
        let p = s.prepare_on(Height(0), one.clone()).expect("state at 0");
        s.apply(Height(1), &p).unwrap();
        // Computed from reads at height 0, but height 1 was applied since.
        let two: BTreeMap<Hash, Option<Entry>> = [(entry(2).kh(), Some(entry(2)))].into();
        assert!(s.prepare_on(Height(0), two.clone()).is_none());
        let p2 = s.prepare_on(Height(1), two).expect("state at 1");
        assert_eq!(
            p2.root,
            s.prepare(p2.changes.iter().cloned().collect())
                .unwrap()
                .root
        );
    }

    #[test]
    fn in_memory_leaves_follow_puts_changes_and_removals() {
        // Thousands of entries put many buckets over one leaf; each block's root
        // from the in-memory leaves must equal the root rebuilt from the store.
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let s = CommittedState::open(backend.clone()).unwrap();
        let mut x: u64 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for h in 1..=6u64 {
            let mut changes = BTreeMap::new();
            for _ in 0..3000 {
                let i = (next() % 6000) as u32;
                let mut e = entry(i);
                if next() % 4 == 0 {
                    changes.insert(e.kh(), None);
                } else {
                    e.value = format!("v{h}-{i}").into_bytes();
                    changes.insert(e.kh(), Some(e));
                }
            }
            let p = s.prepare(changes).unwrap();
            assert_eq!(s.apply(Height(h), &p).unwrap(), p.root);
            let again = CommittedState::open(backend.clone()).unwrap();
            assert_eq!(again.committed(), (Height(h), p.root), "height {h}");
            assert_eq!(again.len(), s.len());
        }
        assert!(s.len() > 2000, "{}", s.len());
    }

    #[test]
    fn a_frozen_view_keeps_the_state_of_its_height() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let s = CommittedState::open(backend).unwrap();
        let changes: BTreeMap<Hash, Option<Entry>> =
            (0..50).map(|i| (entry(i).kh(), Some(entry(i)))).collect();
        let p = s.prepare(changes).unwrap();
        s.apply(Height(1), &p).unwrap();
        let (h, root, buckets) = s.begin_snapshot().unwrap();
        assert!(s.begin_snapshot().is_none(), "one snapshot at a time");
        // Later blocks change, add and remove entries.
        let mut more = BTreeMap::new();
        more.insert(entry(1).kh(), None);
        let mut e2 = entry(2);
        e2.value = b"changed".to_vec();
        more.insert(e2.kh(), Some(e2));
        more.insert(entry(99).kh(), Some(entry(99)));
        let p2 = s.prepare(more).unwrap();
        s.apply(Height(2), &p2).unwrap();
        // Rebuilding from the frozen view gives the root of height 1.
        let mut all = Vec::new();
        let mut from = Hash::ZERO;
        loop {
            let (page, more) = s.snapshot_page(h, &from, 7).unwrap();
            if let Some((k, _)) = page.last() {
                from = next_hash(k);
            }
            all.extend(page);
            if !more {
                break;
            }
        }
        let mut per: Vec<Vec<Leaf>> = vec![Vec::new(); smt::BUCKETS];
        for (kh, e) in all {
            per[smt::bucket_of(&kh)].push(e.leaf(kh));
        }
        let nodes: Vec<TopNode> = per.iter().map(|es| bucket_node(es)).collect();
        assert_eq!(nodes, buckets);
        assert_eq!(TopTree::from_buckets(&nodes).unwrap().root(), root);
        s.end_snapshot(h);
        assert!(s.snapshot_page(h, &Hash::ZERO, 1).is_err());
    }

    #[test]
    fn next_hash_carries() {
        let mut h = [0u8; 32];
        h[31] = 0xff;
        let mut want = [0u8; 32];
        want[30] = 1;
        assert_eq!(next_hash(&Hash(h)), Hash(want));
        assert_eq!(next_hash(&Hash([0xff; 32])), Hash::ZERO);
    }
}
