//! The topology fence (DESIGN.md §6 rule 4): the oldest topology version this node still takes
//! node-to-node reads and writes planned on, and the writes it admitted that are still running.
//!
//! A movement's barrier raises it on every live node to the version the barrier waited for and
//! then waits until every write admitted on an older version has finished ([`TopologyFence::
//! drained`]), so once a step is committed no replica takes, or is still applying, a write
//! routed by a ring from before the step: a coordinator that was frozen or cut off across a
//! movement has its old-ring writes and reads refused (`FAILED_PRECONDITION`) instead of
//! acknowledged by the wrong replicas, and a stream that starts after the barrier sees every
//! write acknowledged on the old ring. This node's own writes as a coordinator pass the same
//! gate ([`crate::replica::LocalReplica::apply_planned`]).
//!
//! Owns the file `cluster/topology-fence` under the data dir (docs/cluster.md "Topology log
//! files", version 1): the fence, sealed with a checksum, replaced atomically at every rise, so a
//! restarted node keeps refusing what it refused before.
//!
//! Invariants: the fence only rises; a write is admitted and counted in one step under the
//! gate's lock, so a drain that saw no older write cannot miss one admitted before the rise.
//! Must never: fence above the version this node applied (a barrier raises it only once the node
//! applied that version).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::Status;

use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, unseal, write_atomically};

const FENCE_FILE: &str = "topology-fence";
const FENCE_HEADER: &str = "allidb-topology-fence 1";

/// The fence and the writes admitted under it, by the version each was planned on.
#[derive(Debug, Default)]
struct Gate {
    fence: u64,
    writing: BTreeMap<u64, usize>,
}

/// Shared by the topology log (which raises it at barriers), the `Replica` service and the
/// local replica (which check it); cheap to clone.
#[derive(Clone, Debug)]
pub struct TopologyFence {
    gate: Arc<watch::Sender<Gate>>,
    /// The data dir the fence is persisted under (`None`: kept in memory only), and the lock
    /// that orders the writes.
    file: Arc<Mutex<Option<PathBuf>>>,
}

/// A write admitted by the fence: counted as running on its planned version until dropped.
#[derive(Debug)]
#[must_use = "the write counts as running only while this is held"]
pub struct AdmittedWrite {
    gate: Arc<watch::Sender<Gate>>,
    planned: u64,
}

impl Drop for AdmittedWrite {
    fn drop(&mut self) {
        let planned = self.planned;
        self.gate.send_if_modified(|gate| {
            let Some(count) = gate.writing.get_mut(&planned) else {
                return false;
            };
            *count -= 1;
            if *count > 0 {
                return false;
            }
            gate.writing.remove(&planned);
            true
        });
    }
}

