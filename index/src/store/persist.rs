//! Persistence of the derived indexes, so a restart does not rebuild them (DESIGN.md §4).
//!
//! Layout under `<data dir>/index/`:
//!
//! ```text
//! CURRENT                    "dump-NNNNNN\n": the complete dump in use
//! dump-NNNNNN/META           checked file: covered sequence number + tenant list
//! dump-NNNNNN/t-<hex>/vectors/    VectorIndex::dump (id map, vectors, HNSW files)
//! dump-NNNNNN/t-<hex>/graph       record file: one record per out-edge
//! dump-NNNNNN/t-<hex>/facts       record file: one record per entity (type, attributes, ...)
//! dump-NNNNNN/t-<hex>/lexical     record file: one record per analyzed text document
//! dump-NNNNNN/t-<hex>/lexical-analyzer  checked file: the analyzer of those documents
//! ```
//!
//! A *checked file* is `crc32:u32 LE` (CRC-32/IEEE over the rest) followed by a versioned
//! payload (`allidb_storage::codec`; `META`'s version byte is the dump format,
//! [`DUMP_FORMAT`]). A *record file* holds any number of
//! entries without ever decoding more than one entry's payload at a time (so it is bounded by the
//! codec's payload limit per entry, not per file):
//!
//! ```text
//! magic "AIDXREC1" (8) | count:u64 LE | count x (len:u32 LE | payload) | crc32:u32 LE
//! ```
//!
//! where each payload is one entry in the versioned codec (version byte 1 for graph records, 3
//! for facts records, whose attributes are typed and which carry the expiry time, [`LEXICAL_FORMAT`] for lexical records) and the CRC-32 covers everything before it. `<hex>` is the tenant id in hex, so any tenant id is a safe file name.
//!
//! Protocol: a dump is written into a fresh `dump-N` directory, every file and directory is
//! synced, then `CURRENT` is switched with write-temp / fsync / rename / fsync-dir, then older
//! dumps are deleted. The dump covers every write with a sequence number at or below `covered`
//! (later writes may be in it too: applying them again on catch-up is harmless).
//! Index files are derived data: a missing or damaged dump is reported to the caller, which
//! rebuilds from the engine — never a failed start. A tenant whose lexical documents were
//! analyzed by another analyzer than the one now configured for it (a dump without
//! `lexical-analyzer` was analyzed by the default one), or whose dump was made with its
//! lexical index off (`lexical-off`) and has it on now, is loaded without them and listed in
//! [`Loaded::reanalyze`]: its lexical index is rebuilt from storage, never mixed. A store
//! checkpoint takes the current dump as it is ([`link_current`]: hard links, no new dump),
//! since a dump's files never change once written.

use std::fs;
use std::path::{Path, PathBuf};

use allidb_storage::codec;
use allidb_storage::types::SeqNo;

use super::facts::EntityMeta;
use super::tenant::TenantIndexes;
use crate::error::{Error, Result};
use crate::graph::EdgeSpec;
use crate::lexical::{Analyzer, DocTerms, LexicalSettings, analyzer};
use crate::vector::{VectorIndex, VectorIndexOptions};

const CURRENT: &str = "CURRENT";
const META: &str = "META";

#[derive(bincode::Encode, bincode::Decode)]
struct Meta {
    covered: SeqNo,
    tenants: Vec<String>,
}

/// Format of a dump, the payload version of its `META`: 2 since the graph holds each entity's
/// in-edge cells too (a dump of format 1 lacks the incoming edges of entities whose sources
/// the node does not hold, so it fails to load and the indexes are rebuilt from storage once).
const DUMP_FORMAT: u8 = 2;

/// Magic (with the format version) of a record file.
const RECORD_FILE_MAGIC: &[u8; 8] = b"AIDXREC1";

/// One out-edge of the graph dump: `(from, relation, to, weight)`.
type EdgeRecord = (String, String, String, f32);
/// One entity of the facts dump.
type FactRecord = (String, EntityMeta);

