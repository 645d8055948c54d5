//! Truncated and torn files of a validator killed with kill -9: its signing
//! state, the temporary file of a save cut short, and its store (the sled
//! database holding blocks and the consensus WAL). For each, the restarted
//! validator either recovers and rejoins, or refuses to start with an error
//! that names the damaged file; once its files are put back it rejoins. At the
//! end the chain has no fork and no validator signed two different votes for
//! one height, round and type (checked over every commit, WAL entry and
//! signing state of the four validators), and no node saw an equivocation.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Cluster;
use consort::config::Home;
use consort::types::{BlockId, Height, PublicKey, Round, VoteType};

const LONG: Duration = Duration::from_secs(180);
const VICTIM: usize = 3;

/// What a case does to the victim's files, and whether the node must refuse
/// to start (naming a file whose path contains the given part).
struct Case {
    name: &'static str,
    damage: fn(&Home),
    refuses_naming: Option<&'static str>,
}

fn files_under(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    f(&mut b);
    std::fs::write(path, &b).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "signing state truncated to half",
            damage: |h| rewrite(&h.signing_state(), |b| b.truncate(b.len() / 2)),
            refuses_naming: Some("signing_state.pb"),
        },
        Case {
            name: "signing state with a flipped bit",
            damage: |h| {
                rewrite(&h.signing_state(), |b| {
                    let i = b.len() - 5;
                    b[i] ^= 0x10;
                })
            },
            refuses_naming: Some("signing_state.pb"),
        },
        Case {
            name: "signing state emptied",
            damage: |h| rewrite(&h.signing_state(), |b| b.clear()),
            refuses_naming: Some("signing_state.pb"),
        },
        Case {
            name: "a torn temporary file of a save cut short",
            damage: |h| {
                let mut tmp = h.signing_state().into_os_string();
                tmp.push(".tmp");
                std::fs::write(PathBuf::from(tmp), [0x43, 0x4f, 0x4e, 0x53, 7, 7]).expect("tmp");
            },
            refuses_naming: None,
        },
        Case {
            name: "store metadata log truncated (torn WAL and block writes)",
            damage: |h| {
                for f in files_under(&h.data().join("db"), "metadata/log_") {
                    rewrite(&f, |b| {
                        let n = b.len().saturating_sub(3);
                        b.truncate(n)
                    });
                }
            },
            refuses_naming: None,
        },
        Case {
            name: "store metadata log with garbage appended",
            damage: |h| {
                for f in files_under(&h.data().join("db"), "metadata/log_") {
                    rewrite(&f, |b| b.extend_from_slice(&[7; 11]));
                }
            },
            refuses_naming: None,
        },
        Case {
            name: "store heap files truncated to half",
            damage: |h| {
                for f in files_under(&h.data().join("db"), "slabs/") {
                    rewrite(&f, |b| b.truncate(b.len() / 2));
                }
            },
            refuses_naming: Some("db"),
        },
    ]
}

/// Copies every file under `from` to `to` (same relative paths).
fn copy_tree(from: &Path, to: &Path) {
    for f in files_under(from, "") {
        let rel = f.strip_prefix(from).expect("under");
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&f, &dst).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_files_are_recovered_or_refused_by_name_and_never_cause_a_double_sign() {
    let mut c = Cluster::generate(4, 0, 33);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 3, LONG).await, "{}", c.logs());
    let home = Home::new(c.home(VICTIM));
    let mut failures = Vec::new();

    for case in cases() {
        c.kill(VICTIM);
        let keep = tempfile::tempdir().expect("tempdir");
        copy_tree(home.root(), keep.path());
        (case.damage)(&home);
        c.start(VICTIM);
        match case.refuses_naming {
            Some(part) => {
                // It must stop on its own, saying which file is damaged.
                let deadline = Instant::now() + Duration::from_secs(60);
                while c.is_running(VICTIM) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let log = c.log_of(VICTIM);
                let last = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                if c.is_running(VICTIM) {
                    failures.push(format!("{}: the node started on a damaged file", case.name));
                    c.kill(VICTIM);
                } else if !last.contains(part) {
                    failures.push(format!(
                        "{}: the error does not name {part}:\n{last}",
                        case.name
                    ));
                } else {
                    println!(
                        "{:<58} refused: {}",
                        case.name,
                        last.lines().next().unwrap_or("")
                    );
                }
                // Reap the exited process, put the files back: the node rejoins.
                c.kill(VICTIM);
                std::fs::remove_dir_all(home.root()).expect("remove");
                copy_tree(keep.path(), home.root());
                c.start(VICTIM);
            }
            None => println!("{:<58} starts", case.name),
        }
        let target = c.height(0).await.unwrap_or(0) + 2;
        if !c.wait_height(&[VICTIM], target, LONG).await {
            failures.push(format!("{}: the node did not rejoin", case.name));
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), c.logs());

    // Live, no fork, no double sign.
    let top = c.height(0).await.expect("height") + 2;
    assert!(
        c.wait_height(&[0, 1, 2, 3], top, LONG).await,
        "{}",
        c.logs()
    );
    let mut ids: Vec<Option<BlockId>> = vec![None; top as usize + 1];
    for i in 0..4 {
        let cl = c.client(i).await.expect("client");
        for h in 1..=top {
            let (_, id) = cl.block(h).await.expect("block");
            let seen = ids[h as usize].get_or_insert(id);
            assert_eq!(*seen, id, "fork at height {h} (node {i})");
        }
    }
    let mut slots: HashMap<(PublicKey, Height, Round, VoteType), Option<BlockId>> = HashMap::new();
    for i in 0..4 {
        c.kill(i);
        assert!(
            !c.log_of(i).contains("equivocation detected"),
            "node {i} saw an equivocation\n{}",
            c.logs()
        );
        for v in common::stored_votes(&Home::new(c.home(i)), top) {
            let slot = (v.validator, v.height, v.round, v.vote_type);
            let first = *slots.entry(slot).or_insert(v.block_id);
            assert_eq!(first, v.block_id, "double sign at {slot:?}");
        }
    }
}
