//! The coordinator against fake replicas (in-memory partitions, hosts made to fail), through
//! the [`ReplicaAccess`] seam: levels, hints and read repair without a network.

mod attribute_types;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use allidb_index::{StoreOptions, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::cell::{EntityBody, EntityWrite};
use allidb_storage::partition::CellVersion;
use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::attribute_types::AttributeTypeLog;
use super::pause::PauseDetector;
use super::replicas::{Answer, Read, ReplicaAccess, RingCheck};
use super::{Coordinator, CoordinatorOptions, RingDuties};
use crate::ClusterError;
use crate::cells::{self, ReplicaMutation};
use crate::consistency::ConsistencyLevel;
use crate::hints::HintLog;
use crate::membership::ClusterView;
use crate::replica::LocalReplica;
use crate::ring::{HostId, Ring};
use crate::topology::attribute_types::RecordedTypes;
use crate::topology::fence::TopologyFence;
use crate::topology::state::{AttributeTypeChange, Command, TopologyState};
use allidb_index::filter::AttrType;
use allidb_index::store::AttributeClaim;

const TENANT: &str = "t";

/// One fake replica: its partitions' cells (newest version per key) and its tenant drops.
#[derive(Debug, Default)]
struct FakeReplica {
    partitions: BTreeMap<(String, String), Vec<CellVersion>>,
    dropped: BTreeMap<String, u64>,
}

/// Replicas in memory; hosts in `failing` fail every call, hosts in `refusing_writes` fail
/// only writes (as a replica with a full disk does), hosts in `hanging` never answer (a frozen
/// process, a host whose address vanished: the fake has no deadline), hosts in
/// `withholding_cells` answer digests but not cells (a replica that failed or froze between a
/// coordinator's two reads; `cells_withheld` counts the cells reads they did not answer);
/// `ring_checks` are the peers' answers after a pause (by default each applied the test ring's
/// version, 1); hosts in `holding_types` refuse every attribute-type check with their message
/// (each check asked is in `type_checks`).
#[derive(Debug, Default)]
struct FakeReplicas {
    hosts: Mutex<BTreeMap<HostId, FakeReplica>>,
    failing: Mutex<BTreeSet<HostId>>,
    refusing_writes: Mutex<BTreeSet<HostId>>,
    hanging: Mutex<BTreeSet<HostId>>,
    withholding_cells: Mutex<BTreeMap<HostId, Withheld>>,
    cells_withheld: Mutex<BTreeMap<HostId, usize>>,
    ring_checks: Mutex<BTreeMap<HostId, RingCheck>>,
    holding_types: Mutex<BTreeMap<HostId, String>>,
    type_checks: Mutex<Vec<(HostId, Vec<AttributeClaim>)>>,
}

/// How a host in [`FakeReplicas::withholding_cells`] answers a cells read.
#[derive(Clone, Copy, Debug)]
enum Withheld {
    Fails,
    Hangs,
}

impl FakeReplicas {
    async fn check(&self, host: HostId) -> Result<(), ClusterError> {
        if self.hanging.lock().contains(&host) {
            std::future::pending::<()>().await;
        }
        match self.failing.lock().contains(&host) {
            true => Err(ClusterError::Unavailable(format!(
                "host {host} is made to fail"
            ))),
            false => Ok(()),
        }
    }

