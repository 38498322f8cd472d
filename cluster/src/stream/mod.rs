//! Range streaming (DESIGN.md §6, docs/cluster.md "Range streaming"): every cell of some token
//! ranges sent from a replica that holds them to this node, chunk by chunk, resumable after a
//! crash of either side and throttled. What rebuilds a replica today and moves ranges when the
//! topology changes.
//!
//! - [`session`]: the receiving session as persisted (its groups and their positions).
//! - [`chunk`]: the source's side: one chunk from a snapshot pass (pure).
//! - [`wire`]: the `StreamRange` messages.
//! - [`pacing`]: a chunk applied at the pace of this node's indexer.
//! - [`throttle`]: the bandwidth cap.
//! - [`rebuild`]: `allidb cluster rebuild`, a session over every range this node replicates.
//!
//! The receiver pulls, [`StreamOptions::concurrency`] groups of ranges at once (each from its
//! own sources, so one group's chunk is fetched and prepared while another's commits): for each
//! group it asks a source for the chunk after its position (and, while it applies that chunk,
//! for the next one, read ahead from the position the chunk ends at), applies the chunk's
//! tenant drops and then its cells through the replica batch path with their own timestamps
//! (so the indexes follow and a repeated chunk changes nothing) in pieces its own indexer has
//! room for ([`pacing`]: the stream goes at the indexer's pace and client writes keep half of
//! each tail), syncs them, and only then records the new position. The source keeps nothing between chunks, so a restart of either
//! side, or a switch to another replica of the same ranges, goes on from the recorded position.
//! While a session runs, the receiver's periodic index dump waits
//! ([`allidb_index::UnifiedStore::hold_periodic_dumps`]; its WAL-size dump does not).
//!
//! Invariants: a position is recorded only after the cells before it are durable here; writes
//! go on on both sides meanwhile (a stream is not a snapshot: what is written during it reaches
//! this node through the normal write path or a later repair); the session file only moves
//! forward (written under the session's lock). Must never: hold more than two chunks in memory
//! per group streamed at once (the one applied and the one read ahead), or write a cell with a
//! timestamp other than the one it was read with.

pub mod chunk;
pub mod pacing;
pub mod rebuild;
pub mod session;
pub mod throttle;
pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

pub use throttle::Throttle;

use crate::ClusterError;
use crate::cells::ReplicaMutation;
use crate::hints::dispatcher::peer_label;
use crate::membership::ClusterView;
use crate::peer_client::PeerClients;
use crate::replica::LocalReplica;
use crate::ring::{HostId, TokenSpan};
use chunk::{Chunk, MAX_CHUNK_BYTES};
use session::{StreamGroup, StreamPurpose, StreamSession};
use wire::ChunkRequest;

/// Asked before every chunk of a stream: `Err(why)` once the stream is no longer wanted.
pub type StillWanted<'a> = &'a (dyn Fn() -> Result<(), String> + Send + Sync);

/// How a node streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Most cell bytes received per second by one session (`cluster.stream_bytes_per_sec`;
    /// 0: no cap).
    pub bytes_per_sec: u64,
    /// Deadline of one chunk call.
    pub call_timeout: Duration,
    /// The chunk budget asked for (at most [`MAX_CHUNK_BYTES`]).
    pub chunk_bytes: usize,
    /// Groups of one session streamed at once (`cluster.stream_concurrency`; 0 counts as 1).
    pub concurrency: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            bytes_per_sec: 64 << 20,
            call_timeout: Duration::from_secs(60),
            chunk_bytes: MAX_CHUNK_BYTES,
            concurrency: 3,
        }
    }
}

/// What one run of a session received, and what it could not finish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRun {
    /// Partitions received in this run.
    pub partitions: u64,
    /// Cells received in this run.
    pub cells: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Groups left unfinished, each with why (their position is kept for the next run).
    pub unfinished: Vec<String>,
}

/// What [`RangeStream::run_plan`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanRun {
    /// The session (32 hex digits).
    pub session: String,
    /// Whether it went on from an interrupted session's positions.
    pub resumed: bool,
    /// What this run received and what it left unfinished.
    pub run: StreamRun,
}

