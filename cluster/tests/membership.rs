//! Membership with real gossip on loopback UDP: convergence, failure detection, restarts with a
//! new generation, the dead-node grace period, and outsiders kept out. The topology log's
//! applied state is fed to each node directly here (the log itself is tested with real daemons
//! in `tests/tests/topology.rs`): the view must join it with what gossip says.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Arc;

use allidb_cluster::membership::{ClusterView, Membership, MembershipOptions, NodeStatus};
use allidb_cluster::ring::{HostId, Ring};
use allidb_cluster::topology::state::{Command, NodeState, TopologyNode, TopologyState};
use tokio::sync::watch;

const SECRET: &str = "test-cluster-secret-0123456789";
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

fn free_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    socket.local_addr().expect("bound socket has an address")
}

fn options(
    data_dir: &Path,
    name: &str,
    gossip: SocketAddr,
    seeds: &[SocketAddr],
) -> MembershipOptions {
    MembershipOptions {
        cluster_name: "test".to_string(),
        node_name: name.to_string(),
        cluster_secret: SECRET.to_string(),
        data_dir: data_dir.to_path_buf(),
        gossip_listen: gossip,
        gossip_advertise: gossip,
        rpc_advertise: "127.0.0.1:1".parse().unwrap(),
        seeds: seeds.iter().map(SocketAddr::to_string).collect(),
        gossip_interval: GOSSIP_INTERVAL,
        phi_threshold: 8.0,
        dead_node_grace_period: Duration::from_secs(3600),
    }
}

