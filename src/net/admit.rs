//! Admission of inbound QUIC handshakes.
//!
//! A handshake in progress holds a slot (memory, a task, a TLS state) until it
//! completes or [`super::NetTuning::handshake_timeout`] runs out. Without care, a
//! stranger sending a few Initial packets a second keeps every slot taken, and
//! validators restarting cannot connect. Three rules keep the slots for peers:
//!
//! - Address validation: once a few handshakes are in progress, or when the
//!   source already holds one, an Initial from an address that has not proved it
//!   receives our packets is answered with a stateless QUIC Retry. A spoofed
//!   source never sees the Retry and holds no slot; an honest client costs one
//!   more round trip.
//! - A cap per source address: one address (an IPv6 /64) holds at most
//!   [`super::NetTuning::max_handshakes_per_ip`] slots, so it takes the whole pool
//!   only with many addresses it really owns.
//! - The global cap [`super::NetTuning::max_pending_handshakes`].

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// What to do with one inbound connection attempt.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start the handshake.
    Accept,
    /// Answer with a Retry: the client must prove its address first.
    Retry,
    /// Refuse: the source holds as many handshakes as it may.
    RefuseSource,
    /// Refuse: the node holds as many handshakes as it may.
    RefuseBusy,
}

/// The bounds of [`decide`].
#[derive(Copy, Clone, Debug)]
pub(crate) struct Limits {
    /// Handshakes in progress at once.
    pub(crate) max_total: usize,
    /// Handshakes in progress from one source.
    pub(crate) max_per_source: usize,
    /// From this many handshakes in progress, unvalidated attempts get a Retry.
    pub(crate) retry_threshold: usize,
}

/// The admission rule, given the handshakes in progress in total and from the
/// attempt's source, and whether its address is validated.
pub(crate) fn decide(
    limits: &Limits,
    total: usize,
    from_source: usize,
    validated: bool,
) -> Verdict {
    // A Retry first: it is stateless and costs us nothing, and by the time the
    // client is back a slot may be free. An honest client never holds two
    // handshakes with us at once, so a second one from a source is suspect.
    if !validated && (total >= limits.retry_threshold || from_source > 0) {
        return Verdict::Retry;
    }
    if from_source >= limits.max_per_source {
        return Verdict::RefuseSource;
    }
    if total >= limits.max_total {
        return Verdict::RefuseBusy;
    }
    Verdict::Accept
}

/// The source an attempt is counted against: an IPv4 address, or the /64 of an
/// IPv6 address (a host usually owns a whole /64). An IPv4 address seen
/// through a dual-stack socket counts as itself.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Default)]
struct Held {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// The handshakes in progress, in total and per source.
pub(crate) struct HandshakeSlots {
    limits: Limits,
    held: Mutex<Held>,
}

/// What [`HandshakeSlots::admit`] decided.
pub(crate) enum Admission {
    /// Go on with the handshake while holding this slot.
    Accept(Slot),
    /// Not now (never [`Verdict::Accept`]).
    Deny(Verdict),
}

impl HandshakeSlots {
    pub(crate) fn new(limits: Limits) -> HandshakeSlots {
        HandshakeSlots {
            limits,
            held: Mutex::new(Held::default()),
        }
    }

    /// Decides on an attempt from `ip` and takes a slot if it is accepted.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, validated: bool) -> Admission {
        let source = source_of(ip);
        let mut held = self.held.lock();
        let from_source = held.per_source.get(&source).copied().unwrap_or(0);
        match decide(&self.limits, held.total, from_source, validated) {
            Verdict::Accept => {
                held.total += 1;
                *held.per_source.entry(source).or_insert(0) += 1;
                Admission::Accept(Slot {
                    slots: self.clone(),
                    source,
                })
            }
            other => Admission::Deny(other),
        }
    }

    /// Handshakes in progress now.
    pub(crate) fn pending(&self) -> usize {
        self.held.lock().total
    }
}

/// A handshake in progress; dropping it frees its slot.
pub(crate) struct Slot {
    slots: Arc<HandshakeSlots>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_total: 10,
        max_per_source: 3,
        retry_threshold: 2,
    };

    #[test]
    fn decide_retries_unvalidated_under_load_and_caps_each_source() {
        use Verdict::*;
        // (total, from source, validated, verdict)
        let table = [
            // A quiet node answers at once.
            (0, 0, false, Accept),
            (1, 0, false, Accept),
            (0, 0, true, Accept),
            // Under load, or a second attempt from one source: prove the address.
            (2, 0, false, Retry),
            (1, 1, false, Retry),
            (10, 0, false, Retry),
            (10, 5, false, Retry),
            // A validated source is held to its cap, then to the global one.
            (2, 0, true, Accept),
            (5, 2, true, Accept),
            (5, 3, true, RefuseSource),
            (9, 2, true, Accept),
            (10, 0, true, RefuseBusy),
            (10, 3, true, RefuseSource),
        ];
        for (total, from, validated, want) in table {
            assert_eq!(
                decide(&LIMITS, total, from, validated),
                want,
                "total {total}, from source {from}, validated {validated}"
            );
        }
        // A threshold of 0 validates every address.
        let always = Limits {
            retry_threshold: 0,
            ..LIMITS
        };
        assert_eq!(decide(&always, 0, 0, false), Retry);
        assert_eq!(decide(&always, 0, 0, true), Accept);
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_prefixes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff::1")),
            source_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn slots_are_counted_per_source_and_freed_on_drop() {
        let slots = Arc::new(HandshakeSlots::new(LIMITS));
        let a = ip4(1);
        let b = ip4(2);
        let mut held = Vec::new();
        // The first attempt of a source is taken at once; its next ones only
        // with a validated address, up to the cap.
        for validated in [false, true, true] {
            match slots.admit(a, validated) {
                Admission::Accept(s) => held.push(s),
                Admission::Deny(v) => panic!("denied: {v:?}"),
            }
        }
        assert!(matches!(
            slots.admit(a, false),
            Admission::Deny(Verdict::Retry)
        ));
        assert!(matches!(
            slots.admit(a, true),
            Admission::Deny(Verdict::RefuseSource)
        ));
        // Another source still gets in, after proving its address (3 pending).
        assert!(matches!(
            slots.admit(b, false),
            Admission::Deny(Verdict::Retry)
        ));
        let Admission::Accept(from_b) = slots.admit(b, true) else {
            panic!("b denied");
        };
        assert_eq!(slots.pending(), 4);
        held.pop();
        assert_eq!(slots.pending(), 3);
        assert!(matches!(slots.admit(a, true), Admission::Accept(_)));
        drop(held);
        drop(from_b);
        assert_eq!(slots.pending(), 0);
        assert!(slots.held.lock().per_source.is_empty());
    }

    fn ip4(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }
}