/// Receives range streams into this node; cheap to clone.
#[derive(Clone, Debug)]
pub struct RangeStream {
    local: LocalReplica,
    clients: Arc<PeerClients>,
    view: watch::Receiver<Arc<ClusterView>>,
    data_dir: PathBuf,
    options: StreamOptions,
}

/// A session being streamed, shared by the groups streamed at once.
struct Progress<'a> {
    /// Groups streamed at once.
    at_once: usize,
    /// The session: its groups' positions and counters (locked while its file is written).
    session: tokio::sync::Mutex<&'a mut StreamSession>,
    /// What this run received.
    run: parking_lot::Mutex<StreamRun>,
    /// The session's bandwidth cap, over all its groups.
    throttle: parking_lot::Mutex<Throttle>,
}

impl RangeStream {
    /// Streams into `local`, persisting sessions under `data_dir`.
    pub fn new(
        local: LocalReplica,
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        data_dir: PathBuf,
        options: StreamOptions,
    ) -> Self {
        Self {
            local,
            clients,
            view,
            data_dir,
            options,
        }
    }

    /// This node.
    pub fn host(&self) -> HostId {
        self.local.host()
    }

    /// The data dir sessions are persisted under.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The current membership view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// Streams `groups` for `purpose` (of `tenant` only, when given; for topology `movement`,
    /// when given, which every chunk request names) in a persisted session: an interrupted
    /// session of the same purpose, movement, tenant, ranges and sources is resumed from its
    /// positions, any other stored session is replaced (a new attempt of a movement starts
    /// over: what was written meanwhile reached no replica it did not stream to). The session file is removed once every
    /// group is done. `wanted` is asked before every chunk: once it answers why the stream is
    /// no longer wanted (the movement it serves ended), no further chunk is asked for.
    pub async fn run_plan(
        &self,
        purpose: StreamPurpose,
        tenant: Option<String>,
        movement: Option<u64>,
        groups: Vec<StreamGroup>,
        wanted: StillWanted<'_>,
    ) -> Result<PlanRun, ClusterError> {
        let task = |e: tokio::task::JoinError| {
            ClusterError::Protocol(format!("stream session file task: {e}"))
        };
        let data_dir = self.data_dir.clone();
        let stored = tokio::task::spawn_blocking(move || StreamSession::load(&data_dir))
            .await
            .map_err(task)??;
        let (mut session, resumed) = match stored {
            Some(stored) if resumes(&stored, purpose, movement, tenant.as_deref(), &groups) => {
                (stored, true)
            }
            stored => {
                if let Some(stored) = stored {
                    tracing::info!(
                        session = stored.id_hex(),
                        purpose = stored.purpose.as_str(),
                        "an interrupted stream session does not match this one; starting over"
                    );
                }
                let session = StreamSession {
                    id: rand::random(),
                    purpose,
                    movement,
                    tenant,
                    groups,
                    partitions: 0,
                    cells: 0,
                    bytes: 0,
                };
                let (stored, data_dir) = (session.clone(), self.data_dir.clone());
                tokio::task::spawn_blocking(move || stored.store(&data_dir))
                    .await
                    .map_err(task)??;
                (session, false)
            }
        };
        tracing::info!(
            session = session.id_hex(),
            purpose = purpose.as_str(),
            resumed,
            groups = session.groups.len(),
            "stream session started"
        );
        // The receive's writes would make a periodic index dump taken in its middle stale by
        // its end, and the dump's CPU would slow it: the dump waits for the session's end.
        let _dumps_held = self.local.store().hold_periodic_dumps();
        let run = self.run(&mut session, wanted).await?;
        let outcome = if session.finished() {
            let data_dir = self.data_dir.clone();
            tokio::task::spawn_blocking(move || StreamSession::remove(&data_dir))
                .await
                .map_err(task)??;
            "complete"
        } else {
            "incomplete"
        };
        metrics::counter!(
            "allidb_stream_sessions_total",
            "purpose" => purpose.as_str(),
            "outcome" => outcome
        )
        .increment(1);
        Ok(PlanRun {
            session: session.id_hex(),
            resumed,
            run,
        })
    }

