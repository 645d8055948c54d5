//! A block, a header and a commit as protobuf bytes from a peer. Decoding never
//! panics; decoded values re-encode to the same value; the structural check of a
//! block, the header id and commit verification never panic.
#![no_main]

use consort::codec::Wire;
use consort::types::{Block, Commit, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Block::decode(data) {
        assert_eq!(Block::decode(&b.encode()).expect("re-decodes"), b);
        let _ = b.check_structure(consort_fuzz::CHAIN);
        let _ = b.id();
        let _ = b.tx_bytes();
    }
    if let Ok(h) = Header::decode(data) {
        assert_eq!(Header::decode(&h.encode()).expect("re-decodes"), h);
    }
    if let Ok(c) = Commit::decode(data) {
        assert_eq!(Commit::decode(&c.encode()).expect("re-decodes"), c);
        let set = consort_fuzz::validator_set();
        let _ = c.verify(consort_fuzz::CHAIN, &set, c.height, &c.block_id);
        let _ = c.median_time(&set);
        let _ = c.hash();
    }
});
