//! Generating the homes of a network: keys, one genesis, and configs that point
//! the nodes at each other. Used by `consort testnet`, `consort devnet`, the
//! deployment scripts and the cluster tests.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigError, ConsensusConfig, Genesis, GenesisAccount, GenesisOrganization, GenesisValidator,
    Home, NodeConfig, write_key, write_pem,
};
use crate::pki::{IssueOptions, OrgCa, Role};
use crate::types::{Keypair, PublicKey};

/// What to generate.
#[derive(Clone, Debug)]
pub struct TestnetSpec {
    /// Number of validators.
    pub validators: usize,
    /// Output directory; node homes go to `out/<name>`.
    pub out: PathBuf,
    /// First port. Without `hosts`, node i uses `base_port + 10 i` (+0 p2p, +1
    /// gRPC, +2 metrics) on 127.0.0.1; with `hosts`, every node uses the same
    /// ports on its own host (+0 p2p, +1 gRPC, +4 metrics: 26656, 26657, 26660
    /// from the default 26656).
    pub base_port: u16,
    /// Chain id.
    pub chain_id: String,
    /// Host name of each node (for containers); `None` for 127.0.0.1.
    pub hosts: Option<Vec<String>>,
    /// Node names; default `node0`, `node1`, ...
    pub names: Option<Vec<String>>,
    /// The organization of each node; default: each node is an organization
    /// of its own name.
    pub orgs: Option<Vec<String>>,
    /// Consensus settings written into every config.
    pub consensus: ConsensusConfig,
    /// Funded client keys to write to `out/clients/`.
    pub clients: usize,
    /// Balance of each client account.
    pub client_balance: u64,
    /// Extra (non-validator) member homes to create, permitted by every node.
    pub members: usize,
    /// Genesis time in ms since the epoch.
    pub genesis_time_ms: u64,
    /// Extra genesis accounts (keys derived from their index, not written out),
    /// to start with a large state.
    pub extra_accounts: u64,
    /// Balance of each extra account.
    pub extra_balance: u64,
    /// Serve the API over TLS with the generated certificates (and reach the
    /// state-sync servers over TLS as a member). Without it, nodes on
    /// `hosts` serve plaintext with `rpc.insecure`.
    pub tls: bool,
}

impl TestnetSpec {
    /// A local network of `validators` nodes on 127.0.0.1.
    pub fn local(validators: usize, out: PathBuf) -> TestnetSpec {
        TestnetSpec {
            validators,
            out,
            base_port: 26600,
            chain_id: "consort-devnet".into(),
            hosts: None,
            names: None,
            orgs: None,
            consensus: ConsensusConfig::default(),
            clients: 0,
            client_balance: 1_000_000_000,
            members: 0,
            genesis_time_ms: crate::node::now_ms().0,
            extra_accounts: 0,
            extra_balance: 1,
            tls: false,
        }
    }
}

/// The key of extra genesis account `i` (derived from its index, so that a load
/// generator can sign for the accounts of a generated network).
pub fn extra_account_key(i: u64) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_be_bytes());
    seed[8] = 0xAC;
    Keypair::from_seed(seed)
}

/// One generated node, as written to `nodes.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeEntry {
    /// Node name (moniker).
    pub name: String,
    /// Its home directory.
    pub home: PathBuf,
    /// Its QUIC address (host:port).
    pub p2p: String,
    /// Its gRPC address (host:port).
    pub grpc: String,
    /// Its metrics address (host:port).
    pub metrics: String,
    /// Its node key.
    pub key: PublicKey,
    /// Whether it is a validator (members are not).
    pub validator: bool,
}

