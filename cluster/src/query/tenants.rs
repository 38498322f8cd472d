//! Ring-wide tenant figures: `ListTenants` and `GetTenantStats` sent to any node of a ring
//! answer for the whole ring, counting each entity once however many replicas hold it.
//!
//! How: every token range of the ring is assigned to exactly one live replica (a host of the
//! covering set first, [`super::cover::owner_of`]); each assigned host is asked once
//! (`TenantCounts`) for the live entities, vectors and bytes of the partitions it holds in its
//! assigned ranges, found by hashing each entity id with the ring's partitioner
//! ([`crate::ring::token`]); the answers are summed. An entity's token falls in exactly one
//! range, so the sum counts it once. A host that fails during the request has its ranges
//! assigned to another live replica (up to three rounds). With per-node detail every node of
//! the ring is also asked for what it holds in every range (its local figures, replicas
//! counted again), a node down or failing listed with why.
//!
//! Invariants: a count is that of one replica per range (ONE): a replica that missed writes
//! counts what it holds; `bytes` sums one replica's live cells per range (the data set's size
//! without replication); `dimension` is the largest any replica reports (they agree unless
//! replicas diverged).
//! Must never: sum the answers of two replicas of one range, or answer without every range
//! (a range without a live replica fails `UNAVAILABLE` naming the ranges and the hosts down).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use allidb_index::TenantStats;
use allidb_index::vector::Metric;
use futures_util::future::join_all;

use super::{ClusterQuery, Fanout, MAX_ATTEMPTS, ReadOptions, host_failure};
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;
use crate::hints::dispatcher::peer_label;
use crate::proto;
use crate::ring::{HostId, TokenRange, TokenSpan};
use crate::stream::wire::{MAX_SPANS, span_from_proto, span_to_proto};

/// What a `TenantCounts` call asks of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRequest {
    /// Only this tenant (`None`: every tenant).
    pub tenant: Option<String>,
    /// The token ranges counted (disjoint).
    pub spans: Vec<TokenSpan>,
    /// Also what the host holds in every range.
    pub node_totals: bool,
}

/// A host's answer to a [`CountRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// Per tenant (in tenant order), the partitions in the spans asked.
    pub in_spans: Vec<TenantStats>,
    /// Per tenant, everything the host holds (when asked).
    pub node: Option<Vec<TenantStats>>,
}

/// The ring-wide figures of the tenants asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RingTenants {
    /// Per tenant in tenant order, each entity counted once.
    pub tenants: Vec<TenantStats>,
    /// With per-node detail: every node of the ring, in name order (else empty).
    pub nodes: Vec<NodeTenants>,
}

/// What one node holds of the tenants asked for (per-node detail).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTenants {
    /// The node's name.
    pub node: String,
    /// Its figures over every range it holds, per tenant in tenant order; or why it did not
    /// answer.
    pub tenants: Result<Vec<TenantStats>, String>,
}

impl ClusterQuery {
    /// The figures of `tenant` (`None`: of every tenant) over the whole ring, each entity
    /// counted once, with every node's own figures when `per_node` (see the module doc).
    pub async fn tenants(
        &self,
        tenant: Option<&str>,
        per_node: bool,
    ) -> Result<RingTenants, ClusterError> {
        if let Some(tenant) = tenant {
            allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        }
        metrics::counter!("allidb_cluster_queries_total", "kind" => "tenants").increment(1);
        // The fan-out's tenant names the partitions of point lookups, which this read makes
        // none of.
        let fanout = self.fanout(
            tenant.unwrap_or_default(),
            ReadOptions::at(ConsistencyLevel::One),
        );
        let (tenants, nodes) = fanout.tenant_counts(tenant, per_node).await?;
        let mut nodes: Vec<NodeTenants> = nodes
            .into_iter()
            .map(|(host, tenants)| NodeTenants {
                node: peer_label(&fanout.view, host),
                tenants,
            })
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(RingTenants { tenants, nodes })
    }
}

/// Adds `figures` (of disjoint ranges) to `sums`.
fn add(sums: &mut BTreeMap<String, TenantStats>, figures: Vec<TenantStats>) {
    for figures in figures {
        match sums.entry(figures.tenant.clone()) {
            Entry::Vacant(entry) => {
                entry.insert(figures);
            }
            Entry::Occupied(entry) => {
                let sum = entry.into_mut();
                sum.entities += figures.entities;
                sum.vectors += figures.vectors;
                sum.bytes += figures.bytes;
                sum.dimension = sum.dimension.max(figures.dimension);
            }
        }
    }
}

