//! The topology log's state machine: applies committed [`Command`]s to the [`TopologyState`],
//! persists the result, and publishes it to the rest of the node (docs/cluster.md "Topology
//! log files": `topology-state`, version 1).
//!
//! Owns the file `cluster/topology-state` under the data dir: the applied state with the last
//! applied log id and raft membership, sealed with a checksum and replaced atomically after
//! every applied batch. The snapshot the log sends a lagging node is this same state.
//!
//! Invariants: what is published was persisted first, so a restarted node never routes by an
//! older topology than it announced; the published version never goes backwards. Must never:
//! apply an entry twice (entries at or below the applied log id are skipped).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TopologyConfig;
use super::state::{Outcome, TopologyState};
use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, write_atomically};
use crate::ring::HostId;

const STATE_FILE: &str = "topology-state";
const STATE_HEADER: &str = "allidb-topology-state 1";

type StoreResult<T> = Result<T, StorageError<HostId>>;

/// What the state file holds, and what a snapshot carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyImage {
    /// The last log entry applied.
    pub applied: Option<LogId<HostId>>,
    /// The raft membership (voters and learners) as of `applied`.
    pub membership: StoredMembership<HostId, openraft::BasicNode>,
    pub state: TopologyState,
}

/// The state machine; the log owns it, the node reads what it publishes.
pub struct TopologyMachine {
    data_dir: PathBuf,
    image: TopologyImage,
    published: watch::Sender<Arc<TopologyState>>,
}

impl std::fmt::Debug for TopologyMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyMachine").finish_non_exhaustive()
    }
}

/// Reads the state file under `data_dir` (the default image before the first apply).
pub fn load_image(data_dir: &Path) -> Result<TopologyImage, ClusterError> {
    let path = data_dir.join(CLUSTER_DIR).join(STATE_FILE);
    Ok(super::read_sealed_json(&path, STATE_HEADER)?.unwrap_or_default())
}

fn store_image(data_dir: &Path, image: &TopologyImage) -> Result<(), ClusterError> {
    let json = serde_json::to_string(image)
        .map_err(|e| ClusterError::Protocol(format!("topology state to JSON: {e}")))?;
    write_atomically(
        data_dir,
        STATE_FILE,
        &seal(format!("{STATE_HEADER}\n{json}\n")),
    )
}

impl TopologyMachine {
    /// The machine over the state stored under `data_dir`, publishing to `published`.
    pub fn open(
        data_dir: &Path,
        published: watch::Sender<Arc<TopologyState>>,
    ) -> Result<TopologyMachine, ClusterError> {
        let image = load_image(data_dir)?;
        published.send_replace(Arc::new(image.state.clone()));
        Ok(TopologyMachine {
            data_dir: data_dir.to_path_buf(),
            image,
            published,
        })
    }

    /// Stores the image, then publishes its state (what is published was stored first).
    fn persist_and_publish(&self) -> Result<(), ClusterError> {
        store_image(&self.data_dir, &self.image)?;
        self.published
            .send_replace(Arc::new(self.image.state.clone()));
        Ok(())
    }

    fn snapshot(&self) -> Snapshot<TopologyConfig> {
        let applied = self.image.applied;
        Snapshot {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: self.image.membership.clone(),
                snapshot_id: applied.map_or_else(
                    || "empty".to_owned(),
                    |l| format!("{}-{}", l.leader_id.term, l.index),
                ),
            },
            snapshot: Box::new(self.image.clone()),
        }
    }
}

/// Builds a snapshot from a copy of the image taken when it was asked for.
pub struct TopologySnapshotBuilder {
    snapshot: Option<Snapshot<TopologyConfig>>,
}

impl std::fmt::Debug for TopologySnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologySnapshotBuilder")
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TopologyConfig> for TopologySnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TopologyConfig>> {
        self.snapshot.take().ok_or_else(|| {
            StorageIOError::read_state_machine(&std::io::Error::other(
                "a snapshot builder is used once",
            ))
            .into()
        })
    }
}

impl RaftStateMachine<TopologyConfig> for TopologyMachine {
    type SnapshotBuilder = TopologySnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(
        Option<LogId<HostId>>,
        StoredMembership<HostId, openraft::BasicNode>,
    )> {
        Ok((self.image.applied, self.image.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TopologyConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            if self.image.applied.is_some_and(|a| entry.log_id <= a) {
                outcomes.push(Ok(self.image.state.version));
                continue;
            }
            self.image.applied = Some(entry.log_id);
            let outcome = match &entry.payload {
                EntryPayload::Blank => Ok(self.image.state.version),
                EntryPayload::Normal(command) => {
                    let outcome = self.image.state.apply(command);
                    if let Err(reason) = &outcome {
                        tracing::info!(index = entry.log_id.index, %reason, "topology command refused");
                    }
                    outcome
                }
                EntryPayload::Membership(membership) => {
                    self.image.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    Ok(self.image.state.version)
                }
            };
            outcomes.push(outcome);
        }
        self.persist_and_publish()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        TopologySnapshotBuilder {
            snapshot: Some(self.snapshot()),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<TopologyImage>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<HostId, openraft::BasicNode>,
        snapshot: Box<TopologyImage>,
    ) -> StoreResult<()> {
        let mut image = *snapshot;
        image.applied = meta.last_log_id;
        image.membership = meta.last_membership.clone();
        self.image = image;
        self.persist_and_publish()
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TopologyConfig>>> {
        Ok(self.image.applied.map(|_| self.snapshot()))
    }
}
