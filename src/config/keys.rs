//! Key files: a node's ed25519 key (its network identity and, for a validator, its
//! consensus signing key) and client keys.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::types::{Keypair, PublicKey};

/// On-disk form of a key: JSON with the public key and the 32-byte secret seed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    public_key: PublicKey,
    secret_seed: String,
}

/// Writes `key` to `path` (mode 0600 on Unix), refusing to overwrite.
pub fn write_key(path: &Path, key: &Keypair) -> Result<(), ConfigError> {
    let file = KeyFile {
        public_key: key.public(),
        secret_seed: hex::encode(key.seed()),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ConfigError::io(dir, e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ConfigError::io(path, e))?;
    use std::io::Write;
    f.write_all(json.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| ConfigError::io(path, e))
}

/// Writes a PEM file (a certificate, or with `private` a private key, mode
/// 0600 on Unix), creating its directory; refuses to overwrite.
pub fn write_pem(path: &Path, pem: &str, private: bool) -> Result<(), ConfigError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ConfigError::io(dir, e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| ConfigError::io(path, e))?;
    use std::io::Write;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| ConfigError::io(path, e))
}

/// Reads a key file and checks that the public key matches the seed.
pub fn read_key(path: &Path) -> Result<Keypair, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let seed = hex::decode(file.secret_seed.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| ConfigError::invalid(path, "secret_seed", "must be 64 hex digits"))?;
    let key = Keypair::from_seed(seed);
    if key.public() != file.public_key {
        return Err(ConfigError::invalid(
            path,
            "public_key",
            "does not match the secret seed",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let k = Keypair::from_seed([5; 32]);
        write_key(&p, &k).unwrap();
        assert!(write_key(&p, &k).is_err(), "never overwrites a key");
        assert_eq!(read_key(&p).unwrap().public(), k.public());
        let other = Keypair::from_seed([6; 32]);
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace(&k.public().to_hex(), &other.public().to_hex());
        std::fs::write(&p, text).unwrap();
        let err = read_key(&p).unwrap_err().to_string();
        assert!(err.contains("public_key"), "{err}");
    }
}
