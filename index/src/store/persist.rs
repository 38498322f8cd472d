//! Persistence of the derived indexes, so a restart does not rebuild them (DESIGN.md §4).
//!
//! Layout under `<data dir>/index/`:
//!
//! ```text
//! CURRENT                    "dump-NNNNNN\n": the complete dump in use
//! dump-NNNNNN/META           checked file: covered sequence number + tenant list
//! dump-NNNNNN/t-<hex>/vectors/    VectorIndex::dump (id map, vectors, HNSW files)
//! dump-NNNNNN/t-<hex>/graph       checked file: every out-edge
//! dump-NNNNNN/t-<hex>/facts       checked file: every entity's type/attributes/importance/time
//! ```
//!
//! A *checked file* is `crc32:u32 LE` (CRC-32/IEEE over the rest) followed by a versioned
//! payload (`allidb_storage::codec`, version byte 1). `<hex>` is the tenant id in hex, so any
//! tenant id is a safe file name.
//!
//! Protocol: a dump is written into a fresh `dump-N` directory, every file and directory is
//! synced, then `CURRENT` is switched with write-temp / fsync / rename / fsync-dir, then older
//! dumps are deleted. The dump covers every write with a sequence number at or below `covered`
//! (later writes may be in it too: applying them again on catch-up is harmless).
//! Index files are derived data: a missing or damaged dump is reported to the caller, which
//! rebuilds from the engine — never a failed start.

use std::fs;
use std::path::{Path, PathBuf};

use allidb_storage::codec;
use allidb_storage::types::SeqNo;

use super::facts::EntityMeta;
use super::tenant::TenantIndexes;
use crate::error::{Error, Result};
use crate::graph::EdgeSpec;
use crate::vector::{VectorIndex, VectorIndexOptions};

const CURRENT: &str = "CURRENT";
const META: &str = "META";

#[derive(bincode::Encode, bincode::Decode)]
struct Meta {
    covered: SeqNo,
    tenants: Vec<String>,
}

type GraphDump = Vec<(String, Vec<(String, String, f32)>)>;
type FactsDump = Vec<(String, EntityMeta)>;

fn tenant_dir(dump: &Path, tenant: &str) -> PathBuf {
    let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
    dump.join(format!("t-{hex}"))
}

fn sync_path(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

fn write_checked<T: bincode::Encode>(path: &Path, value: &T) -> Result<()> {
    let payload = codec::encode(value).map_err(|e| Error::corruption(path, e.to_string()))?;
    let mut bytes = crc32fast::hash(&payload).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    fs::write(path, &bytes).map_err(|e| Error::io(path, e))?;
    sync_path(path)
}

fn read_checked<T: bincode::Decode<()>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 4 {
        return Err(Error::corruption(path, "shorter than its checksum"));
    }
    let (crc, payload) = bytes.split_at(4);
    if crc32fast::hash(payload).to_le_bytes() != crc {
        return Err(Error::corruption(path, "checksum mismatch"));
    }
    codec::decode(payload).map_err(|e| Error::corruption(path, e.to_string()))
}

/// Writes a dump of `tenants` covering `covered` and makes it the current one.
pub fn dump(root: &Path, covered: SeqNo, tenants: &[(String, &TenantIndexes)]) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = format!("dump-{covered:012}");
    let dir = root.join(&name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for (tenant, indexes) in tenants {
        let tdir = tenant_dir(&dir, tenant);
        fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
        indexes.vectors.dump(&tdir.join("vectors"))?;
        let graph: GraphDump = indexes
            .graph
            .export()
            .into_iter()
            .map(|(from, edges)| {
                (
                    from,
                    edges
                        .into_iter()
                        .map(|e| (e.relation, e.to, e.weight))
                        .collect(),
                )
            })
            .collect();
        write_checked(&tdir.join("graph"), &graph)?;
        let facts: FactsDump = indexes
            .facts
            .read()
            .iter()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        write_checked(&tdir.join("facts"), &facts)?;
        sync_path(&tdir)?;
    }
    let meta = Meta {
        covered,
        tenants: tenants.iter().map(|(t, _)| t.clone()).collect(),
    };
    write_checked(&dir.join(META), &meta)?;
    sync_path(&dir)?;
    let tmp = root.join("CURRENT.tmp");
    fs::write(&tmp, format!("{name}\n")).map_err(|e| Error::io(&tmp, e))?;
    sync_path(&tmp)?;
    fs::rename(&tmp, root.join(CURRENT)).map_err(|e| Error::io(&tmp, e))?;
    sync_path(root)?;
    for entry in fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
    {
        let file_name = entry.file_name();
        let other = file_name.to_string_lossy();
        if other.starts_with("dump-") && other != name.as_str() {
            fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// A loaded dump: the sequence number it covers and each tenant's indexes.
pub struct Loaded {
    /// Every write at or below this is in the indexes.
    pub covered: SeqNo,
    /// The tenants' indexes.
    pub tenants: Vec<(String, TenantIndexes)>,
}

/// Loads the current dump. `Ok(None)`: there is none. An error means it is unusable (rebuild).
pub fn load(root: &Path, options: impl Fn(&str) -> VectorIndexOptions) -> Result<Option<Loaded>> {
    let current = root.join(CURRENT);
    if !current.exists() {
        return Ok(None);
    }
    let name = fs::read_to_string(&current).map_err(|e| Error::io(&current, e))?;
    let dir = root.join(name.trim());
    let meta: Meta = read_checked(&dir.join(META))?;
    let mut tenants = Vec::with_capacity(meta.tenants.len());
    for tenant in meta.tenants {
        let tdir = tenant_dir(&dir, &tenant);
        let indexes = TenantIndexes::with_vectors(VectorIndex::load(
            &tdir.join("vectors"),
            options(&tenant),
        )?);
        let graph: GraphDump = read_checked(&tdir.join("graph"))?;
        for (from, edges) in graph {
            let specs: Vec<EdgeSpec> = edges
                .into_iter()
                .map(|(relation, to, weight)| EdgeSpec {
                    relation,
                    to,
                    weight,
                })
                .collect();
            indexes
                .graph
                .replace_out_edges(&from, &specs, meta.covered)?;
        }
        let facts: FactsDump = read_checked(&tdir.join("facts"))?;
        {
            let mut table = indexes.facts.write();
            for (id, m) in facts {
                table.upsert(&id, m);
            }
        }
        tenants.push((tenant, indexes));
    }
    Ok(Some(Loaded {
        covered: meta.covered,
        tenants,
    }))
}
