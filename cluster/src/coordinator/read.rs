//! Point reads at a consistency level: the level's number of replicas answer (the first asked
//! for its cells, the others for a digest; a replica that fails is replaced by the next one),
//! asked in the order of their measured latency, this node first; a replica that outlasts its
//! usual latency is read around (speculative read: the next replica is asked too and the first
//! answers count, so a replica that stops answering without closing its connections, a frozen
//! process or a host whose address vanished, costs a read milliseconds instead of
//! `cluster.read_timeout_ms` until gossip shows it down); a replica whose digest differs is
//! read again for its cells like any replica read (read around when slow, replaced by the next
//! replica when it fails), the cells merge last-write-wins, and every
//! replica that answered stale is sent what it lacks before the read returns (blocking read
//! repair, counted in `allidb_cluster_read_repairs_total`).
//!
//! Tenant drops: every answer carries the replica's drop of the tenant; the newest drop known
//! (to any replica that answered, or to this node) removes the cells it covers from every
//! answer, and replicas that answered an older drop are sent the newest one with their repair.
//! So a replica that missed a drop never brings the dropped cells back.

use std::collections::{BTreeMap, BTreeSet};

use allidb_storage::partition::CellVersion;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::Coordinator;
use super::replicas::{Answer, Read};
use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::consistency::ConsistencyLevel;
use crate::hints::dispatcher::peer_label;
use crate::membership::NodeStatus;
use crate::ring::HostId;
use crate::{ClusterError, replica_failure};

/// A replica read still running.
struct Asked {
    started: Instant,
    /// Whether it asks for the cells (not a digest).
    cells: bool,
    /// Whether it outlasted its host's usual latency, so another replica was asked too.
    overdue: bool,
}

/// Why a partition is read: what an `Unavailable` message calls the request.
#[derive(Clone, Copy, Debug)]
pub(super) enum Purpose {
    /// A client's point read.
    Read,
    /// A put or delete reading the stored state it replaces.
    Write,
    /// A write re-reading a partition it wrote, for in-edges a racing write left behind.
    Recheck,
}

impl Purpose {
    fn request(self) -> &'static str {
        match self {
            Purpose::Read => "read",
            Purpose::Write | Purpose::Recheck => "write",
        }
    }

    /// Whether every replica asked answers its cells (not a digest): a re-read after a write
    /// would otherwise often find a replica still applying that write, and pay a second round
    /// trip for its cells.
    fn wants_every_cell(self) -> bool {
        matches!(self, Purpose::Recheck)
    }

    /// Whether replicas that answered stale are repaired before the read returns. Not for a
    /// re-read after a write: the write itself is still reaching the replica that lags (or a
    /// hint will), and repairing it would send the same cells twice.
    fn repairs(self) -> bool {
        !matches!(self, Purpose::Recheck)
    }

    fn step(self) -> &'static str {
        match self {
            Purpose::Read => "",
            Purpose::Write => " (reading its stored state first)",
            Purpose::Recheck => {
                " (re-reading it once written, for in-edges a concurrent write left behind)"
            }
        }
    }
}

impl Coordinator {
    /// The merged cells of each of `ids` at `level`, in order ([`Coordinator::read_cells`] of
    /// each, all at once). A node alone in its ring (a ring of one) is every partition's only
    /// replica: it reads them all from its own store in one call, without a replica read's
    /// bookkeeping per partition.
    pub(super) async fn read_cells_of(
        &self,
        tenant: &str,
        ids: &[&str],
        level: ConsistencyLevel,
        purpose: Purpose,
    ) -> Result<Vec<Vec<CellVersion>>, ClusterError> {
        if !self.alone() {
            let reads = ids
                .iter()
                .map(|id| self.read_cells(tenant, id, level, purpose));
            return futures_util::future::join_all(reads)
                .await
                .into_iter()
                .collect();
        }
        let wanted = ids
            .iter()
            .map(|id| (tenant.to_owned(), (*id).to_owned()))
            .collect();
        self.inner
            .local
            .partitions(wanted, usize::MAX)
            .await?
            .into_iter()
            .map(|read| {
                read.map(|stored| cells::without_dropped(stored.cells, stored.tenant_dropped_at))
            })
            .collect()
    }

