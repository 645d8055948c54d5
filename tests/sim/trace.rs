//! One-line descriptions of inputs, outputs and votes for traces
//! (`CONSORT_SIM_TRACE=1`).

use consort::consensus::{Input, Output};
use consort::types::{BlockId, Vote};

fn short(id: &Option<BlockId>) -> String {
    id.map_or("nil".to_string(), |h| h.short())
}

/// One line for a trace.
pub fn describe_vote(v: &Vote) -> String {
    format!(
        "{} h{} r{} {} by {} t{}",
        v.vote_type,
        v.height,
        v.round,
        short(&v.block_id),
        v.validator.short(),
        v.time.0 % 1_000_000
    )
}

pub fn describe_input(i: &Input) -> String {
    match i {
        Input::StartHeight { height, .. } => format!("StartHeight {height}"),
        Input::Proposal { proposal: p, .. } => format!(
            "Proposal h{} r{} {} vr {:?} by {}",
            p.height,
            p.round,
            p.block_id.short(),
            p.pol_round.map(|r| r.0),
            p.proposer.short()
        ),
        Input::Vote(v) => describe_vote(v),
        Input::Timeout(t) => format!("Timeout {:?} h{} r{}", t.kind, t.height, t.round),
        Input::ProposeValue {
            height,
            round,
            block,
        } => {
            format!("ProposeValue h{height} r{round} {}", block.id().short())
        }
        Input::ValueValidity {
            block_id, valid, ..
        } => format!("ValueValidity {} {valid}", block_id.short()),
    }
}

pub fn describe_output(o: &Output) -> String {
    match o {
        Output::Persist(s) => format!(
            "Persist h{} r{} locked {:?} valid {:?}",
            s.height,
            s.round,
            s.locked.map(|(r, id)| (r.0, id.short())),
            s.valid.map(|(r, id)| (r.0, id.short()))
        ),
        Output::BroadcastProposal { proposal: p, .. } => format!(
            "BroadcastProposal h{} r{} {} vr {:?}",
            p.height,
            p.round,
            p.block_id.short(),
            p.pol_round.map(|r| r.0)
        ),
        Output::BroadcastVote(v) => format!("BroadcastVote {}", describe_vote(v)),
        Output::ScheduleTimeout { timeout, duration } => format!(
            "ScheduleTimeout {:?} r{} {} ms",
            timeout.kind,
            timeout.round,
            duration.as_millis()
        ),
        Output::RequestValue { height, round } => format!("RequestValue h{height} r{round}"),
        Output::ValidateValue { block, .. } => format!("ValidateValue {}", block.id().short()),
        Output::Decide {
            height,
            round,
            block,
            ..
        } => format!("DECIDE h{height} r{round} {}", block.id().short()),
        Output::Evidence(e) => format!("Evidence {}", describe_vote(&e.first)),
        Output::NewRound { height, round } => format!("NewRound h{height} r{round}"),
    }
}
