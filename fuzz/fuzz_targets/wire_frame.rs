//! A peer's frame on any channel: the first input byte picks the channel, the
//! rest is the frame (length prefix and body) as it arrives. Decoding never
//! panics; whatever decodes re-encodes to a frame that decodes to the same
//! message.
#![no_main]

use bytes::Bytes;
use consort::net::wire::{decode_body, decode_frame, encode_frame};
use consort::net::{Channel, ChannelLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&code, frame)) = data.split_first() else {
        return;
    };
    let channel = Channel::ALL[usize::from(code) % Channel::ALL.len()];
    let limits = ChannelLimits::uniform(1 << 20);
    let frame = Bytes::copy_from_slice(frame);
    if let Ok(msg) = decode_frame(channel, frame.clone(), &limits) {
        assert_eq!(msg.channel(), channel, "decoded onto the wrong channel");
        let again = encode_frame(&msg).expect("a decoded message re-encodes");
        let back = decode_frame(channel, again, &limits).expect("a re-encoded frame decodes");
        assert_eq!(back, msg, "frame round trip changed the message");
    }
    // The stream reader hands the body alone to decode_body; feed the raw bytes
    // as a body too, so the decoders see inputs without a valid prefix.
    if let Ok(msg) = decode_body(channel, frame) {
        assert_eq!(msg.channel(), channel, "decoded onto the wrong channel");
    }
});
