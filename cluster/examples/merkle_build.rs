//! How fast one replica builds its Merkle trees (docs/benchmarks.md "Anti-entropy repair"): a
//! store of `--entities` entities (a `--dim`-d vector, 4 out-edges and so about 4 in-edges each) is written, flushed
//! and compacted, then the trees of 48 equal token ranges (a 3-node ring with 16 tokens each)
//! are built `--runs` times from one pass over a snapshot, on one thread, as `MerkleTrees`
//! does. Prints partitions/s and cells/s for each run and their medians, by wall time and by
//! this thread's CPU time (`/proc/thread-self/stat`, the per-core rate whatever else the
//! machine runs).
//!
//! ```sh
//! cargo run --profile test -p allidb-cluster --example merkle_build -- --entities 1000000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use allidb_cluster::repair::merkle::depth_for;
use allidb_cluster::repair::trees::{TreeShape, build_trees};
use allidb_cluster::ring::TokenSpan;
use allidb_storage::cell::{EdgeWrite, Embedding};
use allidb_storage::{Durability, Engine, EntityBody, EntityWrite, Options};

const TENANT: &str = "bench";
const RANGES: u64 = 48;

struct Args {
    entities: u64,
    dim: usize,
    runs: usize,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        entities: 1_000_000,
        dim: 8,
        runs: 3,
        dir: std::env::temp_dir().join("allidb-merkle-build"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--entities" => args.entities = number(),
            "--dim" => args.dim = number() as usize,
            "--runs" => args.runs = number() as usize,
            "--dir" => args.dir = PathBuf::from(&value),
            other => panic!("unknown flag {other} (flags: --entities --dim --runs --dir)"),
        }
    }
    assert!(
        args.entities > 0 && args.runs > 0,
        "--entities and --runs must be > 0"
    );
    args
}

fn entity(i: u64, entities: u64, dim: usize) -> EntityWrite {
    EntityWrite {
        id: format!("e{i:09}"),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: (0..dim).map(|d| (i as f32) + d as f32).collect(),
                timestamp_nanos: 1,
            }],
            importance: 1.0,
            ..EntityBody::default()
        },
        out_edges: (1..=4)
            .map(|k| EdgeWrite {
                relation: "links".to_owned(),
                other: format!("e{:09}", (i + k * 7919) % entities),
                weight: 1.0,
                timestamp_nanos: 1,
                sources: Vec::new(),
            })
            .collect(),
        in_edges: Vec::new(),
    }
}

/// CPU seconds this thread has run (user + system), from `/proc/thread-self/stat` (Linux).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    // Fields after the command name (which ends at the last ')'): utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    let engine = Engine::open(&args.dir, Options::default())?;
    let started = Instant::now();
    let mut next = 0;
    while next < args.entities {
        let end = (next + 1024).min(args.entities);
        let batch = (next..end)
            .map(|i| entity(i, args.entities, args.dim))
            .collect();
        engine.put_entities(TENANT, batch, Durability::Buffered)?;
        next = end;
    }
    engine.compact()?;
    println!(
        "loaded {} entities (dim {}) in {:.1} s, compacted",
        args.entities,
        args.dim,
        started.elapsed().as_secs_f64()
    );

    let width = u64::MAX / RANGES;
    let depth = depth_for(args.entities / RANGES);
    let shapes: Vec<TreeShape> = (0..RANGES)
        .map(|r| TreeShape {
            span: TokenSpan {
                start: r * width,
                end: if r + 1 == RANGES { 0 } else { (r + 1) * width },
            },
            depth,
        })
        .collect();
    let (mut partitions_rate, mut cells_rate, mut cpu_cells_rate) =
        (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let (mut partitions, mut cells) = (0u64, 0u64);
        let started = Instant::now();
        let cpu_started = thread_cpu_secs();
        let snapshot = engine.partitions(None)?.inspect(|p| {
            if let Ok(p) = p {
                partitions += 1;
                cells += p.cells.len() as u64;
            }
        });
        let trees = build_trees(snapshot, &shapes)?;
        let secs = started.elapsed().as_secs_f64();
        let cpu_secs = thread_cpu_secs() - cpu_started;
        let counted: u64 = trees.iter().map(|t| t.partitions()).sum();
        assert_eq!(counted, partitions, "every partition in exactly one tree");
        partitions_rate.push(partitions as f64 / secs);
        cells_rate.push(cells as f64 / secs);
        cpu_cells_rate.push(cells as f64 / cpu_secs);
        println!(
            "run {run}: {partitions} partitions, {cells} cells, depth {depth}, {secs:.2} s \
             ({cpu_secs:.2} s CPU): {:.0} partitions/s, {:.0} cells/s, {:.0} cells per CPU second",
            partitions as f64 / secs,
            cells as f64 / secs,
            cells as f64 / cpu_secs
        );
    }
    println!(
        "result: entities={} dim={} partitions_per_sec={:.0} cells_per_sec={:.0} \
         cells_per_cpu_sec={:.0}",
        args.entities,
        args.dim,
        median(&mut partitions_rate),
        median(&mut cells_rate),
        median(&mut cpu_cells_rate)
    );
    engine.close()?;
    std::fs::remove_dir_all(&args.dir)?;
    Ok(())
}
