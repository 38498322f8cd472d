//! Write batches: the unit of atomicity. One batch = one WAL record = applied all or nothing.
//!
//! Encoding (format version 1, all integers little endian):
//!
//! ```text
//! version:u8=1  base_seq:u64  count:u32
//! count x { key_len:u32 key  ts:u64  kind:u8 (0 tombstone, 1 value)  [value_len:u32 value] }
//! ```
//!
//! Operation `i` of a batch gets sequence number `base_seq + i`.

use crate::error::{Error, Result};
use crate::types::{Entry, InternalKey, SeqNo, Timestamp};

/// What a commit observer derived from a batch on the writing thread, before the batch was
/// queued for the WAL ([`crate::CommitObserver::prepare`]): storage only carries it, without
/// looking inside, and hands it back with the batch once the batch is committed. Never written
/// to the WAL.
pub type Prepared = Box<dyn std::any::Any + Send>;

/// Version byte of the batch encoding.
pub const BATCH_VERSION: u8 = 1;

/// One cell write inside a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOp {
    /// Encoded cell key.
    pub key: Vec<u8>,
    /// Write timestamp (HLC microseconds).
    pub ts: Timestamp,
    /// New value, or `None` to write a tombstone.
    pub value: Option<Vec<u8>>,
}

/// An ordered list of cell writes applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cell value.
    pub fn put(&mut self, key: Vec<u8>, ts: Timestamp, value: Vec<u8>) {
        self.ops.push(BatchOp {
            key,
            ts,
            value: Some(value),
        });
    }

    /// Adds a tombstone for a cell.
    pub fn delete(&mut self, key: Vec<u8>, ts: Timestamp) {
        self.ops.push(BatchOp {
            key,
            ts,
            value: None,
        });
    }

    /// Appends every op of `other`.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// The ops in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch has no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate in-memory size (keys + values + fixed overhead per op).
    pub fn approximate_size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| op.key.len() + op.value.as_ref().map_or(0, Vec::len) + 32)
            .sum()
    }

    /// The entries this batch produces when its first op gets `base_seq`.
    pub fn into_entries(self, base_seq: SeqNo) -> impl Iterator<Item = Entry> {
        self.ops.into_iter().enumerate().map(move |(i, op)| Entry {
            key: InternalKey::new(op.key, op.ts, base_seq + i as u64),
            value: op.value,
        })
    }

    /// Encodes the batch with its base sequence number (the WAL record payload).
    pub fn encode(&self, base_seq: SeqNo, out: &mut Vec<u8>) {
        out.reserve(self.approximate_size() + 13);
        out.push(BATCH_VERSION);
        out.extend_from_slice(&base_seq.to_le_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for op in &self.ops {
            out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
            out.extend_from_slice(&op.key);
            out.extend_from_slice(&op.ts.to_le_bytes());
            match &op.value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }

    /// Decodes a batch record into `(base_seq, batch)`. Malformed input is a `Codec` error.
    pub fn decode(bytes: &[u8]) -> Result<(SeqNo, WriteBatch)> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != BATCH_VERSION {
            return Err(Error::Codec(format!(
                "unknown write batch version {version}"
            )));
        }
        let base_seq = r.u64()?;
        let count = r.u32()? as usize;
        // Each op takes at least 13 bytes: refuse counts the input cannot hold before allocating.
        if count > bytes.len() / 13 {
            return Err(Error::Codec(format!(
                "write batch claims {count} ops in {} bytes",
                bytes.len()
            )));
        }
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            let key_len = r.u32()? as usize;
            let key = r.take(key_len)?.to_vec();
            let ts = r.u64()?;
            let value = match r.u8()? {
                0 => None,
                1 => {
                    let len = r.u32()? as usize;
                    Some(r.take(len)?.to_vec())
                }
                other => return Err(Error::Codec(format!("unknown write batch op kind {other}"))),
            };
            ops.push(BatchOp { key, ts, value });
        }
        if r.pos != bytes.len() {
            return Err(Error::Codec(format!(
                "{} trailing bytes after write batch",
                bytes.len() - r.pos
            )));
        }
        Ok((base_seq, WriteBatch { ops }))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                Error::Codec(format!(
                    "write batch truncated at byte {} (wanted {n} more)",
                    self.pos
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("take(4) returns 4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("take(8) returns 8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ops in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..20), any::<u64>(),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))), 0..10),
            base in any::<u64>())
        {
            let mut batch = WriteBatch::new();
            for (k, ts, v) in ops {
                match v { Some(v) => batch.put(k, ts, v), None => batch.delete(k, ts) }
            }
            let mut buf = Vec::new();
            batch.encode(base, &mut buf);
            prop_assert_eq!(WriteBatch::decode(&buf).unwrap(), (base, batch));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = WriteBatch::decode(&bytes);
        }
    }
}