fn tenant_dir(dump: &Path, tenant: &str) -> PathBuf {
    let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
    dump.join(format!("t-{hex}"))
}

fn sync_path(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

fn write_checked<T: bincode::Encode>(path: &Path, format: u8, value: &T) -> Result<()> {
    let payload =
        codec::encode_as(format, value).map_err(|e| Error::corruption(path, e.to_string()))?;
    let mut bytes = crc32fast::hash(&payload).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    fs::write(path, &bytes).map_err(|e| Error::io(path, e))?;
    sync_path(path)
}

fn read_checked<T: bincode::Decode<()>>(path: &Path, format: u8) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 4 {
        return Err(Error::corruption(path, "shorter than its checksum"));
    }
    let (crc, payload) = bytes.split_at(4);
    if crc32fast::hash(payload).to_le_bytes() != crc {
        return Err(Error::corruption(path, "checksum mismatch"));
    }
    codec::decode_as(format, payload).map_err(|e| Error::corruption(path, e.to_string()))
}

/// Payload format of the facts records: 2 since attributes are typed, 3 since entities carry
/// an expiry time (a facts file of an older format fails to load, so the indexes are rebuilt
/// from storage once).
const FACTS_FORMAT: u8 = 3;
/// Payload format of the lexical records: 10 + the analyzer version, so a dump analyzed by
/// other rules fails to load and the indexes are rebuilt from storage (with today's rules).
const LEXICAL_FORMAT: u8 = 10 + analyzer::ANALYZER_VERSION;
/// Payload format of the `lexical-analyzer` file.
const ANALYZER_FORMAT: u8 = 1;
/// The file recording the analyzer of a tenant's lexical documents.
const LEXICAL_ANALYZER: &str = "lexical-analyzer";
/// The empty file marking a dump made while the tenant's lexical index was off (it holds no
/// documents: a node that has it on rebuilds it from storage).
const LEXICAL_OFF: &str = "lexical-off";
/// One document of the lexical dump: `(entity id, analyzed terms)`.
type LexicalRecord = (String, DocTerms);
/// Payload format of the graph records.
const GRAPH_FORMAT: u8 = codec::PAYLOAD_VERSION;

/// Writes `records` as a record file (see the module documentation), each payload behind
/// `format`, synced.
fn write_records<T: bincode::Encode>(
    path: &Path,
    format: u8,
    records: impl ExactSizeIterator<Item = T>,
) -> Result<()> {
    let mut bytes = RECORD_FILE_MAGIC.to_vec();
    bytes.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for record in records {
        let payload = codec::encode_as(format, &record)
            .map_err(|e| Error::corruption(path, e.to_string()))?;
        let len = u32::try_from(payload.len()).map_err(|_| {
            Error::corruption(path, "a record exceeds 4 GiB (the codec limit is lower)")
        })?;
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    fs::write(path, &bytes).map_err(|e| Error::io(path, e))?;
    sync_path(path)
}

/// Reads a record file written by [`write_records`] with `format`, handing each entry to
/// `visit` in order.
fn read_records<T: bincode::Decode<()>>(
    path: &Path,
    format: u8,
    mut visit: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let header = RECORD_FILE_MAGIC.len() + 8;
    if bytes.len() < header + 4 {
        return Err(Error::corruption(path, "shorter than a record file header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(Error::corruption(path, "checksum mismatch"));
    }
    if &body[..RECORD_FILE_MAGIC.len()] != RECORD_FILE_MAGIC {
        return Err(Error::corruption(
            path,
            "not a record file of a known version (bad magic)",
        ));
    }
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&body[RECORD_FILE_MAGIC.len()..header]);
    let count = u64::from_le_bytes(count_bytes);
    let mut offset = header;
    for index in 0..count {
        let truncated =
            || Error::corruption(path, format!("record {index} truncated at offset {offset}"));
        let len_end = offset
            .checked_add(4)
            .filter(|end| *end <= body.len())
            .ok_or_else(truncated)?;
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&body[offset..len_end]);
        let end = usize::try_from(u32::from_le_bytes(len_bytes))
            .ok()
            .and_then(|len| len_end.checked_add(len))
            .filter(|end| *end <= body.len())
            .ok_or_else(truncated)?;
        let record = codec::decode_as(format, &body[len_end..end]).map_err(|e| {
            Error::corruption(path, format!("record {index} at offset {offset}: {e}"))
        })?;
        visit(record)?;
        offset = end;
    }
    if offset != body.len() {
        return Err(Error::corruption(
            path,
            format!("{} bytes after the last record", body.len() - offset),
        ));
    }
    Ok(())
}

/// Writes a dump of `tenants` covering `covered` and makes it the current one.
pub fn dump(root: &Path, covered: SeqNo, tenants: &[(String, &TenantIndexes)]) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = format!("dump-{covered:012}");
    let dir = root.join(&name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let written = write_dump(&dir, covered, tenants);
    if written.is_err() {
        // A partial dump is never current; removing it gives its space back for the retry.
        if let Err(error) = fs::remove_dir_all(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "cannot remove a partial index dump");
        }
    }
    written?;
    make_current(root, &name)
}

