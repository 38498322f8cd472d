//! Partition reads waiting for one peer, sent as one `ReadPartitions` call: a put of 64 entities
//! at QUORUM reads 64 partitions on the same replica at the same moment, and concurrent
//! requests read on the same replicas, so one call carries them all instead of one round trip
//! each.
//!
//! How reads are grouped: a task per peer takes the first read waiting, yields once so the
//! rest of a burst (the reads of one batch are queued in one poll) can join it, then takes
//! every read waiting, up to [`MAX_PARTITIONS_PER_READ`]. At most [`CALLS_IN_FLIGHT`] calls
//! per peer are outstanding; reads queued meanwhile go out together in the next call. A lone
//! read is sent at once: grouping adds no wait of its own.
//!
//! Invariants: every queued read gets exactly one answer (its cells, or why not), within the
//! caller's timeout; a replica that answers a prefix of a call (its reply size budget) is
//! asked again for the rest. At most [`MAX_WAITING`] reads wait for one peer: past that a read
//! fails at once (the peer is too slow to count on), so a stalled peer cannot grow the queue
//! without bound. A read whose caller gave up (its timeout passed) is dropped, never sent.
//!
//! Must never: answer a read with another partition's cells (answers are matched by position
//! and a reply longer than its request is refused), or send a call without a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

use super::{Stamp, answered};
use crate::ClusterError;
use crate::proto;
use crate::proto::replica_client::ReplicaClient;
use crate::replica::MAX_PARTITIONS_PER_READ;
use crate::ring::HostId;

/// Most `ReadPartitions` calls outstanding to one peer.
pub(super) const CALLS_IN_FLIGHT: usize = 16;

/// Most reads waiting to be sent to one peer (as many as its calls in flight carry).
pub(super) const MAX_WAITING: usize = CALLS_IN_FLIGHT * MAX_PARTITIONS_PER_READ;

/// What a read is answered with.
type Answer = Result<proto::PartitionCells, ClusterError>;

/// One read waiting to be sent.
struct QueuedRead {
    partition: proto::PartitionRead,
    ring_version: u64,
    timeout: Duration,
    answer: oneshot::Sender<Answer>,
}

/// The queue of one peer; cheap to clone. Its task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub(super) struct ReadQueue {
    addr: SocketAddr,
    reads: mpsc::Sender<QueuedRead>,
}

/// Where a queue's calls go.
struct Peer {
    stamp: Stamp,
    channel: Channel,
    recipient: HostId,
    addr: SocketAddr,
}

impl ReadQueue {
    /// Starts the queue of the replica `recipient` at `addr` (on the current runtime).
    pub(super) fn spawn(
        stamp: Stamp,
        channel: Channel,
        recipient: HostId,
        addr: SocketAddr,
    ) -> Self {
        let (reads, queued) = mpsc::channel(MAX_WAITING);
        let peer = Arc::new(Peer {
            stamp,
            channel,
            recipient,
            addr,
        });
        tokio::spawn(send_queued(peer, queued));
        Self { addr, reads }
    }

    /// Reads `partition` on the peer, within `timeout`.
    pub(super) async fn read(
        &self,
        partition: proto::PartitionRead,
        ring_version: u64,
        timeout: Duration,
    ) -> Answer {
        let (answer, answered) = oneshot::channel();
        let read = QueuedRead {
            partition,
            ring_version,
            timeout,
            answer,
        };
        let gone = || ClusterError::Peer {
            addr: self.addr,
            reason: "the read queue of this peer stopped".to_owned(),
        };
        self.reads.try_send(read).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ClusterError::Peer {
                addr: self.addr,
                reason: format!(
                    "{} reads already wait for this peer; it is not keeping up",
                    self.reads.max_capacity()
                ),
            },
            mpsc::error::TrySendError::Closed(_) => gone(),
        })?;
        match tokio::time::timeout(timeout, answered).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(gone())),
            Err(_) => Err(ClusterError::Peer {
                addr: self.addr,
                reason: format!("no answer within {timeout:?} (waiting to be sent)"),
            }),
        }
    }
}

