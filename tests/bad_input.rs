//! Bad input at every entry point of a real running node, over loopback: each
//! gRPC method of the four services and the peer wire. Every row asserts the
//! exact gRPC status code (with a message) or that the node closes the peer's
//! connection for a protocol violation with a reason; afterwards the node is
//! still live (its height advances), and what it stored before is intact (the
//! same block ids, the committed transactions at the same places).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use common::Cluster;
use consort::app::ledger::{Action, MAX_NAME_BYTES, MAX_TX_BYTES, Tx};
use consort::client::Client;
use consort::codec::Wire;
use consort::config::{Home, read_key};
use consort::net::raw::RawPeer;
use consort::net::wire::encode_frame;
use consort::net::{Channel, ChannelLimits, NetMessage, RoundStatus};
use consort::pb;
use consort::types::{BlockId, Hash, Height, Keypair, Round, Timestamp, Vote, VoteType};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Code, Request, Status};

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";
/// Peer-wire rows, each from its own member key (an offender is banned).
const WIRE_ROWS: usize = 6;

/// Sends request bodies as given: bytes in, bytes out.
#[derive(Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Calls `path` with `body`; for a server-streaming method, waits for the
/// first item (or two seconds: an open stream with nothing yet is an answer).
async fn call(
    ch: &GrpcChannel,
    path: &'static str,
    body: Vec<u8>,
    stream: bool,
) -> Result<(), Status> {
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel: {e}")))?;
    let path = PathAndQuery::from_static(path);
    if stream {
        let mut s = g
            .server_streaming(Request::new(body), path, RawCodec)
            .await?
            .into_inner();
        match tokio::time::timeout(Duration::from_secs(2), s.message()).await {
            Ok(Err(e)) => Err(e),
            _ => Ok(()),
        }
    } else {
        g.unary(Request::new(body), path, RawCodec)
            .await
            .map(|_| ())
    }
}

struct Row {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    stream: bool,
    expect: Code,
}

fn row(name: &'static str, path: &'static str, m: impl Message, expect: Code) -> Row {
    Row {
        name,
        path,
        body: m.encode_to_vec(),
        stream: false,
        expect,
    }
}

fn stream_row(name: &'static str, path: &'static str, m: impl Message, expect: Code) -> Row {
    Row {
        stream: true,
        ..row(name, path, m, expect)
    }
}

fn raw_row(name: &'static str, path: &'static str, body: Vec<u8>, expect: Code) -> Row {
    Row {
        name,
        path,
        body,
        stream: false,
        expect,
    }
}

fn transfer(from: &Keypair, to: &Keypair, nonce: u64, amount: u64) -> Tx {
    Tx::new_signed(
        from,
        CHAIN,
        nonce,
        Action::Transfer {
            to: to.public(),
            amount,
        },
    )
}

fn submit(tx: Vec<u8>, mode: i32) -> pb::SubmitRequest {
    pb::SubmitRequest {
        tx: tx.into(),
        mode,
    }
}

const GET_STATUS: &str = "/consort.v1.NodeService/GetStatus";
const GET_BLOCK: &str = "/consort.v1.NodeService/GetBlock";
const GET_COMMIT: &str = "/consort.v1.NodeService/GetCommit";
const GET_VALIDATORS: &str = "/consort.v1.NodeService/GetValidators";
const SUBMIT: &str = "/consort.v1.TxService/Submit";
const GET_TX: &str = "/consort.v1.TxService/GetTx";
const STREAM_BLOCKS: &str = "/consort.v1.TxService/StreamBlocks";
const STREAM_TX_RESULTS: &str = "/consort.v1.TxService/StreamTxResults";
const GET_ACCOUNT: &str = "/consort.v1.QueryService/GetAccount";
const GET_RECORD: &str = "/consort.v1.QueryService/GetRecord";
const LIST_SNAPSHOTS: &str = "/consort.v1.SyncService/ListSnapshots";
const GET_MANIFEST: &str = "/consort.v1.SyncService/GetManifest";
const GET_CHUNK: &str = "/consort.v1.SyncService/GetChunk";
const GET_LIGHT_BLOCK: &str = "/consort.v1.SyncService/GetLightBlock";
const STREAM_BLOCK_RANGE: &str = "/consort.v1.SyncService/StreamBlockRange";

