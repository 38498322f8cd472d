//! TEXMEX `.fvecs` / `.ivecs` files (per row an int32 count, then that many 4-byte values,
//! little-endian): read by the recall tests and the index benchmarks, written by `dup_sweep` for
//! `bench/hnswlib_sweep.py`.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Reads a TEXMEX file; `convert` decodes one value.
pub fn read_vecs<T>(path: &Path, convert: fn([u8; 4]) -> T) -> Vec<Vec<T>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut offset = 0;
    while offset + 4 <= bytes.len() {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let dim = i32::from_le_bytes(word(offset)) as usize;
        offset += 4;
        rows.push((0..dim).map(|i| convert(word(offset + 4 * i))).collect());
        offset += 4 * dim;
    }
    rows
}

/// Writes `rows` as a TEXMEX file; `encode` encodes one value.
pub fn write_vecs<T: Copy>(path: &Path, rows: &[Vec<T>], encode: fn(T) -> [u8; 4]) {
    let file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = std::io::BufWriter::new(file);
    let written = rows.iter().try_for_each(|row| {
        out.write_all(&(row.len() as i32).to_le_bytes())?;
        row.iter().try_for_each(|x| out.write_all(&encode(*x)))
    });
    written
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
