//! Operator actions of the `allidb.AlliDB` service (admin role): the request checks and reply
//! shapes of `Checkpoint` (an online backup, [`UnifiedStore::checkpoint`]), of `Compact` (a full
//! manual compaction, [`compact`]) and of the tenant RPCs (`ListTenants`, `GetTenantStats`, `DropTenant`: [`tenant_scope`] decides which tenants a
//! caller may see and drop).
//!
//! The service handler authorizes the caller, then calls [`checkpoint_target`], [`checkpoint`]
//! (on the blocking pool) and [`checkpoint_response`]. Errors name the request field:
//! `INVALID_ARGUMENT` for a target the request itself gets wrong (empty, relative, `..`, inside
//! the data directory), `FAILED_PRECONDITION` for a target whose current state refuses it
//! (exists and is not an empty directory).
//!
//! Must never: write into an existing non-empty directory, or act for a caller without the
//! admin role (the handler checks the role before calling anything here).

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use allidb_cluster::query::tenants::NodeTenants;
use allidb_index::store::StoreCheckpoint;
use allidb_index::{TenantStats, UnifiedStore};
use tonic::Status;

use crate::auth::Principal;
use crate::pb;

/// The tenant of an operator key: an admin key of this tenant sees and drops every tenant.
pub const OPERATOR_TENANT: &str = "*";

/// Which tenants a caller (already checked to hold the admin role) may list, see and drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant: an operator key, or authentication disabled.
    All,
    /// Only the key's own tenant.
    Own(String),
}

/// The scope of `caller`; `auth_enabled` false means every caller is the operator.
pub fn tenant_scope(caller: &Principal, auth_enabled: bool) -> TenantScope {
    if !auth_enabled || caller.tenant == OPERATOR_TENANT {
        TenantScope::All
    } else {
        TenantScope::Own(caller.tenant.clone())
    }
}

impl TenantScope {
    /// Checks that the scope covers `tenant_id` (the request field), a valid tenant id.
    pub fn check(&self, tenant_id: &str) -> Result<(), Status> {
        if tenant_id.is_empty() {
            return Err(Status::invalid_argument("tenant_id: is required"));
        }
        allidb_storage::key::validate_tenant(tenant_id)
            .map_err(|e| Status::invalid_argument(format!("tenant_id: {e}")))?;
        match self {
            TenantScope::Own(own) if own != tenant_id => Err(Status::permission_denied(format!(
                "tenant_id: this API key administers tenant {own:?} only; an operator key (an \
                 admin key of tenant \"{OPERATOR_TENANT}\") administers every tenant"
            ))),
            _ => Ok(()),
        }
    }

    /// The one tenant the scope covers (`None`: every tenant).
    pub fn only(&self) -> Option<&str> {
        match self {
            TenantScope::All => None,
            TenantScope::Own(own) => Some(own),
        }
    }
}

/// The wire form of one tenant's figures.
pub fn tenant_stats_proto(stats: &TenantStats) -> pb::TenantStats {
    pb::TenantStats {
        tenant_id: stats.tenant.clone(),
        entities: stats.entities as u64,
        vectors: stats.vectors as u64,
        dimension: stats
            .dimension
            .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX)),
        metric: stats.metric.name().to_owned(),
        bytes: stats.bytes,
    }
}

/// The wire form of one node's figures (per-node detail).
pub fn node_tenants_proto(node: &NodeTenants) -> pb::NodeTenantStats {
    let (tenants, error) = match &node.tenants {
        Ok(tenants) => (
            tenants.iter().map(tenant_stats_proto).collect(),
            String::new(),
        ),
        Err(error) => (Vec::new(), error.clone()),
    };
    pb::NodeTenantStats {
        node: node.node.clone(),
        tenants,
        error,
    }
}

/// The request field naming the checkpoint directory.
const TARGET_FIELD: &str = "target_dir";

