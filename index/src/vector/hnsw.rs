//! The `hnsw_rs` 0.3.5 implementation of [`AnnEngine`].
//!
//! Owns: an `hnsw_rs` graph per engine, its dump files (`<basename>.hnsw.graph`,
//! `<basename>.hnsw.data`) and a small manifest (`hnsw.meta`) naming the basename, metric,
//! parameters and a CRC-32 of each file.
//!
//! Invariants and hazards handled here:
//! * `hnsw_rs` exits the process when `M > 256`: parameters are validated before any graph is
//!   built ([`EngineParams::validate`]).
//! * `hnsw_rs` panics (asserts) on damaged dump files and when it cannot create a file: files are
//!   checked against the manifest's CRCs before loading, and both dump and load run under
//!   `catch_unwind` so a failure becomes an [`Error`], never a crashed daemon.
//! * A reloaded `hnsw_rs` graph borrows its loader (`HnswIo`). The loader is boxed, leaked into a
//!   raw pointer for the graph's lifetime and freed in `Drop` strictly after the graph; mmap is
//!   left off (the default), so the graph owns its vectors and the borrow is only nominal.
//! * The distances are ours (see `metric.rs`), never `hnsw_rs`'s `DistDot`, which asserts on
//!   rounding.
//! * `hnsw_rs` has no id -> point lookup, so reading a vector back ([`AnnEngine::visit_vectors`])
//!   goes through a map from our id to the graph's point (a shared pointer), brought up to date
//!   lazily under its write lock (reads share its read lock): the first read after inserts walks
//!   each layer that grew (a reference-count bump per point already mapped, a map insert per new
//!   one). Documented extra cost of this (non-default) engine: 20-40 bytes per point for the map,
//!   and that catch-up walk.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use hnsw_rs::prelude::{AnnT, Distance, FilterT, Hnsw, HnswIo, Point};
use parking_lot::{RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::vector::engine::{AnnEngine, AnnEngineFactory, EngineParams};
use crate::vector::metric::{CosineDistance, DotDistance, L2Distance, Metric};

/// Name of the manifest written beside the `hnsw_rs` files.
const META_FILE: &str = "hnsw.meta";
/// Basename asked of `hnsw_rs` for its two files.
const DUMP_BASENAME: &str = "hnsw";
/// First line of the manifest (format tag and version).
const META_MAGIC: &str = "allidb-hnsw-dump 1";
/// Layers of the graph (the `hnsw_rs` maximum).
const MAX_LAYERS: usize = 16;

/// Factory of [`HnswEngine`]s (the default engine is `FlatHnswFactory`; this one stays
/// selectable through `VectorIndex::with_factory`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HnswFactory;

impl AnnEngineFactory for HnswFactory {
    fn create(&self, metric: Metric, params: EngineParams) -> Result<Box<dyn AnnEngine>> {
        params.validate()?;
        Ok(match metric {
            Metric::Cosine => Box::new(HnswEngine::<CosineDistance>::new(metric, params)),
            Metric::L2 => Box::new(HnswEngine::<L2Distance>::new(metric, params)),
            Metric::Dot => Box::new(HnswEngine::<DotDistance>::new(metric, params)),
        })
    }

    fn load(&self, dir: &Path, metric: Metric) -> Result<Box<dyn AnnEngine>> {
        let manifest = Manifest::read(dir)?;
        if manifest.metric != metric {
            return Err(Error::invalid(format!(
                "HNSW dump in {} is for metric {}, expected {}",
                dir.display(),
                manifest.metric.name(),
                metric.name()
            )));
        }
        Ok(match metric {
            Metric::Cosine => Box::new(HnswEngine::<CosineDistance>::load(dir, &manifest)?),
            Metric::L2 => Box::new(HnswEngine::<L2Distance>::load(dir, &manifest)?),
            Metric::Dot => Box::new(HnswEngine::<DotDistance>::load(dir, &manifest)?),
        })
    }
}

/// An `hnsw_rs` graph with distance `D`, built here or reloaded from a dump.
pub struct HnswEngine<D>
where
    D: Distance<f32> + Default + Send + Sync + 'static,
{
    /// The graph. Dropped by hand in `Drop`, before `loader`.
    graph: ManuallyDrop<Hnsw<'static, f32, D>>,
    /// Our id -> the graph's point, for reading vectors back. Cleared in `Drop` before `loader`.
    points: RwLock<PointMap>,
    /// The loader a reloaded graph borrows from (`None` for a graph built here).
    loader: Option<NonNull<HnswIo>>,
    metric: Metric,
    params: EngineParams,
}

// SAFETY: `loader` is only dereferenced while loading and freed in `Drop`; no method reads
// through it, so sharing the pointer between threads shares nothing. `Hnsw` itself is Send + Sync
// (its interior state is behind locks), and `HnswIo` is Send + Sync as well.
unsafe impl<D> Send for HnswEngine<D> where D: Distance<f32> + Default + Send + Sync + 'static {}
// SAFETY: see the `Send` impl above.
unsafe impl<D> Sync for HnswEngine<D> where D: Distance<f32> + Default + Send + Sync + 'static {}

impl<D> HnswEngine<D>
where
    D: Distance<f32> + Default + Send + Sync + 'static,
{
    /// A new, empty graph; `params` must have been validated (M <= 256).
    fn new(metric: Metric, params: EngineParams) -> Self {
        let graph = Hnsw::new(
            params.max_connections,
            params.capacity_hint.max(1),
            MAX_LAYERS,
            params.ef_construction,
            D::default(),
        );
        Self {
            graph: ManuallyDrop::new(graph),
            points: RwLock::new(PointMap::default()),
            loader: None,
            metric,
            params,
        }
    }

    /// Reloads the graph described by `manifest` from `dir`, after checking its files' CRCs.
    fn load(dir: &Path, manifest: &Manifest) -> Result<Self> {
        if manifest.points == 0 {
            return Ok(Self::new(manifest.metric, manifest.params));
        }
        for (suffix, expected) in [
            ("hnsw.graph", manifest.graph_crc32),
            ("hnsw.data", manifest.data_crc32),
        ] {
            let path = dir.join(format!("{}.{suffix}", manifest.basename));
            let actual = crc32_of_file(&path)?;
            if actual != expected {
                return Err(Error::corruption(
                    path,
                    format!("CRC-32 {actual:#010x} differs from the manifest's {expected:#010x}"),
                ));
            }
        }
        let loader = NonNull::from(Box::leak(Box::new(HnswIo::new(dir, &manifest.basename))));
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `loader` points to a live, uniquely owned `HnswIo` (just leaked from a Box);
            // this is the only reference made from it, and it is freed only after the graph it
            // lends to (in `Drop`, or right below on failure).
            let io: &'static mut HnswIo = unsafe { &mut *loader.as_ptr() };
            io.load_hnsw::<f32, D>()
        }));
        let graph = match loaded {
            Ok(Ok(graph)) => graph,
            failure => {
                // SAFETY: the load failed, so no graph borrows the loader; reclaim the Box once.
                drop(unsafe { Box::from_raw(loader.as_ptr()) });
                let message = match failure {
                    Ok(Err(err)) => err.to_string(),
                    _ => "hnsw_rs panicked while reading the dump".to_string(),
                };
                return Err(Error::Engine {
                    context: format!("loading HNSW dump from {}", dir.display()),
                    message,
                });
            }
        };
        if graph.get_nb_point() != manifest.points {
            return Err(Error::corruption(
                dir.join(META_FILE),
                format!(
                    "manifest says {} points, the dump holds {}",
                    manifest.points,
                    graph.get_nb_point()
                ),
            ));
        }
        Ok(Self {
            graph: ManuallyDrop::new(graph),
            points: RwLock::new(PointMap::default()),
            loader: Some(loader),
            metric: manifest.metric,
            params: manifest.params,
        })
    }
}