/// Writes the files of a dump of `tenants` covering `covered` into `dir` (created), synced.
fn write_dump(dir: &Path, covered: SeqNo, tenants: &[(String, &TenantIndexes)]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (tenant, indexes) in tenants {
        let tdir = tenant_dir(dir, tenant);
        fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
        indexes.vectors.dump(&tdir.join("vectors"))?;
        let edges: Vec<EdgeRecord> = indexes
            .graph
            .export()
            .into_iter()
            .flat_map(|(from, edges)| {
                edges
                    .into_iter()
                    .map(move |e| (from.clone(), e.relation, e.to, e.weight))
            })
            .collect();
        write_records(&tdir.join("graph"), GRAPH_FORMAT, edges.into_iter())?;
        let facts: Vec<FactRecord> = indexes
            .facts
            .read()
            .iter()
            .map(|(id, m)| (id.to_string(), m.clone()))
            .collect();
        write_records(&tdir.join("facts"), FACTS_FORMAT, facts.into_iter())?;
        let docs = indexes.lexical.export_for_dump();
        write_records(&tdir.join("lexical"), LEXICAL_FORMAT, docs.into_iter())?;
        let analyzer = &indexes.lexical.options().analyzer;
        write_checked(&tdir.join(LEXICAL_ANALYZER), ANALYZER_FORMAT, analyzer)?;
        if !indexes.lexical.options().enabled {
            let off = tdir.join(LEXICAL_OFF);
            fs::File::create(&off)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&off, e))?;
        }
        sync_path(&tdir)?;
    }
    let meta = Meta {
        covered,
        tenants: tenants.iter().map(|(t, _)| t.clone()).collect(),
    };
    write_checked(&dir.join(META), DUMP_FORMAT, &meta)?;
    sync_path(dir)
}

/// Points `CURRENT` at dump `name` of `root` and removes the other dumps.
fn make_current(root: &Path, name: &str) -> Result<()> {
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
        if other.starts_with("dump-") && other != name {
            fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// What [`link_current`] put into a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linked {
    /// Every write at or below this is in the dump.
    pub covered: SeqNo,
    /// Tenants in the dump.
    pub tenants: usize,
}

/// Makes the current dump of `root` the current dump of `target` (a new index directory of a
/// checkpoint), without writing it again: every file is hard-linked (copied when linking
/// fails, e.g. across devices; the files of a dump are never modified once written, only
/// deleted), the directories and `CURRENT` synced. `Ok(None)`: `root` has no usable current
/// dump (none written yet, one invalidated, or a damaged `META`, logged), and `target` is left
/// as it was. The caller holds off dumps of `root` meanwhile (one would delete the dump being
/// linked).
///
/// Errors: I/O errors (what was created in `target` is left for the caller to remove).
pub fn link_current(root: &Path, target: &Path) -> Result<Option<Linked>> {
    let current = root.join(CURRENT);
    let name = match fs::read_to_string(&current) {
        Ok(name) => name.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&current, e)),
    };
    let dir = root.join(&name);
    let meta: Meta = match read_checked(&dir.join(META), DUMP_FORMAT) {
        Ok(meta) => meta,
        Err(error) => {
            tracing::warn!(%error, dump = %dir.display(),
                "the current index dump is unusable; the checkpoint gets a dump of its own");
            return Ok(None);
        }
    };
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    link_tree(&dir, &target.join(&name))?;
    let target_current = target.join(CURRENT);
    fs::write(&target_current, format!("{name}\n")).map_err(|e| Error::io(&target_current, e))?;
    sync_path(&target_current)?;
    sync_path(target)?;
    Ok(Some(Linked {
        covered: meta.covered,
        tenants: meta.tenants.len(),
    }))
}

