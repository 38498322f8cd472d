//! Tenant drops: the engine's one range tombstone, "every cell of tenant `T` with a timestamp
//! at or below `ts` is gone". Dropping a tenant is one durable record, not a delete per cell:
//! reads hide the covered cells at once, flushes and compactions leave them out, and a cell
//! written later (a larger timestamp) is untouched.
//!
//! Owns `<engine dir>/TENANT_DROPS` (docs/storage.md "Tenant drops", version 1), replaced whole
//! by write-temp / fsync / rename / fsync-dir, so a crash leaves the old or the new file:
//!
//! ```text
//! magic "ALLIDROP" | version:u8 = 1 | count:u32 | count x (len:u16 tenant ts:u64 seq:u64) | crc32:u32
//! ```
//!
//! (little endian; the CRC-32 covers everything before it; `seq` is the engine's last sequence
//! number when the drop was recorded, which tells derived data such as index dumps whether
//! they predate the drop).
//!
//! Invariants: a tenant's drop timestamp only grows; drops are never forgotten, so a cell older
//! than the drop that arrives late (a replica write, a hint, a read repair) stays hidden.
//!
//! Must never: hide a cell newer than its tenant's drop.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::types::{SeqNo, Timestamp};

/// Name of the file under the engine directory.
pub const FILE: &str = "TENANT_DROPS";

const MAGIC: &[u8; 8] = b"ALLIDROP";
const VERSION: u8 = 1;

/// One tenant's drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantDrop {
    /// Cells of the tenant at or below this timestamp are gone.
    pub ts: Timestamp,
    /// The engine's last sequence number when the drop was recorded.
    pub seq: SeqNo,
}

/// Every tenant drop, by tenant id bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantDrops {
    by_tenant: BTreeMap<Vec<u8>, TenantDrop>,
}

impl TenantDrops {
    /// True when the cell `user_key` (an encoded cell key) written at `ts` is covered by its
    /// tenant's drop.
    pub fn hides(&self, user_key: &[u8], ts: Timestamp) -> bool {
        if self.by_tenant.is_empty() {
            return false;
        }
        let Some(end) = user_key.iter().position(|b| *b == 0) else {
            return false;
        };
        self.by_tenant
            .get(&user_key[..end])
            .is_some_and(|drop| ts <= drop.ts)
    }

    /// The drop of `tenant`, if it was ever dropped.
    pub fn get(&self, tenant: &str) -> Option<TenantDrop> {
        self.by_tenant.get(tenant.as_bytes()).copied()
    }

