//! Streaming readers of TEXMEX vector files (`.fvecs`, `.ivecs`): per row a little-endian int32
//! count followed by that many 4-byte little-endian values (float32 or int32).
//!
//! Rows are read one at a time, so a base set of any size is ingested in bounded memory.
//! Invariant: a malformed file (negative or huge count, a count that changes between rows, a
//! truncated row, NaN or infinite floats) is an error naming the file and the byte offset, never
//! a panic or an unbounded allocation.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::error::{CliError, CliResult};

/// Largest row length accepted (a guard against allocating from a garbage count).
pub const MAX_ROW_LEN: usize = 1 << 16;

/// One 4-byte little-endian value type of a TEXMEX file.
pub trait VecsValue: Sized + Copy {
    /// Decodes one value; `None` when it is not acceptable (a non-finite float).
    fn decode(bytes: [u8; 4]) -> Option<Self>;
}

impl VecsValue for f32 {
    fn decode(bytes: [u8; 4]) -> Option<Self> {
        Some(f32::from_le_bytes(bytes)).filter(|value| value.is_finite())
    }
}

impl VecsValue for i32 {
    fn decode(bytes: [u8; 4]) -> Option<Self> {
        Some(i32::from_le_bytes(bytes))
    }
}

/// Reads the rows of one TEXMEX file in order.
#[derive(Debug)]
pub struct VecsReader<R> {
    reader: R,
    path: PathBuf,
    offset: u64,
    row_len: Option<usize>,
    rows_read: u64,
}

impl VecsReader<BufReader<File>> {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> CliResult<Self> {
        let file = File::open(path).map_err(|source| CliError::io(path, source))?;
        Ok(Self::new(BufReader::with_capacity(1 << 20, file), path))
    }
}

impl<R: Read> VecsReader<R> {
    /// Reads rows from `reader`; `path` names it in errors.
    pub fn new(reader: R, path: &Path) -> Self {
        Self {
            reader,
            path: path.to_owned(),
            offset: 0,
            row_len: None,
            rows_read: 0,
        }
    }

    /// The number of rows returned so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> CliError {
        CliError::input(
            format!("{} at byte {}", self.path.display(), self.offset),
            reason,
        )
    }

    /// Fills `buf`; `Ok(false)` at a clean end of file before the first byte.
    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> CliResult<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.malformed("the file ends inside a row")),
                Ok(n) => filled += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(CliError::io(&self.path, source)),
            }
        }
        Ok(true)
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row<T: VecsValue>(&mut self) -> CliResult<Option<Vec<T>>> {
        let mut header = [0u8; 4];
        if !self.read_exact_or_eof(&mut header)? {
            return Ok(None);
        }
        let count = i32::from_le_bytes(header);
        let len = usize::try_from(count)
            .ok()
            .filter(|len| (1..=MAX_ROW_LEN).contains(len))
            .ok_or_else(|| {
                self.malformed(format!("row length {count} is not in 1..={MAX_ROW_LEN}"))
            })?;
        if let Some(expected) = self.row_len.filter(|expected| *expected != len) {
            return Err(self.malformed(format!(
                "row {} has length {len}, earlier rows {expected}",
                self.rows_read
            )));
        }
        let mut bytes = vec![0u8; len * 4];
        if !self.read_exact_or_eof(&mut bytes)? {
            return Err(self.malformed("the file ends inside a row"));
        }
        let row = bytes
            .chunks_exact(4)
            .map(|chunk| T::decode([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect::<Option<Vec<T>>>()
            .ok_or_else(|| {
                self.malformed(format!("row {} holds a non-finite value", self.rows_read))
            })?;
        self.offset += 4 + bytes.len() as u64;
        self.row_len = Some(len);
        self.rows_read += 1;
        Ok(Some(row))
    }
}

/// Reads every row of a (small) TEXMEX file: query sets and ground truth.
pub fn read_all<T: VecsValue>(path: &Path) -> CliResult<Vec<Vec<T>>> {
    let mut reader = VecsReader::open(path)?;
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row()? {
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(CliError::input(
            path.display().to_string(),
            "the file holds no rows",
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn encode(rows: &[&[f32]]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            out.extend_from_slice(&(row.len() as i32).to_le_bytes());
            for value in *row {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }

    fn read(bytes: Vec<u8>) -> CliResult<Vec<Vec<f32>>> {
        let mut reader = VecsReader::new(Cursor::new(bytes), Path::new("t.fvecs"));
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn rows_round_trip() {
        let rows = read(encode(&[&[1.0, 2.0], &[3.0, -4.5]])).unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, -4.5]]);
        assert!(read(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn malformed_files_are_errors_with_offsets() {
        let mut truncated = encode(&[&[1.0, 2.0]]);
        truncated.pop();
        let error = read(truncated).unwrap_err().to_string();
        assert!(
            error.contains("t.fvecs at byte 0") && error.contains("ends inside"),
            "{error}"
        );

        let mut half_header = encode(&[&[1.0]]);
        half_header.extend_from_slice(&[1, 0]);
        let error = read(half_header).unwrap_err().to_string();
        assert!(error.contains("at byte 8"), "{error}");

        let changing = encode(&[&[1.0, 2.0], &[3.0]]);
        assert!(
            read(changing)
                .unwrap_err()
                .to_string()
                .contains("earlier rows 2")
        );

        for count in [0i32, -1, i32::MAX] {
            let error = read(count.to_le_bytes().to_vec()).unwrap_err().to_string();
            assert!(error.contains("row length"), "{error}");
        }
        let error = read(encode(&[&[f32::NAN]])).unwrap_err().to_string();
        assert!(error.contains("non-finite"), "{error}");
    }
}