impl TopologyFence {
    /// The fence stored under `data_dir` (0 before the first rise).
    pub fn open(data_dir: &Path) -> Result<TopologyFence, ClusterError> {
        let path = data_dir.join(CLUSTER_DIR).join(FENCE_FILE);
        let version = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let corrupt = |reason: String| ClusterError::CorruptTopology {
                    path: path.clone(),
                    reason,
                };
                let body = unseal(&text).map_err(corrupt)?;
                body.strip_prefix(FENCE_HEADER)
                    .map(str::trim)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt(format!("not {FENCE_HEADER:?} and a version")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ClusterError::Io { path, source }),
        };
        let gate = Gate {
            fence: version,
            writing: BTreeMap::new(),
        };
        Ok(TopologyFence {
            gate: Arc::new(watch::Sender::new(gate)),
            file: Arc::new(Mutex::new(Some(data_dir.to_path_buf()))),
        })
    }

    /// A fence at 0 kept in memory only: that of a ring of one ([`crate::standalone`]), which
    /// has no topology log and so no barrier that could raise it.
    pub fn in_memory() -> TopologyFence {
        TopologyFence {
            gate: Arc::new(watch::Sender::new(Gate::default())),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// The fence now.
    pub fn get(&self) -> u64 {
        self.gate.borrow().fence
    }

    /// Raises the fence to `version` (never lowers it) and persists it.
    pub fn raise(&self, version: u64) {
        let raised = self.gate.send_if_modified(|gate| {
            let raised = version > gate.fence;
            gate.fence = gate.fence.max(version);
            raised
        });
        if !raised {
            return;
        }
        let data_dir = self.file.lock();
        let Some(data_dir) = data_dir.as_deref() else {
            return;
        };
        let current = self.get();
        let text = seal(format!("{FENCE_HEADER}\n{current}\n"));
        if let Err(error) = write_atomically(data_dir, FENCE_FILE, &text) {
            // In force in memory; a restart before the next rise starts from the older one.
            tracing::warn!(%error, fence = current, "the topology fence was not persisted");
        }
    }

    /// Refuses a request planned on topology version `planned` below the fence.
    pub fn check(&self, planned: u64) -> Result<(), Status> {
        let fence = self.get();
        if planned < fence {
            return Err(Status::failed_precondition(refusal(planned, fence)));
        }
        Ok(())
    }

    /// Admits a write planned on topology version `planned` (refused below the fence), counted
    /// as running until the returned value is dropped.
    pub fn admit_write(&self, planned: u64) -> Result<AdmittedWrite, ClusterError> {
        let mut fenced = None;
        self.gate.send_if_modified(|gate| {
            if planned < gate.fence {
                fenced = Some(gate.fence);
            } else {
                *gate.writing.entry(planned).or_default() += 1;
            }
            false // nobody waits for a write to start
        });
        match fenced {
            Some(fence) => Err(ClusterError::Fenced(refusal(planned, fence))),
            None => Ok(AdmittedWrite {
                gate: self.gate.clone(),
                planned,
            }),
        }
    }

    /// Waits up to `timeout` until no write planned on a version below `version` is running;
    /// `Err` with how many still are.
    pub async fn drained(&self, version: u64, timeout: Duration) -> Result<(), usize> {
        let mut gate = self.gate.subscribe();
        let older_done = |gate: &Gate| gate.writing.range(..version).next().is_none();
        if tokio::time::timeout(timeout, gate.wait_for(older_done))
            .await
            .is_ok()
        {
            return Ok(());
        }
        Err(self
            .gate
            .borrow()
            .writing
            .range(..version)
            .map(|(_, n)| n)
            .sum())
    }
}

/// Why a request planned on `planned` is refused by `fence` (counted).
fn refusal(planned: u64, fence: u64) -> String {
    metrics::counter!("allidb_topology_fenced_requests_total").increment(1);
    format!(
        "header.ring_version: the request was planned on topology version {planned}, \
         this node takes none older than {fence} (the sender's ring is stale; it \
         retries once it applied the newer one)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_only_rises_refuses_what_is_older_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fence = TopologyFence::open(dir.path()).expect("no fence yet");
        assert!(fence.check(0).is_ok());
        fence.raise(5);
        fence.raise(3);
        assert_eq!(fence.get(), 5);
        assert!(fence.check(5).is_ok() && fence.check(6).is_ok());
        let refused = fence.check(4).expect_err("older than the fence");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().starts_with("header.ring_version"));
        let reopened = TopologyFence::open(dir.path()).expect("the stored fence");
        assert_eq!(reopened.get(), 5);
    }

    #[tokio::test]
    async fn a_drain_waits_for_the_writes_admitted_on_older_versions_only() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fence = TopologyFence::open(dir.path()).expect("no fence yet");
        let old = fence.admit_write(3).expect("no fence yet");
        let current = fence.admit_write(4).expect("no fence yet");
        fence.raise(4);
        let refused = fence.admit_write(3).expect_err("below the fence");
        assert!(matches!(refused, ClusterError::Fenced(m) if m.starts_with("header.ring_version")));
        let short = Duration::from_millis(50);
        assert_eq!(
            fence.drained(4, short).await,
            Err(1),
            "the write planned on 3 runs"
        );
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.drained(4, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(short).await;
        assert!(
            !waiting.is_finished(),
            "the drain waits for the older write"
        );
        drop(old);
        assert_eq!(waiting.await.expect("the drain task"), Ok(()));
        // A write on the fence's own version does not hold a drain to that version.
        assert_eq!(fence.drained(4, short).await, Ok(()));
        assert_eq!(fence.drained(5, short).await, Err(1));
        drop(current);
        assert_eq!(fence.drained(5, short).await, Ok(()));
    }
}