    /// Streams every unfinished group of `session`, [`StreamOptions::concurrency`] groups at
    /// once, recording each chunk's position in the session file as it goes. A group no source
    /// can serve is left unfinished (reported, in group order) and the others go on.
    async fn run(
        &self,
        session: &mut StreamSession,
        wanted: StillWanted<'_>,
    ) -> Result<StreamRun, ClusterError> {
        let unfinished: Vec<usize> = (0..session.groups.len())
            .filter(|group| !session.groups[*group].done)
            .collect();
        let at_once = self.options.concurrency.clamp(1, unfinished.len().max(1));
        let progress = Progress {
            at_once,
            session: tokio::sync::Mutex::new(session),
            run: parking_lot::Mutex::new(StreamRun::default()),
            throttle: parking_lot::Mutex::new(Throttle::new(self.options.bytes_per_sec)),
        };
        let outcomes: Vec<(usize, Result<(), ClusterError>)> =
            futures_util::stream::iter(unfinished)
                .map(|group| {
                    let progress = &progress;
                    async move { (group, self.stream_group(progress, group, wanted).await) }
                })
                .buffered(at_once)
                .collect()
                .await;
        let session = progress.session.into_inner();
        let mut run = progress.run.into_inner();
        for (group, outcome) in outcomes {
            if let Err(reason) = outcome {
                let spans = describe(&session.groups[group].spans);
                tracing::warn!(session = session.id_hex(), %spans, %reason, "range stream stopped");
                run.unfinished.push(format!("{spans}: {reason}"));
            }
        }
        Ok(run)
    }

