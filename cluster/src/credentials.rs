//! The credential of node-to-node calls (docs/operations.md "Cluster security").
//!
//! Every internal gRPC call carries `x-allidb-cluster-token`: hex of
//! `HMAC-SHA256(key = cluster.secret, "allidb internal rpc v1\0" ++ cluster.name)`. A node of
//! another cluster (other name) or without the secret cannot compute it. The token is a bearer
//! credential: without TLS it crosses the private network in clear, which is why plaintext
//! clusters are restricted to loopback and private addresses; with `tls.enabled` the channel is
//! encrypted and peers also present certificates of the cluster CA.
//!
//! Must never: compare tokens in variable time, or log a token.

use ring::hmac;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Metadata key of the token.
pub const TOKEN_HEADER: &str = "x-allidb-cluster-token";

const CONTEXT: &[u8] = b"allidb internal rpc v1\0";

/// This cluster's internal-call credential.
pub struct ClusterCredentials {
    key: hmac::Key,
    cluster_name: String,
    token: String,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("cluster_name", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

impl ClusterCredentials {
    /// The credential of cluster `cluster_name` with shared `secret`.
    pub fn new(cluster_name: &str, secret: &str) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let token = hex::encode(hmac::sign(&key, &Self::message(cluster_name)));
        Self {
            key,
            cluster_name: cluster_name.to_owned(),
            token,
        }
    }

    fn message(cluster_name: &str) -> Vec<u8> {
        [CONTEXT, cluster_name.as_bytes()].concat()
    }

    /// The token this node sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks the token of an incoming call: `UNAUTHENTICATED` when it is missing or wrong.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let presented = metadata
            .get(TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| hex::decode(value).ok())
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "internal call without a valid {TOKEN_HEADER}: only nodes of this cluster may call the replica service"
                ))
            })?;
        hmac::verify(&self.key, &Self::message(&self.cluster_name), &presented).map_err(|_| {
            Status::unauthenticated(
                "internal call with a wrong cluster token (another cluster, or another cluster.secret)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(TOKEN_HEADER, token.parse().expect("hex is valid metadata"));
        metadata
    }

    #[test]
    fn only_the_same_cluster_and_secret_pass() {
        let ours = ClusterCredentials::new("prod", "0123456789abcdef");
        assert!(ours.check(&with_token(ours.token())).is_ok());
        for other in [
            ClusterCredentials::new("staging", "0123456789abcdef"),
            ClusterCredentials::new("prod", "fedcba9876543210"),
        ] {
            let refused = ours.check(&with_token(other.token())).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        assert!(ours.check(&MetadataMap::new()).is_err());
        assert!(ours.check(&with_token("zz")).is_err());
    }
}
