//! Anti-entropy repair (DESIGN.md §6, docs/cluster.md "Anti-entropy repair"): brings every
//! replica of the ranges this node replicates to the same cells, whatever made them differ (a
//! node down past the hint window, hints dropped, a restored checkpoint, a missed delete or
//! tenant drop). Hints and read repair only fix what is written or read; this fixes the rest.
//!
//! - [`merkle`]: one range's Merkle tree (pure).
//! - [`trees`]: a replica's trees from one snapshot pass (pure).
//! - [`wire`]: their node-to-node messages.
//! - [`merge`]: the replicas' streams of the differing leaves lined up partition by partition,
//!   and what each replica lacks (pure).
//! - [`sync`]: streaming the differing leaves and sending each replica what it lacks.
//! - [`pace`]: the node-wide cap on the bytes a repair's scans read (`cluster.repair_scan_bytes_per_sec`).
//! - [`history`]: when each range was last repaired completely (tombstone grace alarms).
//! - [`progress`]: what the running repair has done so far (status and metrics).
//! - [`scheduler`]: the scheduled repair (`cluster.repair_interval_secs`).
//!
//! How a repair runs, per batch of ranges, every replica of each range asked:
//! 1. every replica sends a one-leaf tree of each range (its root: the sum of its partitions'
//!    digests) and its tenant drops; the newest drop of each tenant is sent to the replicas
//!    that lack it, before any cell; ranges whose roots agree are done;
//! 2. for the others, every replica sends the range's tree at a depth giving about one
//!    partition per leaf (at most 16); the trees are compared top-down;
//! 3. every replica streams the cells of the differing leaves (their token spans) in bounded
//!    chunks (`StreamRange`, as range streaming does); the streams are merged partition by
//!    partition, last-write-wins, and each replica is sent the cells it lacks through the
//!    normal batch path with their own timestamps (so the indexes follow, and a second run is
//!    idempotent).
//!
//! Invariants: at most one repair runs on a node at a time; a range with a replica that cannot
//! be reached is skipped and reported, never half-compared; nothing is written in preview.
//! Must never: hold a range's cells in memory (only leaf hashes, one chunk per replica and one
//! step's sends), or write a cell with a timestamp other than the one it was read with.

pub mod history;
pub mod merge;
pub mod merkle;
pub mod pace;
pub mod progress;
pub mod scheduler;
pub mod sync;
pub mod trees;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::ClusterError;
use crate::cells::{DroppedTenant, ReplicaMutation};
use crate::coordinator::Coordinator;
use crate::membership::ClusterView;
use crate::peer_client::PeerClients;
use crate::replica::{LocalReplica, MAX_TREE_LEAVES};
use crate::ring::{HostId, TokenRange, TokenSpan};
use crate::stream::StreamOptions;
use crate::stream::wire::MAX_SPANS;
use history::RepairHistory;
use merkle::{MerkleTree, depth_for};
use progress::{RepairProgress, RepairStep};
use trees::TreeShape;

/// Deadline of one tree call: the replica reads its whole store for it, at the pace
/// `cluster.repair_scan_bytes_per_sec` allows (docs/cluster.md "Repair pace").
const CALL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What to repair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Only this tenant's partitions (drops of other tenants are left alone too).
    pub tenant: Option<String>,
    /// Compare only: report what differs, write nothing.
    pub preview: bool,
    /// Only these token ranges (each one this node replicates; `None`: all of them).
    pub ranges: Option<Vec<TokenSpan>>,
}

/// What a repair found and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepairReport {
    /// Ranges this node replicates (all compared unless listed in `skipped`).
    pub ranges: u64,
    /// Ranges whose replicas differed.
    pub ranges_differing: u64,
    /// Leaves that differed, summed over ranges.
    pub leaves_differing: u64,
    /// Partitions whose replicas differed.
    pub partitions_differing: u64,
    /// Partitions repaired (0 in preview).
    pub partitions_repaired: u64,
    /// Cells sent to replicas that lacked them, summed over replicas (in preview: that would
    /// be sent).
    pub cells_streamed: u64,
    /// Their bytes.
    pub bytes_streamed: u64,
    /// Bytes of the differing leaves' cells the replicas streamed to this node to compare.
    pub bytes_compared: u64,
    /// Tenant drops sent to replicas that lacked them (would be sent, in preview).
    pub drops_sent: u64,
    /// Ranges not compared, with why (a replica down or failing).
    pub skipped: Vec<String>,
    /// Partitions or replicas the repair could not write to, with why.
    pub failures: Vec<String>,
    /// How long it took.
    pub duration: Duration,
}

