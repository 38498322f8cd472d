//! Calls to other nodes' `Replica` service: one lazily connected gRPC channel per peer address,
//! every request stamped with this node's header and cluster token and bounded by a deadline.
//!
//! Must never: wait longer than the caller's timeout, or send a request without the token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::credentials::{ClusterCredentials, TOKEN_HEADER};
use crate::proto;
use crate::proto::replica_client::ReplicaClient;
use crate::ring::HostId;
use crate::{ClusterError, PROTOCOL_VERSION};

/// Channels to peers, shared by the coordinator and the hint dispatcher.
#[derive(Debug)]
pub struct PeerClients {
    local: HostId,
    credentials: Arc<ClusterCredentials>,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
}

impl PeerClients {
    /// Clients sending as `local`; `tls` (the cluster CA and this node's certificate) when
    /// `tls.enabled`.
    pub fn new(
        local: HostId,
        credentials: Arc<ClusterCredentials>,
        tls: Option<ClientTlsConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            local,
            credentials,
            tls,
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, addr: SocketAddr) -> Result<Channel, ClusterError> {
        if let Some(channel) = self.channels.lock().get(&addr) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ClusterError::Protocol(format!("peer address {addr}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ClusterError::Protocol(format!("TLS to peer {addr}: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        self.channels.lock().insert(addr, channel.clone());
        Ok(channel)
    }

    fn header(&self, ring_version: u64, recipient: HostId) -> Option<proto::RequestHeader> {
        Some(proto::RequestHeader {
            protocol_version: PROTOCOL_VERSION,
            ring_version,
            sender: self.local.to_string(),
            recipient: recipient.to_string(),
        })
    }

    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request.metadata_mut().insert(
            TOKEN_HEADER,
            self.credentials
                .token()
                .parse()
                .expect("a hex token is valid metadata"),
        );
        request
    }

    /// Sends cells to the replica `recipient` at `addr`.
    pub async fn mutate(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        cells: Vec<proto::Cell>,
        reason: &str,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let message = proto::MutateRequest {
            header: self.header(ring_version, recipient),
            cells,
            reason: reason.to_owned(),
        };
        let mut client = ReplicaClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
        let call = client.mutate(self.request(message, timeout));
        answered(addr, timeout, call).await.map(drop)
    }

    /// Reads one partition from the replica `recipient` at `addr`: its cells, or only their
    /// digest.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_partition(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        entity_id: &str,
        digest_only: bool,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<proto::ReadPartitionResponse, ClusterError> {
        let message = proto::ReadPartitionRequest {
            header: self.header(ring_version, recipient),
            tenant: tenant.to_owned(),
            entity_id: entity_id.to_owned(),
            digest_only,
        };
        let mut client = ReplicaClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES);
        let call = client.read_partition(self.request(message, timeout));
        answered(addr, timeout, call).await
    }
}

/// The reply of a call to `addr`, or why there is none (an error status, or no answer within
/// `timeout`).
async fn answered<T>(
    addr: SocketAddr,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClusterError> {
    let reason = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(reply)) => return Ok(reply.into_inner()),
        Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    Err(ClusterError::Peer { addr, reason })
}
