//! Command-line interface.

mod bench;
mod certs;
mod devnet;
mod logging;
mod query;
mod tx;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use consort::config::{
    Genesis, GenesisValidator, Home, NodeConfig, read_key, write_key, write_pem,
};
use consort::testnet::{TestnetSpec, generate};
use consort::types::Keypair;

/// consort: a permissioned consortium blockchain node.
#[derive(Parser)]
#[command(name = "consort", version, about)]
struct Cli {
    #[command(flatten)]
    tls: TlsArgs,
    #[command(subcommand)]
    command: Command,
}

/// How commands reach a node's API over TLS.
#[derive(clap::Args)]
struct TlsArgs {
    /// CA bundle (PEM) to check the node's certificate by: TLS is used when
    /// given.
    #[arg(long, global = true, env = "CONSORT_CA")]
    ca: Option<PathBuf>,
    /// Our certificate (PEM), issued by an organization's CA.
    #[arg(long, global = true, env = "CONSORT_CERT", requires = "ca")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, env = "CONSORT_KEY", requires = "cert")]
    key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node home: key, commented config.toml, and (if absent) a genesis
    /// with this node as its only validator.
    Init {
        /// Home directory to create.
        #[arg(long)]
        home: PathBuf,
        /// Node name.
        #[arg(long)]
        moniker: String,
        /// Chain id of the genesis written.
        #[arg(long, default_value = "consort-1")]
        chain_id: String,
        /// The node's organization (default: the moniker). With a new
        /// genesis, its CA is created in HOME/org/ (keep ca.key somewhere
        /// safe) and listed in the genesis.
        #[arg(long)]
        org: Option<String>,
        /// Host names or IP addresses clients reach the API at
        /// (comma-separated), for the node's TLS certificate.
        #[arg(long, value_delimiter = ',')]
        rpc_names: Vec<String>,
    },
    /// Generate the homes of an N-validator network with one genesis.
    Testnet(TestnetArgs),
    /// Run a node.
    Start {
        /// Home directory.
        #[arg(long)]
        home: PathBuf,
        /// Restore the state from a peer's snapshot first (needs sync.rpc_servers).
        #[arg(long)]
        state_sync: bool,
    },
    /// Run a local N-validator network in this process until Ctrl-C.
    Devnet {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory for the node homes (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// First port (node i uses base + 10 i).
        #[arg(long, default_value_t = 26600)]
        base_port: u16,
        /// Minimal timeouts and no pause between heights.
        #[arg(long)]
        fast: bool,
        /// Serve the API over TLS with client certificates (the devnet's
        /// consortium PKI; the certificate files are printed).
        #[arg(long)]
        tls: bool,
    },
    /// Measure throughput, latency, block interval, sync speed and memory of a
    /// running network (--nodes) or a local one (--local N).
    Bench(bench::BenchArgs),
    /// Check a node through the standard gRPC health service; exits non-zero
    /// unless it is serving (for container health checks).
    Health {
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
    },
    /// Show a node's status.
    Status {
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the operator's view of a node: version, organization, effective
    /// configuration, data size, certificates, each peer's height (needs an
    /// `admin` certificate of the node's organization: --cert/--key).
    NodeInfo {
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign and send ledger transactions.
    Tx {
        #[command(subcommand)]
        what: tx::TxCommand,
    },
    /// Query the chain.
    Query {
        #[command(subcommand)]
        what: query::QueryCommand,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        what: KeysCommand,
    },
    /// API certificates: issue them from an organization's CA, explain them.
    Certs {
        #[command(subcommand)]
        what: certs::CertsCommand,
    },
}

#[derive(clap::Args)]
struct TestnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// First port. Without --hosts node i uses base + 10 i on 127.0.0.1; with
    /// --hosts every node uses the base ports on its own host.
    #[arg(long, default_value_t = 26600)]
    base_port: u16,
    /// Chain id.
    #[arg(long, default_value = "consort-testnet")]
    chain_id: String,
    /// Comma-separated host names, one per node (validators first, then members).
    #[arg(long, value_delimiter = ',')]
    hosts: Option<Vec<String>>,
    /// Comma-separated node names, one per node.
    #[arg(long, value_delimiter = ',')]
    names: Option<Vec<String>>,
    /// Funded client keys to write to OUT/clients/.
    #[arg(long, default_value_t = 0)]
    clients: usize,
    /// Non-validator member homes to create (permitted by every node).
    #[arg(long, default_value_t = 0)]
    members: usize,
    /// Minimal timeouts and no pause between heights.
    #[arg(long)]
    fast: bool,
    /// Serve the API over TLS with the generated certificates (always for
    /// nodes on --hosts, unless --insecure).
    #[arg(long)]
    tls: bool,
    /// Nodes on --hosts serve plaintext (rpc.insecure) instead of TLS.
    #[arg(long, conflicts_with = "tls")]
    insecure: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a client key (an account) in a new file.
    NewClient {
        /// File to write (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a node's public key (from --home) or a key file's (--file).
    Show {
        /// Node home.
        #[arg(long, conflicts_with = "file")]
        home: Option<PathBuf>,
        /// A key file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line; errors print and exit non-zero.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    die_quietly_on_closed_pipe(&cli.command);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command that prints its answer and exits dies quietly of SIGPIPE when
/// its reader goes away (`consort query blocks | head -1`), as Unix tools do:
/// Rust ignores the signal, and printing to the closed pipe panicked. The
/// long-running commands (a node, a devnet, a benchmark) keep ignoring it, so
/// that a closed log pipe never kills a validator.
fn die_quietly_on_closed_pipe(command: &Command) {
    #[cfg(unix)]
    if !matches!(
        command,
        Command::Start { .. } | Command::Devnet { .. } | Command::Bench(_)
    ) {
        // SAFETY: sets the default action of one signal, before any thread
        // is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> Result<()> {
    if let Some(ca) = &cli.tls.ca {
        let tls =
            consort::pki::ClientTls::load(ca, cli.tls.cert.as_deref(), cli.tls.key.as_deref())?;
        consort::client::set_default_tls(tls);
    }
    match cli.command {
        Command::Init {
            home,
            moniker,
            chain_id,
            org,
            rpc_names,
        } => init(home, moniker, chain_id, org, rpc_names),
        Command::Testnet(a) => testnet(a),
        Command::Start { home, state_sync } => {
            let home = Home::new(home);
            let cfg = NodeConfig::load(&home.config())?;
            logging::init(&cfg.log.level, &cfg.log.format)?;
            let opts = consort::node::StartOptions {
                state_sync: state_sync.then_some(true),
            };
            runtime()?.block_on(start(home, opts))
        }
        Command::Devnet {
            validators,
            dir,
            base_port,
            fast,
            tls,
        } => runtime()?.block_on(devnet::run(validators, dir, base_port, fast, tls)),
        Command::Bench(a) => runtime()?.block_on(bench::run(a)),
        Command::Status { node, json } => runtime()?.block_on(query::status(&node, json)),
        Command::Health { node } => runtime()?.block_on(query::health(&node)),
        Command::NodeInfo { node, json } => runtime()?.block_on(query::node_info(&node, json)),
        Command::Query { what } => runtime()?.block_on(query::run(what)),
        Command::Tx { what } => runtime()?.block_on(tx::run(what)),
        Command::Certs { what } => certs::run(what),
        Command::Keys { what } => match what {
            KeysCommand::Show { home, file, json } => keys_show(home, file, json),
            KeysCommand::NewClient { out } => {
                let k = Keypair::generate();
                write_key(&out, &k)?;
                println!("{}", k.public());
                Ok(())
            }
        },
    }
}

fn init(
    home: PathBuf,
    moniker: String,
    chain_id: String,
    org: Option<String>,
    rpc_names: Vec<String>,
) -> Result<()> {
    let home = Home::new(home);
    if home.node_key().exists() || home.config().exists() {
        bail!(
            "{} already holds a node; refusing to overwrite it",
            home.root().display()
        );
    }
    std::fs::create_dir_all(home.root())
        .with_context(|| format!("creating {}", home.root().display()))?;
    let key = Keypair::generate();
    write_key(&home.node_key(), &key)?;
    let cfg = NodeConfig {
        moniker: moniker.clone(),
        ..NodeConfig::default()
    };
    std::fs::write(home.config(), cfg.to_commented_toml())
        .with_context(|| format!("writing {}", home.config().display()))?;
    if !home.genesis().exists() {
        // A new chain: this node's organization, its CA, and the node's API
        // certificate from it.
        let org = org.unwrap_or_else(|| moniker.clone());
        let ca = consort::pki::OrgCa::generate(&org)?;
        let org_dir = home.root().join("org");
        write_pem(&org_dir.join("ca.pem"), ca.cert_pem(), false)?;
        write_pem(&org_dir.join("ca.key"), &ca.key_pem(), true)?;
        let admin_key = Keypair::generate();
        write_key(&org_dir.join("admin_key.json"), &admin_key)?;
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(rpc_names);
        let node_cert = ca.issue(
            consort::pki::Role::Node,
            &moniker,
            &consort::pki::IssueOptions::days(consort::pki::DEFAULT_DAYS).with_names(names),
        )?;
        let tls = home.root().join("tls");
        write_pem(&tls.join("node.pem"), &node_cert.cert_pem, false)?;
        write_pem(&tls.join("node.key"), &node_cert.key_pem, true)?;
        write_pem(&tls.join("ca.pem"), ca.cert_pem(), false)?;
        let g = Genesis {
            chain_id,
            genesis_time_ms: consort::node::now_ms().0,
            validators: vec![GenesisValidator {
                name: moniker,
                public_key: key.public(),
                power: 1,
            }],
            organizations: vec![consort::config::GenesisOrganization {
                name: org.clone(),
                ca_cert: ca.cert_pem().to_string(),
                validators: vec![key.public()],
                members: vec![],
                admins: vec![admin_key.public()],
            }],
            accounts: vec![],
        };
        g.validate(&home.genesis())?;
        g.save(&home.genesis())?;
        println!(
            "organization {org}: CA {}",
            org_dir.join("ca.pem").display()
        );
        println!(
            "  keep {} out of the node's reach; `consort certs issue` makes client certificates from it",
            org_dir.join("ca.key").display()
        );
    } else {
        println!(
            "the genesis exists: ask your organization for this node's API certificate \
             (consort certs issue --role node) and put it at {}/tls/node.pem and node.key",
            home.root().display()
        );
    }
    println!("node key   {}", key.public());
    println!("config     {}", home.config().display());
    println!("genesis    {}", home.genesis().display());
    Ok(())
}

fn testnet(a: TestnetArgs) -> Result<()> {
    if a.validators == 0 {
        bail!("--validators must be at least 1");
    }
    let mut spec = TestnetSpec::local(a.validators, a.out.clone());
    spec.base_port = a.base_port;
    spec.chain_id = a.chain_id;
    spec.hosts = a.hosts;
    spec.names = a.names;
    spec.clients = a.clients;
    spec.members = a.members;
    spec.tls = a.tls || (spec.hosts.is_some() && !a.insecure);
    if a.fast {
        spec.consensus = consort::config::ConsensusConfig::fast();
    }
    let nodes = generate(&spec)?;
    for n in &nodes {
        println!(
            "{:<10} {:<10} p2p {:<22} grpc {:<22} metrics {:<22} {}",
            n.name,
            if n.validator { "validator" } else { "member" },
            n.p2p,
            n.grpc,
            n.metrics,
            n.home.display()
        );
    }
    println!("wrote {}", a.out.join("nodes.json").display());
    Ok(())
}

async fn start(home: Home, opts: consort::node::StartOptions) -> Result<()> {
    let node = consort::node::start_with(&home, opts).await?;
    let stop = node.shutdown_sender();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    node.wait().await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn keys_show(home: Option<PathBuf>, key: Option<PathBuf>, json: bool) -> Result<()> {
    let path = match (home, key) {
        (Some(h), None) => Home::new(h).node_key(),
        (None, Some(k)) => k,
        _ => bail!("give --home DIR or --file FILE"),
    };
    let k = read_key(&path)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "public_key": k.public().to_hex() })
        );
    } else {
        println!("{}", k.public());
    }
    Ok(())
}