impl RepairReport {
    /// Whether every range was compared and everything that differed was repaired.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty() && self.failures.is_empty()
    }
}

/// Runs anti-entropy repairs from this node; cheap to clone.
#[derive(Clone, Debug)]
pub struct RangeRepair {
    coordinator: Coordinator,
    local: LocalReplica,
    clients: Arc<PeerClients>,
    view: watch::Receiver<Arc<ClusterView>>,
    history: Arc<RepairHistory>,
    progress: Arc<RepairProgress>,
    streaming: StreamOptions,
    running: Arc<tokio::sync::Mutex<()>>,
}

/// One range and its replicas.
struct Replicated {
    range: TokenRange,
    replicas: Vec<HostId>,
}

impl RangeRepair {
    /// Repairs from this node (`local`), reaching peers through `clients`, writing through
    /// `coordinator`, recording complete repairs in `history` and the running one's progress
    /// in `progress`, streaming the differing leaves as `streaming` says (chunk size, cap on
    /// the bytes received and sent per second, call deadline).
    pub fn new(
        coordinator: Coordinator,
        local: LocalReplica,
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        history: Arc<RepairHistory>,
        progress: Arc<RepairProgress>,
        streaming: StreamOptions,
    ) -> Self {
        Self {
            coordinator,
            local,
            clients,
            view,
            history,
            progress,
            streaming,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The token ranges this node replicates now.
    pub fn current_ranges(&self) -> Vec<TokenSpan> {
        let view = self.view.borrow().clone();
        view.ring
            .ranges_replicated_by(self.local.host(), self.coordinator.replication_factor())
            .into_iter()
            .map(|(range, _)| range.span())
            .collect()
    }

    /// The history of this node's complete repairs.
    pub fn history(&self) -> &Arc<RepairHistory> {
        &self.history
    }

    /// Repairs every range this node replicates (see the module doc). Fails at once when a
    /// repair is already running on this node.
    pub async fn run(&self, options: &RepairOptions) -> Result<RepairReport, ClusterError> {
        let _running = self.running.try_lock().map_err(|_| {
            ClusterError::Unavailable(
                "a repair is already running on this node; wait for it to finish".to_owned(),
            )
        })?;
        if let Some(tenant) = &options.tenant {
            allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        }
        let started = Instant::now();
        let view = self.view.borrow().clone();
        let replicated = view
            .ring
            .ranges_replicated_by(self.local.host(), self.coordinator.replication_factor());
        let current: Vec<TokenSpan> = replicated.iter().map(|(r, _)| r.span()).collect();
        if let Some(asked) = &options.ranges
            && let Some(unknown) = asked.iter().find(|span| !current.contains(span))
        {
            return Err(ClusterError::InvalidRange(format!(
                "ranges: ({}, {}] is not a token range this node replicates (allidb cluster \
                 ring lists the ranges by their end token; a range starts after the previous end)",
                unknown.start, unknown.end
            )));
        }
        let ranges: Vec<Replicated> = replicated
            .into_iter()
            .filter(|(range, _)| {
                options
                    .ranges
                    .as_ref()
                    .is_none_or(|asked| asked.contains(&range.span()))
            })
            .map(|(range, replicas)| Replicated {
                range,
                replicas: replicas.hosts().to_vec(),
            })
            .collect();
        let compared: Vec<TokenSpan> = ranges.iter().map(|r| r.range.span()).collect();
        let mut skipped: BTreeSet<TokenSpan> = BTreeSet::new();
        let mut report = RepairReport {
            ranges: ranges.len() as u64,
            ..RepairReport::default()
        };
        let tenant = options.tenant.as_deref();
        let _shown = self.progress.start(report.ranges, options.preview);
        // Ranges grouped by replica set: one call per replica per group and step.
        let mut groups: BTreeMap<Vec<HostId>, Vec<TokenRange>> = BTreeMap::new();
        for r in ranges {
            let mut replicas = r.replicas;
            replicas.sort();
            groups.entry(replicas).or_default().push(r.range);
        }
        let dropped = self
            .send_newest_drops(&view, &groups, tenant, options.preview, &mut report)
            .await;
        let mut ranges_done = 0;
        for (replicas, ranges) in &groups {
            self.progress
                .record(RepairStep::Roots, ranges_done, &report);
            if let Some(down) = replicas.iter().find(|h| self.address(&view, **h).is_err()) {
                let reason = self
                    .address(&view, *down)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                report.skipped.extend(
                    ranges
                        .iter()
                        .map(|r| format!("token range ({}, {}]: {reason}", r.start, r.end)),
                );
                skipped.extend(ranges.iter().map(TokenRange::span));
                continue;
            }
            if let Err(error) = self
                .repair_group(
                    &view,
                    replicas,
                    ranges,
                    options,
                    &dropped,
                    ranges_done,
                    &mut report,
                )
                .await
            {
                report.skipped.extend(
                    ranges
                        .iter()
                        .map(|r| format!("token range ({}, {}]: {error}", r.start, r.end)),
                );
                skipped.extend(ranges.iter().map(TokenRange::span));
            }
            ranges_done += ranges.len() as u64;
            tracing::info!(
                ranges_done,
                ranges = report.ranges,
                partitions_repaired = report.partitions_repaired,
                "repair progress"
            );
        }
        report.duration = started.elapsed();
        record(&report, options.preview);
        if !options.preview && options.tenant.is_none() && report.failures.is_empty() {
            let repaired: Vec<TokenSpan> = compared
                .into_iter()
                .filter(|span| !skipped.contains(span))
                .collect();
            let history = self.history.clone();
            let now = unix_secs();
            tokio::task::spawn_blocking(move || history.record(&repaired, &current, now))
                .await
                .map_err(|e| ClusterError::Protocol(format!("repair history task: {e}")))??;
        }
        tracing::info!(
            ranges = report.ranges,
            ranges_differing = report.ranges_differing,
            leaves_differing = report.leaves_differing,
            partitions_differing = report.partitions_differing,
            partitions_repaired = report.partitions_repaired,
            cells_streamed = report.cells_streamed,
            bytes_streamed = report.bytes_streamed,
            bytes_compared = report.bytes_compared,
            drops_sent = report.drops_sent,
            skipped = report.skipped.len(),
            failures = report.failures.len(),
            preview = options.preview,
            duration_ms = report.duration.as_millis() as u64,
            "repair finished"
        );
        Ok(report)
    }

    /// The RPC address of `host`, or why it cannot be asked.
    fn address(
        &self,
        view: &ClusterView,
        host: HostId,
    ) -> Result<Option<SocketAddr>, ClusterError> {
        if host == self.local.host() {
            return Ok(None);
        }
        view.peer_address(host).map(Some)
    }

    /// The trees of `shapes` on `host`, and its drops.
    async fn trees(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: Option<&str>,
        shapes: &[TreeShape],
    ) -> Result<(Vec<MerkleTree>, Vec<DroppedTenant>), ClusterError> {
        let mut trees = Vec::with_capacity(shapes.len());
        // Calls bounded by the leaves one answer may carry; one call even for no tree (the
        // drops alone).
        let mut rest = shapes;
        loop {
            let mut leaves = 0usize;
            let take = rest
                .iter()
                .take_while(|s| {
                    leaves += 1 << s.depth;
                    leaves <= MAX_TREE_LEAVES
                })
                .count()
                .max(1)
                .min(rest.len());
            let (batch, after) = rest.split_at(take);
            rest = after;
            let (got, dropped) = match self.address(view, host)? {
                None => {
                    self.local
                        .merkle_trees(tenant.map(str::to_owned), batch.to_vec())
                        .await?
                }
                Some(addr) => {
                    self.clients
                        .merkle_trees(host, addr, tenant, batch, view.ring.version(), CALL_TIMEOUT)
                        .await?
                }
            };
            trees.extend(got);
            if rest.is_empty() {
                return Ok((trees, dropped));
            }
        }
    }

    /// Step 1's drops: the newest drop of each tenant any reachable replica holds goes to the
    /// replicas (of any range this node replicates) that hold an older one or none. Returns
    /// the newest drop of each tenant.
    async fn send_newest_drops(
        &self,
        view: &ClusterView,
        groups: &BTreeMap<Vec<HostId>, Vec<TokenRange>>,
        tenant: Option<&str>,
        preview: bool,
        report: &mut RepairReport,
    ) -> BTreeMap<String, u64> {
        let hosts: BTreeSet<HostId> = groups.keys().flatten().copied().collect();
        let mut held: BTreeMap<HostId, BTreeMap<String, u64>> = BTreeMap::new();
        for host in hosts {
            if let Ok((_, drops)) = self.trees(view, host, tenant, &[]).await {
                held.insert(host, drops.into_iter().map(|d| (d.tenant, d.ts)).collect());
            }
        }
        let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
        for drops in held.values() {
            for (tenant, ts) in drops {
                let kept = newest.entry(tenant).or_default();
                *kept = (*kept).max(*ts);
            }
        }
        for (host, drops) in &held {
            let missing: Vec<DroppedTenant> = newest
                .iter()
                .filter(|(tenant, ts)| drops.get(**tenant).is_none_or(|held| held < *ts))
                .map(|(tenant, ts)| DroppedTenant {
                    tenant: (*tenant).to_owned(),
                    ts: *ts,
                })
                .collect();
            if missing.is_empty() {
                continue;
            }
            let count = missing.len() as u64;
            if preview {
                report.drops_sent += count;
                continue;
            }
            match self
                .coordinator
                .send_repair(
                    *host,
                    &ReplicaMutation {
                        drops: missing,
                        cells: Vec::new(),
                    },
                )
                .await
            {
                Ok(()) => report.drops_sent += count,
                Err(error) => report.failures.push(error.to_string()),
            }
        }
        newest
            .into_iter()
            .map(|(tenant, ts)| (tenant.to_owned(), ts))
            .collect()
    }

    /// Steps 1 to 3 for the ranges of one replica set (`dropped`: the newest drop of each
    /// tenant; `ranges_done`: ranges of the groups before it, for the progress shown).
    #[allow(clippy::too_many_arguments)]
    async fn repair_group(
        &self,
        view: &ClusterView,
        replicas: &[HostId],
        ranges: &[TokenRange],
        options: &RepairOptions,
        dropped: &BTreeMap<String, u64>,
        ranges_done: u64,
        report: &mut RepairReport,
    ) -> Result<(), ClusterError> {
        let tenant = options.tenant.as_deref();
        // Step 1: the roots.
        let roots: Vec<TreeShape> = ranges
            .iter()
            .map(|r| TreeShape {
                span: r.span(),
                depth: 0,
            })
            .collect();
        let mut by_replica = Vec::with_capacity(replicas.len());
        for host in replicas {
            by_replica.push(self.trees(view, *host, tenant, &roots).await?.0);
        }
        let shapes: Vec<TreeShape> = roots
            .iter()
            .enumerate()
            .filter(|(i, _)| by_replica.iter().any(|t| t[*i] != by_replica[0][*i]))
            .map(|(i, root)| TreeShape {
                span: root.span,
                depth: depth_for(
                    by_replica
                        .iter()
                        .map(|t| t[i].partitions())
                        .max()
                        .unwrap_or(0),
                ),
            })
            .collect();
        if shapes.is_empty() {
            return Ok(());
        }
        report.ranges_differing += shapes.len() as u64;
        self.progress.record(RepairStep::Trees, ranges_done, report);
        // Step 2: the trees, compared top-down.
        let mut trees = Vec::with_capacity(replicas.len());
        for host in replicas {
            trees.push(self.trees(view, *host, tenant, &shapes).await?.0);
        }
        let mut sets: Vec<(TreeShape, BTreeSet<usize>)> = Vec::new();
        for (i, shape) in shapes.iter().enumerate() {
            let mut leaves = BTreeSet::new();
            for other in &trees[1..] {
                leaves.extend(trees[0][i].differing_leaves(&other[i])?);
            }
            report.leaves_differing += leaves.len() as u64;
            if !leaves.is_empty() {
                sets.push((*shape, leaves));
            }
        }
        // Step 3: the cells of the differing leaves, streamed, merged and sent.
        self.progress
            .record(RepairStep::Partitions, ranges_done, report);
        for spans in sync::leaf_spans(&sets, MAX_SPANS) {
            self.sync_spans(
                view,
                replicas,
                spans,
                tenant,
                dropped,
                options.preview,
                ranges_done,
                report,
            )
            .await?;
        }
        Ok(())
    }
}

/// The repair's metrics (docs/operations.md).
fn record(report: &RepairReport, preview: bool) {
    if preview {
        metrics::counter!("allidb_repairs_total", "outcome" => "preview").increment(1);
        return;
    }
    let outcome = if report.complete() {
        "ok"
    } else {
        "incomplete"
    };
    metrics::counter!("allidb_repairs_total", "outcome" => outcome).increment(1);
    metrics::counter!("allidb_repair_ranges_total").increment(report.ranges);
    metrics::counter!("allidb_repair_partitions_repaired_total")
        .increment(report.partitions_repaired);
    metrics::counter!("allidb_repair_cells_streamed_total").increment(report.cells_streamed);
    metrics::counter!("allidb_repair_bytes_streamed_total").increment(report.bytes_streamed);
    if report.complete() {
        metrics::gauge!("allidb_repair_last_success_timestamp_seconds").set(unix_secs() as f64);
    }
}

/// Seconds since the Unix epoch (0 if the clock reads earlier).
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
