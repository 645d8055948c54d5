//! A ledger transaction as a client submits it or a block carries it. Decoding
//! never panics; a decoded transaction is in its only (canonical) encoding, so
//! it re-encodes to exactly the input bytes; its signature check never panics.
#![no_main]

use consort::codec::{Wire, decode_tx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode_tx(data) {
        assert_eq!(tx.encode(), data, "a decoded transaction is not canonical");
        let _ = tx.verify(consort_fuzz::CHAIN);
    }
});