/// Waits until `cond` holds for `node`'s view, or panics after `limit` with the last view.
async fn wait_for(
    node: &Membership,
    limit: Duration,
    what: &str,
    cond: impl Fn(&ClusterView) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let view = node.view();
        if cond(&view) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; view: {:#?}",
            view.nodes
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_normal(view: &ClusterView, n: usize) -> bool {
    view.nodes.len() == n
        && view.nodes.values().all(|v| v.status == NodeStatus::Normal)
        && view.ring.host_count() == n
}

/// The state a log formed with `hosts` holds, 16 tokens each.
fn formed(hosts: &[HostId]) -> Arc<TopologyState> {
    let mut ring = Ring::new(0, Vec::new());
    let mut nodes = BTreeMap::new();
    for host in hosts {
        let tokens = ring.allocate_tokens(*host, 16, 3, &mut rand::rng());
        let mut members: Vec<(HostId, Vec<u64>)> = nodes
            .iter()
            .map(|(h, n): (&HostId, &TopologyNode)| (*h, n.tokens.clone()))
            .collect();
        members.push((*host, tokens.clone()));
        ring = Ring::new(0, members);
        let node = TopologyNode {
            name: String::new(),
            rpc_addr: "127.0.0.1:1".to_owned(),
            tokens,
            state: NodeState::Normal,
        };
        nodes.insert(*host, node);
    }
    let mut state = TopologyState::default();
    state
        .apply(&Command::Form {
            cluster_name: "test".to_owned(),
            nodes,
        })
        .expect("a first form is accepted");
    Arc::new(state)
}

/// A node's gossip and the log state fed to it.
fn start(
    opts: MembershipOptions,
) -> (
    watch::Sender<Arc<TopologyState>>,
    impl Future<Output = Membership>,
) {
    let (log, state) = watch::channel(Arc::new(TopologyState::default()));
    let membership = async move {
        Membership::start(opts, state)
            .await
            .expect("membership starts")
    };
    (log, membership)
}

struct TestCluster {
    dirs: Vec<tempfile::TempDir>,
    addrs: Vec<SocketAddr>,
    nodes: Vec<Option<Membership>>,
    logs: Vec<watch::Sender<Arc<TopologyState>>>,
    state: Arc<TopologyState>,
}

impl TestCluster {
    /// `n` nodes, the first the seed of all, started at once, then given a log state holding
    /// them all.
    async fn start(n: usize) -> TestCluster {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let addrs: Vec<_> = (0..n).map(|_| free_udp_addr()).collect();
        let mut logs = Vec::new();
        let mut starts = Vec::new();
        for i in 0..n {
            let (log, membership) = start(options(
                dirs[i].path(),
                &format!("n{i}"),
                addrs[i],
                &addrs[..1],
            ));
            logs.push(log);
            starts.push(tokio::spawn(membership));
        }
        let mut nodes = Vec::new();
        for start in starts {
            nodes.push(Some(start.await.unwrap()));
        }
        let hosts: Vec<HostId> = nodes.iter().flatten().map(Membership::host_id).collect();
        let state = formed(&hosts);
        for log in &logs {
            log.send_replace(state.clone());
        }
        TestCluster {
            dirs,
            addrs,
            nodes,
            logs,
            state,
        }
    }

    fn node(&self, i: usize) -> &Membership {
        self.nodes[i].as_ref().expect("node is running")
    }

    async fn kill(&mut self, i: usize) -> HostId {
        let node = self.nodes[i].take().expect("node is running");
        let id = node.host_id();
        node.shutdown().await.unwrap();
        id
    }

    async fn restart(&mut self, i: usize) {
        let opts = options(
            self.dirs[i].path(),
            &format!("n{i}"),
            self.addrs[i],
            &self.addrs[..1],
        );
        let state = self.logs[i].subscribe();
        let membership = Membership::start(opts, state).await;
        self.nodes[i] = Some(membership.expect("membership restarts"));
    }
}

async fn converges(n: usize) {
    let cluster = TestCluster::start(n).await;
    for i in 0..n {
        wait_for(
            cluster.node(i),
            Duration::from_secs(20),
            "every node sees every node normal",
            |v| all_normal(v, n),
        )
        .await;
    }
    // Every node built the same ring, each host with its 16 tokens.
    let ring = cluster.node(0).view().ring.clone();
    assert_eq!(ring.tokens().len(), 16 * n);
    for i in 1..n {
        wait_for(
            cluster.node(i),
            Duration::from_secs(5),
            "same ring everywhere",
            |v| v.ring.tokens() == ring.tokens(),
        )
        .await;
    }
    for i in 0..n {
        let host = cluster.node(i).host_id();
        assert_eq!(ring.tokens_of(host), cluster.state.nodes[&host].tokens);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge() {
    converges(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge() {
    converges(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_marked_down_and_a_restarted_one_comes_back() {
    let mut cluster = TestCluster::start(3).await;
    for i in 0..3 {
        wait_for(cluster.node(i), Duration::from_secs(20), "converge", |v| {
            all_normal(v, 3)
        })
        .await;
    }
    let ring_before = cluster.node(0).view().ring.clone();
    let old_generation = cluster.node(0).view().nodes[&cluster.node(2).host_id()].generation;
    let killed = cluster.kill(2).await;
    // phi 8 at a 100 ms gossip interval: about 8 mean gaps, plus a round or two.
    let took = wait_for(
        cluster.node(0),
        Duration::from_secs(5),
        "killed node marked down",
        |v| v.nodes[&killed].status == NodeStatus::Down,
    )
    .await;
    eprintln!("killed node marked down after {took:?}");
    wait_for(cluster.node(1), Duration::from_secs(5), "down on n1", |v| {
        v.nodes[&killed].status == NodeStatus::Down
    })
    .await;
    // Down, but still in the ring: gossip never removes a host.
    assert_eq!(cluster.node(0).view().ring.tokens(), ring_before.tokens());

    cluster.restart(2).await;
    assert_eq!(
        cluster.node(2).host_id(),
        killed,
        "same host id after restart"
    );
    for i in 0..3 {
        wait_for(cluster.node(i), Duration::from_secs(10), "back up", |v| {
            all_normal(v, 3)
        })
        .await;
    }
    let view = cluster.node(0).view();
    assert!(view.nodes[&killed].generation > old_generation);
    assert_eq!(view.ring.tokens(), ring_before.tokens(), "same tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_stays_in_the_ring_after_gossip_forgets_it() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs: Vec<_> = (0..2).map(|_| free_udp_addr()).collect();
    let start_node = |i: usize| {
        let mut opts = options(dirs[i].path(), &format!("n{i}"), addrs[i], &addrs[..1]);
        opts.dead_node_grace_period = Duration::from_secs(2);
        start(opts)
    };
    let ((log_a, a), (log_b, b)) = (start_node(0), start_node(1));
    let (a, b) = tokio::join!(a, b);
    let state = formed(&[a.host_id(), b.host_id()]);
    log_a.send_replace(state.clone());
    log_b.send_replace(state);
    wait_for(&a, Duration::from_secs(20), "converge", |v| {
        all_normal(v, 2)
    })
    .await;
    let gone = b.host_id();
    b.shutdown().await.unwrap();
    wait_for(&a, Duration::from_secs(20), "gossip state collected", |v| {
        !v.nodes[&gone].in_gossip
    })
    .await;
    let view = a.view();
    assert_eq!(view.nodes[&gone].status, NodeStatus::Down);
    assert_eq!(
        view.ring.host_count(),
        2,
        "the ring still holds the dead host"
    );
    assert_eq!(view.ring.tokens_of(gone).len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_never_join() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs: Vec<_> = (0..3).map(|_| free_udp_addr()).collect();
    let (_member_log, member) = start(options(dirs[0].path(), "member", addrs[0], &addrs[..1]));
    let member = member.await;
    // Right cluster name, wrong secret. The outsiders list themselves as seeds too, so they
    // start alone once the member does not answer (a non-seed would wait for it forever).
    let mut wrong_secret = options(dirs[1].path(), "intruder", addrs[1], &[addrs[0], addrs[1]]);
    wrong_secret.cluster_secret = "not-the-cluster-secret-at-all".to_string();
    // Same secret, another cluster (a data dir of its own, seeded to the member).
    let mut other_cluster = options(dirs[2].path(), "neighbour", addrs[2], &[addrs[0], addrs[2]]);
    other_cluster.cluster_name = "other".to_string();
    let ((_intruder_log, intruder), (_neighbour_log, neighbour)) =
        (start(wrong_secret), start(other_cluster));
    let (intruder, neighbour) = tokio::join!(intruder, neighbour);
    tokio::time::sleep(GOSSIP_INTERVAL * 20).await;
    let view = member.view();
    assert_eq!(
        view.nodes.keys().copied().collect::<Vec<_>>(),
        vec![member.host_id()],
        "only the member itself is known"
    );
    assert!(member.counters().rejected.load(Ordering::Relaxed) > 0);
    assert_eq!(intruder.view().nodes.len(), 1);
    assert_eq!(neighbour.view().nodes.len(), 1);
}

#[tokio::test]
async fn bad_options_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_udp_addr();
    let mut opts = options(dir.path(), "n", addr, &[]);
    opts.cluster_secret = "short".to_string();
    let (_log, state) = watch::channel(Arc::new(TopologyState::default()));
    let err = Membership::start(opts.clone(), state.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("cluster.secret:"), "{err}");
    opts.cluster_secret = SECRET.to_string();
    opts.phi_threshold = 0.0;
    let err = Membership::start(opts, state).await.unwrap_err();
    assert!(
        err.to_string().starts_with("cluster.phi_threshold:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_data_dir_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_udp_addr();
    let (_log, node) = start(options(dir.path(), "n", addr, &[]));
    node.await.shutdown().await.unwrap();
    let mut opts = options(dir.path(), "n", addr, &[]);
    opts.cluster_name = "other".to_string();
    let (_log, state) = watch::channel(Arc::new(TopologyState::default()));
    let err = Membership::start(opts, state).await.unwrap_err();
    assert!(err.to_string().contains("cluster.name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_remembers_peers_nobody_gossips_about() {
    let mut cluster = TestCluster::start(2).await;
    for i in 0..2 {
        wait_for(cluster.node(i), Duration::from_secs(20), "converge", |v| {
            all_normal(v, 2)
        })
        .await;
    }
    let ring = cluster.node(0).view().ring.clone();
    let peer = cluster.kill(1).await;
    cluster.kill(0).await;
    // Alone, with nobody to gossip with: the peer comes from the peers file.
    cluster.restart(0).await;
    let view = cluster.node(0).view();
    assert_eq!(view.nodes[&peer].status, NodeStatus::Down);
    assert!(!view.nodes[&peer].in_gossip);
    assert_eq!(view.ring.tokens(), ring.tokens());
}
