//! AlliDB's storage engine: a log-structured merge tree of entity **cells** (DESIGN.md §2–3).
//!
//! Module map (one concept per module):
//! * [`key`], [`cell`], [`types`], [`codec`], [`batch`], [`hlc`]: the data model — order-preserving
//!   cell keys, cell payloads, versions, the payload codec, atomic write batches, the clock;
//! * [`fs`]: the file layer (real, or simulated crashes in tests);
//! * `wal`: the write-ahead log (block framing, group commit, recovery);
//! * `memtable`, `sstable`, `manifest`, `compaction`: the LSM tree; [`tenant_drops`]: its
//!   tenant-wide range tombstones;
//! * `engine`: the public entry point tying them together;
//! * [`telemetry`]: the engine's own metrics (WAL latencies, group sizes).
//!
//! The one promise: a write acknowledged with [`types::Durability::Sync`] is never lost.

pub mod batch;
pub mod cell;
pub mod codec;
pub mod compaction;
pub mod engine;
pub mod error;
pub mod fs;
pub mod hlc;
pub mod key;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod mutation;
pub mod partition;
pub mod provenance;
pub mod sstable;
pub mod telemetry;
pub mod tenant_drops;
pub mod types;
pub mod version;
pub mod wal;

pub use cell::{Edge, EdgeRef, EdgeWrite, Entity, EntityBody, EntityWrite};
pub use engine::{CommitObserver, Engine, Options, Stats};
pub use error::{Error, Result};
pub use types::{Durability, SeqNo, Timestamp};
