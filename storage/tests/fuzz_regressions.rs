//! Inputs the fuzz targets (fuzz/fuzz_targets/) found to break a promise of the storage crate,
//! kept as plain tests so the fixes stay fixed without a fuzzing toolchain.

use allidb_storage::key::CellKey;

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