/// The checkpoint directory of a request: a non-empty absolute path without `..`.
pub fn checkpoint_target(target_dir: &str) -> Result<PathBuf, Status> {
    let invalid = |reason: &str| Status::invalid_argument(format!("{TARGET_FIELD}: {reason}"));
    if target_dir.is_empty() {
        return Err(invalid("is required"));
    }
    let path = Path::new(target_dir);
    if !path.is_absolute() {
        return Err(invalid(
            "must be an absolute path (a directory on the server's host)",
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid("must not contain `..`"));
    }
    Ok(path.to_owned())
}

/// Writes the checkpoint; the store's refusals of the target name the request field.
pub fn checkpoint(store: &UnifiedStore, target: &Path) -> allidb_index::Result<StoreCheckpoint> {
    use allidb_index::Error;
    store.checkpoint(target).map_err(|error| match error {
        Error::InvalidArgument(message) => {
            Error::InvalidArgument(format!("{TARGET_FIELD}: {message}"))
        }
        Error::FailedPrecondition(message) => {
            Error::FailedPrecondition(format!("{TARGET_FIELD}: {message}"))
        }
        other => other,
    })
}

fn count_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The reply describing `written`.
pub fn checkpoint_response(
    target_dir: String,
    written: &StoreCheckpoint,
) -> pb::CheckpointResponse {
    let engine = &written.engine;
    pb::CheckpointResponse {
        target_dir,
        covered_seq: engine.covered_seq,
        index_covered_seq: written.index_covered_seq,
        index_tenants: count_u32(written.index_tenants),
        tables_linked: count_u32(engine.tables_linked),
        tables_copied: count_u32(engine.tables_copied),
        table_bytes: engine.table_bytes,
        wal_segments: count_u32(engine.wal_segments),
        wal_bytes: engine.wal_bytes,
    }
}

/// Flushes the memtables, then compacts every level of the node's storage down into one sorted
/// run ([`allidb_storage::Engine::compact`]), the SSTables before and after in the reply.
pub fn compact(store: &UnifiedStore) -> allidb_index::Result<pb::CompactResponse> {
    let engine = store.engine();
    let tables = |stats: &allidb_storage::Stats| {
        let count: u64 = stats.tables_per_level.iter().sum();
        (
            u32::try_from(count).unwrap_or(u32::MAX),
            stats.bytes_per_level.iter().sum::<u64>(),
        )
    };
    let started = Instant::now();
    // The memtables first, so that before and after count the same data.
    engine.flush()?;
    let (tables_before, table_bytes_before) = tables(&engine.stats());
    engine.compact()?;
    let (tables_after, table_bytes_after) = tables(&engine.stats());
    Ok(pb::CompactResponse {
        tables_before,
        table_bytes_before,
        tables_after,
        table_bytes_after,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn targets_must_be_absolute_plain_paths_and_errors_name_the_field() {
        assert_eq!(
            checkpoint_target("/backups/2024-01-01").unwrap(),
            PathBuf::from("/backups/2024-01-01")
        );
        for (bad, why) in [
            ("", "required"),
            ("backups/x", "absolute"),
            ("./x", "absolute"),
            ("/backups/../data", ".."),
        ] {
            let status = checkpoint_target(bad).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
            assert!(status.message().starts_with("target_dir: "), "{status:?}");
            assert!(status.message().contains(why), "{status:?}");
        }
    }

    #[test]
    fn store_refusals_name_the_field_and_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = UnifiedStore::open(
            dir.path().join("data"),
            allidb_index::StoreOptions::default(),
        )
        .unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("f"), b"x").unwrap();
        let status =
            crate::errors::store_status("checkpoint", checkpoint(&store, &full).unwrap_err());
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().starts_with("target_dir: "), "{status:?}");
        assert!(status.message().contains("not empty"), "{status:?}");

        let inside = dir.path().join("data/copy");
        let status =
            crate::errors::store_status("checkpoint", checkpoint(&store, &inside).unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("target_dir: "), "{status:?}");

        let target = dir.path().join("ok");
        let written = checkpoint(&store, &target).unwrap();
        let reply = checkpoint_response(target.display().to_string(), &written);
        assert_eq!(reply.covered_seq, written.engine.covered_seq);
        assert_eq!(reply.target_dir, target.display().to_string());
    }
}
