use super::*;
use crate::types::Keypair;

fn meta(sender: u8, nonce: u64, committed: u64) -> TxMeta {
    TxMeta {
        sender: Some((Keypair::from_seed([sender; 32]).public(), nonce)),
        committed_nonce: committed,
    }
}

fn tx(tag: &str) -> (Hash, Bytes) {
    let b = Bytes::from(tag.as_bytes().to_vec());
    (Hash::digest(&b), b)
}

fn small(max_txs: usize, max_bytes: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs,
        max_bytes,
        recent_cache: 4,
    })
}

#[test]
fn admission_table() {
    let mut p = small(3, 1000);
    let (h1, b1) = tx("a0");
    p.insert(h1, b1.clone(), &meta(1, 0, 0)).unwrap();
    assert_eq!(
        p.insert(h1, b1, &meta(1, 0, 0)),
        Err(MempoolError::Duplicate)
    );
    let (h2, b2) = tx("a0-again");
    assert_eq!(
        p.insert(h2, b2, &meta(1, 0, 0)),
        Err(MempoolError::NonceTaken { nonce: 0 })
    );
    let (h3, b3) = tx("a5");
    assert_eq!(
        p.insert(h3, b3, &meta(1, 5, 0)),
        Err(MempoolError::FutureNonce {
            expected: 1,
            got: 5
        })
    );
    let (h4, b4) = tx("a1");
    p.insert(h4, b4, &meta(1, 1, 0)).unwrap();
    let (h5, b5) = tx("b0");
    p.insert(h5, b5, &meta(2, 0, 0)).unwrap();
    let (h6, b6) = tx("c0");
    assert!(matches!(
        p.insert(h6, b6, &meta(3, 0, 0)),
        Err(MempoolError::Full { txs: 3, .. })
    ));
    assert_eq!(p.len(), 3);
}

#[test]
fn byte_limit_and_fifo_reap() {
    let mut p = small(100, 10);
    for (i, s) in ["aaaa", "bbbb"].iter().enumerate() {
        let (h, b) = tx(s);
        p.insert(h, b, &meta(i as u8 + 1, 0, 0)).unwrap();
    }
    let (h, b) = tx("cccc");
    assert!(matches!(
        p.insert(h, b, &meta(9, 0, 0)),
        Err(MempoolError::Full { .. })
    ));
    assert_eq!(
        p.reap(100, 100),
        vec![Bytes::from("aaaa"), Bytes::from("bbbb")]
    );
    assert_eq!(p.reap(7, 100), vec![Bytes::from("aaaa")]);
    assert_eq!(p.reap(100, 1), vec![Bytes::from("aaaa")]);
}

#[test]
fn update_drops_committed_refuses_them_later_and_evicts_stale() {
    let mut p = small(100, 1000);
    let (a0, ab0) = tx("a0");
    let (a1, ab1) = tx("a1");
    let (b0, bb0) = tx("b0");
    p.insert(a0, ab0.clone(), &meta(1, 0, 0)).unwrap();
    p.insert(a1, ab1.clone(), &meta(1, 1, 0)).unwrap();
    p.insert(b0, bb0.clone(), &meta(2, 0, 0)).unwrap();
    // Block commits a0. Sender 1 is now at nonce 1; sender 2's b0 was replaced by
    // another of its transactions committed through another node (nonce now 1).
    let k1 = Keypair::from_seed([1; 32]).public();
    let k2 = Keypair::from_seed([2; 32]).public();
    let other = Hash::digest(b"b0 sent elsewhere");
    let evicted = p.update(&[(a0, Some(k1)), (other, Some(k2))], |bytes| match bytes {
        b"a1" => Ok(meta(1, 1, 1)),
        b"b0" => Ok(meta(2, 0, 1)),
        _ => Err("unknown".into()),
    });
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].hash, b0);
    assert!(p.contains(&a1));
    assert_eq!(p.len(), 1);
    assert_eq!(
        p.insert(a0, ab0, &meta(1, 0, 1)),
        Err(MempoolError::AlreadyCommitted)
    );
    // Sender 2 can continue from its committed nonce.
    let (b1, bb1) = tx("b1");
    p.insert(b1, bb1, &meta(2, 1, 1)).unwrap();
    assert_eq!(p.bytes(), 4);
}

#[test]
fn recent_cache_is_bounded() {
    let mut p = small(100, 1000);
    let hashes: Vec<Hash> = (0..10u8).map(|i| Hash::digest(&[i])).collect();
    let committed: Vec<(Hash, Option<PublicKey>)> = hashes.iter().map(|h| (*h, None)).collect();
    p.update(&committed, |_| Err("none".into()));
    assert!(p.recent.len() <= 4);
    assert!(p.recent.contains(&hashes[9]));
}
