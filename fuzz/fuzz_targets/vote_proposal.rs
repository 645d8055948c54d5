//! Consensus-channel values as protobuf bytes from a peer: a vote, a proposal,
//! a duplicate-vote evidence and a round status. Decoding never panics; a
//! decoded value re-encodes to bytes that decode to the same value; checking a
//! signature or evidence never panics.
#![no_main]

use consort::codec::Wire;
use consort::net::RoundStatus;
use consort::types::{Evidence, Proposal, Vote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Vote::decode(data) {
        assert_eq!(Vote::decode(&v.encode()).expect("re-decodes"), v);
        let _ = v.verify(consort_fuzz::CHAIN);
    }
    if let Ok(p) = Proposal::decode(data) {
        assert_eq!(Proposal::decode(&p.encode()).expect("re-decodes"), p);
        let _ = p.verify(consort_fuzz::CHAIN);
    }
    if let Ok(e) = Evidence::decode(data) {
        assert_eq!(Evidence::decode(&e.encode()).expect("re-decodes"), e);
        let _ = e.verify(consort_fuzz::CHAIN, &consort_fuzz::validator_set());
        let _ = e.hash();
    }
    if let Ok(s) = RoundStatus::decode(data) {
        assert_eq!(RoundStatus::decode(&s.encode()).expect("re-decodes"), s);
    }
});