    /// Every drop, by tenant id bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], TenantDrop)> {
        self.by_tenant.iter().map(|(t, d)| (t.as_slice(), *d))
    }

    /// The number of tenants dropped.
    pub fn len(&self) -> usize {
        self.by_tenant.len()
    }

    /// True when no tenant was ever dropped.
    pub fn is_empty(&self) -> bool {
        self.by_tenant.is_empty()
    }

    /// These drops plus `drop` of `tenant` (an earlier drop of it with a larger timestamp wins).
    pub fn with(&self, tenant: &str, drop: TenantDrop) -> Self {
        let mut next = self.clone();
        let entry = next
            .by_tenant
            .entry(tenant.as_bytes().to_vec())
            .or_insert(drop);
        if drop.ts > entry.ts {
            *entry = drop;
        }
        next
    }

    /// True when a table holding keys from `smallest` to `largest` with timestamps from
    /// `min_ts` may hold cells a drop covers.
    pub fn may_cover(&self, smallest: &[u8], largest: &[u8], min_ts: Timestamp) -> bool {
        self.by_tenant.iter().any(|(tenant, drop)| {
            let mut start = tenant.clone();
            start.push(0);
            let mut end = tenant.clone();
            end.push(1);
            min_ts <= drop.ts && largest >= start.as_slice() && smallest < end.as_slice()
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.by_tenant.len() * 32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.by_tenant.len() as u32).to_le_bytes());
        for (tenant, drop) in &self.by_tenant {
            out.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
            out.extend_from_slice(tenant);
            out.extend_from_slice(&drop.ts.to_le_bytes());
            out.extend_from_slice(&drop.seq.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("shorter than its checksum")?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("checksum mismatch".to_owned());
        }
        let rest = body.strip_prefix(MAGIC).ok_or("bad magic")?;
        let (&version, mut rest) = rest.split_first().ok_or("no version")?;
        if version != VERSION {
            return Err(format!("unknown version {version}"));
        }
        let mut take = |n: usize| -> std::result::Result<&[u8], String> {
            let (head, tail) = rest.split_at_checked(n).ok_or("truncated")?;
            rest = tail;
            Ok(head)
        };
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes taken"));
        let mut by_tenant = BTreeMap::new();
        for _ in 0..count {
            let len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes taken"));
            let tenant = take(usize::from(len))?.to_vec();
            let ts = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes taken"));
            let seq = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes taken"));
            by_tenant.insert(tenant, TenantDrop { ts, seq });
        }
        Ok(Self { by_tenant })
    }

    /// Reads the drops of the engine in `dir` (none when the file does not exist).
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        if !fs.exists(&path) {
            return Ok(Self::default());
        }
        let bytes = fs.read(&path)?;
        Self::decode(&bytes).map_err(|reason| Error::corruption(&path, 0, reason))
    }

    /// Makes these drops the durable ones of the engine in `dir`.
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut file = fs.create(&tmp)?;
        file.append(&self.encode())?;
        file.sync_data()?;
        drop(file);
        fs.rename(&tmp, &dir.join(FILE))?;
        fs.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::CellKey;

    #[test]
    fn a_drop_hides_its_tenants_older_cells_only() {
        let drops = TenantDrops::default().with("t", TenantDrop { ts: 10, seq: 3 });
        let body = |tenant: &str| CellKey::body(tenant, "a").encode();
        assert!(drops.hides(&body("t"), 10));
        assert!(drops.hides(&body("t"), 1));
        assert!(!drops.hides(&body("t"), 11), "written after the drop");
        assert!(!drops.hides(&body("tt"), 1), "a tenant whose id extends it");
        assert!(!drops.hides(&body("s"), 1));
        // A later drop moves the bound up, an earlier one does not move it down.
        let later = drops.with("t", TenantDrop { ts: 20, seq: 5 });
        assert!(later.hides(&body("t"), 15));
        assert_eq!(later.with("t", TenantDrop { ts: 5, seq: 9 }), later);
    }

    #[test]
    fn tables_are_covered_by_key_range_and_age() {
        let drops = TenantDrops::default().with("t", TenantDrop { ts: 10, seq: 3 });
        let key = |tenant: &str, id: &str| CellKey::body(tenant, id).encode();
        assert!(drops.may_cover(&key("a", "x"), &key("t", "a"), 5));
        assert!(drops.may_cover(&key("t", "m"), &key("z", "a"), 5));
        assert!(
            !drops.may_cover(&key("t", "m"), &key("z", "a"), 11),
            "all newer"
        );
        assert!(!drops.may_cover(&key("a", "x"), &key("s", "a"), 5));
        assert!(!drops.may_cover(&key("tt", "a"), &key("z", "a"), 5));
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let drops = TenantDrops::default()
            .with("t", TenantDrop { ts: 10, seq: 3 })
            .with("ü-tenant", TenantDrop { ts: 7, seq: 1 });
        let bytes = drops.encode();
        assert_eq!(TenantDrops::decode(&bytes).unwrap(), drops);
        for at in [0, 8, 12, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(TenantDrops::decode(&damaged).is_err(), "flipped byte {at}");
        }
        assert!(TenantDrops::decode(&bytes[..bytes.len() - 5]).is_err());
    }
}
