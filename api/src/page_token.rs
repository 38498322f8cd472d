//! `RangeScan` page tokens (docs/api.md "RangeScan page tokens"): the key position a scan
//! resumes after, bound to the tenant and the consistency level it was issued for.
//!
//! A token is base64url (no padding) of `[version 2][level][entity id bytes][MAC, 32 bytes]`,
//! the MAC being HMAC-SHA256 over `"allidb page token\0" ++ tenant ++ "\0" ++` everything
//! before it. The key is the ring's ([`PageTokenKey::for_cluster`], derived from
//! `cluster.secret`, so a token is valid through every node of the ring) or the node's own
//! (persisted in its data directory, so a token outlives a restart).
//!
//! Invariants: a token decodes only for the tenant and with the key it was made for; the
//! position is a key, never an offset, so pages stay exact while nodes die and return.
//! Must never: accept a token of another tenant or a forged one, or reveal the key (`Debug`
//! prints no key material).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use tonic::Status;

use crate::pb;

/// Format byte of today's tokens (version 1 carried the position without a MAC).
const VERSION: u8 = 2;
/// Bytes of the MAC at the end of a token.
const MAC_LEN: usize = 32;
/// Domain separation of the MAC input.
const CONTEXT: &[u8] = b"allidb page token\0";
/// Domain separation of the key derived from the cluster secret.
const CLUSTER_KEY_CONTEXT: &[u8] = b"allidb page token key v1\0";
/// File of a single node's key in its data directory.
pub const KEY_FILE: &str = "page-token.key";

/// The key that signs and checks page tokens.
#[derive(Clone)]
pub struct PageTokenKey {
    key: hmac::Key,
    /// Fingerprint of the key (not the key): equal keys compare equal.
    id: [u8; 8],
}

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokenKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl PartialEq for PageTokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Default for PageTokenKey {
    /// A random key, for a service without a configured one (tokens then last as long as it).
    fn default() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source is available");
        Self::from_secret(&secret)
    }
}

/// Where a scan resumes: strictly after `last_entity_id`, at `level`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagePosition {
    /// The last entity id of the previous page.
    pub last_entity_id: String,
    /// The consistency level the scan was started with.
    pub level: pb::ConsistencyLevel,
}