/// The queue's task: groups waiting reads into calls (see the module doc).
async fn send_queued(peer: Arc<Peer>, mut queued: mpsc::Receiver<QueuedRead>) {
    let in_flight = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    loop {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(first) = queued.recv().await else {
            return;
        };
        tokio::task::yield_now().await;
        let mut reads = vec![first];
        while reads.len() < MAX_PARTITIONS_PER_READ {
            match queued.try_recv() {
                Ok(read) => reads.push(read),
                Err(_) => break,
            }
        }
        let reads = still_wanted(reads);
        if reads.is_empty() {
            continue;
        }
        let peer = peer.clone();
        tokio::spawn(async move {
            peer.send(reads).await;
            drop(permit);
        });
    }
}

/// The reads whose callers still wait for an answer.
fn still_wanted(reads: Vec<QueuedRead>) -> Vec<QueuedRead> {
    let before = reads.len();
    let wanted: Vec<QueuedRead> = reads
        .into_iter()
        .filter(|read| !read.answer.is_closed())
        .collect();
    let abandoned = before - wanted.len();
    if abandoned > 0 {
        metrics::counter!("allidb_cluster_reads_abandoned_total").increment(abandoned as u64);
    }
    wanted
}

impl Peer {
    /// Sends `reads` as one call, and again for the part a reply left out, answering each.
    async fn send(&self, mut reads: Vec<QueuedRead>) {
        while !reads.is_empty() {
            let ring_version = reads.iter().map(|r| r.ring_version).max().unwrap_or(0);
            let timeout = reads
                .iter()
                .map(|r| r.timeout)
                .max()
                .expect("reads is not empty");
            let message = proto::ReadPartitionsRequest {
                header: self.stamp.header(ring_version, self.recipient),
                partitions: reads.iter().map(|r| r.partition.clone()).collect(),
            };
            let mut client = ReplicaClient::new(self.channel.clone())
                .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
            let call = client.read_partitions(self.stamp.request(message, timeout));
            let reply = answered(self.addr, timeout, call).await.and_then(|reply| {
                match reply.partitions.len() {
                    0 => Err("answered none of the partitions asked for"),
                    n if n > reads.len() => Err("answered more partitions than asked for"),
                    _ => Ok(reply.partitions),
                }
                .map_err(|reason| ClusterError::Peer {
                    addr: self.addr,
                    reason: reason.to_owned(),
                })
            });
            let partitions = match reply {
                Ok(partitions) => partitions,
                Err(error) => {
                    let reason = match error {
                        ClusterError::Peer { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    for read in reads {
                        let _ = read.answer.send(Err(ClusterError::Peer {
                            addr: self.addr,
                            reason: reason.clone(),
                        }));
                    }
                    return;
                }
            };
            let rest = reads.split_off(partitions.len());
            for (read, cells) in reads.into_iter().zip(partitions) {
                let answer = match cells.error.is_empty() {
                    true => Ok(cells),
                    false => Err(ClusterError::Peer {
                        addr: self.addr,
                        reason: cells.error,
                    }),
                };
                let _ = read.answer.send(answer);
            }
            reads = still_wanted(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(timeout: Duration) -> (QueuedRead, oneshot::Receiver<Answer>) {
        let (answer, answered) = oneshot::channel();
        let read = QueuedRead {
            partition: proto::PartitionRead::default(),
            ring_version: 0,
            timeout,
            answer,
        };
        (read, answered)
    }

    #[test]
    fn reads_whose_callers_gave_up_are_not_sent() {
        let (kept, _waiting) = queued(Duration::from_secs(1));
        let (dropped, gave_up) = queued(Duration::from_secs(1));
        drop(gave_up);
        let wanted = still_wanted(vec![kept, dropped]);
        assert_eq!(wanted.len(), 1);
        assert!(!wanted[0].answer.is_closed());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_a_read_at_once() {
        // A queue whose task is not running: nothing is taken from it.
        let (reads, _queued) = mpsc::channel(2);
        let queue = ReadQueue {
            addr: "127.0.0.1:1".parse().unwrap(),
            reads,
        };
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    queue
                        .read(proto::PartitionRead::default(), 0, Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        while queue.reads.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = queue
            .read(proto::PartitionRead::default(), 0, Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("2 reads already wait"), "{refused}");
        for read in waiting {
            read.abort();
        }
    }
}
