//! Hint delivery on a ring of real daemons (docs/cluster.md "Hinted handoff"): each target is
//! delivered to by its own task, so a target that hangs mid-delivery (SIGSTOP: its connection
//! stays open and answers nothing) does not hold up the hints of a healthy one.

use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::Daemon;
use allidb_tests::ring::{found, hints_for, put_texts, start_ring, states, wait_until};

use pb::ConsistencyLevel::ConsistencyOne as One;

/// Hint deliveries wait this long for an answer (`cluster.write_timeout_ms`): a delivery to a
/// stopped node hangs this long.
const DELIVERY_TIMEOUT_MS: u64 = 30_000;

/// Puts `count` entities `{prefix}{i:05}` of about 10 KB each through `daemon` at ONE, 10 to a
/// batch (one hint per batch for each replica that misses it).
async fn put_large(daemon: &Daemon, prefix: &str, count: usize) {
    for first in (0..count).step_by(10) {
        put_texts(daemon, prefix, first..(first + 10).min(count), 10_000, One).await;
    }
}

/// Whether `daemon` shows node `name` as `status`.
fn shows(daemon: &Daemon, name: &str, status: &str) -> bool {
    states(daemon).iter().any(|(n, s)| n == name && s == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hint_target_does_not_hold_up_the_hints_of_a_healthy_one() {
    // Deliveries from n0 are slow (1 MiB/s) and wait long for an answer.
    let mut nodes = start_ring(
        3,
        &format!(
            "write_timeout_ms = {DELIVERY_TIMEOUT_MS}\nhint_delivery_bytes_per_sec = 1048576\n"
        ),
    );
    // n2 misses about 6 MB of writes, then n1 and n2 both miss a few small ones.
    nodes[2].kill();
    wait_until("n2 down on n0", Duration::from_secs(20), || {
        shows(&nodes[0], "n2", "down")
    });
    put_large(&nodes[0], "big", 600).await;
    nodes[1].kill();
    wait_until("n1 down on n0", Duration::from_secs(20), || {
        shows(&nodes[0], "n1", "down")
    });
    put_large(&nodes[0], "small", 5).await;
    wait_until("hints kept for n1 and n2", Duration::from_secs(20), || {
        hints_for(&nodes[0], "n1") > 0 && hints_for(&nodes[0], "n2") > 5_000_000
    });

    // n2 comes back and its delivery starts; it hangs (SIGSTOP) once the first call got
    // through, so the next call waits for an answer that does not come.
    nodes[2].restart();
    let delivered = |daemon: &Daemon, peer: &str| {
        daemon.metric("allidb_cluster_hints_delivered_total", &[("peer", peer)])
    };
    wait_until(
        "a first hint call delivered to n2",
        Duration::from_secs(30),
        || delivered(&nodes[0], "n2") > 0.0,
    );
    nodes[2].signal(libc::SIGSTOP);
    let stopped = Instant::now();

    // n1 comes back: its hints are delivered while n2's delivery hangs.
    nodes[1].restart();
    wait_until("n1 normal on n0", Duration::from_secs(30), || {
        shows(&nodes[0], "n1", "normal")
    });
    let back = Instant::now();
    wait_until(
        "n1's hints delivered while n2 hangs",
        Duration::from_secs(10),
        || hints_for(&nodes[0], "n1") == 0,
    );
    let took = back.elapsed();
    assert!(
        stopped.elapsed() < Duration::from_millis(DELIVERY_TIMEOUT_MS),
        "n2's delivery was still hanging when n1's hints arrived"
    );
    assert!(
        hints_for(&nodes[0], "n2") > 0,
        "n2's hints wait for the hanging target"
    );
    for i in 0..5 {
        assert!(
            found(&nodes[1], &format!("small{i:05}"), One)
                .await
                .unwrap(),
            "n1 holds small{i:05} by hint"
        );
    }
    eprintln!("n1's hints delivered {took:?} after it was back; n2 stopped meanwhile");

    // n2 resumes: its hints are delivered too.
    nodes[2].signal(libc::SIGCONT);
    wait_until("n2's hints delivered", Duration::from_secs(90), || {
        hints_for(&nodes[0], "n2") == 0
    });
    for id in ["small00004", "big00000", "big00599"] {
        assert!(found(&nodes[2], id, One).await.unwrap(), "n2 holds {id}");
    }
}
