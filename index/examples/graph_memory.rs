//! Resident memory of a graph index per million edges, and the time of its 2-hop walks: the
//! figure issue 36 asks for before and after the dense integer ids ("the id map must not cost
//! more than it saves").
//!
//! ```sh
//! cargo run --release -p allidb-index --example graph_memory -- --nodes 200000 --degree 5
//! ```
//! Builds a `GraphIndex` of `--nodes` entities (ids like `entity-00000042`), each with
//! `--degree` out-edges over four relations to random entities (fixed seed), reports the
//! growth of the process's resident memory per million edges, then times 20,000 walks (10
//! starts, 2 hops, fan-out 16, 1,000 nodes).

mod common;

use std::time::Instant;

use allidb_index::graph::{EdgeSpec, GraphIndex, TraversalOptions};

use common::Flags;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// SplitMix64.
fn draw(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name(node: u64) -> String {
    format!("entity-{node:08}")
}

fn main() {
    let flags = Flags::from_env();
    let nodes: u64 = flags.number("--nodes", 200_000);
    let degree: u64 = flags.number("--degree", 5);
    let mut state = 36;
    let before = rss_bytes();
    let graph = GraphIndex::new();
    for from in 0..nodes {
        let edges: Vec<EdgeSpec> = (0..degree)
            .map(|_| EdgeSpec {
                relation: ["depends", "mentions", "cites", "owns"][(draw(&mut state) % 4) as usize]
                    .to_string(),
                to: name(draw(&mut state) % nodes),
                weight: (draw(&mut state) % 1000) as f32 / 1000.0,
            })
            .collect();
        graph
            .add_edges(&name(from), &edges, from)
            .expect("generated edges are valid");
    }
    let grown = rss_bytes().saturating_sub(before);
    let edges = graph.edge_count();
    println!(
        "{nodes} nodes, {edges} edges: resident memory +{:.1} MiB, {:.1} MiB per million edges",
        grown as f64 / (1 << 20) as f64,
        grown as f64 / (1 << 20) as f64 / (edges as f64 / 1e6)
    );
    let options = TraversalOptions {
        max_hops: 2,
        fan_out: 16,
        node_budget: 1_000,
        ..TraversalOptions::default()
    };
    let walks = 20_000;
    let mut reached = 0;
    let start = Instant::now();
    for _ in 0..walks {
        let starts: Vec<String> = (0..10).map(|_| name(draw(&mut state) % nodes)).collect();
        let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
        reached += graph
            .walk(&starts, &options)
            .expect("the options are valid")
            .reached
            .len();
    }
    let elapsed = start.elapsed();
    println!(
        "{walks} walks: {:.1} us per walk, {:.0} nodes per walk",
        elapsed.as_secs_f64() * 1e6 / walks as f64,
        reached as f64 / walks as f64
    );
}
