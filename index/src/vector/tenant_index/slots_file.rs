//! `slots.bin` (format `AVSLOT02`, docs/index.md): the vector index's id map and tail as
//! dumped, and its checked decoding.
//!
//! Owns the byte layout: magic and version, metric, dimension, next id, applied sequence
//! number, the live records (id, seq, pending flag, entity id, and the vector of a pending id
//! only), CRC-32. Invariants: a decoded file passed every check (version first, then CRC,
//! bounds, ids below the next id, finite vectors); every failure names what and where.
//! Never: panic on a damaged file, or read a file of another version as this one.

use std::sync::Arc;

use super::{Slot, State};
use crate::vector::metric::Metric;

/// Magic of `slots.bin`; its last two characters are the format version.
const SLOTS_MAGIC: &[u8; 8] = b"AVSLOT02";
/// What every version of `slots.bin` starts with.
const SLOTS_MAGIC_FAMILY: &[u8; 6] = b"AVSLOT";

impl State {
    /// `slots.bin`: magic, metric, dimension, next id, applied seq, count, records, CRC-32. A
    /// record is id, seq, a pending flag, the entity id and, for pending ids only, the vector.
    pub(super) fn encode_slots(&self, metric: Metric) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SLOTS_MAGIC);
        put_str(&mut out, metric.name());
        out.extend_from_slice(&(self.dimension.unwrap_or(0) as u64).to_le_bytes());
        out.extend_from_slice(&(self.next_id as u64).to_le_bytes());
        out.extend_from_slice(&self.applied_seq.to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        let mut slots: Vec<(&usize, &Slot)> = self.slots.iter().collect();
        slots.sort_unstable_by_key(|(id, _)| **id);
        for (id, slot) in slots {
            out.extend_from_slice(&(*id as u64).to_le_bytes());
            out.extend_from_slice(&slot.seq.to_le_bytes());
            out.push(u8::from(slot.vector.is_some()));
            put_str(&mut out, &slot.entity);
            for x in slot.vector.iter().flat_map(|vector| vector.iter()) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) struct SlotRecord {
    pub(super) id: usize,
    pub(super) seq: u64,
    pub(super) entity: Arc<str>,
    /// Pending ids only.
    pub(super) vector: Option<Arc<[f32]>>,
}

pub(super) struct DecodedSlots {
    pub(super) dimension: Option<usize>,
    pub(super) next_id: usize,
    pub(super) applied_seq: u64,
    pub(super) slots: Vec<SlotRecord>,
}

/// A bounds-checked reader over `slots.bin`; every failure names the offset.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at offset {} (needed {n} bytes)",
                self.offset
            ));
        };
        let out = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(out)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
    fn usize(&mut self) -> Result<usize, String> {
        let at = self.offset;
        usize::try_from(self.u64()?).map_err(|_| format!("value at offset {at} does not fit usize"))
    }
    fn string(&mut self) -> Result<&'a str, String> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        let at = self.offset;
        std::str::from_utf8(self.take(u32::from_le_bytes(raw) as usize)?)
            .map_err(|_| format!("string at offset {at} is not UTF-8"))
    }
}

pub(super) fn decode_slots(bytes: &[u8], metric: Metric) -> Result<DecodedSlots, String> {
    if bytes.len() < SLOTS_MAGIC.len() + 4 {
        return Err("file too short".to_string());
    }
    // The version first, so an older format is reported as such rather than as damage.
    let magic = &bytes[..SLOTS_MAGIC.len()];
    if magic != SLOTS_MAGIC {
        return Err(if magic.starts_with(SLOTS_MAGIC_FAMILY) {
            format!(
                "format mismatch: file version {}, this build reads {}",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(SLOTS_MAGIC)
            )
        } else {
            "bad magic".to_string()
        });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_le_bytes(stored) {
        return Err("CRC-32 mismatch".to_string());
    }
    let mut reader = Reader {
        bytes: body,
        offset: 0,
    };
    // Checked above.
    reader.take(SLOTS_MAGIC.len())?;
    let stored_metric = reader.string()?;
    if stored_metric != metric.name() {
        return Err(format!(
            "dump is for metric {stored_metric}, expected {}",
            metric.name()
        ));
    }
    let dimension = reader.usize()?;
    let next_id = reader.usize()?;
    let applied_seq = reader.u64()?;
    let count = reader.usize()?;
    let mut slots = Vec::with_capacity(count.min(body.len()));
    for _ in 0..count {
        let id = reader.usize()?;
        if id >= next_id {
            return Err(format!("slot id {id} not below next id {next_id}"));
        }
        let seq = reader.u64()?;
        let at = reader.offset;
        let pending = match reader.take(1)?[0] {
            0 => false,
            1 => true,
            other => return Err(format!("pending flag {other} at offset {at}")),
        };
        let entity: Arc<str> = Arc::from(reader.string()?);
        let vector = if pending {
            if dimension == 0 {
                return Err(format!("pending slot {id} in an index without a dimension"));
            }
            let raw = reader.take(dimension.checked_mul(4).ok_or("dimension overflows")?)?;
            let vector: Arc<[f32]> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(format!("vector of slot {id} is not finite"));
            }
            Some(vector)
        } else {
            None
        };
        slots.push(SlotRecord {
            id,
            seq,
            entity,
            vector,
        });
    }
    if reader.offset != body.len() {
        return Err(format!("{} trailing bytes", body.len() - reader.offset));
    }
    Ok(DecodedSlots {
        dimension: (dimension > 0).then_some(dimension),
        next_id,
        applied_seq,
        slots,
    })
}
