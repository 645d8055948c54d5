//! The simulated network and the runtime's gossip.
//!
//! Gossip mirrors the runtime's: each node periodically looks at the status of
//! every peer (height, round, what it already has, as the runtime learns from
//! status and has-vote messages; in the simulator that knowledge is exact and
//! instantaneous) and re-sends what the peer is missing at their common height:
//! the proposals and votes of its own round, of the peer's round, and the
//! prevotes of the proposal's valid round. A peer a whole height behind gets the
//! decided blocks with their commits instead, which it checks with
//! `Commit::verify` and applies as decisions. Without this a message lost before
//! GST would be lost for good, since the core never re-sends.
//!
//! Before GST messages are lost, delayed, duplicated, reordered, corrupted
//! (a field changed under a kept signature: receivers must refuse them) and cut
//! by partitions; after GST every message between connected nodes arrives
//! within the scenario's bound. Twins talk only to their side of the network.

use consort::types::VoteType;

use super::world::{CATCH_UP_BATCH, Ev, Msg, Sim};

impl Sim {
    /// Twins (Bano et al.): each of two copies sharing a key talks to its own part
    /// of the network (some peers see both). Drawn again every few rounds.
    pub(crate) fn split_twins(&mut self) {
        for a in 0..self.nodes.len() {
            let Some(b) = self.nodes[a].twin else {
                continue;
            };
            if b < a {
                continue;
            }
            let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
            for k in (0..self.nodes.len()).filter(|k| *k != a && *k != b) {
                match self.rng.below(4) {
                    0 | 1 => to_a.push(k),
                    2 => to_b.push(k),
                    _ => {
                        to_a.push(k);
                        to_b.push(k);
                    }
                }
            }
            if self.rng.chance(0.5) {
                std::mem::swap(&mut to_a, &mut to_b);
            }
            if self.trace {
                eprintln!(
                    "[{:>7}] twins n{a} <-> {to_a:?}, n{b} <-> {to_b:?}",
                    self.now
                );
            }
            self.nodes[a].audience = to_a;
            self.nodes[b].audience = to_b;
        }
    }

    /// Whether `from` and `to` are connected: a twin only talks to its side.
    pub(crate) fn connected(&self, from: usize, to: usize) -> bool {
        let side_of = |twin: usize, other: usize| {
            self.nodes[twin].twin.is_none() || self.nodes[twin].audience.contains(&other)
        };
        side_of(from, to) && side_of(to, from)
    }

    /// One gossip round of node `i`: what each peer at its height is missing, or
    /// the decided blocks a peer behind it lacks.
    pub(crate) fn gossip(&mut self, i: usize) {
        let node = &self.nodes[i];
        let Some(core) = node.core.as_ref() else {
            return;
        };
        let my_h = core.height();
        if my_h.0 == 0 {
            return;
        }
        let my_chain = node.disk.chain.len();
        let mut sends: Vec<(usize, Msg)> = Vec::new();
        for &j in &node.audience {
            let peer = &self.nodes[j];
            let Some(pc) = peer.core.as_ref() else {
                continue;
            };
            let peer_chain = peer.disk.chain.len();
            if peer_chain < my_chain && pc.height() < my_h {
                let end = my_chain.min(peer_chain + CATCH_UP_BATCH);
                sends.push((j, Msg::CatchUp(node.disk.chain[peer_chain..end].to_vec())));
                continue;
            }
            if pc.height() != my_h {
                continue;
            }
            let mut rounds = vec![core.round(), pc.round()];
            for r in [core.round(), pc.round()] {
                if let Some(vr) = core.proposal(r).and_then(|(p, _)| p.pol_round) {
                    rounds.push(vr);
                }
            }
            rounds.sort();
            rounds.dedup();
            for r in rounds {
                if let Some((p, b)) = core.proposal(r) {
                    if !peer.seen.contains(&p.signature) {
                        sends.push((j, Msg::Proposal(p.clone(), b.clone())));
                    }
                }
                for t in [VoteType::Prevote, VoteType::Precommit] {
                    let mut votes = core.votes(r, t);
                    votes.sort_by_key(|v| (v.validator, v.block_id, v.signature.0));
                    for v in votes {
                        if !peer.seen.contains(&v.signature) {
                            sends.push((j, Msg::Vote(v.clone())));
                        }
                    }
                }
            }
        }
        for (j, m) in sends {
            self.send_from(i, j, m);
        }
    }

    /// Sends one message from node `i` to every node it talks to.
    pub(crate) fn broadcast(&mut self, i: usize, msg: Msg) {
        if self.nodes[i].plan.is_some() {
            self.byzantine_broadcast(i, msg);
            return;
        }
        for k in 0..self.nodes[i].audience.len() {
            let j = self.nodes[i].audience[k];
            self.net_send(i, j, msg.clone());
        }
    }

    /// Sends one message from node `i` to node `j`, through its Byzantine filter.
    pub(crate) fn send_from(&mut self, i: usize, j: usize, msg: Msg) {
        if let Some(m) = self.byzantine_filter(i, msg) {
            self.net_send(i, j, m);
        }
    }

    pub(crate) fn partitioned(&self, a: usize, b: usize) -> bool {
        self.sc
            .partitions
            .iter()
            .any(|p| p.start <= self.now && self.now < p.end && p.side[a] != p.side[b])
    }

    /// The network: loss, partitions, delay, duplication and corruption before
    /// GST; after GST every message arrives within `delay_post`. A message sent
    /// before GST arrives by GST + `delay_post` at the latest if it is not lost.
    pub(crate) fn net_send(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.connected(from, to) {
            return;
        }
        self.stats.sent += 1;
        if self.nodes[to].core.is_none() {
            self.stats.lost += 1;
            return;
        }
        let net = self.sc.net.clone();
        let gst = self.sc.gst;
        let inc = self.nodes[to].inc;
        let mut copies = 1;
        let mut msg = msg;
        if self.now < gst {
            if self.partitioned(from, to) || self.rng.chance(net.drop) {
                self.stats.lost += 1;
                return;
            }
            if self.rng.chance(net.corrupt) {
                msg = corrupt(msg);
            }
            if self.rng.chance(net.dup) {
                copies = 2;
            }
        } else if self.rng.chance(0.01) {
            copies = 2;
        }
        for _ in 0..copies {
            let at = if self.now < gst {
                let late = gst + self.rng.range(1, net.delay_post);
                (self.now + self.rng.range(1, net.delay_pre)).min(late)
            } else {
                self.now + self.rng.range(1, net.delay_post)
            };
            self.push(
                at,
                Ev::Deliver {
                    to,
                    inc,
                    msg: msg.clone(),
                },
            );
        }
    }
}

/// A message with a field changed and the signature kept: receivers must refuse it.
fn corrupt(msg: Msg) -> Msg {
    match msg {
        Msg::Vote(mut v) => {
            v.time = v.time.plus_millis(1);
            Msg::Vote(v)
        }
        Msg::Proposal(mut p, b) => {
            p.time = p.time.plus_millis(1);
            Msg::Proposal(p, b)
        }
        Msg::CatchUp(mut ds) => {
            if let Some(s) = ds.first_mut().and_then(|d| d.commit.signatures.first_mut()) {
                s.time = s.time.plus_millis(1);
            }
            Msg::CatchUp(ds)
        }
    }
}
