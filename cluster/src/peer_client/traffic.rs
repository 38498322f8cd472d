//! The bytes a cluster-wide read's calls to other nodes send and receive, for the read's
//! profile: a tally set by [`measured`] around one call's future, added to by the peer client
//! as the call's request goes out and its reply arrives.
//!
//! Counts protobuf message bytes (the request and the reply as encoded), not gRPC framing or
//! HTTP/2 headers. Outside a [`measured`] future nothing is counted and no size is computed.
//! Invariants: a tally belongs to one future (concurrent measured calls in one task each
//! count their own). Must never: fail or delay a call.

use std::cell::Cell;
use std::future::Future;

use prost::Message;

/// Bytes the calls of one measured future sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Request messages, encoded.
    pub sent: u64,
    /// Reply messages, encoded.
    pub received: u64,
}

tokio::task_local! {
    static TALLY: Cell<Traffic>;
}

/// Runs `call`, tallying the bytes of the peer calls it makes.
pub(crate) async fn measured<F: Future>(call: F) -> (F::Output, Traffic) {
    TALLY
        .scope(Cell::new(Traffic::default()), async move {
            let output = call.await;
            (output, TALLY.with(Cell::get))
        })
        .await
}

/// The encoded size of `request` when a measured future sends it, else 0 (not computed).
pub(super) fn request_size(request: &impl Message) -> u64 {
    TALLY
        .try_with(|_| request.encoded_len() as u64)
        .unwrap_or(0)
}

/// Adds a call that sent `sent` bytes ([`request_size`]) and got `reply` to the tally of the
/// measured future running it, if any.
pub(super) fn add(sent: u64, reply: &impl Message) {
    let _outside_a_measured_future = TALLY.try_with(|tally| {
        let mut traffic = tally.get();
        traffic.sent += sent;
        traffic.received += reply.encoded_len() as u64;
        tally.set(traffic);
    });
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;

    use super::*;
    use crate::proto;

    fn reply(ids: usize) -> proto::ScanIdsResponse {
        proto::ScanIdsResponse {
            entity_ids: (0..ids).map(|i| format!("e{i}")).collect(),
        }
    }

    #[tokio::test]
    async fn each_measured_future_counts_its_own_calls_and_nothing_is_counted_outside() {
        let request = proto::ScanIdsRequest {
            tenant: "t".to_owned(),
            limit: 7,
            ..Default::default()
        };
        assert_eq!(request_size(&request), 0, "not measured: not computed");
        add(10, &reply(3));
        let call = |calls: usize, ids: usize| {
            let request = request.clone();
            async move {
                for _ in 0..calls {
                    tokio::task::yield_now().await;
                    add(request_size(&request), &reply(ids));
                }
                calls
            }
        };
        let measured_calls = join_all([measured(call(1, 2)), measured(call(3, 5))]).await;
        let one = request.encoded_len() as u64;
        assert_eq!(
            measured_calls,
            [
                (
                    1,
                    Traffic {
                        sent: one,
                        received: reply(2).encoded_len() as u64
                    }
                ),
                (
                    3,
                    Traffic {
                        sent: 3 * one,
                        received: 3 * reply(5).encoded_len() as u64
                    }
                ),
            ]
        );
    }
}