impl PageTokenKey {
    /// A key from raw secret bytes.
    pub fn from_secret(secret: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, b"allidb page token key id");
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        Self { key, id }
    }

    /// The key every node of cluster `name` with shared `secret` derives alike.
    pub fn for_cluster(name: &str, secret: &str) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let derived = hmac::sign(&derive, &[CLUSTER_KEY_CONTEXT, name.as_bytes()].concat());
        Self::from_secret(derived.as_ref())
    }

    /// A single node's key: read from `data_dir`'s key file, or made and written there
    /// (write-temp, fsync, rename) when there is none.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let secret = hex::decode(text.trim())
                    .ok()
                    .filter(|s| s.len() == 32)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "{} is not 64 hex digits (delete it: a new key is made, and \
                                 page tokens issued before stop being accepted)",
                                path.display()
                            ),
                        )
                    })?;
                Ok(Self::from_secret(&secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
                let staging = data_dir.join(format!("{KEY_FILE}.tmp"));
                {
                    use std::io::Write;
                    let mut file = std::fs::File::create(&staging)?;
                    file.write_all(hex::encode(secret).as_bytes())?;
                    file.sync_all()?;
                }
                std::fs::rename(&staging, &path)?;
                std::fs::File::open(data_dir)?.sync_all()?;
                Ok(Self::from_secret(&secret))
            }
            Err(e) => Err(e),
        }
    }

    fn mac_input(tenant: &str, body: &[u8]) -> Vec<u8> {
        [CONTEXT, tenant.as_bytes(), b"\0", body].concat()
    }

    /// The token that resumes a scan of `tenant` at `level` strictly after `last_entity_id`.
    pub fn encode(
        &self,
        tenant: &str,
        level: pb::ConsistencyLevel,
        last_entity_id: &str,
    ) -> String {
        let level = u8::try_from(level as i32).expect("consistency levels are 0..=2");
        let mut raw = Vec::with_capacity(2 + last_entity_id.len() + MAC_LEN);
        raw.push(VERSION);
        raw.push(level);
        raw.extend_from_slice(last_entity_id.as_bytes());
        let tag = hmac::sign(&self.key, &Self::mac_input(tenant, &raw));
        raw.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position of `token` for a scan of `tenant`; `INVALID_ARGUMENT` naming `page_token`
    /// when it is malformed, of an older version, or not made for this tenant by this key.
    pub fn decode(&self, tenant: &str, token: &str) -> Result<PagePosition, Status> {
        let refused = |why: &str| Status::invalid_argument(format!("page_token {why}"));
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| refused("is malformed (not base64)"))?;
        match raw.first() {
            None => return Err(refused("is malformed (empty)")),
            Some(&VERSION) => {}
            Some(1) => {
                return Err(refused(
                    "is of an older format (version 1): restart the scan without a token",
                ));
            }
            Some(_) => return Err(refused("is malformed (unknown version)")),
        }
        if raw.len() < 2 + MAC_LEN {
            return Err(refused("is malformed (too short)"));
        }
        let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
        hmac::verify(&self.key, &Self::mac_input(tenant, body), tag).map_err(|_| {
            refused(
                "was not issued for this tenant by this node or ring (tokens are bound to the \
                 tenant, and to the ring's cluster.secret or the node's data directory)",
            )
        })?;
        let level = pb::ConsistencyLevel::try_from(i32::from(body[1]))
            .map_err(|_| refused("is malformed (unknown consistency level)"))?;
        let id = String::from_utf8(body[2..].to_vec())
            .map_err(|_| refused("is malformed (entity id not UTF-8)"))?;
        allidb_storage::key::validate_id(&id)
            .map_err(|_| refused("is malformed (bad entity id)"))?;
        Ok(PagePosition {
            last_entity_id: id,
            level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUORUM: pb::ConsistencyLevel = pb::ConsistencyLevel::ConsistencyQuorum;

    fn assert_refused(result: Result<PagePosition, Status>, needle: &str) {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with("page_token"), "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }

    #[test]
    fn tokens_round_trip_for_their_tenant_only() {
        let key = PageTokenKey::from_secret(b"0123456789abcdef0123456789abcdef");
        for id in ["a", "z/\u{e9}+=", &"x".repeat(512)] {
            let token = key.encode("t1", QUORUM, id);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            let position = key.decode("t1", &token).unwrap();
            assert_eq!(position.last_entity_id, id);
            assert_eq!(position.level, QUORUM);
            assert_refused(key.decode("t2", &token), "not issued for this tenant");
        }
    }

    #[test]
    fn forged_altered_foreign_and_old_tokens_are_refused() {
        let key = PageTokenKey::for_cluster("c", "0123456789abcdef");
        let token = key.encode("t", QUORUM, "e10");
        // Another ring's key, and the same ring's nodes.
        let other = PageTokenKey::for_cluster("c", "fedcba9876543210");
        assert_refused(other.decode("t", &token), "not issued");
        assert_eq!(
            PageTokenKey::for_cluster("c", "0123456789abcdef")
                .decode("t", &token)
                .unwrap()
                .last_entity_id,
            "e10"
        );
        // A position or level changed by hand.
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[3] = b'9';
        assert_refused(key.decode("t", &URL_SAFE_NO_PAD.encode(&raw)), "not issued");
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[1] = 0;
        assert_refused(key.decode("t", &URL_SAFE_NO_PAD.encode(&raw)), "not issued");
        // Version 1 (no MAC), garbage.
        let mut old = vec![1u8];
        old.extend_from_slice(b"e10");
        assert_refused(
            key.decode("t", &URL_SAFE_NO_PAD.encode(old)),
            "older format",
        );
        for garbage in ["!!!", "", "AgA"] {
            assert!(key.decode("t", garbage).is_err(), "{garbage:?}");
        }
        assert_refused(
            key.decode("t", &URL_SAFE_NO_PAD.encode([9, 0])),
            "unknown version",
        );
    }

    #[test]
    fn a_single_nodes_key_is_kept_in_its_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = PageTokenKey::load_or_create(dir.path()).unwrap();
        let token = first.encode("t", QUORUM, "e1");
        let again = PageTokenKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again);
        assert!(again.decode("t", &token).is_ok());
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        let damaged = PageTokenKey::load_or_create(dir.path()).unwrap_err();
        assert!(damaged.to_string().contains(KEY_FILE), "{damaged}");
    }
}
