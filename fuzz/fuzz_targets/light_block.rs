//! What a state-sync server or a node answering a client hands back to be
//! checked: a light block (header and commit), and the Merkle and state proofs
//! of query answers. Checking never panics; a light block that verifies is of
//! the fixture chain, at the height asked, certified by more than 2/3 of the
//! fixture set.
#![no_main]

use consort::client::verify::Verifier;
use consort::codec::Wire;
use consort::pb;
use consort::sync::state_sync::{StateSyncConfig, verify_light_block};
use consort::types::{Hash, Header, Height};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let set = consort_fuzz::validator_set();
    if let Ok(lb) = pb::LightBlock::decode(data) {
        let cfg = StateSyncConfig {
            tls: None,
            chain_id: consort_fuzz::CHAIN.into(),
            validators: set.clone(),
            servers: Vec::new(),
            fetchers_per_server: 1,
            chunks_in_flight: 1,
        };
        let asked = lb.header.as_ref().map_or(1, |h| h.height.max(1));
        let signed = pb::SignedHeader {
            header: lb.header.clone(),
            commit: lb.commit.clone(),
        };
        let verifier = Verifier::from_genesis(consort_fuzz::CHAIN, set.clone());
        let client = verifier.verify_signed_header(Some(&signed));
        match verify_light_block(&cfg, lb.clone(), Height(asked)) {
            Ok((header, commit)) => {
                assert_eq!(header.chain_id, consort_fuzz::CHAIN);
                assert_eq!(header.height, Height(asked));
                assert!(
                    commit
                        .verify(consort_fuzz::CHAIN, &set, header.height, &header.id())
                        .is_ok()
                );
                // The client's check agrees with state sync's, which does not
                // look at the header's validators_hash.
                if header.validators_hash == set.hash() {
                    let h = client.expect("client accepts it too");
                    assert_eq!(h.header().id(), header.id());
                    // Proofs against it never panic.
                    let _ = h.verify_state(data, Some(data), &pb::StateProof::default());
                    let _ = h.verify_tx(&Hash::digest(data), data, &pb::MerkleProof::default());
                } else {
                    assert!(
                        client.is_err(),
                        "the client accepts a header naming another set"
                    );
                }
            }
            Err(_) => assert!(
                client.is_err(),
                "the client accepts what state sync refuses"
            ),
        }
        // A wrong height is refused.
        assert!(verify_light_block(&cfg, lb, Height(asked.wrapping_add(1).max(1))).is_err());
    }
    if let Some(h) = consort_fuzz::verified_header(&set) {
        if let Ok(p) = pb::StateProof::decode(data) {
            let _ = h.verify_state(data, Some(data), &p);
            let _ = h.verify_state(b"key", None, &p);
        }
        if let Ok(p) = pb::MerkleProof::decode(data) {
            let _ = h.verify_tx(&Hash::digest(data), data, &p);
            let _ = h.verify_tx(&Hash::digest(b"tx"), b"tx", &p);
        }
    }
    let _ = Header::decode(data).map(|h| h.id());
});
