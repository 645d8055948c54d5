//! The permissioned API over real processes: four validators of four
//! organizations serving gRPC over TLS, clients known by their certificates,
//! and member nodes that state-sync only with a member certificate.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use consort::app::ledger::{Action, Tx};
use consort::client::{Client, ClientTls};
use consort::codec::Wire;
use consort::config::read_key;
use consort::pb;

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";
/// The two member nodes: one with a member certificate, one without any.
const WITH_CERT: usize = 4;
const WITHOUT_CERT: usize = 5;

fn tls(c: &Cluster, cert: Option<&str>) -> ClientTls {
    let dir = c.dir.path();
    let (cert, key) = match cert {
        Some(name) => (
            Some(dir.join(format!("{name}.pem"))),
            Some(dir.join(format!("{name}.key"))),
        ),
        None => (None, None),
    };
    ClientTls::load(&dir.join("ca.pem"), cert.as_deref(), key.as_deref()).expect("tls files")
}

fn code_of(e: &consort::client::ClientError) -> Option<tonic::Code> {
    match e {
        consort::client::ClientError::Status(s) => Some(s.code()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_network_serves_only_consortium_certificates_with_the_right_role() {
    let mut c = Cluster::generate_with(4, 2, 19, |s| {
        s.tls = true;
        s.clients = 1;
        s.consensus.commit_delay_ms = 100;
    });
    let servers: Vec<String> = c.nodes[..4].iter().map(|n| n.grpc.clone()).collect();
    for i in 0..6 {
        c.edit_config(i, |cfg| {
            cfg.sync.snapshot_interval = 10;
            if i >= 4 {
                cfg.sync.state_sync = true;
                cfg.sync.rpc_servers = servers.clone();
            }
            if i == WITHOUT_CERT {
                cfg.sync.tls_cert = String::new();
                cfg.sync.tls_key = String::new();
            }
            if i == 0 {
                // A small quota for applications, to see it bite.
                cfg.rpc.quota.client.requests_per_sec = 20;
            }
        });
    }
    for i in 0..4 {
        c.start(i);
    }
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let addr = c.nodes[0].grpc.clone();

    // A client of org node0: submits and reads.
    let client_tls = tls(&c, Some("clients/client0"));
    let cl = Client::connect_with(&addr, Some(&client_tls))
        .await
        .expect("connect as a client");
    let key = read_key(&c.dir.path().join("clients/client0.json")).expect("key");
    let tx = Tx::new_signed(
        &key,
        CHAIN,
        0,
        Action::Put {
            name: "n".into(),
            value: Bytes::from_static(b"v"),
        },
    );
    let r = cl
        .submit(Bytes::from(tx.encode()), true)
        .await
        .expect("a client submits");
    assert!(r.height > 0);
    // ...but may not use the sync service.
    let mut sync = pb::sync_service_client::SyncServiceClient::new(cl.channel());
    let e = sync
        .list_snapshots(pb::ListSnapshotsRequest {})
        .await
        .expect_err("a client lists snapshots");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("role client"), "{e:?}");

    // Past its quota a client is told so; another certificate is not held
    // back by it.
    let mut exhausted = 0;
    for _ in 0..100 {
        if let Err(e) = cl.status().await {
            assert_eq!(code_of(&e), Some(tonic::Code::ResourceExhausted), "{e}");
            assert!(e.to_string().contains("requests per second"), "{e}");
            exhausted += 1;
        }
    }
    assert!(
        exhausted >= 50,
        "only {exhausted} of 100 refused over a quota of 20/s"
    );
    c.client(0)
        .await
        .expect("admin")
        .status()
        .await
        .expect("another certificate is served");

    // The operator's view: for an admin of the node's own organization only.
    let e = cl.node_info().await.expect_err("a client reads node info");
    assert_eq!(code_of(&e), Some(tonic::Code::PermissionDenied), "{e}");
    let info = c
        .client(0)
        .await
        .expect("admin")
        .node_info()
        .await
        .expect("an admin reads its own node's info");
    assert!(info.height > 0, "{info:?}");
    assert!(!info.organization.is_empty(), "{info:?}");
    assert!(info.config_toml.contains("[rpc"), "{}", info.config_toml);
    assert!(info.data_bytes > 0, "{info:?}");
    let which: Vec<&str> = info.certificates.iter().map(|c| c.which.as_str()).collect();
    assert_eq!(which, ["node", "org_ca"], "{info:?}");
    assert!(
        info.certificates.iter().all(|c| c.days_left > 0),
        "{info:?}"
    );
    assert!(
        info.peers.iter().any(|p| p.connected && p.height > 0),
        "{info:?}"
    );
    let e = c
        .client(1)
        .await
        .expect("admin")
        .node_info()
        .await
        .expect_err("an admin reads another organization's node");
    assert_eq!(code_of(&e), Some(tonic::Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("organization"), "{e}");

    // No certificate: the handshake completes, every call is refused with a
    // message; health stays open.
    let anonymous = Client::connect_with(&addr, Some(&tls(&c, None)))
        .await
        .expect("connect without a certificate");
    let e = anonymous
        .status()
        .await
        .expect_err("status without a certificate");
    assert_eq!(code_of(&e), Some(tonic::Code::Unauthenticated), "{e}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(anonymous.channel());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open");

    // A plaintext client gets nothing.
    let plain = Client::connect(&addr).await;
    let refused = match plain {
        Err(_) => true,
        Ok(p) => p.status().await.is_err(),
    };
    assert!(refused, "a plaintext client was served by a TLS node");

    // The member node with a member certificate restores a snapshot; the one
    // without cannot list any (and falls back to fetching blocks).
    let deadline = Instant::now() + LONG;
    loop {
        let mut s = pb::sync_service_client::SyncServiceClient::new(
            c.client(0).await.expect("admin client").channel(),
        );
        if let Ok(r) = s.list_snapshots(pb::ListSnapshotsRequest {}).await {
            if !r.into_inner().snapshots.is_empty() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.start(WITH_CERT);
    c.start(WITHOUT_CERT);
    let tip = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[WITH_CERT, WITHOUT_CERT], tip, LONG).await,
        "{}",
        c.logs()
    );
    let with = c.log_of(WITH_CERT);
    assert!(with.contains("state restored from snapshot"), "{with}");
    let without = c.log_of(WITHOUT_CERT);
    assert!(
        !without.contains("state restored from snapshot"),
        "{without}"
    );
    assert!(
        without.contains("no client certificate"),
        "the refusal is not in the log:\n{without}"
    );
    // The validators counted the refusals.
    let mut refused = 0.0;
    for i in 0..4 {
        let text = common::http_get(&c.nodes[i].metrics, "/metrics")
            .await
            .unwrap_or_default();
        refused += text
            .lines()
            .filter(|l| l.starts_with("consort_api_refused_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(refused >= 2.0, "refusals counted: {refused}");
}
