//! A client's gRPC request to any method of the four services, as the protobuf
//! bytes tonic would decode, served by the real services over an in-memory store
//! holding one block. Nothing panics, and a refusal of a client's input is never
//! INTERNAL or UNKNOWN (those mean the node broke) and always says why.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use consort::app::Application;
use consort::app::ledger::Ledger;
use consort::app::state::MemBackend;
use consort::codec::encode_outcome;
use consort::config::GenesisAccount;
use consort::mempool::MempoolConfig;
use consort::metrics::NodeMetrics;
use consort::node::notify::CommitNotifier;
use consort::node::txpool::TxPool;
use consort::node::{NodeStatus, Store};
use consort::pb;
use consort::pb::node_service_server::NodeService;
use consort::pb::query_service_server::QueryService;
use consort::pb::sync_service_server::SyncService;
use consort::pb::tx_service_server::TxService;
use consort::rpc::{NodeApi, QueryApi, SyncApi, TxApi};
use consort::storage::{BlockStore, MemStore};
use consort::types::{Height, Round};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Request, Status};

struct Apis {
    node: NodeApi,
    tx: TxApi,
    query: QueryApi,
    sync: SyncApi,
}

fn apis() -> Apis {
    let store = Arc::new(MemStore::new());
    let b = consort_fuzz::block(1, 0);
    let c = consort_fuzz::commit(Height(1), Round(0), b.id(), 0b0111);
    store
        .append(&b, &c, &encode_outcome(&[], &[]))
        .expect("store the fixture block");
    let store: Arc<dyn Store> = store;
    let genesis = [GenesisAccount {
        public_key: consort_fuzz::keys()[0].public(),
        balance: 1_000,
    }];
    let app: Arc<dyn Application> = Arc::new(
        Ledger::open(
            consort_fuzz::CHAIN,
            Arc::new(MemBackend::default()),
            &genesis,
        )
        .expect("open the fixture ledger"),
    );
    let (gossip, _) = tokio::sync::mpsc::channel(16);
    let pool = Arc::new(TxPool::new(
        MempoolConfig::default(),
        app.clone(),
        gossip,
        Arc::new(CommitNotifier::new(Height(1))),
        Arc::new(NodeMetrics::default()),
    ));
    let (_, status) = tokio::sync::watch::channel(NodeStatus::new(
        consort_fuzz::CHAIN.into(),
        "fuzz".into(),
        consort_fuzz::keys()[0].public(),
        true,
    ));
    let tx = TxApi::new();
    tx.ready(pool, store.clone());
    let query = QueryApi::new();
    query.ready(app, store.clone());
    Apis {
        node: NodeApi::new(
            status,
            store.clone(),
            Arc::new(consort_fuzz::validator_set()),
        ),
        tx,
        query,
        sync: SyncApi::new(store),
    }
}

/// A refusal of client input: a client-side code, with a message.
fn check<T>(method: &str, r: Result<T, Status>) {
    if let Err(s) = r {
        assert!(
            !matches!(s.code(), Code::Internal | Code::Unknown | Code::Ok),
            "{method}: bad input answered {:?}: {}",
            s.code(),
            s.message()
        );
        assert!(
            !s.message().is_empty(),
            "{method}: {:?} without a message",
            s.code()
        );
    }
}

fn decode<M: Message + Default>(body: &[u8]) -> Option<Request<M>> {
    M::decode(body).ok().map(Request::new)
}

thread_local! {
    // Opening a ledger costs more than a request: the services are built once.
    static APIS: Apis = apis();
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, body)) = data.split_first() else {
        return;
    };
    // A runtime per input: the tasks of streams that wait for future blocks end
    // with it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    APIS.with(|a| rt.block_on(serve(a, method, body)));
});

async fn serve(a: &Apis, method: u8, body: &[u8]) {
    {
        match method % 14 {
            0 => {
                if let Some(r) = decode::<pb::GetStatusRequest>(body) {
                    check("GetStatus", a.node.get_status(r).await);
                }
            }
            1 => {
                if let Some(r) = decode::<pb::GetBlockRequest>(body) {
                    check("GetBlock", a.node.get_block(r).await);
                }
            }
            2 => {
                if let Some(r) = decode::<pb::GetCommitRequest>(body) {
                    check("GetCommit", a.node.get_commit(r).await);
                }
            }
            3 => {
                if let Some(r) = decode::<pb::GetValidatorsRequest>(body) {
                    check("GetValidators", a.node.get_validators(r).await);
                }
            }
            4 => {
                if let Some(mut r) = decode::<pb::SubmitRequest>(body) {
                    // COMMITTED would wait a minute for a block that never comes.
                    r.get_mut().mode = pb::SubmitMode::Accepted as i32;
                    check("Submit", a.tx.submit(r).await);
                }
            }
            5 => {
                if let Some(r) = decode::<pb::GetTxRequest>(body) {
                    check("GetTx", a.tx.get_tx(r).await);
                }
            }
            6 => {
                if let Some(r) = decode::<pb::StreamBlocksRequest>(body) {
                    check("StreamBlocks", a.tx.stream_blocks(r).await);
                }
            }
            7 => {
                if let Some(r) = decode::<pb::StreamTxResultsRequest>(body) {
                    check("StreamTxResults", a.tx.stream_tx_results(r).await);
                }
            }
            8 => {
                if let Some(r) = decode::<pb::GetAccountRequest>(body) {
                    check("GetAccount", a.query.get_account(r).await);
                }
            }
            9 => {
                if let Some(r) = decode::<pb::GetRecordRequest>(body) {
                    check("GetRecord", a.query.get_record(r).await);
                }
            }
            10 => {
                if let Some(r) = decode::<pb::ListSnapshotsRequest>(body) {
                    check("ListSnapshots", a.sync.list_snapshots(r).await);
                }
                if let Some(r) = decode::<pb::GetManifestRequest>(body) {
                    check("GetManifest", a.sync.get_manifest(r).await);
                }
            }
            11 => {
                if let Some(r) = decode::<pb::GetChunkRequest>(body) {
                    check("GetChunk", a.sync.get_chunk(r).await);
                }
            }
            12 => {
                if let Some(r) = decode::<pb::GetLightBlockRequest>(body) {
                    check("GetLightBlock", a.sync.get_light_block(r).await);
                }
            }
            _ => {
                if let Some(r) = decode::<pb::StreamBlockRangeRequest>(body) {
                    check("StreamBlockRange", a.sync.stream_block_range(r).await);
                }
            }
        }
        // Raw transaction bytes as a client would submit them.
        let raw = Request::new(pb::SubmitRequest {
            tx: Bytes::copy_from_slice(body),
            mode: pb::SubmitMode::Accepted as i32,
        });
        check("Submit(raw)", a.tx.submit(raw).await);
    }
}
