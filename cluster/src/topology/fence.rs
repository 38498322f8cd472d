//! The topology fence (DESIGN.md §6 rule 4): the oldest topology version this node still takes
//! node-to-node reads and writes planned on.
//!
//! A movement's barrier raises it on every live node to the version the barrier waited for, so
//! once a step is committed no replica takes a request routed by a ring from before the step
//! before: a coordinator that was frozen or cut off across a movement has its old-ring writes and
//! reads refused (`FAILED_PRECONDITION`) instead of acknowledged by the wrong replicas.
//!
//! Owns the file `cluster/topology-fence` under the data dir (docs/cluster.md "Topology log
//! files", version 1): the fence, sealed with a checksum, replaced atomically at every rise, so a
//! restarted node keeps refusing what it refused before.
//!
//! Invariants: the fence only rises. Must never: fence above the version this node applied (a
//! barrier raises it only once the node applied that version).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tonic::Status;

use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, unseal, write_atomically};

const FENCE_FILE: &str = "topology-fence";
const FENCE_HEADER: &str = "allidb-topology-fence 1";

/// Shared by the topology log (which raises it at barriers) and the `Replica` service (which
/// checks it); cheap to clone.
#[derive(Clone, Debug)]
pub struct TopologyFence {
    version: Arc<AtomicU64>,
    /// The data dir the fence is persisted under, and the lock that orders the writes.
    file: Arc<Mutex<PathBuf>>,
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
        Ok(TopologyFence {
            version: Arc::new(AtomicU64::new(version)),
            file: Arc::new(Mutex::new(data_dir.to_path_buf())),
        })
    }

    /// The fence now.
    pub fn get(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Raises the fence to `version` (never lowers it) and persists it.
    pub fn raise(&self, version: u64) {
        if self.version.fetch_max(version, Ordering::AcqRel) >= version {
            return;
        }
        let data_dir = self.file.lock();
        let current = self.get();
        let text = seal(format!("{FENCE_HEADER}\n{current}\n"));
        if let Err(error) = write_atomically(&data_dir, FENCE_FILE, &text) {
            // In force in memory; a restart before the next rise starts from the older one.
            tracing::warn!(%error, fence = current, "the topology fence was not persisted");
        }
    }

    /// Refuses a request planned on topology version `planned` below the fence.
    pub fn check(&self, planned: u64) -> Result<(), Status> {
        let fence = self.get();
        if planned < fence {
            metrics::counter!("allidb_topology_fenced_requests_total").increment(1);
            return Err(Status::failed_precondition(format!(
                "header.ring_version: the request was planned on topology version {planned}, \
                 this node takes none older than {fence} (the sender's ring is stale; it \
                 retries once it applied the newer one)"
            )));
        }
        Ok(())
    }
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
}
