//! Structured logs with `tracing`: level from the config unless `RUST_LOG` is set.

use std::io::IsTerminal as _;

use anyhow::{Result, anyhow};
use tracing_subscriber::EnvFilter;

/// The directive that silences sled's close-time error (see [`init`]).
const QUIET_SLED_CLOSE: &str = "sled::metadata_store=off";

/// Installs the global subscriber.
pub fn init(level: &str, format: &str) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        // sled's metadata thread logs an error whenever a database closes
        // ("global error set to ... system has been shut down"), and the
        // storage engine closes and reopens its databases routinely. A real
        // failure there also fails the next flush, which the node reports.
        _ => EnvFilter::try_new(format!("{level},{QUIET_SLED_CLOSE}")),
    }
    .map_err(|e| anyhow!("invalid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a terminal: piped into a file, `docker logs`
        // or a log collector they would be noise in every line.
        .with_ansi(std::io::stdout().is_terminal());
    let result = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow!("installing the log subscriber: {e}"))
}