impl<D> Drop for HnswEngine<D>
where
    D: Distance<f32> + Default + Send + Sync + 'static,
{
    fn drop(&mut self) {
        // The map's points may borrow from the loader, like the graph's.
        *self.points.get_mut() = PointMap::default();
        // SAFETY: `graph` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.graph) };
        if let Some(loader) = self.loader.take() {
            // SAFETY: the graph that borrowed the loader is gone; the pointer came from
            // `Box::leak` and is reclaimed exactly once.
            drop(unsafe { Box::from_raw(loader.as_ptr()) });
        }
    }
}

impl<D> fmt::Debug for HnswEngine<D>
where
    D: Distance<f32> + Default + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HnswEngine")
            .field("metric", &self.metric)
            .field("params", &self.params)
            .field("points", &self.graph.get_nb_point())
            .field("reloaded", &self.loader.is_some())
            .finish()
    }
}

impl<D> AnnEngine for HnswEngine<D>
where
    D: Distance<f32> + Default + Send + Sync + 'static,
{
    fn insert(&self, id: usize, vector: &[f32]) {
        self.graph.insert_slice((vector, id));
    }

    fn insert_batch(&self, items: &[(usize, &[f32])]) {
        let slices: Vec<(&[f32], usize)> = items.iter().map(|(id, v)| (*v, *id)).collect();
        self.graph.parallel_insert_slice(&slices);
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        if k == 0 {
            return Vec::new();
        }
        self.graph
            .search(query, k, ef.max(k))
            .into_iter()
            .map(|n| (n.d_id, n.distance))
            .collect()
    }

    fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<(usize, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let filter = |id: &usize| allow(*id);
        let filter: &dyn FilterT = &filter;
        self.graph
            .search_filter(query, k, ef.max(k), Some(filter))
            .into_iter()
            .map(|n| (n.d_id, n.distance))
            .collect()
    }

    fn visit_vectors(&self, ids: &[usize], visit: &mut dyn FnMut(usize, &[f32])) {
        let points = self.points.upgradable_read();
        let points = if points.is_current(&self.graph) {
            RwLockUpgradableReadGuard::downgrade(points)
        } else {
            let mut points = RwLockUpgradableReadGuard::upgrade(points);
            points.catch_up(&self.graph);
            RwLockWriteGuard::downgrade(points)
        };
        for (position, id) in ids.iter().enumerate() {
            if let Some(point) = points.by_id.get(id) {
                visit(position, point.get_v());
            }
        }
    }

    fn len(&self) -> usize {
        self.graph.get_nb_point()
    }

    fn dump(&self, dir: &Path) -> Result<()> {
        let points = self.len();
        let mut manifest = Manifest {
            basename: DUMP_BASENAME.to_string(),
            metric: self.metric,
            params: self.params,
            points,
            graph_crc32: 0,
            data_crc32: 0,
        };
        if points > 0 {
            let dumped = catch_unwind(AssertUnwindSafe(|| {
                self.graph.file_dump(dir, DUMP_BASENAME)
            }));
            manifest.basename = match dumped {
                Ok(Ok(basename)) => basename,
                Ok(Err(err)) => {
                    return Err(Error::Engine {
                        context: format!("dumping HNSW into {}", dir.display()),
                        message: err.to_string(),
                    });
                }
                Err(_) => {
                    return Err(Error::Engine {
                        context: format!("dumping HNSW into {}", dir.display()),
                        message: "hnsw_rs panicked (could it create its files?)".to_string(),
                    });
                }
            };
            let graph_path = dir.join(format!("{}.hnsw.graph", manifest.basename));
            let data_path = dir.join(format!("{}.hnsw.data", manifest.basename));
            sync_file(&graph_path)?;
            sync_file(&data_path)?;
            manifest.graph_crc32 = crc32_of_file(&graph_path)?;
            manifest.data_crc32 = crc32_of_file(&data_path)?;
        }
        manifest.write(dir)
    }
}

