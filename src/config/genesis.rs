//! The genesis file: the chain id, the genesis time, the fixed validator set,
//! the consortium's organizations and the initial application state. Every
//! node of a chain holds the same one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::types::{Canonical, Hash, PublicKey, Timestamp, Validator, ValidatorSet};

/// Longest chain id accepted.
pub const MAX_CHAIN_ID_LEN: usize = 50;

/// A validator as listed in the genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// The organization's name.
    pub name: String,
    /// Its consensus and node key.
    pub public_key: PublicKey,
    /// Its voting power.
    pub power: u64,
}

/// An account funded at genesis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The client's public key (the account address).
    pub public_key: PublicKey,
    /// Its initial balance.
    pub balance: u64,
}

/// Longest organization name.
pub const MAX_ORG_NAME_LEN: usize = 64;

/// An organization of the consortium: the registry the chain starts with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisOrganization {
    /// Its name: the subject `O` of its CA and of every certificate the CA
    /// issues.
    pub name: String,
    /// Its CA certificate (PEM): the API trusts the certificates it signs.
    pub ca_cert: String,
    /// Node keys of its validators (each one of `validators`).
    #[serde(default)]
    pub validators: Vec<PublicKey>,
    /// Node keys of its member (non-validator) nodes: permitted on the peer
    /// network.
    #[serde(default)]
    pub members: Vec<PublicKey>,
    /// Its administrators' keys, which sign its governance decisions.
    #[serde(default)]
    pub admins: Vec<PublicKey>,
}

/// The genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id, part of everything signed on this chain.
    pub chain_id: String,
    /// Time of the first block, in milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The fixed validator set.
    pub validators: Vec<GenesisValidator>,
    /// The organizations of the consortium, their CAs, nodes and admins. A
    /// chain without any serves its API only in plaintext (loopback, or
    /// `rpc.insecure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<GenesisOrganization>,
    /// Accounts funded at genesis.
    #[serde(default, deserialize_with = "accounts_checked_in_parallel")]
    pub accounts: Vec<GenesisAccount>,
}

/// An account as written in the file, its key not yet checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    public_key: String,
    balance: u64,
}

