//! Heights, rounds and timestamps.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position in the chain. The first block has height 1.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// The height of the first block.
    pub const GENESIS: Height = Height(1);

    /// The height after this one.
    pub fn next(self) -> Height {
        Height(self.0.saturating_add(1))
    }

    /// The height before this one, if any.
    pub fn prev(self) -> Option<Height> {
        self.0.checked_sub(1).filter(|h| *h > 0).map(Height)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A round of consensus within one height. Rounds start at 0.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u32);

impl Round {
    /// The first round of a height.
    pub const ZERO: Round = Round(0);

    /// The round after this one.
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch. Consensus never reads a
/// clock; the runtime passes the current time in.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus `ms` milliseconds.
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_neighbours() {
        assert_eq!(Height(1).next(), Height(2));
        assert_eq!(Height(2).prev(), Some(Height(1)));
        assert_eq!(Height(1).prev(), None);
        assert_eq!(Height(0).prev(), None);
        assert_eq!(Height(u64::MAX).next(), Height(u64::MAX));
    }
}
