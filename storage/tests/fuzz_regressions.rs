//! Inputs the fuzz targets (fuzz/fuzz_targets/) found to break a promise of the storage crate,
//! kept as plain tests so the fixes stay fixed without a fuzzing toolchain.

use std::path::Path;

use allidb_storage::batch::WriteBatch;
use allidb_storage::fs::FileSystem;
use allidb_storage::fs::sim::SimFileSystem;
use allidb_storage::key::CellKey;
use allidb_storage::wal::format::{BLOCK_SIZE, LogEnd, LogReader, LogWriter};
use allidb_storage::wal::{self, RecoveryMode, WAL_MAGIC};

/// entity_payload_decoder: `CellKey::decode` accepted an edge key whose other entity id held a
/// NUL (`tenant "" 0x00 id "" 0x00 kind 2 relation "" 0x00 other "\0"`), breaking the key
/// layout's invariant that every string is NUL-free (on which its byte order rests).
#[test]
fn cell_key_with_a_nul_inside_the_other_entity_id_is_refused() {
    for bytes in [
        &[0u8, 0, 2, 0, 0][..],
        b"t\0e\0\x02rel\0a\0b",
        b"t\0e\0\x03rel\0\0",
    ] {
        let result = CellKey::decode(bytes);
        assert!(result.is_err(), "{bytes:?} decoded to {result:?}");
    }
    // The same key without the stray NUL still decodes and round-trips.
    let valid = b"t\0e\0\x02rel\0ab";
    assert_eq!(CellKey::decode(valid).unwrap().encode(), valid);
}

/// wal_record_reader: a WAL cut exactly at a 32 KiB block boundary inside a record that spans
/// several blocks (a power loss that kept a page-aligned prefix) was reported as corruption in
/// the middle of the log, because the record's own fragments in the later blocks counted as
/// "valid data after the damage"; recovery then refused to open the database. It is a torn tail.
#[test]
fn log_cut_at_a_block_boundary_inside_a_multi_block_record_is_a_torn_tail() {
    let fs = SimFileSystem::new();
    let dir = Path::new("/wal");
    fs.create_dir_all(dir).unwrap();
    let path = wal::segment_path(dir, 1);
    let mut small = WriteBatch::new();
    small.put(b"a".to_vec(), 1, b"first".to_vec());
    let mut large = WriteBatch::new();
    large.put(b"b".to_vec(), 1, vec![7; 3 * BLOCK_SIZE]);
    let mut log = LogWriter::new(fs.create(&path).unwrap(), WAL_MAGIC).unwrap();
    for (seq, batch) in [(1, &small), (2, &large)] {
        let mut record = Vec::new();
        batch.encode(seq, &mut record);
        log.add_record(&record).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let whole = fs.read(&path).unwrap();

    for blocks in 1..=3 {
        let cut = &whole[..blocks * BLOCK_SIZE];
        let mut reader = LogReader::new(cut, WAL_MAGIC);
        assert_eq!(
            reader.by_ref().count(),
            1,
            "the small record (the header is not returned)"
        );
        assert!(
            matches!(reader.end(), Some(LogEnd::TornTail { .. })),
            "cut after {blocks} blocks: {:?}",
            reader.end()
        );

        let mut file = fs.create(&path).unwrap();
        file.append(cut).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let mut replayed = Vec::new();
        let report = wal::recover(&fs, dir, 1, RecoveryMode::TolerateTornTail, |seq, batch| {
            replayed.push((seq, batch));
            Ok(())
        })
        .unwrap();
        assert_eq!(replayed, vec![(1, small.clone())]);
        assert!(report.torn_tail.is_some());
    }
}