/// Our ids -> the `hnsw_rs` points holding their vectors, and how much of each layer has been
/// walked into the map.
#[derive(Default)]
struct PointMap {
    by_id: HashMap<usize, Arc<Point<'static, f32>>>,
    /// Points of each layer already in `by_id` (`hnsw_rs` only appends to a layer).
    walked_per_layer: Vec<usize>,
}

impl PointMap {
    /// True when every point of `graph` is in the map.
    fn is_current<D>(&self, graph: &Hnsw<'static, f32, D>) -> bool
    where
        D: Distance<f32> + Default + Send + Sync + 'static,
    {
        self.by_id.len() == graph.get_nb_point()
    }

    /// Adds the points appended to each layer since the last call.
    fn catch_up<D>(&mut self, graph: &Hnsw<'static, f32, D>)
    where
        D: Distance<f32> + Default + Send + Sync + 'static,
    {
        let indexation = graph.get_point_indexation();
        self.walked_per_layer.resize(MAX_LAYERS, 0);
        for (layer, walked) in self.walked_per_layer.iter_mut().enumerate() {
            if indexation.get_layer_nb_point(layer) <= *walked {
                continue;
            }
            for point in indexation.get_layer_iterator(layer).skip(*walked) {
                self.by_id.insert(point.get_origin_id(), point);
                *walked += 1;
            }
        }
    }
}

/// What `hnsw.meta` records about a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Manifest {
    basename: String,
    metric: Metric,
    params: EngineParams,
    points: usize,
    graph_crc32: u32,
    data_crc32: u32,
}

impl Manifest {
    fn write(&self, dir: &Path) -> Result<()> {
        let text = format!(
            "{META_MAGIC}\nbasename {}\nmetric {}\nmax_connections {}\nef_construction {}\n\
             points {}\ngraph_crc32 {}\ndata_crc32 {}\n",
            self.basename,
            self.metric.name(),
            self.params.max_connections,
            self.params.ef_construction,
            self.points,
            self.graph_crc32,
            self.data_crc32
        );
        let path = dir.join(META_FILE);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        sync_file(&tmp)?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let bad = |reason: String| Error::corruption(&path, reason);
        let mut lines = text.lines();
        if lines.next() != Some(META_MAGIC) {
            return Err(bad(format!("first line is not {META_MAGIC:?}")));
        }
        let mut field = |name: &str| -> Result<String> {
            let line = lines
                .next()
                .ok_or_else(|| bad(format!("missing field {name}")))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(format!("expected field {name}, found {line:?}")))
        };
        let number = |name: &str, value: String| -> Result<usize> {
            value
                .parse::<usize>()
                .map_err(|_| bad(format!("field {name} is not a number: {value:?}")))
        };
        let crc = |name: &str, value: String| -> Result<u32> {
            value
                .parse::<u32>()
                .map_err(|_| bad(format!("field {name} is not a CRC-32: {value:?}")))
        };
        let basename = field("basename")?;
        if basename.is_empty() || basename.contains(['/', '\\']) || basename.starts_with('.') {
            return Err(bad(format!(
                "basename {basename:?} is not a plain file name"
            )));
        }
        let metric = Metric::from_name(&field("metric")?).map_err(|e| bad(e.to_string()))?;
        let params = EngineParams {
            max_connections: number("max_connections", field("max_connections")?)?,
            ef_construction: number("ef_construction", field("ef_construction")?)?,
            capacity_hint: 1,
        };
        params.validate().map_err(|e| bad(e.to_string()))?;
        let points = number("points", field("points")?)?;
        let graph_crc32 = crc("graph_crc32", field("graph_crc32")?)?;
        let data_crc32 = crc("data_crc32", field("data_crc32")?)?;
        Ok(Self {
            basename,
            metric,
            params: EngineParams {
                capacity_hint: points.max(1),
                ..params
            },
            points,
            graph_crc32,
            data_crc32,
        })
    }
}

