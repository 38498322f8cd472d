//! The dump file of the flat HNSW engine, `flat_hnsw.bin` (format in docs/index.md).
//!
//! Owns: encoding a [`Graph`] to bytes and decoding bytes back into a graph that satisfies
//! every invariant of `graph.rs`.
//!
//! Invariants: the file is little-endian, starts with a magic and a version, and ends with a
//! CRC-32 of everything before it. Decoding checks the CRC first, then every length against the
//! bytes actually present (nothing is allocated from an unchecked count), every neighbour id,
//! list length, level and the entry point. Never panics on any input: a damaged or foreign file
//! is an [`Error::Corruption`] naming the file and the offset or check that failed.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::graph::{Graph, MAX_LEVEL};
use super::kernel::DistanceFn;
use crate::error::{Error, Result};
use crate::vector::engine::EngineParams;
use crate::vector::metric::Metric;

/// First 8 bytes of the file.
const MAGIC: &[u8; 8] = b"AFHNSW\r\n";
/// Format version written and accepted.
const VERSION: u32 = 1;
/// Marks "no entry point" (empty graph).
const NO_ENTRY: u32 = u32::MAX;

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::Cosine => 0,
        Metric::L2 => 1,
        Metric::Dot => 2,
    }
}

/// Serialises `graph` (built for `metric` with `params`) into the dump format.
pub(super) fn encode(graph: &Graph, metric: Metric, params: EngineParams) -> Vec<u8> {
    let upper_slots: usize = graph.upper.iter().map(|slots| slots.len()).sum();
    let mut out = Vec::with_capacity(
        48 + graph.len() * 9 + 4 * (graph.vectors.len() + graph.level0.len() + upper_slots),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(metric_code(metric));
    for value in [
        params.max_connections,
        params.ef_construction,
        graph.dim,
        graph.max_level,
    ] {
        out.extend_from_slice(&(value as u32).to_le_bytes());
    }
    out.extend_from_slice(&graph.entry.unwrap_or(NO_ENTRY).to_le_bytes());
    out.extend_from_slice(&(graph.len() as u64).to_le_bytes());
    for label in &graph.labels {
        out.extend_from_slice(&(*label as u64).to_le_bytes());
    }
    out.extend_from_slice(&graph.levels);
    for x in &graph.vectors {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for slot in graph.level0.iter().chain(graph.upper.iter().flatten()) {
        out.extend_from_slice(&slot.load(Relaxed).to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A decoded dump: the graph and the parameters it was built with.
pub(super) struct Decoded {
    pub(super) graph: Graph,
    pub(super) params: EngineParams,
}

/// Parses and validates a dump read from `path`, expecting `metric`.
pub(super) fn decode(
    bytes: &[u8],
    path: &Path,
    metric: Metric,
    distance: DistanceFn,
) -> Result<Decoded> {
    decode_checked(bytes, metric, distance).map_err(|reason| Error::corruption(path, reason))
}

/// A bounds-checked little-endian reader; failures name the offset.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at offset {} (needed {n} bytes)", self.offset))?;
        let out = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(out)
    }

    /// `count` items of `N` bytes each, converted by `convert`.
    fn array<const N: usize, T>(
        &mut self,
        count: usize,
        convert: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        let at = self.offset;
        let len = count
            .checked_mul(N)
            .ok_or_else(|| format!("array of {count} items at offset {at} overflows"))?;
        Ok(self
            .take(len)?
            .chunks_exact(N)
            .map(|chunk| {
                let mut raw = [0u8; N];
                raw.copy_from_slice(chunk);
                convert(raw)
            })
            .collect())
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(self.array::<4, u32>(1, u32::from_le_bytes)?[0])
    }
}

fn decode_checked(bytes: &[u8], metric: Metric, distance: DistanceFn) -> Result<Decoded, String> {
    if bytes.len() < MAGIC.len() + 4 {
        return Err(format!("file of {} bytes is too short", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32fast::hash(body);
    if actual != stored {
        return Err(format!(
            "CRC-32 {actual:#010x} differs from the stored {stored:#010x}"
        ));
    }
    let mut reader = Reader {
        bytes: body,
        offset: 0,
    };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("bad magic: not a flat HNSW dump".to_string());
    }
    let version = reader.u32()?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let code = reader.take(1)?[0];
    if code != metric_code(metric) {
        return Err(format!(
            "dump is for metric code {code}, expected {} ({})",
            metric_code(metric),
            metric.name()
        ));
    }
    let max_connections = reader.u32()? as usize;
    let ef_construction = reader.u32()? as usize;
    let params = EngineParams {
        max_connections,
        ef_construction,
        capacity_hint: 1,
    };
    params.validate().map_err(|e| e.to_string())?;
    let dim = reader.u32()? as usize;
    let max_level = reader.u32()? as usize;
    let entry = reader.u32()?;
    let count = reader.array::<8, u64>(1, u64::from_le_bytes)?[0];
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c < NO_ENTRY as usize)
        .ok_or_else(|| format!("node count {count} out of range"))?;
    if (count == 0) != (dim == 0) || dim > 65_536 {
        return Err(format!("dimension {dim} invalid for {count} nodes"));
    }
    let mut graph = Graph::new(distance, max_connections, 0);
    graph.dim = dim;
    graph.labels = reader
        .array::<8, u64>(count, u64::from_le_bytes)?
        .into_iter()
        .map(|label| usize::try_from(label).map_err(|_| format!("id {label} does not fit usize")))
        .collect::<Result<_, String>>()?;
    graph.nodes_by_label.reserve(count);
    for (node, label) in graph.labels.iter().enumerate() {
        if graph.nodes_by_label.insert(*label, node as u32).is_some() {
            return Err(format!("id {label} appears on two nodes"));
        }
    }
    graph.levels = reader.take(count)?.to_vec();
    if let Some(level) = graph.levels.iter().find(|l| **l as usize > MAX_LEVEL) {
        return Err(format!("node level {level} above {MAX_LEVEL}"));
    }
    let top = graph.levels.iter().max().map_or(0, |l| *l as usize);
    if max_level != top {
        return Err(format!("max level {max_level}, nodes reach {top}"));
    }
    graph.max_level = max_level;
    graph.entry = match (count, entry) {
        (0, NO_ENTRY) => None,
        (0, _) => return Err(format!("empty graph with entry point {entry}")),
        (_, entry) if (entry as usize) < count && graph.levels[entry as usize] as usize == top => {
            Some(entry)
        }
        (_, entry) => return Err(format!("entry point {entry} is not a top-level node")),
    };
    let values = count * dim;
    graph.vectors = reader.array::<4, f32>(values, f32::from_le_bytes)?;
    if let Some(position) = graph.vectors.iter().position(|x| !x.is_finite()) {
        return Err(format!("vector component {position} is not finite"));
    }
    let level0_slots = count
        .checked_mul(graph.level0_stride())
        .ok_or("level-0 size overflows")?;
    let level0 = reader.array::<4, u32>(level0_slots, u32::from_le_bytes)?;
    let upper_stride = graph.upper_stride();
    let mut upper = Vec::with_capacity(count);
    for level in &graph.levels {
        upper.push(reader.array::<4, u32>(*level as usize * upper_stride, u32::from_le_bytes)?);
    }
    graph.set_lists(level0, upper);
    if reader.offset != body.len() {
        return Err(format!("{} trailing bytes", body.len() - reader.offset));
    }
    check_lists(&graph)?;
    graph.derive_parents();
    Ok(Decoded {
        graph,
        params: EngineParams {
            capacity_hint: count.max(1),
            ..params
        },
    })
}

/// Every list within its level's capacity and every neighbour an existing node.
fn check_lists(graph: &Graph) -> Result<(), String> {
    let count = graph.len();
    for node in 0..count {
        for level in 0..=graph.levels[node] as usize {
            let capacity = graph.capacity(level);
            let block = graph.neighbour_block(node as u32, level);
            let len = block[0].load(Relaxed) as usize;
            if len > capacity {
                return Err(format!(
                    "node {node} level {level}: {len} neighbours, capacity {capacity}"
                ));
            }
            if let Some(bad) = block[1..1 + len]
                .iter()
                .map(|slot| slot.load(Relaxed))
                .find(|n| *n as usize >= count)
            {
                return Err(format!(
                    "node {node} level {level}: neighbour {bad} out of {count} nodes"
                ));
            }
        }
    }
    Ok(())
}