/// Reads the accounts and checks their keys on every core: checking a key is
/// a point decompression (tens of microseconds), and a genesis may fund tens
/// of thousands of accounts, which every node reads at every start.
fn accounts_checked_in_parallel<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<GenesisAccount>, D::Error> {
    let raw = Vec::<RawAccount>::deserialize(d)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = raw.len().div_ceil(threads).max(1024);
    let parts: Vec<Result<Vec<GenesisAccount>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = raw
            .chunks(per)
            .enumerate()
            .map(|(part, accounts)| {
                s.spawn(move || {
                    accounts
                        .iter()
                        .enumerate()
                        .map(|(i, a)| {
                            let public_key = a.public_key.parse().map_err(|e| {
                                format!("accounts[{}].public_key: {e}", part * per + i)
                            })?;
                            Ok(GenesisAccount {
                                public_key,
                                balance: a.balance,
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("checking account keys panicked".into()))
            })
            .collect()
    });
    let mut accounts = Vec::with_capacity(raw.len());
    for part in parts {
        accounts.extend(part.map_err(serde::de::Error::custom)?);
    }
    Ok(accounts)
}

impl Genesis {
    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        let g: Genesis = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        g.validate(path)?;
        Ok(g)
    }

    /// Writes the genesis file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, json + "\n").map_err(|e| ConfigError::io(path, e))
    }

    /// Checks the rules a genesis must follow.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(ConfigError::invalid(
                path,
                "chain_id",
                format!("must be 1 to {MAX_CHAIN_ID_LEN} characters"),
            ));
        }
        if !self
            .chain_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::invalid(
                path,
                "chain_id",
                "may hold only ASCII letters, digits, '-', '_' and '.'",
            ));
        }
        self.validator_set()
            .map_err(|e| ConfigError::invalid(path, "validators", e.to_string()))?;
        self.validate_organizations(path)?;
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            if !seen.insert(a.public_key) {
                return Err(ConfigError::invalid(
                    path,
                    format!("accounts[{i}].public_key"),
                    "listed twice",
                ));
            }
        }
        Ok(())
    }

    /// Every organization has a valid name and CA; every validator belongs to
    /// exactly one organization (when there are organizations); no node key is
    /// listed twice.
    fn validate_organizations(&self, path: &Path) -> Result<(), ConfigError> {
        if self.organizations.is_empty() {
            return Ok(());
        }
        let validators: std::collections::HashSet<PublicKey> =
            self.validators.iter().map(|v| v.public_key).collect();
        let mut names = std::collections::HashSet::new();
        let mut nodes = std::collections::HashSet::new();
        for (i, o) in self.organizations.iter().enumerate() {
            let field = |f: &str| format!("organizations[{i}].{f}");
            if o.name.is_empty()
                || o.name.len() > MAX_ORG_NAME_LEN
                || !o
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ConfigError::invalid(
                    path,
                    field("name"),
                    format!(
                        "must be 1 to {MAX_ORG_NAME_LEN} ASCII letters, digits, '-', '_' or '.'"
                    ),
                ));
            }
            if !names.insert(o.name.as_str()) {
                return Err(ConfigError::invalid(path, field("name"), "listed twice"));
            }
            crate::pki::TrustStore::new([(o.name.as_str(), o.ca_cert.as_str())])
                .map_err(|e| ConfigError::invalid(path, field("ca_cert"), e.to_string()))?;
            let ca = crate::pki::certs_from_pem(&o.ca_cert, "ca_cert")
                .and_then(|c| crate::pki::describe(&c[0]))
                .map_err(|e| ConfigError::invalid(path, field("ca_cert"), e.to_string()))?;
            if !ca.is_ca || ca.org.as_deref() != Some(o.name.as_str()) {
                return Err(ConfigError::invalid(
                    path,
                    field("ca_cert"),
                    format!(
                        "must be a CA certificate whose subject O is {:?} (it is {:?})",
                        o.name,
                        ca.org.unwrap_or_default()
                    ),
                ));
            }
            for (j, k) in o.validators.iter().enumerate() {
                if !validators.contains(k) {
                    return Err(ConfigError::invalid(
                        path,
                        field(&format!("validators[{j}]")),
                        "is not one of the genesis validators",
                    ));
                }
            }
            for (list, keys) in [("validators", &o.validators), ("members", &o.members)] {
                for (j, k) in keys.iter().enumerate() {
                    if !nodes.insert(*k) {
                        return Err(ConfigError::invalid(
                            path,
                            field(&format!("{list}[{j}]")),
                            "this node key is listed twice",
                        ));
                    }
                }
            }
        }
        if let Some(v) = self
            .validators
            .iter()
            .find(|v| !nodes.contains(&v.public_key))
        {
            return Err(ConfigError::invalid(
                path,
                "organizations",
                format!("validator {:?} belongs to no organization", v.name),
            ));
        }
        Ok(())
    }

    /// The consortium's CAs, to judge API clients by.
    pub fn trust_store(&self) -> Result<crate::pki::TrustStore, crate::pki::PkiError> {
        crate::pki::TrustStore::new(
            self.organizations
                .iter()
                .map(|o| (o.name.as_str(), o.ca_cert.as_str())),
        )
    }

    /// The organization a node key (validator or member) belongs to.
    pub fn organization_of(&self, node: &PublicKey) -> Option<&GenesisOrganization> {
        self.organizations
            .iter()
            .find(|o| o.validators.contains(node) || o.members.contains(node))
    }

    /// Node keys of every organization's member nodes.
    pub fn member_keys(&self) -> Vec<PublicKey> {
        self.organizations
            .iter()
            .flat_map(|o| o.members.iter().copied())
            .collect()
    }

    /// The validator set.
    pub fn validator_set(&self) -> Result<ValidatorSet, crate::types::TypesError> {
        ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| Validator {
                    public_key: v.public_key,
                    power: v.power,
                    name: v.name.clone(),
                })
                .collect(),
        )
    }

    /// Genesis time.
    pub fn genesis_time(&self) -> Timestamp {
        Timestamp(self.genesis_time_ms)
    }

    /// A hash of the whole genesis, so nodes can tell they hold the same one.
    pub fn hash(&self) -> Hash {
        let mut c = Canonical::tagged("consort/genesis/v1");
        c.str(&self.chain_id).u64(self.genesis_time_ms);
        c.u32(self.validators.len() as u32);
        for v in &self.validators {
            c.str(&v.name).bytes(v.public_key.as_bytes()).u64(v.power);
        }
        c.u32(self.accounts.len() as u32);
        for a in &self.accounts {
            c.bytes(a.public_key.as_bytes()).u64(a.balance);
        }
        // Chains written before organizations keep their hash.
        if !self.organizations.is_empty() {
            c.str("organizations").u32(self.organizations.len() as u32);
            for o in &self.organizations {
                c.str(&o.name).str(&o.ca_cert);
                for list in [&o.validators, &o.members, &o.admins] {
                    c.u32(list.len() as u32);
                    for k in list {
                        c.bytes(k.as_bytes());
                    }
                }
            }
        }
        c.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    fn sample() -> Genesis {
        Genesis {
            chain_id: "test-1".into(),
            genesis_time_ms: 1,
            validators: vec![GenesisValidator {
                name: "a".into(),
                public_key: Keypair::from_seed([1; 32]).public(),
                power: 1,
            }],
            organizations: vec![],
            accounts: vec![],
        }
    }

    #[test]
    fn round_trip_and_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("genesis.json");
        let g = sample();
        g.save(&p).unwrap();
        assert_eq!(Genesis::load(&p).unwrap(), g);

        let mut bad = sample();
        bad.chain_id = "has space".into();
        bad.save(&p).unwrap();
        let e = Genesis::load(&p).unwrap_err().to_string();
        assert!(e.contains("chain_id") && e.contains("genesis.json"), "{e}");

        let mut bad = sample();
        bad.validators[0].power = 0;
        bad.save(&p).unwrap();
        let e = Genesis::load(&p).unwrap_err().to_string();
        assert!(e.contains("validators"), "{e}");

        std::fs::write(
            &p,
            r#"{"chain_id": "x", "genesis_time_ms": "soon", "validators": []}"#,
        )
        .unwrap();
        let e = Genesis::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("genesis_time_ms") || e.contains("invalid type"),
            "{e}"
        );
    }

    #[test]
    fn accounts_are_read_in_order_and_a_bad_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("genesis.json");
        // More accounts than one thread checks, so that several parts join.
        let mut g = sample();
        g.accounts = (0..3000u32)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&i.to_be_bytes());
                GenesisAccount {
                    public_key: Keypair::from_seed(seed).public(),
                    balance: u64::from(i),
                }
            })
            .collect();
        g.save(&p).unwrap();
        assert_eq!(Genesis::load(&p).unwrap(), g);

        // Not a point of the curve: y = 2 has no matching x.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let text = std::fs::read_to_string(&p).unwrap().replace(
            &g.accounts[2500].public_key.to_hex(),
            &hex::encode(not_a_point),
        );
        std::fs::write(&p, text).unwrap();
        let e = Genesis::load(&p).unwrap_err().to_string();
        assert!(e.contains("accounts[2500].public_key"), "{e}");

        // A point of small order (one of the eight torsion points) is a weak
        // key: it would verify a forged signature on any message. Refused.
        g.save(&p).unwrap();
        let weak = curve25519_dalek::constants::EIGHT_TORSION[4]
            .compress()
            .to_bytes();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace(&g.accounts[7].public_key.to_hex(), &hex::encode(weak));
        std::fs::write(&p, text).unwrap();
        let e = Genesis::load(&p).unwrap_err().to_string();
        assert!(e.contains("accounts[7].public_key"), "{e}");
    }
}