    /// The merged cells of one partition at `level` (see the module doc); `purpose` names
    /// the request in an `Unavailable` message (a write reads the stored state first).
    pub(super) async fn read_cells(
        &self,
        tenant: &str,
        id: &str,
        level: ConsistencyLevel,
        purpose: Purpose,
    ) -> Result<Vec<CellVersion>, ClusterError> {
        let view = self.inner.view.borrow().clone();
        let replicas = view
            .ring
            .replicas_of_key(tenant, id, self.inner.options.replication_factor);
        let required = level.required(replicas.len());
        if required == 0 {
            return Err(ClusterError::Unavailable(
                "the ring has no nodes with tokens yet; retry once the cluster has formed"
                    .to_owned(),
            ));
        }
        // Replicas gossip shows up first, this node first among them (no network hop), then by
        // their measured latency.
        let latency = &self.inner.latency;
        let mut candidates: Vec<HostId> = replicas.hosts().to_vec();
        candidates.sort_by_key(|host| {
            let down = view
                .nodes
                .get(host)
                .is_none_or(|node| node.status == NodeStatus::Down);
            (down, latency.rank(self.inner.host, *host))
        });
        let mut answers: BTreeMap<HostId, Answer> = BTreeMap::new();
        let mut failed: BTreeMap<HostId, ClusterError> = BTreeMap::new();
        let mut asked: BTreeMap<HostId, Asked> = BTreeMap::new();
        let mut reads = FuturesUnordered::new();
        let ask = |host: HostId, cells: bool, asked: &mut BTreeMap<HostId, Asked>| {
            asked.insert(
                host,
                Asked {
                    started: Instant::now(),
                    cells,
                    overdue: false,
                },
            );
            let read = self
                .inner
                .replicas
                .read_partition(&view, host, tenant, id, !cells);
            async move { (host, read.await) }
        };
        let mut next = 0;
        loop {
            // A digest that differs from the cells answered is read again for its cells, like
            // any replica read (read around when slow, replaced when it fails).
            for host in settle_digests(&mut answers, required) {
                answers.remove(&host);
                reads.push(ask(host, true, &mut asked));
            }
            if answers.len() >= required {
                break;
            }
            // Enough reads that may still answer in time: replace the failed and the overdue.
            while answers.len() + asked.values().filter(|a| !a.overdue).count() < required
                && next < candidates.len()
            {
                let host = candidates[next];
                next += 1;
                let has_cells = answers.values().any(|a| matches!(a.read, Read::Cells(_)))
                    || asked.values().any(|a| a.cells && !a.overdue);
                let cells = purpose.wants_every_cell() || !has_cells;
                reads.push(ask(host, cells, &mut asked));
            }
            if asked.is_empty() {
                if let Some(error) = self.sole_replica_failure(replicas.hosts(), &mut failed) {
                    return Err(error);
                }
                let answered: BTreeSet<HostId> = answers.keys().copied().collect();
                return Err(ClusterError::Unavailable(replica_failure(
                    &format!(
                        "{} at consistency {level} failed for entity {id:?} of tenant {tenant:?}{}",
                        purpose.request(),
                        purpose.step()
                    ),
                    required,
                    replicas.hosts(),
                    &answered,
                    &failed,
                    &view,
                )));
            }
            // While another replica could be asked, the first read to outlast its host's usual
            // latency is read around (it may still answer, and then counts).
            let slowest = (next < candidates.len())
                .then(|| {
                    asked
                        .iter()
                        .filter(|(_, a)| !a.overdue)
                        .map(|(host, a)| (a.started + latency.speculate_after(*host), *host))
                        .min()
                })
                .flatten();
            let speculate = async {
                match slowest {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((host, outcome)) = reads.next() => {
                    let started = asked.remove(&host).map(|a| a.started);
                    match outcome {
                        Ok(answer) => {
                            if let Some(started) = started {
                                latency.record(host, started.elapsed());
                            }
                            answers.insert(host, answer);
                        }
                        Err(reason) => {
                            failed.insert(host, reason);
                        }
                    }
                }
                () = speculate => {
                    let (_, host) = slowest.expect("the timer runs only for a read");
                    if let Some(slow) = asked.get_mut(&host) {
                        slow.overdue = true;
                        latency.record(host, slow.started.elapsed());
                    }
                    metrics::counter!(
                        "allidb_cluster_speculative_reads_total",
                        "peer" => peer_label(&view, host)
                    )
                    .increment(1);
                }
            }
        }
        // A read still unanswered is at least as slow as the wait so far (an overdue one was
        // counted when it was read around).
        for (host, unanswered) in asked.iter().filter(|(_, a)| !a.overdue) {
            latency.record(*host, unanswered.started.elapsed());
        }
        drop(reads);

        // A tenant drop any replica (or this node) knows of removes the cells it covers from
        // every answer, and replicas that answered an older drop are sent the newer one.
        let local_drop = self
            .store()
            .engine()
            .tenant_drops()
            .get(tenant)
            .map_or(0, |drop| drop.ts);
        let dropped_at = answers
            .values()
            .map(|a| a.dropped_at)
            .fold(local_drop, u64::max);

        let mut own: BTreeMap<HostId, Vec<CellVersion>> = BTreeMap::new();
        let mut stale_drop: BTreeSet<HostId> = BTreeSet::new();
        for (host, answer) in answers {
            if answer.dropped_at < dropped_at {
                stale_drop.insert(host);
            }
            let Read::Cells(cells) = answer.read else {
                unreachable!("the read ends once settle_digests left only cells")
            };
            own.insert(host, cells::without_dropped(cells, dropped_at));
        }
        if own.len() == 1 && stale_drop.is_empty() {
            let cells = own.into_values().next().expect("one answer");
            return Ok(cells);
        }
        let merged = cells::merge(own.values().map(Vec::as_slice));
        if !purpose.repairs() {
            return Ok(merged);
        }
        let view = &view;
        let drop = DroppedTenant {
            tenant: tenant.to_owned(),
            ts: dropped_at,
        };
        let repairs = own.iter().filter_map(|(host, cells)| {
            let mutation = ReplicaMutation {
                drops: match stale_drop.contains(host) {
                    true => vec![drop.clone()],
                    false => Vec::new(),
                },
                cells: cells::missing_from(&merged, cells),
            };
            (!mutation.drops.is_empty() || !mutation.cells.is_empty()).then_some(async move {
                let peer = peer_label(view, *host);
                metrics::counter!("allidb_cluster_read_repairs_total", "peer" => peer.clone())
                    .increment(1);
                if let Err(reason) = self
                    .inner
                    .replicas
                    .apply(view, *host, &mutation, "read_repair")
                    .await
                {
                    tracing::debug!(%peer, %reason, "read repair failed");
                }
            })
        });
        futures_util::future::join_all(repairs).await;
        Ok(merged)
    }
}

/// Gives each digest in `answers` equal to the digest of cells another replica answered those
/// cells, and returns the replicas whose cells must be read: those whose digest differs, or,
/// once `required` replicas answered and none with cells, the first (the others' digests are
/// compared with its cells once they arrive).
fn settle_digests(answers: &mut BTreeMap<HostId, Answer>, required: usize) -> Vec<HostId> {
    if answers.values().all(|a| matches!(a.read, Read::Cells(_))) {
        return Vec::new();
    }
    let reference = answers.values().find_map(|a| match &a.read {
        Read::Cells(cells) => Some((cells::digest(cells), cells.clone())),
        Read::Digest(_) => None,
    });
    let complete = answers.len() >= required;
    let mut differing = Vec::new();
    for (host, answer) in answers.iter_mut() {
        match (&answer.read, &reference) {
            (Read::Cells(_), _) => {}
            (Read::Digest(digest), Some((same, cells))) if digest == same => {
                answer.read = Read::Cells(cells.clone());
            }
            (Read::Digest(_), Some(_)) => differing.push(*host),
            (Read::Digest(_), None) if complete && differing.is_empty() => differing.push(*host),
            (Read::Digest(_), None) => {}
        }
    }
    differing
}