/// Per host asked: its figures over every range, or why it has none.
type NodeFigures = BTreeMap<HostId, Result<Vec<TenantStats>, String>>;

impl Fanout<'_> {
    /// The ring-wide sums of `tenant` (`None`: every tenant) and, when `per_node`, every
    /// host's own figures (see the module doc).
    pub(super) async fn tenant_counts(
        &self,
        tenant: Option<&str>,
        per_node: bool,
    ) -> Result<(Vec<TenantStats>, NodeFigures), ClusterError> {
        let ring = self.view.ring.clone();
        let mut pending: Vec<TokenRange> = ring.ranges();
        let mut sums: BTreeMap<String, TenantStats> = BTreeMap::new();
        let mut nodes = NodeFigures::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let preferred: BTreeSet<HostId> = self.cover(1)?.hosts.into_iter().collect();
            let mut assigned = self.assign(pending.drain(..), &preferred)?;
            if per_node {
                for host in ring.hosts() {
                    if !self.live(*host) {
                        nodes
                            .entry(*host)
                            .or_insert_with(|| Err("down: not asked".to_owned()));
                    } else if !nodes.contains_key(host) {
                        assigned.entry(*host).or_default();
                    }
                }
            }
            let asked: Vec<(HostId, Vec<TokenRange>, CountRequest)> = assigned
                .into_iter()
                .map(|(host, ranges)| {
                    let request = CountRequest {
                        tenant: tenant.map(str::to_owned),
                        spans: ranges.iter().map(TokenRange::span).collect(),
                        node_totals: per_node && !nodes.contains_key(&host),
                    };
                    (host, ranges, request)
                })
                .collect();
            let calls = asked.iter().map(|(host, _, request)| {
                let call = self.replicas.tenant_counts(*host, request);
                self.timed_rows(*host, "tenant_counts", call, |c: &Counts| c.in_spans.len())
            });
            let answers = join_all(calls).await;
            self.report.lock().round();
            for ((host, ranges, _), answer) in asked.into_iter().zip(answers) {
                match answer {
                    Ok(counts) => {
                        add(&mut sums, counts.in_spans);
                        if let Some(node) = counts.node {
                            nodes.insert(host, Ok(node));
                        }
                    }
                    // A host asked only for its own figures: its failure costs only its detail.
                    Err(error) if host_failure(&error) && ranges.is_empty() => {
                        self.failed.lock().insert(host);
                        nodes.insert(host, Err(error.to_string()));
                    }
                    Err(error) if host_failure(&error) && attempt < MAX_ATTEMPTS => {
                        self.failed.lock().insert(host);
                        if per_node {
                            nodes.entry(host).or_insert_with(|| Err(error.to_string()));
                        }
                        pending.extend(ranges);
                    }
                    Err(error) => return Err(error),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        Ok((sums.into_values().collect(), nodes))
    }
}

/// The wire form of a request (the header is the caller's).
pub(crate) fn request_to_proto(request: &CountRequest) -> proto::TenantCountsRequest {
    proto::TenantCountsRequest {
        header: None,
        tenant: request.tenant.clone().unwrap_or_default(),
        spans: request.spans.iter().map(span_to_proto).collect(),
        node_totals: request.node_totals,
    }
}

/// A request from its wire form, checked (the error names the field).
pub(crate) fn request_from_proto(
    request: proto::TenantCountsRequest,
) -> Result<CountRequest, ClusterError> {
    if request.spans.len() > MAX_SPANS {
        return Err(ClusterError::Protocol(format!(
            "spans: {} token ranges, at most {MAX_SPANS}",
            request.spans.len()
        )));
    }
    let tenant = match request.tenant.is_empty() {
        true => None,
        false => {
            allidb_storage::key::validate_tenant(&request.tenant)
                .map_err(|e| ClusterError::Protocol(format!("tenant: {e}")))?;
            Some(request.tenant)
        }
    };
    Ok(CountRequest {
        tenant,
        spans: request.spans.iter().map(span_from_proto).collect(),
        node_totals: request.node_totals,
    })
}

/// The wire form of one tenant's figures.
pub(crate) fn figures_to_proto(stats: &TenantStats) -> proto::TenantFigures {
    proto::TenantFigures {
        tenant: stats.tenant.clone(),
        entities: stats.entities as u64,
        vectors: stats.vectors as u64,
        dimension: stats
            .dimension
            .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX)),
        metric: stats.metric.name().to_owned(),
        bytes: stats.bytes,
    }
}

