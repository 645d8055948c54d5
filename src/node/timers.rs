//! Deadlines the runtime waits on: consensus timeouts and the start of the next
//! height.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

use crate::consensus::Timeout;
use crate::types::Height;

/// What happens at a deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerEvent {
    /// Feed this timeout to the core.
    Consensus(Timeout),
    /// Start this height (the pause after a decision is over).
    StartHeight(Height),
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    event: TimerEvent,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed: the heap pops the earliest deadline first, then the oldest entry.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// A min-heap of deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl Timers {
    /// Schedules `event` at `at`.
    pub fn schedule(&mut self, at: Instant, event: TimerEvent) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes and returns the events due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<TimerEvent> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|e| e.at <= now) {
            if let Some(e) = self.heap.pop() {
                due.push(e.event);
            }
        }
        due
    }

    /// Drops consensus timeouts of heights below `height`, which can no longer fire
    /// anything.
    pub fn forget_below(&mut self, height: Height) {
        self.heap.retain(|e| match &e.event {
            TimerEvent::Consensus(t) => t.height >= height,
            TimerEvent::StartHeight(h) => *h >= height,
        });
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_then_insertion_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.schedule(
            now + Duration::from_millis(20),
            TimerEvent::StartHeight(Height(3)),
        );
        t.schedule(
            now + Duration::from_millis(10),
            TimerEvent::StartHeight(Height(1)),
        );
        t.schedule(
            now + Duration::from_millis(10),
            TimerEvent::StartHeight(Height(2)),
        );
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        assert!(t.pop_due(now).is_empty());
        assert_eq!(
            t.pop_due(now + Duration::from_millis(15)),
            vec![
                TimerEvent::StartHeight(Height(1)),
                TimerEvent::StartHeight(Height(2))
            ]
        );
        t.forget_below(Height(4));
        assert!(t.is_empty());
    }
}
