//! `consort certs`: issue API certificates from an organization's CA, and
//! explain a certificate.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use consort::config::{Genesis, write_pem};
use consort::pki::{IssueOptions, OrgCa, Role, certs_from_pem, describe};

/// Certificate commands.
#[derive(Subcommand)]
pub enum CertsCommand {
    /// Issue a certificate (and its key) from an organization's CA key.
    Issue {
        /// The organization (the subject O of its CA).
        #[arg(long)]
        org: String,
        /// client, member, admin or node.
        #[arg(long)]
        role: String,
        /// The holder's name (subject CN), for logs.
        #[arg(long)]
        name: String,
        /// The organization's CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// The organization's CA private key.
        #[arg(long)]
        ca_key: PathBuf,
        /// Files to write: OUT.pem and OUT.key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// Days of validity.
        #[arg(long, default_value_t = consort::pki::DEFAULT_DAYS)]
        days: u64,
        /// Host names or IP addresses a server certificate answers to
        /// (comma-separated; for --role node).
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
    },
    /// Explain a certificate: organization, role, validity, issuer, and, with
    /// --genesis, whether the consortium trusts it now.
    Show {
        /// The certificate (PEM).
        file: PathBuf,
        /// The chain's genesis, to judge the certificate against its CAs.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn read(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > consort::pki::MAX_PEM_BYTES as u64 {
        bail!("{} is larger than a certificate file", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a certificate command.
pub fn run(what: CertsCommand) -> Result<()> {
    match what {
        CertsCommand::Issue {
            org,
            role,
            name,
            ca,
            ca_key,
            out,
            days,
            names,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be client, member, admin or node, not {role:?}");
            };
            if days == 0 {
                bail!("--days must be at least 1");
            }
            let ca = OrgCa::from_pem(&org, &read(&ca)?, &read(&ca_key)?)?;
            let issued = ca.issue(role, &name, &IssueOptions::days(days).with_names(names))?;
            let cert = out.with_extension("pem");
            let key = out.with_extension("key");
            write_pem(&cert, &issued.cert_pem, false)?;
            write_pem(&key, &issued.key_pem, true)?;
            println!("certificate {}", cert.display());
            println!("key         {}", key.display());
            Ok(())
        }
        CertsCommand::Show {
            file,
            genesis,
            json,
        } => {
            let text = read(&file)?;
            let chain = certs_from_pem(&text, &file.display().to_string())?;
            let info = describe(&chain[0])?;
            let verdict = match genesis {
                Some(g) => {
                    let g = Genesis::load(&g)?;
                    let trust = g.trust_store()?;
                    Some(match trust.identify(&chain, SystemTime::now()) {
                        Ok(id) => format!(
                            "trusted: {} of organization {}, role {}",
                            id.name, id.org, id.role
                        ),
                        Err(e) => format!("not trusted: {e}"),
                    })
                }
                None => None,
            };
            let days_left = info.days_left(SystemTime::now());
            if json {
                let mut v = serde_json::to_value(&info)?;
                v["days_left"] = days_left.into();
                if let Some(t) = &verdict {
                    v["verdict"] = t.clone().into();
                }
                println!("{v}");
                return Ok(());
            }
            let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
            println!("organization  {}", or_none(&info.org));
            println!("role          {}", or_none(&info.role));
            println!("name          {}", or_none(&info.name));
            println!("issuer        {}", or_none(&info.issuer_org));
            println!("ca            {}", info.is_ca);
            println!("serial        {}", info.serial);
            println!(
                "valid         {} .. {} (unix seconds; {days_left} days left)",
                info.not_before, info.not_after
            );
            if !info.names.is_empty() {
                println!("names         {}", info.names.join(", "));
            }
            if let Some(t) = verdict {
                println!("{t}");
            }
            Ok(())
        }
    }
}