/// One tenant's figures from their wire form; `field` names them in an error (an unknown
/// metric).
pub(crate) fn figures_from_proto(
    figures: proto::TenantFigures,
    field: &str,
) -> Result<TenantStats, ClusterError> {
    let metric = Metric::from_name(&figures.metric)
        .map_err(|e| ClusterError::Protocol(format!("{field}.metric: {e}")))?;
    Ok(TenantStats {
        tenant: figures.tenant,
        entities: usize::try_from(figures.entities).unwrap_or(usize::MAX),
        vectors: usize::try_from(figures.vectors).unwrap_or(usize::MAX),
        dimension: (figures.dimension > 0).then_some(figures.dimension as usize),
        metric,
        bytes: figures.bytes,
    })
}

/// A reply from its wire form (`node` is present when the request asked for it).
pub(crate) fn counts_from_proto(
    reply: proto::TenantCountsResponse,
    node_totals: bool,
) -> Result<Counts, ClusterError> {
    let convert = |figures: Vec<proto::TenantFigures>, field: &str| {
        figures
            .into_iter()
            .enumerate()
            .map(|(i, f)| figures_from_proto(f, &format!("{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Counts {
        in_spans: convert(reply.in_spans, "in_spans")?,
        node: match node_totals {
            true => Some(convert(reply.node, "node")?),
            false => None,
        },
    })
}

/// The wire form of a reply.
pub(crate) fn counts_to_proto(counts: &Counts) -> proto::TenantCountsResponse {
    proto::TenantCountsResponse {
        in_spans: counts.in_spans.iter().map(figures_to_proto).collect(),
        node: counts.node.iter().flatten().map(figures_to_proto).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tenant: &str, entities: usize, dimension: Option<usize>) -> TenantStats {
        TenantStats {
            tenant: tenant.to_owned(),
            entities,
            vectors: entities / 2,
            dimension,
            metric: Metric::Cosine,
            bytes: entities as u64 * 10,
        }
    }

    #[test]
    fn sums_add_counts_per_tenant_and_keep_a_known_dimension() {
        let mut sums = BTreeMap::new();
        add(&mut sums, vec![stats("a", 4, None), stats("b", 2, Some(3))]);
        add(&mut sums, vec![stats("a", 6, Some(8))]);
        let a = &sums["a"];
        assert_eq!(
            (a.entities, a.vectors, a.bytes, a.dimension),
            (10, 5, 100, Some(8))
        );
        assert_eq!(sums["b"], stats("b", 2, Some(3)));
    }

    #[test]
    fn messages_round_trip_and_bad_fields_are_named() {
        let request = CountRequest {
            tenant: Some("t".to_owned()),
            spans: vec![TokenSpan { start: 5, end: 1 }],
            node_totals: true,
        };
        assert_eq!(
            request_from_proto(request_to_proto(&request)).unwrap(),
            request
        );
        let counts = Counts {
            in_spans: vec![stats("t", 3, Some(4))],
            node: Some(vec![stats("t", 9, Some(4))]),
        };
        assert_eq!(
            counts_from_proto(counts_to_proto(&counts), true).unwrap(),
            counts
        );

        let mut bad = request_to_proto(&request);
        bad.tenant = "bad\0tenant".to_owned();
        let error = request_from_proto(bad).unwrap_err().to_string();
        assert!(error.contains("tenant: "), "{error}");
        let mut bad = request_to_proto(&request);
        bad.spans = vec![proto::TokenSpan { start: 0, end: 0 }; MAX_SPANS + 1];
        let error = request_from_proto(bad).unwrap_err().to_string();
        assert!(error.contains("spans: "), "{error}");
        let mut reply = counts_to_proto(&counts);
        reply.in_spans[0].metric = "manhattan".to_owned();
        let error = counts_from_proto(reply, true).unwrap_err().to_string();
        assert!(error.contains("in_spans[0].metric"), "{error}");
    }
}
