//! Real process crash: a child process writes entities with `sync` durability and reports each
//! acknowledged id on stdout; the parent SIGKILLs it at a random moment, reopens the database and
//! checks that every acknowledged write is there, whole.
//!
//! Rounds: 3 by default; set `ALLIDB_CRASH_ROUNDS` for more (e.g. 200 for a soak).
//! The child is this same test binary, re-run with `ALLIDB_CRASH_CHILD_DIR` set.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, EdgeWrite, Engine, EntityWrite, Options};
use rand::Rng;

const TENANT: &str = "crash";

fn options() -> Options {
    // Small memtables so flushes and compactions are in flight when the kill lands.
    Options {
        memtable_bytes: 256 << 10,
        target_file_bytes: 256 << 10,
        level1_bytes: 1 << 20,
        ..Options::default()
    }
}

fn entity(round: u64, i: u64) -> EntityWrite {
    let id = format!("r{round:03}-e{i:06}");
    EntityWrite {
        id: id.clone(),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vec![i as f32; 64],
                timestamp_nanos: 1,
            }],
            importance: i as f64,
            ..EntityBody::default()
        },
        out_edges: (i > 0)
            .then(|| EdgeWrite {
                relation: "prev".to_owned(),
                other: format!("r{round:03}-e{:06}", i - 1),
                weight: 1.0,
                timestamp_nanos: 1,
                sources: Vec::new(),
            })
            .into_iter()
            .collect(),
        in_edges: Vec::new(),
    }
}

/// The child: writes batches of 8 entities forever, printing the last index of each acked batch.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("ALLIDB_CRASH_CHILD_DIR") else {
        return;
    };
    let round: u64 = std::env::var("ALLIDB_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let engine = Engine::open(&dir, options()).unwrap();
    let mut out = std::io::stdout().lock();
    for batch in 0u64.. {
        let writes = (batch * 8..batch * 8 + 8)
            .map(|i| entity(round, i))
            .collect();
        engine
            .put_entities(TENANT, writes, Durability::Sync)
            .unwrap();
        writeln!(out, "ACK {}", batch * 8 + 7).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    if std::env::var("ALLIDB_CRASH_CHILD_DIR").is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("ALLIDB_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ALLIDB_CRASH_CHILD_DIR", dir.path())
            .env("ALLIDB_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.random_range(200..1500));
        let reader = std::thread::spawn(move || {
            let mut last_ack: Option<u64> = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ACK ") {
                    last_ack = Some(n.trim().parse().unwrap());
                }
            }
            last_ack
        });
        let start = Instant::now();
        while start.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL: no destructor, no flush, no chance to finish in-flight writes.
        child.kill().unwrap();
        child.wait().unwrap();
        let last_ack = reader.join().unwrap();
        let engine = Engine::open(dir.path(), options()).unwrap();
        if let Some(last) = last_ack {
            for i in 0..=last {
                let id = format!("r{round:03}-e{i:06}");
                let got = engine.get_entity(TENANT, &id).unwrap();
                let got = got.unwrap_or_else(|| {
                    panic!("round {round}: acknowledged entity {id} lost (last ack {last})")
                });
                assert_eq!(got.body.importance, i as f64);
                if i > 0 {
                    assert_eq!(got.out_edges.len(), 1, "{id} lost its edge");
                }
            }
        }
        // Whatever was recovered is whole: every present entity has its body and edge.
        for e in engine
            .scan(
                TENANT,
                Some(&format!("r{round:03}-")),
                Some(&format!("r{:03}-", round + 1)),
            )
            .unwrap()
        {
            let e = e.unwrap();
            assert_eq!(e.body.entity_type, "doc");
        }
        drop(engine);
    }
}