    /// Streams one group of the session in `progress` to its end: chunk after chunk, each
    /// applied, then its position recorded (the session file written under the session's lock,
    /// so the file only moves forward), then throttled. The next chunk is read while one is
    /// applied (it starts after the chunk's own position, which the source gave with it), so
    /// the source's scan overlaps this node's commit; a chunk is only applied while the stream
    /// is still wanted, and a position only recorded once its chunk is applied.
    async fn stream_group(
        &self,
        progress: &Progress<'_>,
        group: usize,
        wanted: StillWanted<'_>,
    ) -> Result<(), ClusterError> {
        let (mut request, sources, purpose) = {
            let session = progress.session.lock().await;
            let state = &session.groups[group];
            let request = ChunkRequest {
                session: session.id,
                movement: session.movement,
                tenant: session.tenant.clone(),
                spans: state.spans.clone(),
                after: state.after.clone(),
                max_bytes: self.options.chunk_bytes.clamp(1, MAX_CHUNK_BYTES),
                repair: false,
            };
            (request, state.sources.clone(), session.purpose.as_str())
        };
        wanted().map_err(ClusterError::Unavailable)?;
        let mut fetched = self.fetch(&sources, &request).await;
        loop {
            // Before the chunk read ahead is looked at: a stream no longer wanted says why, not
            // how its last read went.
            wanted().map_err(ClusterError::Unavailable)?;
            let (chunk, drops) = fetched?;
            let Chunk {
                cells,
                partitions,
                bytes,
                position,
                done,
            } = chunk;
            // A source that neither finishes nor moves on would be asked the same chunk forever.
            let advanced = match (&position, &request.after) {
                (Some(next), Some(after)) => next > after,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !done && !advanced {
                return Err(ClusterError::Protocol(format!(
                    "the source answered a chunk that neither ends the stream nor moves past \
                     {:?}",
                    request.after
                )));
            }
            let cell_count = cells.len() as u64;
            let apply = pacing::apply_paced(
                &self.local,
                ReplicaMutation { drops, cells },
                progress.at_once,
            );
            // `advanced` holds when not done: the next chunk starts after this one's position.
            let next = (!done).then(|| ChunkRequest {
                after: position.clone(),
                ..request.clone()
            });
            let (applied, next_fetched) = match &next {
                Some(next) => {
                    let (applied, fetched) = tokio::join!(apply, self.fetch(&sources, next));
                    (applied, Some(fetched))
                }
                None => (apply.await, None),
            };
            let waited = applied?;
            metrics::histogram!("allidb_stream_index_wait_seconds", "purpose" => purpose)
                .record(waited.as_secs_f64());
            {
                let mut session = progress.session.lock().await;
                let state = &mut session.groups[group];
                if position.is_some() {
                    state.after = position;
                }
                state.done = done;
                session.partitions += partitions;
                session.cells += cell_count;
                session.bytes += bytes;
                let stored = StreamSession::clone(&session);
                let data_dir = self.data_dir.clone();
                tokio::task::spawn_blocking(move || stored.store(&data_dir))
                    .await
                    .map_err(|e| {
                        ClusterError::Protocol(format!("stream session write task: {e}"))
                    })??;
            }
            {
                let mut run = progress.run.lock();
                run.partitions += partitions;
                run.cells += cell_count;
                run.bytes += bytes;
            }
            metrics::counter!("allidb_stream_chunks_total", "purpose" => purpose).increment(1);
            metrics::counter!("allidb_stream_received_cells_total", "purpose" => purpose)
                .increment(cell_count);
            metrics::counter!("allidb_stream_received_bytes_total", "purpose" => purpose)
                .increment(bytes);
            let (Some(next), Some(next_fetched)) = (next, next_fetched) else {
                return Ok(());
            };
            let pause = progress.throttle.lock().pause(bytes);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            request = next;
            fetched = next_fetched;
        }
    }

    /// The next chunk from the first of `sources` that answers, with the source's tenant drops
    /// when it is a group's first chunk.
    async fn fetch(
        &self,
        sources: &[HostId],
        request: &ChunkRequest,
    ) -> Result<(Chunk, Vec<crate::cells::DroppedTenant>), ClusterError> {
        let view = self.view();
        let mut failed: BTreeMap<HostId, String> = BTreeMap::new();
        for source in sources {
            let answer = match view.peer_address(*source) {
                Ok(addr) => {
                    self.clients
                        .stream_range(
                            *source,
                            addr,
                            request,
                            view.ring.version(),
                            self.options.call_timeout,
                        )
                        .await
                }
                Err(error) => Err(error),
            };
            match answer {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    failed.insert(*source, error.to_string());
                }
            }
        }
        let reasons: Vec<String> = failed
            .iter()
            .map(|(host, reason)| format!("{} ({reason})", peer_label(&view, *host)))
            .collect();
        Err(ClusterError::Unavailable(format!(
            "no replica could stream them: {}",
            if reasons.is_empty() {
                "no other replica holds them".to_owned()
            } else {
                reasons.join(", ")
            }
        )))
    }
}

/// `token range (a, b]`, or `N token ranges (a, b], (c, d], (e, f] and M more`, for logs and
/// reports.
pub fn describe(spans: &[TokenSpan]) -> String {
    const LISTED: usize = 3;
    let listed: Vec<String> = spans
        .iter()
        .take(LISTED)
        .map(|s| format!("({}, {}]", s.start, s.end))
        .collect();
    match spans.len() {
        1 => format!("token range {}", listed[0]),
        n if n <= LISTED => format!("{n} token ranges {}", listed.join(", ")),
        n => format!(
            "{n} token ranges {} and {} more",
            listed.join(", "),
            n - LISTED
        ),
    }
}

/// Whether `stored` is an interrupted session of the same purpose, movement and tenant over the
/// same ranges and sources as `planned`.
fn resumes(
    stored: &StreamSession,
    purpose: StreamPurpose,
    movement: Option<u64>,
    tenant: Option<&str>,
    planned: &[StreamGroup],
) -> bool {
    let shape = |groups: &[StreamGroup]| -> Vec<(Vec<TokenSpan>, Vec<HostId>)> {
        groups
            .iter()
            .map(|g| (g.spans.clone(), g.sources.clone()))
            .collect()
    };
    stored.purpose == purpose
        && stored.movement == movement
        && !stored.finished()
        && stored.tenant.as_deref() == tenant
        && shape(&stored.groups) == shape(planned)
}