/// The rows. Two codes come from tonic's decoding, before any service code
/// runs: an undecodable request is INTERNAL ("error parsing request proto" in
/// gRPC's table of status codes), and a request over `rpc.max_request_bytes`
/// is OUT_OF_RANGE; both carry a message saying what is wrong.
fn grpc_rows(sender: &Keypair, other: &Keypair, next_nonce: u64, committed: &Tx) -> Vec<Row> {
    use Code::*;
    let accepted = pb::SubmitMode::Accepted as i32;
    let good = transfer(sender, other, next_nonce, 1).encode();
    let huge = u64::MAX;
    let negative = (-1i64) as u64;
    let stranger = Keypair::from_seed([77; 32]);
    let mut bad_sig = transfer(sender, other, next_nonce, 1);
    bad_sig.signature = stranger.sign(b"something else");
    let mut non_canonical = good.clone();
    // A field repeated: protobuf keeps the last, but the bytes differ.
    non_canonical.extend_from_slice(
        &pb::Tx {
            nonce: next_nonce,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let oversized_tx = Tx::new_signed(
        sender,
        CHAIN,
        next_nonce,
        Action::Put {
            name: "big".into(),
            value: vec![7; MAX_TX_BYTES].into(),
        },
    )
    .encode();
    let five_mib = vec![1u8; 5 * 1024 * 1024];
    let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    let short_hash = vec![1u8; 31];
    let long_hash = vec![1u8; 33];
    let unknown_hash = Hash::digest(b"never submitted").as_bytes().to_vec();
    let key = |b: Vec<u8>| pb::GetAccountRequest { address: b.into() };
    vec![
        // NodeService
        row("status, empty", GET_STATUS, pb::GetStatusRequest {}, Ok),
        raw_row("status, undecodable", GET_STATUS, garbage.clone(), Internal),
        row(
            "block at a huge height",
            GET_BLOCK,
            pb::GetBlockRequest { height: huge },
            NotFound,
        ),
        row(
            "block at -1",
            GET_BLOCK,
            pb::GetBlockRequest { height: negative },
            NotFound,
        ),
        raw_row("block, undecodable", GET_BLOCK, garbage.clone(), Internal),
        raw_row("block, oversized", GET_BLOCK, five_mib.clone(), OutOfRange),
        row(
            "commit at a huge height",
            GET_COMMIT,
            pb::GetCommitRequest { height: huge },
            NotFound,
        ),
        row(
            "validators, empty",
            GET_VALIDATORS,
            pb::GetValidatorsRequest {},
            Ok,
        ),
        // TxService
        row(
            "submit an empty tx",
            SUBMIT,
            submit(Vec::new(), accepted),
            InvalidArgument,
        ),
        row(
            "submit undecodable tx bytes",
            SUBMIT,
            submit(garbage.clone(), accepted),
            InvalidArgument,
        ),
        row(
            "submit a tx not in canonical encoding",
            SUBMIT,
            submit(non_canonical, accepted),
            InvalidArgument,
        ),
        row(
            "submit a tx with a bad signature",
            SUBMIT,
            submit(bad_sig.encode(), accepted),
            InvalidArgument,
        ),
        row(
            "submit a tx over the size limit",
            SUBMIT,
            submit(oversized_tx, accepted),
            InvalidArgument,
        ),
        row(
            "submit from an unknown account",
            SUBMIT,
            submit(transfer(&stranger, other, 0, 1).encode(), accepted),
            NotFound,
        ),
        row(
            "submit a committed tx again",
            SUBMIT,
            submit(committed.encode(), accepted),
            AlreadyExists,
        ),
        row(
            "submit with a stale nonce",
            SUBMIT,
            submit(transfer(sender, other, 0, 2).encode(), accepted),
            FailedPrecondition,
        ),
        row(
            "submit with an unknown mode",
            SUBMIT,
            submit(good.clone(), 99),
            InvalidArgument,
        ),
        row(
            "submit with a negative mode",
            SUBMIT,
            submit(good, -1),
            InvalidArgument,
        ),
        raw_row(
            "submit, oversized request",
            SUBMIT,
            submit(five_mib.clone(), accepted).encode_to_vec(),
            OutOfRange,
        ),
        raw_row(
            "submit, undecodable request",
            SUBMIT,
            garbage.clone(),
            Internal,
        ),
        row(
            "tx with an empty hash",
            GET_TX,
            pb::GetTxRequest { hash: Bytes::new() },
            InvalidArgument,
        ),
        row(
            "tx with a 31-byte hash",
            GET_TX,
            pb::GetTxRequest {
                hash: short_hash.clone().into(),
            },
            InvalidArgument,
        ),
        row(
            "tx with a 33-byte hash",
            GET_TX,
            pb::GetTxRequest {
                hash: long_hash.into(),
            },
            InvalidArgument,
        ),
        row(
            "tx never submitted",
            GET_TX,
            pb::GetTxRequest {
                hash: unknown_hash.into(),
            },
            NotFound,
        ),
        stream_row(
            "blocks from a huge height",
            STREAM_BLOCKS,
            pb::StreamBlocksRequest { from_height: huge },
            Ok,
        ),
        stream_row(
            "blocks from height 1",
            STREAM_BLOCKS,
            pb::StreamBlocksRequest { from_height: 1 },
            Ok,
        ),
        stream_row(
            "tx results for a 31-byte sender",
            STREAM_TX_RESULTS,
            pb::StreamTxResultsRequest {
                sender: short_hash.clone().into(),
                from_height: 1,
            },
            InvalidArgument,
        ),
        stream_row(
            "tx results from a huge height",
            STREAM_TX_RESULTS,
            pb::StreamTxResultsRequest {
                sender: Bytes::new(),
                from_height: huge,
            },
            Ok,
        ),
        // QueryService
        row(
            "account with an empty address",
            GET_ACCOUNT,
            key(Vec::new()),
            InvalidArgument,
        ),
        row(
            "account with a 31-byte address",
            GET_ACCOUNT,
            key(short_hash.clone()),
            InvalidArgument,
        ),
        row(
            "account with a 33-byte address",
            GET_ACCOUNT,
            key(vec![1u8; 33]),
            InvalidArgument,
        ),
        row(
            "account never funded",
            GET_ACCOUNT,
            key(stranger.public().as_bytes().to_vec()),
            Ok,
        ),
        raw_row(
            "account, oversized request",
            GET_ACCOUNT,
            key(five_mib).encode_to_vec(),
            OutOfRange,
        ),
        row(
            "record with an empty name",
            GET_RECORD,
            pb::GetRecordRequest {
                owner: sender.public().as_bytes().to_vec().into(),
                name: String::new(),
            },
            InvalidArgument,
        ),
        row(
            "record with a name over the limit",
            GET_RECORD,
            pb::GetRecordRequest {
                owner: sender.public().as_bytes().to_vec().into(),
                name: "n".repeat(MAX_NAME_BYTES + 1),
            },
            InvalidArgument,
        ),
        row(
            "record with a bad owner",
            GET_RECORD,
            pb::GetRecordRequest {
                owner: short_hash.into(),
                name: "color".into(),
            },
            InvalidArgument,
        ),
        // SyncService
        row(
            "snapshots, empty",
            LIST_SNAPSHOTS,
            pb::ListSnapshotsRequest {},
            Ok,
        ),
        row(
            "manifest at a huge height",
            GET_MANIFEST,
            pb::GetManifestRequest { height: huge },
            NotFound,
        ),
        row(
            "chunk at a huge height and index",
            GET_CHUNK,
            pb::GetChunkRequest {
                height: huge,
                index: u32::MAX,
            },
            NotFound,
        ),
        row(
            "light block at a huge height",
            GET_LIGHT_BLOCK,
            pb::GetLightBlockRequest { height: huge },
            NotFound,
        ),
        raw_row(
            "light block, undecodable",
            GET_LIGHT_BLOCK,
            garbage,
            Internal,
        ),
        stream_row(
            "block range ending before it starts",
            STREAM_BLOCK_RANGE,
            pb::StreamBlockRangeRequest {
                from_height: 3,
                to_height: 2,
            },
            InvalidArgument,
        ),
        stream_row(
            "block range from a huge height",
            STREAM_BLOCK_RANGE,
            pb::StreamBlockRangeRequest {
                from_height: huge,
                to_height: 0,
            },
            NotFound,
        ),
    ]
}

/// A frame of `msg` with its length prefix.
fn frame(msg: &NetMessage) -> Vec<u8> {
    encode_frame(msg).expect("encode").to_vec()
}

/// What a hostile peer writes: on which stream (by channel code in its header),
/// and the bytes.
struct WireRow {
    name: &'static str,
    codes: Vec<u8>,
    stream: usize,
    bytes: Vec<u8>,
    /// A word the close reason must contain.
    reason: &'static str,
}

fn wire_rows(peer_key: &Keypair) -> Vec<WireRow> {
    let all: Vec<u8> = Channel::ALL.iter().map(|c| c.code()).collect();
    let vote = NetMessage::Vote(Vote::new_signed(
        peer_key,
        CHAIN,
        VoteType::Prevote,
        Height(1),
        Round(0),
        Some(BlockId::digest(b"x")),
        Timestamp(1),
    ));
    let status = NetMessage::Status(RoundStatus {
        height: Height(1),
        round: Round(0),
        step: 1,
        prevotes: vec![1],
        precommits: vec![0],
        has_proposal: false,
        base_height: Height(1),
    });
    let over = (ChannelLimits::default().consensus as u32 + 1)
        .to_be_bytes()
        .to_vec();
    let mut truncated_then_garbage = frame(&vote);
    truncated_then_garbage[3] = truncated_then_garbage[3].wrapping_sub(3);
    vec![
        WireRow {
            name: "oversized frame (length prefix only)",
            codes: all.clone(),
            stream: Channel::Consensus.index(),
            bytes: over,
            reason: "exceeds",
        },
        WireRow {
            name: "undecodable consensus frame",
            codes: all.clone(),
            stream: Channel::Consensus.index(),
            bytes: vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
            reason: "undecodable",
        },
        WireRow {
            name: "a vote frame on the block channel",
            codes: all.clone(),
            stream: Channel::Block.index(),
            bytes: frame(&vote),
            reason: "undecodable",
        },
        // (A vote frame is a valid mempool frame: its field 1 reads as one
        // transaction, which the pool then refuses. A status frame's field 2
        // leaves a mempool frame without transactions.)
        WireRow {
            name: "a round-status frame on the mempool channel",
            codes: all.clone(),
            stream: Channel::Mempool.index(),
            bytes: frame(&status),
            reason: "no transactions",
        },
        WireRow {
            name: "a frame whose length cuts its body short",
            codes: all,
            stream: Channel::Consensus.index(),
            bytes: truncated_then_garbage,
            reason: "undecodable",
        },
        WireRow {
            name: "a stream header naming no channel",
            codes: vec![0, 1, 2, 9],
            stream: 3,
            bytes: frame(&vote),
            reason: "stream",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_every_entry_point_gets_a_clear_error_and_harms_nothing() {
    let mut c = Cluster::generate_with(4, WIRE_ROWS, 31, |s| s.clients = 2);
    for i in 0..4 {
        c.start(i);
    }
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let keys: Vec<Keypair> = (0..2)
        .map(|i| {
            read_key(&c.dir.path().join(format!("clients/client{i}.json"))).expect("client key")
        })
        .collect();
    let cl = c.client(0).await.expect("client");

    // What is stored before: a few committed transactions and the block ids.
    let mut committed = Vec::new();
    for nonce in 0..5 {
        let tx = transfer(&keys[0], &keys[1], nonce, 10);
        let r = cl
            .submit(Bytes::from(tx.encode()), true)
            .await
            .expect("commit");
        committed.push((
            tx,
            Hash::from_slice(&r.hash).expect("hash"),
            r.height,
            r.index,
        ));
    }
    let stored_to = cl.status().await.expect("status").height;
    let mut ids = Vec::new();
    for h in 1..=stored_to {
        ids.push(cl.block(h).await.expect("block").1);
    }

    // gRPC: every row gets its exact code, and a message with every refusal.
    let ch = cl.channel();
    let mut failures = Vec::new();
    for r in grpc_rows(&keys[0], &keys[1], 5, &committed[0].0) {
        let got = call(&ch, r.path, r.body, r.stream).await;
        let (code, msg) = match &got {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_string()),
        };
        if code != r.expect {
            failures.push(format!(
                "{}: expected {:?}, got {code:?} ({msg})",
                r.name, r.expect
            ));
        } else if code != Code::Ok && msg.trim().is_empty() {
            failures.push(format!("{}: {code:?} without a message", r.name));
        } else {
            println!("grpc  {:<45} {code:?}: {msg}", r.name);
        }
    }

    // Peer wire: each row from its own member key; the node closes that
    // connection for a protocol violation and says why.
    let target = c.nodes[0].key;
    let addr: SocketAddr = c.nodes[0].p2p.parse().expect("p2p address");
    let members: Vec<Keypair> = c.nodes[4..]
        .iter()
        .map(|n| read_key(&Home::new(&n.home).node_key()).expect("member key"))
        .collect();
    assert_eq!(members.len(), WIRE_ROWS);
    for (r, key) in wire_rows(&members[0]).into_iter().zip(&members) {
        let mut peer = match RawPeer::connect_with_codes(key, target, addr, &r.codes).await {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("wire {}: cannot connect: {e}", r.name));
                continue;
            }
        };
        let _ = peer.write_stream(r.stream, &r.bytes).await;
        match tokio::time::timeout(Duration::from_secs(30), peer.closed()).await {
            Ok((true, reason)) if reason.contains(r.reason) => {
                println!("wire  {:<45} closed: {reason}", r.name)
            }
            Ok((protocol, reason)) => failures.push(format!(
                "wire {}: closed (protocol violation: {protocol}) with {reason:?}, expected a reason with {:?}",
                r.name, r.reason
            )),
            Err(_) => failures.push(format!("wire {}: the node kept the connection open", r.name)),
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), c.logs());

    // The node is still there and live, and names the offenders in its log.
    assert!(c.is_running(0), "node 0 exited\n{}", c.logs());
    let now = cl.status().await.expect("status").height;
    assert!(
        c.wait_height(&[0, 1, 2, 3], now + 3, LONG).await,
        "no progress after bad input\n{}",
        c.logs()
    );
    let log = c.log_of(0);
    for m in &members {
        assert!(
            log.contains(&m.public().short()),
            "no log line names peer {}",
            m.public().short()
        );
    }

    // Nothing stored is lost or changed, on the node that took the bad input
    // and on another.
    for i in [0, 1] {
        let cl: Client = c.client(i).await.expect("client");
        for (h, id) in (1..=stored_to).zip(&ids) {
            assert_eq!(
                &cl.block(h).await.expect("block").1,
                id,
                "node {i}: block {h} changed"
            );
        }
        for (tx, hash, height, index) in &committed {
            let got = cl.get_tx(hash).await.expect("committed tx");
            assert_eq!(
                (got.height, got.index),
                (*height, *index),
                "node {i}: tx moved"
            );
            assert_eq!(
                got.tx.as_ref(),
                tx.encode().as_slice(),
                "node {i}: tx bytes changed"
            );
        }
    }
    // And it still takes a good transaction.
    let tx = transfer(&keys[0], &keys[1], 5, 1);
    cl.submit(Bytes::from(tx.encode()), true)
        .await
        .expect("a good transaction after the bad ones");
}

/// A command whose reader has gone (`consort ... | head -1` after head exits)
/// ends as Unix tools do, by SIGPIPE, not with a panic message.
#[cfg(unix)]
#[test]
fn a_command_printing_into_a_closed_pipe_does_not_panic() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consort"))
        .args(["init", "--moniker", "piped", "--home"])
        .arg(dir.path().join("home"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
    // What it did before printing is done.
    assert!(dir.path().join("home").join("config.toml").exists());
}