/// Recreates the directory tree `from` as `to` (which must not exist), every file hard-linked
/// (copied and synced when linking fails), every directory synced.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).map_err(|e| Error::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        if entry
            .file_type()
            .map_err(|e| Error::io(&source, e))?
            .is_dir()
        {
            link_tree(&source, &dest)?;
        } else if let Err(error) = fs::hard_link(&source, &dest) {
            tracing::debug!(file = %source.display(), %error,
                "hard link failed; copying the index dump file instead");
            fs::copy(&source, &dest).map_err(|e| Error::io(&source, e))?;
            sync_path(&dest)?;
        }
    }
    sync_path(to)
}

/// Makes the current dump unusable (removes `CURRENT`, synced): the next open rebuilds the
/// indexes from storage, until the next dump. For a change of storage no WAL record carries
/// (a purge): a crash before the dump that follows it must not load indexes from before it.
pub fn invalidate(root: &Path) -> Result<()> {
    let current = root.join(CURRENT);
    match fs::remove_file(&current) {
        Ok(()) => sync_path(root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&current, e)),
    }
}

/// A loaded dump: the sequence number it covers and each tenant's indexes.
pub struct Loaded {
    /// Every write at or below this is in the indexes.
    pub covered: SeqNo,
    /// The tenants' indexes.
    pub tenants: Vec<(String, TenantIndexes)>,
    /// Tenants whose lexical documents were left out: analyzed by another analyzer than
    /// their configured one (their lexical index is empty, to be rebuilt from storage).
    pub reanalyze: Vec<String>,
}

/// Loads the current dump. `Ok(None)`: there is none. An error means it is unusable (rebuild).
pub fn load(
    root: &Path,
    options: impl Fn(&str) -> VectorIndexOptions,
    lexical: &LexicalSettings,
) -> Result<Option<Loaded>> {
    let current = root.join(CURRENT);
    if !current.exists() {
        return Ok(None);
    }
    let name = fs::read_to_string(&current).map_err(|e| Error::io(&current, e))?;
    let dir = root.join(name.trim());
    let meta: Meta = read_checked(&dir.join(META), DUMP_FORMAT)?;
    let mut tenants = Vec::with_capacity(meta.tenants.len());
    let mut reanalyze = Vec::new();
    for tenant in meta.tenants {
        let tdir = tenant_dir(&dir, &tenant);
        let lexical = lexical.of(&tenant);
        let indexes = TenantIndexes::with_vectors(
            VectorIndex::load(&tdir.join("vectors"), options(&tenant))?,
            lexical,
        )?;
        load_graph(&tdir.join("graph"), &indexes, meta.covered)?;
        read_records(&tdir.join("facts"), FACTS_FORMAT, |(id, m): FactRecord| {
            indexes.facts.write().upsert(&id, m);
            Ok(())
        })?;
        let analyzer_file = tdir.join(LEXICAL_ANALYZER);
        let dumped: Analyzer = match analyzer_file.exists() {
            true => read_checked(&analyzer_file, ANALYZER_FORMAT)?,
            false => Analyzer::default(),
        };
        let dumped_off = tdir.join(LEXICAL_OFF).exists();
        // An index that is off now loads nothing and needs no rebuild.
        let usable = dumped == lexical.analyzer && !dumped_off;
        if lexical.enabled && usable {
            read_records(
                &tdir.join("lexical"),
                LEXICAL_FORMAT,
                |(id, doc): LexicalRecord| {
                    indexes.lexical.upsert(&id, doc);
                    Ok(())
                },
            )?;
        } else if lexical.enabled {
            tracing::warn!(%tenant, ?dumped, dumped_off, configured = ?lexical.analyzer,
                "the dumped lexical index was analyzed by another analyzer or was off; rebuilding it from storage");
            reanalyze.push(tenant.clone());
        }
        tenants.push((tenant, indexes));
    }
    Ok(Some(Loaded {
        covered: meta.covered,
        tenants,
        reanalyze,
    }))
}