/// CRC-32 of a whole file, streamed.
fn crc32_of_file(path: &Path) -> Result<u32> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}

/// Flushes a file's contents to stable storage.
fn sync_file(path: &Path) -> Result<()> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    file.sync_all()
        .map_err(|e| Error::io(PathBuf::from(path), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, dim: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let v: Vec<f32> = (0..dim).map(|j| ((i * 31 + j * 7) as f32).sin()).collect();
                Metric::Cosine.prepare(&v).unwrap()
            })
            .collect()
    }

    fn build(n: usize) -> (Box<dyn AnnEngine>, Vec<Vec<f32>>) {
        let engine = HnswFactory
            .create(Metric::Cosine, EngineParams::default())
            .unwrap();
        let data = points(n, 16);
        let items: Vec<(usize, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i * 3, v.as_slice()))
            .collect();
        engine.insert_batch(&items);
        (engine, data)
    }

    #[test]
    fn create_refuses_m_above_256_instead_of_exiting() {
        let params = EngineParams {
            max_connections: 300,
            ..EngineParams::default()
        };
        let err = HnswFactory.create(Metric::L2, params).unwrap_err();
        assert!(err.to_string().contains("2..=256"), "{err}");
    }

    #[test]
    fn finds_an_inserted_point_by_its_own_vector() {
        let (engine, data) = build(500);
        assert_eq!(engine.len(), 500);
        let hits = engine.search(&data[42], 5, 64);
        assert_eq!(hits[0].0, 42 * 3);
        assert!(hits[0].1 <= 1e-5);
        let even = engine.search_filtered(&data[43], 5, 64, &|id| id % 2 == 0);
        assert!(even.iter().all(|(id, _)| id % 2 == 0));
        assert_eq!(even.len(), 5);
    }

    #[test]
    fn dump_and_reload_answer_the_same_queries() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, data) = build(800);
        engine.dump(dir.path()).unwrap();
        let reloaded = HnswFactory.load(dir.path(), Metric::Cosine).unwrap();
        assert_eq!(reloaded.len(), 800);
        for q in data.iter().step_by(97) {
            assert_eq!(engine.search(q, 10, 64), reloaded.search(q, 10, 64));
        }
        // a reloaded engine keeps accepting inserts and can be dumped again
        reloaded.insert(100_000, &data[0]);
        let again = tempfile::tempdir().unwrap();
        reloaded.dump(again.path()).unwrap();
        assert_eq!(
            HnswFactory
                .load(again.path(), Metric::Cosine)
                .unwrap()
                .len(),
            801
        );
        assert!(HnswFactory.load(dir.path(), Metric::L2).is_err());
    }

    #[test]
    fn damaged_dump_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = build(300);
        engine.dump(dir.path()).unwrap();
        let graph = dir.path().join("hnsw.hnsw.graph");
        let mut bytes = fs::read(&graph).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&graph, bytes).unwrap();
        let err = HnswFactory.load(dir.path(), Metric::Cosine).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
        fs::write(dir.path().join(META_FILE), "garbage").unwrap();
        assert!(HnswFactory.load(dir.path(), Metric::Cosine).is_err());
    }

    #[test]
    fn empty_engine_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let engine = HnswFactory
            .create(Metric::Dot, EngineParams::default())
            .unwrap();
        engine.dump(dir.path()).unwrap();
        let reloaded = HnswFactory.load(dir.path(), Metric::Dot).unwrap();
        assert!(reloaded.is_empty());
        assert!(reloaded.search(&[1.0, 2.0], 3, 10).is_empty());
    }
}