/// Writes the homes, `nodes.json`, and `clients/` under `spec.out`.
pub fn generate(spec: &TestnetSpec) -> Result<Vec<NodeEntry>, ConfigError> {
    let total = spec.validators + spec.members;
    let out = &spec.out;
    let names: Vec<String> = match &spec.names {
        Some(n) => {
            if n.len() != total {
                return Err(ConfigError::invalid(
                    out,
                    "names",
                    format!("{} names for {total} nodes", n.len()),
                ));
            }
            n.clone()
        }
        None => (0..total)
            .map(|i| {
                if i < spec.validators {
                    format!("node{i}")
                } else {
                    format!("member{}", i - spec.validators)
                }
            })
            .collect(),
    };
    if let Some(h) = &spec.hosts {
        if h.len() != total {
            return Err(ConfigError::invalid(
                out,
                "hosts",
                format!("{} hosts for {total} nodes", h.len()),
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| ConfigError::io(out, e))?;
    let keys: Vec<Keypair> = (0..total).map(|_| Keypair::generate()).collect();
    let addr = |i: usize, offset: u16| -> (String, String) {
        match &spec.hosts {
            Some(hosts) => {
                let port = spec.base_port + if offset == 2 { 4 } else { offset };
                (format!("{}:{port}", hosts[i]), format!("0.0.0.0:{port}"))
            }
            None => {
                let a = format!("127.0.0.1:{}", spec.base_port + (i as u16) * 10 + offset);
                (a.clone(), a)
            }
        }
    };
    let mut clients = Vec::new();
    if spec.clients > 0 {
        let dir = out.join("clients");
        for i in 0..spec.clients {
            let k = Keypair::generate();
            write_key(&dir.join(format!("client{i}.json")), &k)?;
            clients.push(k.public());
        }
    }
    let orgs: Vec<String> = match &spec.orgs {
        Some(o) if o.len() != total => {
            return Err(ConfigError::invalid(
                out,
                "orgs",
                format!("{} organizations for {total} nodes", o.len()),
            ));
        }
        Some(o) => o.clone(),
        None => names.clone(),
    };
    let pki = write_pki(spec, out, &names, &orgs, &keys)?;
    let genesis = Genesis {
        chain_id: spec.chain_id.clone(),
        genesis_time_ms: spec.genesis_time_ms,
        validators: (0..spec.validators)
            .map(|i| GenesisValidator {
                name: names[i].clone(),
                public_key: keys[i].public(),
                power: 1,
            })
            .collect(),
        organizations: pki.organizations,
        accounts: clients
            .iter()
            .map(|k| GenesisAccount {
                public_key: *k,
                balance: spec.client_balance,
            })
            .chain((0..spec.extra_accounts).map(|i| GenesisAccount {
                public_key: extra_account_key(i).public(),
                balance: spec.extra_balance,
            }))
            .collect(),
    };
    genesis.validate(&out.join("genesis.json"))?;
    let mut entries = Vec::new();
    for i in 0..total {
        let home = Home::new(out.join(&names[i]));
        std::fs::create_dir_all(home.root()).map_err(|e| ConfigError::io(home.root(), e))?;
        write_key(&home.node_key(), &keys[i])?;
        genesis.save(&home.genesis())?;
        let (p2p_public, p2p_listen) = addr(i, 0);
        let (grpc_public, grpc_listen) = addr(i, 1);
        let (metrics_public, metrics_listen) = addr(i, 2);
        let mut cfg = NodeConfig {
            moniker: names[i].clone(),
            consensus: spec.consensus.clone(),
            ..NodeConfig::default()
        };
        cfg.p2p.listen = p2p_listen;
        cfg.rpc.listen = grpc_listen;
        cfg.metrics.listen = metrics_listen;
        // Validators dial every other validator; members dial the validators.
        cfg.p2p.peers = (0..spec.validators)
            .filter(|j| *j != i)
            .map(|j| format!("{}@{}", keys[j].public(), addr(j, 0).0))
            .collect();
        if spec.tls {
            cfg.rpc.tls_cert = "tls/node.pem".into();
            cfg.rpc.tls_key = "tls/node.key".into();
            cfg.sync.tls_ca = "tls/ca.pem".into();
            // Members sync as members; validators (which sync only blocks,
            // over the peer network) present their node certificate.
            let who = if i < spec.validators {
                "node"
            } else {
                "member"
            };
            cfg.sync.tls_cert = format!("tls/{who}.pem");
            cfg.sync.tls_key = format!("tls/{who}.key");
        } else {
            cfg.rpc.tls_cert = String::new();
            cfg.rpc.tls_key = String::new();
            // Loopback needs nothing more; containers reach each other on
            // their own addresses.
            cfg.rpc.insecure = spec.hosts.is_some();
        }
        let path = home.config();
        std::fs::write(&path, cfg.to_commented_toml()).map_err(|e| ConfigError::io(&path, e))?;
        entries.push(NodeEntry {
            name: names[i].clone(),
            home: home.root().to_path_buf(),
            p2p: p2p_public,
            grpc: grpc_public,
            metrics: metrics_public,
            key: keys[i].public(),
            validator: i < spec.validators,
        });
    }
    let nodes_json = out.join("nodes.json");
    let json = serde_json::to_string_pretty(&entries).map_err(|e| ConfigError::Parse {
        path: nodes_json.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&nodes_json, json + "\n").map_err(|e| ConfigError::io(&nodes_json, e))?;
    Ok(entries)
}

/// What [`write_pki`] made.
struct Pki {
    organizations: Vec<GenesisOrganization>,
}

/// The subject alternative names of node `i`'s gRPC server certificate: the
/// host it is reached at, its name, and loopback.
fn server_names(spec: &TestnetSpec, names: &[String], i: usize) -> Vec<String> {
    let mut v = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(h) = spec.hosts.as_ref().and_then(|h| h.get(i)) {
        v.push(h.clone());
    }
    v.push(names[i].clone());
    v.sort();
    v.dedup();
    v
}

/// The consortium PKI of a generated network: a CA per organization
/// (`out/orgs/<org>/ca.pem`, `ca.key`), an admin key and admin certificate
/// per organization, every node's gRPC server certificate
/// (`<home>/tls/node.pem`, `node.key`) and the bundle of every CA
/// (`out/ca.pem`, `<home>/tls/ca.pem`), and a client certificate per client
/// key (`out/clients/clientN.pem`, `.key`, of the first organization).
fn write_pki(
    spec: &TestnetSpec,
    out: &Path,
    names: &[String],
    orgs: &[String],
    keys: &[Keypair],
) -> Result<Pki, ConfigError> {
    let pki_err = |e: crate::pki::PkiError| ConfigError::invalid(out, "orgs", e.to_string());
    let mut order: Vec<&String> = Vec::new();
    for o in orgs {
        if !order.contains(&o) {
            order.push(o);
        }
    }
    let mut cas = Vec::new();
    let mut organizations = Vec::new();
    let mut bundle = String::new();
    for org in &order {
        let ca = OrgCa::generate(org).map_err(pki_err)?;
        let dir = out.join("orgs").join(org.as_str());
        write_pem(&dir.join("ca.pem"), ca.cert_pem(), false)?;
        write_pem(&dir.join("ca.key"), &ca.key_pem(), true)?;
        let admin_key = Keypair::generate();
        write_key(&dir.join("admin_key.json"), &admin_key)?;
        let admin = ca
            .issue(
                Role::Admin,
                &format!("{org}-admin"),
                &IssueOptions::days(crate::pki::DEFAULT_DAYS),
            )
            .map_err(pki_err)?;
        write_pem(&dir.join("admin.pem"), &admin.cert_pem, false)?;
        write_pem(&dir.join("admin.key"), &admin.key_pem, true)?;
        bundle.push_str(ca.cert_pem());
        let mine = |validator: bool| -> Vec<PublicKey> {
            (0..names.len())
                .filter(|i| &orgs[*i] == *org && (*i < spec.validators) == validator)
                .map(|i| keys[i].public())
                .collect()
        };
        organizations.push(GenesisOrganization {
            name: org.to_string(),
            ca_cert: ca.cert_pem().to_string(),
            validators: mine(true),
            members: mine(false),
            admins: vec![admin_key.public()],
        });
        cas.push(ca);
    }
    write_pem(&out.join("ca.pem"), &bundle, false)?;
    let ca_of = |org: &str| cas.iter().find(|c| c.org() == org);
    for (i, name) in names.iter().enumerate() {
        let Some(ca) = ca_of(&orgs[i]) else { continue };
        let cert = ca
            .issue(
                Role::Node,
                name,
                &IssueOptions::days(crate::pki::DEFAULT_DAYS)
                    .with_names(server_names(spec, names, i)),
            )
            .map_err(pki_err)?;
        let tls = out.join(name).join("tls");
        write_pem(&tls.join("node.pem"), &cert.cert_pem, false)?;
        write_pem(&tls.join("node.key"), &cert.key_pem, true)?;
        write_pem(&tls.join("ca.pem"), &bundle, false)?;
        if i >= spec.validators {
            // A member node's identity when it syncs from the validators.
            let member = ca
                .issue(
                    Role::Member,
                    name,
                    &IssueOptions::days(crate::pki::DEFAULT_DAYS),
                )
                .map_err(pki_err)?;
            write_pem(&tls.join("member.pem"), &member.cert_pem, false)?;
            write_pem(&tls.join("member.key"), &member.key_pem, true)?;
        }
    }
    if let Some(first) = cas.first() {
        for i in 0..spec.clients {
            let cert = first
                .issue(
                    Role::Client,
                    &format!("client{i}"),
                    &IssueOptions::days(crate::pki::DEFAULT_DAYS),
                )
                .map_err(pki_err)?;
            let dir = out.join("clients");
            write_pem(&dir.join(format!("client{i}.pem")), &cert.cert_pem, false)?;
            write_pem(&dir.join(format!("client{i}.key")), &cert.key_pem, true)?;
        }
    }
    Ok(Pki { organizations })
}

/// Reads `nodes.json`.
pub fn read_nodes(path: &Path) -> Result<Vec<NodeEntry>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_homes_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TestnetSpec::local(3, dir.path().to_path_buf());
        spec.members = 1;
        spec.clients = 2;
        let nodes = generate(&spec).unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(read_nodes(&dir.path().join("nodes.json")).unwrap(), nodes);
        for n in &nodes {
            let home = Home::new(&n.home);
            let cfg = NodeConfig::load(&home.config()).unwrap();
            let g = Genesis::load(&home.genesis()).unwrap();
            assert_eq!(g.validators.len(), 3);
            assert_eq!(g.accounts.len(), 2);
            assert_eq!(
                crate::config::read_key(&home.node_key()).unwrap().public(),
                n.key
            );
            assert_eq!(cfg.p2p.peers.len(), if n.validator { 2 } else { 3 });
            assert!(cfg.p2p.members.is_empty(), "members come from the genesis");
        }
        assert_eq!(nodes[1].grpc, "127.0.0.1:26611");
        assert!(dir.path().join("clients/client1.json").exists());
        // One organization per node, each trusted by the genesis, each node
        // with a server certificate its organization issued.
        let g = Genesis::load(&Home::new(&nodes[0].home).genesis()).unwrap();
        assert_eq!(g.organizations.len(), 4);
        assert_eq!(g.member_keys(), vec![nodes[3].key]);
        let trust = g.trust_store().unwrap();
        for n in &nodes {
            let pem = std::fs::read_to_string(n.home.join("tls/node.pem")).unwrap();
            let chain = crate::pki::certs_from_pem(&pem, "node").unwrap();
            let id = trust
                .identify(&chain, std::time::SystemTime::now())
                .unwrap();
            assert_eq!((id.org.as_str(), id.role), (n.name.as_str(), Role::Node));
            assert_eq!(
                g.organization_of(&n.key).map(|o| o.name.as_str()),
                Some(n.name.as_str())
            );
        }
        let pem = std::fs::read_to_string(dir.path().join("clients/client0.pem")).unwrap();
        let chain = crate::pki::certs_from_pem(&pem, "client").unwrap();
        let id = trust
            .identify(&chain, std::time::SystemTime::now())
            .unwrap();
        assert_eq!(id.role, Role::Client);
    }
}