/// Loads the graph dump: the edges of one source entity are consecutive (the dump writes them
/// grouped), and each group replaces that entity's out-edges.
fn load_graph(path: &Path, indexes: &TenantIndexes, covered: SeqNo) -> Result<()> {
    let mut group: Option<(String, Vec<EdgeSpec>)> = None;
    let flush = |group: Option<(String, Vec<EdgeSpec>)>| match group {
        Some((from, specs)) => indexes.graph.replace_out_edges(&from, &specs, covered),
        None => Ok(()),
    };
    read_records(
        path,
        GRAPH_FORMAT,
        |(from, relation, to, weight): EdgeRecord| {
            let spec = EdgeSpec {
                relation,
                to,
                weight,
            };
            match &mut group {
                Some((current, specs)) if *current == from => specs.push(spec),
                _ => flush(group.replace((from, vec![spec])))?,
            }
            Ok(())
        },
    )?;
    flush(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(i: usize, padding: &str) -> EntityMeta {
        EntityMeta {
            entity_type: "doc".into(),
            attributes: [(
                "body".to_owned(),
                allidb_storage::cell::AttributeValue::String(padding.to_owned()),
            )]
            .into(),
            importance: i as f64,
            updated_at_micros: i as u64,
            body_ts: i as u64,
            expires_at_nanos: 0,
        }
    }

    /// A dump larger than the codec's per-payload limit (64 MiB) still writes and loads: the
    /// limit bounds each record, not the file. (The first format encoded the whole table as
    /// one payload, and stores of ~1M entities could not reload their dump.)
    #[test]
    fn record_files_may_exceed_the_payload_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facts");
        let padding = "x".repeat(1024);
        let count = codec::MAX_PAYLOAD / padding.len() + 1_000;
        write_records(
            &path,
            FACTS_FORMAT,
            (0..count).map(|i| (format!("e{i}"), meta(i, &padding))),
        )
        .unwrap();
        assert!(fs::metadata(&path).unwrap().len() > codec::MAX_PAYLOAD as u64);
        let mut read = 0usize;
        read_records(&path, FACTS_FORMAT, |(id, m): FactRecord| {
            assert_eq!(id, format!("e{read}"));
            assert_eq!(m, meta(read, &padding));
            read += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(read, count);
    }

    #[test]
    fn damaged_record_files_are_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facts");
        write_records(
            &path,
            FACTS_FORMAT,
            (0..100).map(|i| (format!("e{i}"), meta(i, "p"))),
        )
        .unwrap();
        let good = fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(),
            good[..RECORD_FILE_MAGIC.len() + 8].to_vec(),
            Vec::new(),
        ];
        for at in [0, 9, 20, good.len() / 2, good.len() - 5] {
            let mut flipped = good.clone();
            flipped[at] ^= 0x40;
            damaged.push(flipped);
        }
        for bytes in damaged {
            fs::write(&path, &bytes).unwrap();
            let result = read_records(&path, FACTS_FORMAT, |_: FactRecord| Ok(()));
            assert!(
                matches!(result, Err(Error::Corruption { .. })),
                "{} bytes: {result:?}",
                bytes.len()
            );
        }
    }
}