    /// The hosts with hints in `hints`, once the writes still running have finished.
    async fn hinted(hints: &HintLog, expected: usize) -> Vec<HostId> {
        for _ in 0..100 {
            if hints.pending().len() >= expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        hints.pending().into_keys().collect()
    }

    fn cells(&self, host: HostId, id: &str) -> Vec<CellVersion> {
        self.hosts
            .lock()
            .get(&host)
            .and_then(|r| r.partitions.get(&(TENANT.to_owned(), id.to_owned())))
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl ReplicaAccess for FakeReplicas {
    async fn read_partition(
        &self,
        _view: &ClusterView,
        host: HostId,
        tenant: &str,
        id: &str,
        digest_only: bool,
    ) -> Result<Answer, ClusterError> {
        self.check(host).await?;
        let withheld = self.withholding_cells.lock().get(&host).copied();
        if let (Some(withheld), false) = (withheld, digest_only) {
            *self.cells_withheld.lock().entry(host).or_default() += 1;
            match withheld {
                Withheld::Fails => {
                    return Err(ClusterError::Unavailable(format!(
                        "host {host} withholds its cells"
                    )));
                }
                Withheld::Hangs => std::future::pending::<()>().await,
            }
        }
        let hosts = self.hosts.lock();
        let replica = hosts.get(&host);
        let stored = replica
            .and_then(|r| r.partitions.get(&(tenant.to_owned(), id.to_owned())))
            .cloned()
            .unwrap_or_default();
        Ok(Answer {
            read: Read::of(stored, digest_only),
            dropped_at: replica
                .and_then(|r| r.dropped.get(tenant).copied())
                .unwrap_or(0),
        })
    }

    async fn apply(
        &self,
        _view: &ClusterView,
        host: HostId,
        mutation: &ReplicaMutation,
        _reason: &str,
    ) -> Result<(), ClusterError> {
        self.check(host).await?;
        if self.refusing_writes.lock().contains(&host) {
            return Err(ClusterError::Unavailable(format!(
                "host {host} refuses writes"
            )));
        }
        let mut hosts = self.hosts.lock();
        let replica = hosts.entry(host).or_default();
        for drop in &mutation.drops {
            let at = replica.dropped.entry(drop.tenant.clone()).or_default();
            *at = (*at).max(drop.ts);
        }
        for version in &mutation.cells {
            let partition = cells::partition_of(&version.0)?;
            let stored = replica.partitions.entry(partition).or_default();
            *stored = cells::merge([stored.as_slice(), std::slice::from_ref(version)]);
        }
        Ok(())
    }

    async fn clock(&self, _view: &ClusterView, host: HostId) -> Result<u64, ClusterError> {
        self.check(host).await?;
        Ok(0)
    }

    async fn check_attribute_types(
        &self,
        _view: &ClusterView,
        host: HostId,
        _tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<Option<String>, ClusterError> {
        self.check(host).await?;
        self.type_checks.lock().push((host, claims.to_vec()));
        Ok(self.holding_types.lock().get(&host).cloned())
    }

    async fn applied_version(&self, _view: &ClusterView, host: HostId) -> RingCheck {
        if self.hanging.lock().contains(&host) {
            std::future::pending::<()>().await;
        }
        self.ring_checks
            .lock()
            .get(&host)
            .cloned()
            .unwrap_or(RingCheck::Applied(1))
    }
}

/// The ring's record of attribute types in memory, applied by the log's own state; `lagging`
/// overrides what [`AttributeTypeLog::recorded`] answers (a node that has not applied the
/// newest record yet); while `racing` is above 0, each record is preceded by another
/// coordinator's giving its keys yet another type (so it is refused); `records` counts the
/// records asked, `awaited` the versions the coordinator waited for every node to apply.
#[derive(Debug, Default)]
struct FakeTypeLog {
    state: Mutex<TopologyState>,
    lagging: Mutex<BTreeMap<String, Option<AttrType>>>,
    racing: Mutex<usize>,
    records: Mutex<usize>,
    awaited: Mutex<Vec<u64>>,
}

#[async_trait]
impl AttributeTypeLog for FakeTypeLog {
    fn recorded(&self, tenant: &str, key: &str) -> Option<AttrType> {
        match self.lagging.lock().get(key) {
            Some(lagging) => *lagging,
            None => self.state.lock().attribute_type(tenant, key),
        }
    }

    async fn record(
        &self,
        tenant: &str,
        changes: &[AttributeTypeChange],
    ) -> Result<RecordedTypes, ClusterError> {
        *self.records.lock() += 1;
        let mut state = self.state.lock();
        let raced = {
            let mut racing = self.racing.lock();
            let raced = *racing > 0;
            *racing = racing.saturating_sub(1);
            raced
        };
        if raced {
            let foreign: Vec<AttributeTypeChange> = changes
                .iter()
                .map(|c| {
                    let now = state.attribute_type(tenant, &c.key);
                    let other = [AttrType::String, AttrType::Number, AttrType::Bool]
                        .into_iter()
                        .find(|t| Some(*t) != now && *t != c.to)
                        .expect("three types, two excluded at most");
                    AttributeTypeChange {
                        key: c.key.clone(),
                        expected: now,
                        to: other,
                    }
                })
                .collect();
            state
                .apply(&Command::RecordAttributeTypes {
                    tenant: tenant.to_owned(),
                    changes: foreign,
                })
                .expect("the other coordinator records over what is recorded");
        }
        let outcome = state.apply(&Command::RecordAttributeTypes {
            tenant: tenant.to_owned(),
            changes: changes.to_vec(),
        });
        let types = changes
            .iter()
            .filter_map(|c| Some((c.key.clone(), state.attribute_type(tenant, &c.key)?)))
            .collect();
        Ok(RecordedTypes {
            recorded: outcome.is_ok(),
            types,
            version: state.attribute_types_version,
        })
    }

    async fn await_applied(&self, version: u64) {
        self.awaited.lock().push(version);
    }
}

/// The test ring: hosts 1 to 3, one token each, at topology version `version`.
fn ring(version: u64) -> Ring {
    Ring::new(
        version,
        (1..=3u128).map(|i| (host(i), vec![(i as u64) << 60])),
    )
}

/// A coordinator on host 1 of the test ring at replication factor 3, with what a test drives
/// it by.
struct Fixture {
    coordinator: Coordinator,
    hints: Arc<HintLog>,
    /// Publishes the coordinator's view.
    views: watch::Sender<Arc<ClusterView>>,
    pauses: PauseDetector,
}

/// A [`Fixture`] over `replicas`, with its own store and hint log in `dir`.
fn coordinator(
    dir: &std::path::Path,
    replicas: Arc<FakeReplicas>,
    hinted_handoff: bool,
) -> Fixture {
    coordinator_at(dir, replicas, hinted_handoff, 3, Arc::default())
}

/// A [`Fixture`] at `replication_factor` recording attribute types in `types`.
fn coordinator_at(
    dir: &std::path::Path,
    replicas: Arc<FakeReplicas>,
    hinted_handoff: bool,
    replication_factor: usize,
    types: Arc<FakeTypeLog>,
) -> Fixture {
    let (views, receiver) = watch::channel(ClusterView::all_up(ring(1)));
    let store = Arc::new(
        UnifiedStore::open(dir.join("store"), StoreOptions::default()).expect("a new store"),
    );
    let fence = TopologyFence::open(dir).expect("a new fence");
    let local = LocalReplica::new(host(1), store, Durability::Sync, fence);
    let hints = Arc::new(HintLog::open(&dir.join("hints"), 1 << 20).expect("a new hint log"));
    // Long enough that no stall of a test machine counts as a pause.
    let pauses = PauseDetector::start(
        std::time::Duration::from_secs(60),
        host(1),
        receiver.clone(),
    )
    .expect("a thread");
    let coordinator = Coordinator::new(
        host(1),
        local,
        receiver,
        replicas,
        CoordinatorOptions {
            replication_factor,
            hinted_handoff,
        },
        RingDuties {
            hints: hints.clone(),
            pauses: pauses.clone(),
            attribute_types: types,
        },
    );
    Fixture {
        coordinator,
        hints,
        views,
        pauses,
    }
}

fn doc(id: &str) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    }
}

fn host(n: u128) -> HostId {
    HostId::from_u128(n)
}

/// Writes documents `e0` to `e19` at ALL (every replica holds them); their ids.
async fn put_docs_everywhere(coordinator: &Coordinator) -> Vec<String> {
    let ids: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    coordinator
        .put_entities(
            TENANT,
            ids.iter().map(|id| doc(id)).collect(),
            ConsistencyLevel::All,
        )
        .await
        .expect("every replica is up");
    ids
}

#[tokio::test]
async fn a_quorum_write_is_acknowledged_by_two_replicas_and_hinted_for_the_third() {
    for hinted_handoff in [true, false] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let replicas = Arc::new(FakeReplicas::default());
        replicas.failing.lock().insert(host(3));
        let Fixture {
            coordinator, hints, ..
        } = coordinator(dir.path(), replicas.clone(), hinted_handoff);
        coordinator
            .put_entities(TENANT, vec![doc("a")], ConsistencyLevel::Quorum)
            .await
            .expect("two of three replicas make a quorum");
        assert!(!replicas.cells(host(1), "a").is_empty());
        assert_eq!(replicas.cells(host(1), "a"), replicas.cells(host(2), "a"));
        assert!(replicas.cells(host(3), "a").is_empty());
        let hinted = FakeReplicas::hinted(&hints, usize::from(hinted_handoff)).await;
        match hinted_handoff {
            true => assert_eq!(hinted, [host(3)], "the missed write is hinted"),
            false => assert!(hinted.is_empty(), "no hints when hinted handoff is off"),
        }
    }
}

#[tokio::test]
async fn a_write_that_misses_its_level_is_refused_and_hinted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    replicas.refusing_writes.lock().extend([host(2), host(3)]);
    let Fixture {
        coordinator, hints, ..
    } = coordinator(dir.path(), replicas.clone(), true);
    let refused = coordinator
        .put_entities(TENANT, vec![doc("a")], ConsistencyLevel::Quorum)
        .await
        .expect_err("one replica of three is not a quorum");
    let ClusterError::Unavailable(message) = &refused else {
        panic!("not UNAVAILABLE: {refused}");
    };
    assert!(
        message.contains("h2") && message.contains("h3") && message.contains("refuses writes"),
        "{message}"
    );
    assert_eq!(FakeReplicas::hinted(&hints, 2).await, [host(2), host(3)]);
    // ONE is met by this node's own replica.
    coordinator
        .put_entities(TENANT, vec![doc("b")], ConsistencyLevel::One)
        .await
        .expect("one replica is enough at ONE");
}

#[tokio::test]
async fn a_read_returns_the_newest_cells_and_repairs_a_stale_replica_before_returning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let Fixture { coordinator, .. } = coordinator(dir.path(), replicas.clone(), true);
    coordinator
        .put_entities(TENANT, vec![doc("a")], ConsistencyLevel::All)
        .await
        .expect("every replica is up");
    let written = replicas.cells(host(1), "a");
    // Host 2 loses the partition (a replica that diverged silently).
    replicas
        .hosts
        .lock()
        .get_mut(&host(2))
        .expect("host 2 took the write")
        .partitions
        .clear();
    let entity = coordinator
        .get_entity(TENANT, "a", ConsistencyLevel::All)
        .await
        .expect("every replica answers")
        .expect("the entity is found");
    assert_eq!(entity.id, "a");
    assert_eq!(
        replicas.cells(host(2), "a"),
        written,
        "repaired before the read returned"
    );
}

#[tokio::test]
async fn a_replica_that_stops_answering_is_read_around_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let Fixture { coordinator, .. } = coordinator(dir.path(), replicas.clone(), true);
    let ids = put_docs_everywhere(&coordinator).await;
    // Host 2 answered everything so far and would be asked next; now it answers nothing.
    replicas.hanging.lock().insert(host(2));
    let ask_all = async {
        for id in &ids {
            let entity = coordinator
                .get_entity(TENANT, id, ConsistencyLevel::Quorum)
                .await
                .expect("hosts 1 and 3 make a quorum")
                .expect("the entity is found");
            assert_eq!(&entity.id, id);
        }
        coordinator
            .put_entities(TENANT, vec![doc("late")], ConsistencyLevel::Quorum)
            .await
            .expect("a write reads its stored state around host 2 too");
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), ask_all)
        .await
        .expect("no read waited for the replica that stopped answering");
    assert!(!replicas.cells(host(3), "late").is_empty());
}

/// A replica whose digest differs and that then fails or stops answering its cells read is
/// replaced by the next replica, as one that fails its first read is: the read still makes its
/// level, at once.
#[tokio::test]
async fn a_replica_that_answers_a_digest_but_not_its_cells_is_replaced() {
    for withheld in [Withheld::Fails, Withheld::Hangs] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let replicas = Arc::new(FakeReplicas::default());
        let Fixture { coordinator, .. } = coordinator(dir.path(), replicas.clone(), false);
        let ids = put_docs_everywhere(&coordinator).await;
        // Host 2 lost its partitions, so its digests differ, and withholds its cells.
        replicas
            .hosts
            .lock()
            .get_mut(&host(2))
            .expect("host 2 took the writes")
            .partitions
            .clear();
        replicas.withholding_cells.lock().insert(host(2), withheld);
        let read_all = async {
            for id in &ids {
                let entity = coordinator
                    .get_entity(TENANT, id, ConsistencyLevel::Quorum)
                    .await
                    .unwrap_or_else(|e| panic!("{withheld:?}: hosts 1 and 3 make a quorum: {e}"))
                    .expect("the entity is found");
                assert_eq!(&entity.id, id);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
            .await
            .unwrap_or_else(|_| panic!("{withheld:?}: a read waited for host 2's cells"));
        assert!(
            replicas.cells_withheld.lock().get(&host(2)) >= Some(&1),
            "{withheld:?}: host 2 was never asked for a digest it then had to send cells for"
        );
    }
}

#[tokio::test]
async fn after_a_pause_a_write_waits_for_the_ring_its_peers_applied_or_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let Fixture {
        coordinator,
        views,
        pauses,
        ..
    } = coordinator(dir.path(), replicas.clone(), true);
    let paused = std::time::Duration::from_secs(30);

    // A peer refuses this node (it left the ring while paused): the write is refused and
    // reaches no replica, this node's own included.
    pauses.pretend_paused(paused);
    replicas.ring_checks.lock().insert(
        host(2),
        RingCheck::Refused("header.sender: host h1 left the ring".to_owned()),
    );
    let refused = coordinator
        .put_entities(TENANT, vec![doc("a")], ConsistencyLevel::One)
        .await
        .expect_err("a node that left writes nothing");
    let ClusterError::TopologyRefused(message) = &refused else {
        panic!("not a refusal: {refused}");
    };
    assert!(
        message.contains("paused for 30000 ms") && message.contains("left the ring"),
        "{message}"
    );
    for h in 1..=3 {
        assert!(
            replicas.cells(host(h), "a").is_empty(),
            "h{h} took the write"
        );
    }

    // The peers applied version 2 while this node routes by 1: the write waits until this
    // node has it too, and is planned on it.
    replicas.ring_checks.lock().clear();
    replicas.ring_checks.lock().extend([
        (host(2), RingCheck::Applied(2)),
        (host(3), RingCheck::Unreachable("down".to_owned())),
    ]);
    let write = tokio::spawn({
        let coordinator = coordinator.clone();
        async move {
            coordinator
                .put_entities(TENANT, vec![doc("b")], ConsistencyLevel::One)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !write.is_finished(),
        "planned before this node had version 2"
    );
    assert!(replicas.cells(host(1), "b").is_empty());
    views.send_replace(ClusterView::all_up(ring(2)));
    write
        .await
        .expect("the write task")
        .expect("planned on version 2");
    assert!(!replicas.cells(host(1), "b").is_empty());

    // Confirmed: the next write does not ask again (a refusal now would refuse it).
    replicas.ring_checks.lock().insert(
        host(2),
        RingCheck::Refused("header.sender: host h1 left the ring".to_owned()),
    );
    coordinator
        .put_entities(TENANT, vec![doc("c")], ConsistencyLevel::One)
        .await
        .expect("no pause since the check");
}

#[tokio::test]
async fn after_a_pause_no_peer_answering_lets_writes_go_on_and_the_check_is_asked_again() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let Fixture {
        coordinator,
        pauses,
        ..
    } = coordinator(dir.path(), replicas.clone(), true);
    pauses.pretend_paused(std::time::Duration::from_secs(30));
    replicas.ring_checks.lock().extend([
        (host(2), RingCheck::Unreachable("cut off".to_owned())),
        (host(3), RingCheck::Unreachable("cut off".to_owned())),
    ]);
    coordinator
        .put_entities(TENANT, vec![doc("a")], ConsistencyLevel::One)
        .await
        .expect("with no peer answering, a write at ONE goes on");

    // The pause stays unconfirmed, but is not asked about again before the threshold: a
    // refusal now is not heard yet.
    replicas.ring_checks.lock().insert(
        host(2),
        RingCheck::Refused("header.sender: host h1 left the ring".to_owned()),
    );
    coordinator
        .put_entities(TENANT, vec![doc("b")], ConsistencyLevel::One)
        .await
        .expect("no check within the threshold");
    pauses.retry_now();
    let refused = coordinator
        .put_entities(TENANT, vec![doc("c")], ConsistencyLevel::One)
        .await
        .expect_err("asked again once due, and refused");
    assert!(
        matches!(&refused, ClusterError::TopologyRefused(m) if m.contains("paused for 30000 ms")),
        "{refused}"
    );
    assert!(replicas.cells(host(1), "c").is_empty(), "the refused write");
}

#[tokio::test]
async fn after_a_pause_a_frozen_peer_does_not_hold_the_write_once_a_majority_answered() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let Fixture {
        coordinator,
        views,
        pauses,
        ..
    } = coordinator(dir.path(), replicas.clone(), true);
    let write = |id: &'static str| {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            coordinator
                .put_entities(TENANT, vec![doc(id)], ConsistencyLevel::One)
                .await
        })
    };

    // h3 is frozen (never answers; the fake has no deadline), h2 applied version 2: with h2
    // and this node a majority, the check waits for this node to have version 2, not for h3.
    pauses.pretend_paused(std::time::Duration::from_secs(30));
    replicas.hanging.lock().insert(host(3));
    replicas
        .ring_checks
        .lock()
        .insert(host(2), RingCheck::Applied(2));
    let first = write("a");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !first.is_finished(),
        "planned before this node had version 2"
    );
    views.send_replace(ClusterView::all_up(ring(2)));
    tokio::time::timeout(std::time::Duration::from_secs(10), first)
        .await
        .expect("the frozen peer held the write after a majority answered")
        .expect("the write task")
        .expect("planned on version 2");
    assert!(!replicas.cells(host(1), "a").is_empty());

    // Both peers frozen: this node alone is no majority, so the check waits for them (for the
    // read timeout in a real ring) instead of confirming the pause on its own word.
    pauses.pretend_paused(std::time::Duration::from_secs(30));
    replicas.hanging.lock().insert(host(2));
    let second = write("b");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!second.is_finished(), "a minority confirmed the pause");
    second.abort();
    assert!(replicas.cells(host(1), "b").is_empty());
}
