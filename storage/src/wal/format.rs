//! The block-framed log format shared by the WAL and the manifest (LevelDB-style).
//!
//! Layout (log format version [`LOG_FORMAT_VERSION`] = 1, integers little endian):
//!
//! ```text
//! file     := block*                      (the last block may be short)
//! block    := fragment* trailer?          (BLOCK_SIZE = 32 KiB)
//! fragment := crc:u32 len:u16 type:u8 payload[len]
//! trailer  := 1..=6 zero bytes, when fewer than 7 bytes (one header) remain in the block
//! ```
//!
//! * `crc` is CRC-32/IEEE (the `crc32fast` crate) over the type byte followed by the payload;
//! * `type` is FULL=1 (a whole record), or FIRST=2, MIDDLE=3..., LAST=4 for a record split across
//!   blocks; a fragment never crosses a block boundary;
//! * the first record of every file is the **file header**: an 8-byte magic naming the kind of log
//!   (WAL, manifest, ...) followed by the format version byte. A reader refuses a file whose intact
//!   header names another kind or version ([`LogEnd::BadHeader`]) rather than guess.
//!
//! The reader classifies how a log ends: cleanly; with a torn or corrupt **tail** (a bad spot after
//! which no valid fragment exists — neither chained after a fragment whose only fault is its
//! checksum, nor at the start of any later block); or with **corruption in the middle** (a bad spot
//! followed by valid data, or valid fragments in an impossible order). Records are returned only
//! whole and checksum-verified.
//!
//! Must never: panic or read out of bounds on any input, return a record that failed its checksum,
//! or return part of a record.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::fs::WritableFile;

/// Size of a log block.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// Size of a fragment header: crc (4) + len (2) + type (1).
pub const HEADER_SIZE: usize = 7;
/// Version of the framing and file-header layout described in the module doc.
pub const LOG_FORMAT_VERSION: u8 = 1;
/// Length of the magic that opens every log file.
pub const MAGIC_LEN: usize = 8;

const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

const ZEROS: [u8; HEADER_SIZE] = [0; HEADER_SIZE];

fn fragment_crc(fragment_type: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[fragment_type]);
    hasher.update(payload);
    hasher.finalize()
}

fn file_header(magic: &[u8; MAGIC_LEN]) -> [u8; MAGIC_LEN + 1] {
    let mut header = [0; MAGIC_LEN + 1];
    header[..MAGIC_LEN].copy_from_slice(magic);
    header[MAGIC_LEN] = LOG_FORMAT_VERSION;
    header
}

/// Appends records to a new log file.
///
/// Invariant: `block_offset` is the file length modulo [`BLOCK_SIZE`]. After any error the file
/// may end in a partial fragment, so the writer refuses further records.
#[derive(Debug)]
pub struct LogWriter {
    file: Box<dyn WritableFile>,
    block_offset: usize,
    failed: bool,
}

impl LogWriter {
    /// Starts a log in an empty file by appending its file header (not yet flushed or synced).
    pub fn new(file: Box<dyn WritableFile>, magic: &[u8; MAGIC_LEN]) -> Result<Self> {
        if !file.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "a log must start in an empty file, this one has {} bytes",
                file.len()
            )));
        }
        let mut writer = Self {
            file,
            block_offset: 0,
            failed: false,
        };
        writer.add_record(&file_header(magic))?;
        Ok(writer)
    }

    /// Appends one record, split into fragments at block boundaries.
    pub fn add_record(&mut self, record: &[u8]) -> Result<()> {
        self.guard(|writer| writer.emit_record(record))
    }

    /// Hands appended bytes to the operating system.
    pub fn flush(&mut self) -> Result<()> {
        self.guard(|writer| writer.file.flush())
    }

    /// Flushes and makes the log durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<()> {
        self.guard(|writer| writer.file.sync_data())
    }

    /// Bytes in the log so far (file header included).
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    /// True when not even the file header is written (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    fn guard(&mut self, operation: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.failed {
            return Err(Error::Unavailable(
                "log writer failed earlier; its file may end in a partial record".to_owned(),
            ));
        }
        let result = operation(self);
        self.failed = result.is_err();
        result
    }

    fn emit_record(&mut self, record: &[u8]) -> Result<()> {
        let mut rest = record;
        let mut first = true;
        loop {
            let left_in_block = BLOCK_SIZE - self.block_offset;
            if left_in_block < HEADER_SIZE {
                self.file.append(&ZEROS[..left_in_block])?;
                self.block_offset = 0;
            }
            let room = BLOCK_SIZE - self.block_offset - HEADER_SIZE;
            let (payload, remainder) = rest.split_at(rest.len().min(room));
            let last = remainder.is_empty();
            let fragment_type = match (first, last) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, false) => MIDDLE,
                (false, true) => LAST,
            };
            self.emit_fragment(fragment_type, payload)?;
            if last {
                return Ok(());
            }
            rest = remainder;
            first = false;
        }
    }

    fn emit_fragment(&mut self, fragment_type: u8, payload: &[u8]) -> Result<()> {
        let len = u16::try_from(payload.len())
            .expect("a fragment payload fits in a block, and a block is smaller than 64 KiB");
        let mut header = [0u8; HEADER_SIZE];
        header[..4].copy_from_slice(&fragment_crc(fragment_type, payload).to_le_bytes());
        header[4..6].copy_from_slice(&len.to_le_bytes());
        header[6] = fragment_type;
        self.file.append(&header)?;
        self.file.append(payload)?;
        self.block_offset += HEADER_SIZE + payload.len();
        Ok(())
    }
}

/// How a log ended, known once [`LogReader`] has returned its last record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte belonged to a whole, valid record.
    Clean,
    /// A bad spot with nothing valid after it: a torn write, or damage to the last bytes.
    TornTail {
        /// End of the last whole record: truncating here keeps every valid record.
        good_len: u64,
        /// Offset of the bad spot.
        bad_offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// A bad spot followed by valid data: damage in the middle of the log.
    Corrupt {
        /// End of the last whole record before the bad spot.
        good_len: u64,
        /// Offset of the bad spot.
        bad_offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// The file header is intact but names another kind of log or an unknown format version.
    BadHeader {
        /// What the header held.
        reason: String,
    },
}

/// What is found at one fragment position.
enum Fragment<'a> {
    /// Checksum verified (the type byte is not interpreted yet).
    Valid {
        fragment_type: u8,
        payload: &'a [u8],
        next: usize,
    },
    /// Not a valid fragment. `next` is where the following fragment would start when only the
    /// checksum failed (the header is plausible), so the reader can look past it.
    Invalid {
        reason: &'static str,
        next: Option<usize>,
    },
}

/// Parses the fragment at `pos`, which must leave room for a header inside its block.
fn parse_fragment(bytes: &[u8], pos: usize) -> Fragment<'_> {
    let Some(header) = bytes.get(pos..pos + HEADER_SIZE) else {
        return Fragment::Invalid {
            reason: "truncated fragment header",
            next: None,
        };
    };
    if header == ZEROS {
        return Fragment::Invalid {
            reason: "zero-filled region",
            next: None,
        };
    }
    let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let fragment_type = header[6];
    let next = pos + HEADER_SIZE + len;
    if pos % BLOCK_SIZE + HEADER_SIZE + len > BLOCK_SIZE {
        return Fragment::Invalid {
            reason: "fragment length crosses the block boundary",
            next: None,
        };
    }
    let Some(payload) = bytes.get(pos + HEADER_SIZE..next) else {
        return Fragment::Invalid {
            reason: "truncated fragment payload",
            next: None,
        };
    };
    if fragment_crc(fragment_type, payload) != crc {
        return Fragment::Invalid {
            reason: "fragment checksum mismatch",
            next: Some(next),
        };
    }
    Fragment::Valid {
        fragment_type,
        payload,
        next,
    }
}

/// Reads the records of a log held in memory, in order, each with the offset of its first
/// fragment. Once it returns `None`, [`LogReader::end`] says how the log ended.
#[derive(Debug)]
pub struct LogReader<'a> {
    bytes: &'a [u8],
    /// Next fragment position.
    pos: usize,
    /// End of the last whole record read (file header included).
    good_len: usize,
    end: Option<LogEnd>,
}

impl<'a> LogReader<'a> {
    /// Starts reading `bytes`, checking the file header against `magic` and the format version.
    /// An empty input is a clean, empty log (a file created but never written).
    pub fn new(bytes: &'a [u8], magic: &[u8; MAGIC_LEN]) -> Self {
        let mut reader = Self {
            bytes,
            pos: 0,
            good_len: 0,
            end: None,
        };
        if let Some((_, header)) = reader.read_record()
            && *header != file_header(magic)
        {
            reader.end = Some(LogEnd::BadHeader {
                reason: describe_header(&header, magic),
            });
        }
        reader
    }

    /// End of the last whole record returned (the length that keeps every valid record).
    pub fn position(&self) -> u64 {
        self.good_len as u64
    }

    /// How the log ended; `None` until the reader has returned its last record.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    fn finish(&mut self, end: LogEnd) -> Option<(u64, Cow<'a, [u8]>)> {
        self.end = Some(end);
        None
    }

    /// Ends at a bad spot: a tail if nothing valid follows it, corruption otherwise.
    fn bad_spot(
        &mut self,
        bad_offset: usize,
        reason: &str,
        chain_from: Option<usize>,
        certainly_corrupt: bool,
    ) -> Option<(u64, Cow<'a, [u8]>)> {
        let good_len = self.good_len as u64;
        let bad_offset_u64 = bad_offset as u64;
        let reason = reason.to_owned();
        let end = if certainly_corrupt || self.valid_fragment_after(bad_offset, chain_from) {
            LogEnd::Corrupt {
                good_len,
                bad_offset: bad_offset_u64,
                reason,
            }
        } else {
            LogEnd::TornTail {
                good_len,
                bad_offset: bad_offset_u64,
                reason,
            }
        };
        self.finish(end)
    }

    /// True if a valid fragment follows the bad spot: chained within its block past fragments
    /// whose only fault is the checksum, or at the start of any later block.
    fn valid_fragment_after(&self, bad_offset: usize, chain_from: Option<usize>) -> bool {
        let next_block = (bad_offset / BLOCK_SIZE + 1) * BLOCK_SIZE;
        let mut chained = chain_from;
        while let Some(pos) = chained {
            if pos + HEADER_SIZE > next_block {
                break;
            }
            chained = match parse_fragment(self.bytes, pos) {
                Fragment::Valid { .. } => return true,
                Fragment::Invalid { next, .. } => next,
            };
        }
        (next_block..self.bytes.len())
            .step_by(BLOCK_SIZE)
            .any(|block| matches!(parse_fragment(self.bytes, block), Fragment::Valid { .. }))
    }

    fn read_record(&mut self) -> Option<(u64, Cow<'a, [u8]>)> {
        if self.end.is_some() {
            return None;
        }
        // Start offset and bytes of a record whose FIRST fragment has been read.
        let mut partial: Option<(usize, Vec<u8>)> = None;
        loop {
            if self.pos == self.bytes.len() {
                return match partial {
                    None => self.finish(LogEnd::Clean),
                    // Nothing follows the end of the file: the record's own earlier fragments,
                    // in blocks after `start`, are not valid data after damage.
                    Some((start, _)) => self.finish(LogEnd::TornTail {
                        good_len: self.good_len as u64,
                        bad_offset: start as u64,
                        reason: "log ends inside a fragmented record".to_owned(),
                    }),
                };
            }
            let left_in_block = BLOCK_SIZE - self.pos % BLOCK_SIZE;
            if left_in_block < HEADER_SIZE {
                let trailer_end = self.pos + left_in_block;
                let present = &self.bytes[self.pos..trailer_end.min(self.bytes.len())];
                if present.iter().any(|&b| b != 0) {
                    return self.bad_spot(self.pos, "non-zero block trailer", None, false);
                }
                if trailer_end > self.bytes.len() {
                    return self.bad_spot(self.pos, "log ends inside a block trailer", None, false);
                }
                self.pos = trailer_end;
                continue;
            }
            let fragment_pos = self.pos;
            let (fragment_type, payload, next) = match parse_fragment(self.bytes, fragment_pos) {
                Fragment::Valid {
                    fragment_type,
                    payload,
                    next,
                } => (fragment_type, payload, next),
                Fragment::Invalid { reason, next } => {
                    return self.bad_spot(fragment_pos, reason, next, false);
                }
            };
            let record = match (fragment_type, partial.as_mut()) {
                (FULL, None) => Some((fragment_pos, Cow::Borrowed(payload))),
                (FIRST, None) => {
                    partial = Some((fragment_pos, payload.to_vec()));
                    None
                }
                (MIDDLE, Some((_, bytes))) => {
                    bytes.extend_from_slice(payload);
                    None
                }
                (LAST, Some(_)) => partial.take().map(|(start, mut bytes)| {
                    bytes.extend_from_slice(payload);
                    (start, Cow::Owned(bytes))
                }),
                (FULL | FIRST, Some(_)) => {
                    return self.bad_spot(
                        fragment_pos,
                        "a record starts before the previous one ended",
                        None,
                        true,
                    );
                }
                (MIDDLE | LAST, None) => {
                    return self.bad_spot(
                        fragment_pos,
                        "continuation fragment without a first fragment",
                        None,
                        true,
                    );
                }
                _ => {
                    return self.bad_spot(fragment_pos, "unknown fragment type", None, true);
                }
            };
            self.pos = next;
            if let Some((start, bytes)) = record {
                self.good_len = next;
                return Some((start as u64, bytes));
            }
        }
    }
}

impl<'a> Iterator for LogReader<'a> {
    type Item = (u64, Cow<'a, [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        self.read_record()
    }
}

fn describe_header(found: &[u8], magic: &[u8; MAGIC_LEN]) -> String {
    match found.split_at_checked(MAGIC_LEN) {
        Some((found_magic, [version])) if found_magic == magic => format!(
            "unsupported log format version {version} (this build reads {LOG_FORMAT_VERSION})"
        ),
        _ => format!(
            "file header {:?} is not a {:?} log header",
            String::from_utf8_lossy(found),
            String::from_utf8_lossy(magic)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FileSystem;
    use crate::fs::sim::SimFileSystem;
    use proptest::prelude::*;
    use std::path::Path;

    const MAGIC: &[u8; MAGIC_LEN] = b"TESTLOG\0";

    /// Writes `records` as a log and returns its bytes.
    fn encode_log(records: &[Vec<u8>]) -> Vec<u8> {
        let fs = SimFileSystem::new();
        let path = Path::new("log");
        let mut writer = LogWriter::new(fs.create(path).unwrap(), MAGIC).unwrap();
        for record in records {
            writer.add_record(record).unwrap();
        }
        writer.flush().unwrap();
        let bytes = fs.read(path).unwrap();
        assert_eq!(bytes.len() as u64, writer.len());
        bytes
    }

    fn read_all(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, LogEnd) {
        let mut reader = LogReader::new(bytes, MAGIC);
        let records = reader.by_ref().map(|(o, r)| (o, r.into_owned())).collect();
        let end = reader.end().cloned().expect("the reader ended");
        (records, end)
    }

    fn record(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn round_trips_records_of_every_shape() {
        // Empty, small, exactly filling a block, spanning several blocks, and records that leave
        // less than a header at the end of a block (trailer) or exactly a header (empty FIRST).
        let mut records = vec![Vec::new(), record(10, 1), record(BLOCK_SIZE * 3 + 17, 2)];
        let used = encode_log(&records).len() % BLOCK_SIZE;
        records.push(record(BLOCK_SIZE - used - HEADER_SIZE - 3, 3));
        records.push(record(100, 4));
        let used = encode_log(&records).len() % BLOCK_SIZE;
        records.push(record(BLOCK_SIZE - used - 2 * HEADER_SIZE, 5));
        records.push(record(50, 6));
        let bytes = encode_log(&records);
        let (read, end) = read_all(&bytes);
        assert_eq!(end, LogEnd::Clean);
        let read: Vec<Vec<u8>> = read.into_iter().map(|(_, r)| r).collect();
        assert_eq!(read, records);
    }

    #[test]
    fn offsets_point_at_each_record_and_position_at_its_end() {
        let records = vec![record(5, 1), record(BLOCK_SIZE, 2), record(7, 3)];
        let bytes = encode_log(&records);
        let mut reader = LogReader::new(&bytes, MAGIC);
        let header_len = HEADER_SIZE + MAGIC_LEN + 1;
        assert_eq!(reader.position(), header_len as u64);
        let (offset, _) = reader.next().unwrap();
        assert_eq!(offset, header_len as u64);
        assert_eq!(reader.position(), (header_len + HEADER_SIZE + 5) as u64);
        let (offset, _) = reader.next().unwrap();
        assert_eq!(offset, (header_len + HEADER_SIZE + 5) as u64);
        reader.next().unwrap();
        assert_eq!(reader.position(), bytes.len() as u64);
        assert!(reader.next().is_none());
        assert_eq!(reader.end(), Some(&LogEnd::Clean));
    }

    #[test]
    fn empty_input_is_a_clean_empty_log() {
        assert_eq!(read_all(&[]), (Vec::new(), LogEnd::Clean));
    }

    #[test]
    fn a_foreign_or_newer_header_is_refused() {
        let bytes = encode_log(&[record(3, 1)]);
        let mut reader = LogReader::new(&bytes, b"OTHERLOG");
        assert!(reader.next().is_none());
        assert!(matches!(reader.end(), Some(LogEnd::BadHeader { .. })));

        let fs = SimFileSystem::new();
        let mut writer = LogWriter::new(fs.create(Path::new("log")).unwrap(), MAGIC).unwrap();
        writer.add_record(b"x").unwrap();
        writer.flush().unwrap();
        let mut bytes = fs.read(Path::new("log")).unwrap();
        // Rewrite the header record as version 2 with a valid checksum.
        bytes[HEADER_SIZE + MAGIC_LEN] = 2;
        let crc = fragment_crc(FULL, &bytes[HEADER_SIZE..HEADER_SIZE + MAGIC_LEN + 1]);
        bytes[..4].copy_from_slice(&crc.to_le_bytes());
        let (records, end) = read_all(&bytes);
        assert!(records.is_empty());
        match end {
            LogEnd::BadHeader { reason } => assert!(reason.contains("version 2"), "{reason}"),
            other => panic!("expected BadHeader, got {other:?}"),
        }
    }

    #[test]
    fn a_cut_anywhere_is_a_torn_tail_keeping_whole_records() {
        let records = vec![record(100, 1), record(BLOCK_SIZE + 500, 2), record(300, 3)];
        let bytes = encode_log(&records);
        let (full, _) = read_all(&bytes);
        // Ends of the file header and of each record, ascending.
        let mut ends = vec![(HEADER_SIZE + MAGIC_LEN + 1) as u64];
        ends.extend(full.iter().skip(1).map(|(offset, _)| *offset));
        ends.push(bytes.len() as u64);
        for cut in 0..bytes.len() {
            let (read, end) = read_all(&bytes[..cut]);
            let whole = ends[1..].iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(read, full[..whole], "cut at {cut}");
            let kept = ends.iter().rev().find(|&&e| e <= cut as u64).copied();
            match end {
                LogEnd::Clean => assert_eq!(kept.unwrap_or(0), cut as u64, "cut at {cut}"),
                LogEnd::TornTail { good_len, .. } => {
                    assert_eq!(good_len, kept.unwrap_or(0), "cut at {cut}")
                }
                other => panic!("cut at {cut}: expected a torn tail, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_flipped_byte_before_valid_data_is_corruption_in_the_middle() {
        let records = vec![record(100, 1), record(200, 2), record(BLOCK_SIZE, 3)];
        let bytes = encode_log(&records);
        let (full, _) = read_all(&bytes);
        // A payload byte of the first record (same block as the second): found by chaining.
        let mut damaged = bytes.clone();
        damaged[full[0].0 as usize + HEADER_SIZE + 10] ^= 0x40;
        let (read, end) = read_all(&damaged);
        assert!(read.is_empty());
        assert!(
            matches!(end, LogEnd::Corrupt { bad_offset, good_len, .. }
                if bad_offset == full[0].0 && good_len == full[0].0),
            "{end:?}"
        );
        // A length byte of the first record: only the later block still holds valid data.
        let mut damaged = bytes.clone();
        damaged[full[0].0 as usize + 4] ^= 0x01;
        assert!(matches!(read_all(&damaged).1, LogEnd::Corrupt { .. }));
        // The same damage to the last record is a tail.
        let mut damaged = bytes.clone();
        let last = bytes.len() - 3;
        damaged[last] ^= 0x01;
        assert!(matches!(read_all(&damaged).1, LogEnd::TornTail { .. }));
    }

    #[test]
    fn fragments_out_of_order_are_corruption() {
        let bytes = encode_log(&[record(BLOCK_SIZE, 1), record(10, 2)]);
        // Replace block 0 (header + FIRST fragment) by the header and a filler record, so that
        // block 1 opens with a LAST fragment no FIRST precedes.
        let header_len = HEADER_SIZE + MAGIC_LEN + 1;
        let mut spliced = bytes[..header_len].to_vec();
        spliced.resize(BLOCK_SIZE, 0);
        let trailer = BLOCK_SIZE - header_len;
        let payload = vec![7u8; trailer - HEADER_SIZE];
        let mut fragment = fragment_crc(FULL, &payload).to_le_bytes().to_vec();
        fragment.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        fragment.push(FULL);
        fragment.extend_from_slice(&payload);
        spliced[header_len..].copy_from_slice(&fragment);
        spliced.extend_from_slice(&bytes[BLOCK_SIZE..]);
        let (read, end) = read_all(&spliced);
        assert_eq!(read.len(), 1);
        assert!(
            matches!(&end, LogEnd::Corrupt { bad_offset, .. } if *bad_offset == BLOCK_SIZE as u64),
            "{end:?}"
        );
    }

    #[test]
    fn writer_refuses_a_non_empty_file() {
        let fs = SimFileSystem::new();
        let mut file = fs.create(Path::new("log")).unwrap();
        file.append(b"x").unwrap();
        assert!(matches!(
            LogWriter::new(file, MAGIC),
            Err(Error::InvalidArgument(_))
        ));
    }

    fn read_never_panics(bytes: &[u8]) {
        let mut reader = LogReader::new(bytes, MAGIC);
        let mut last_offset = None;
        for (offset, _) in reader.by_ref() {
            assert!(last_offset < Some(offset));
            assert!(offset < bytes.len() as u64);
            last_offset = Some(offset);
        }
        assert!(reader.position() <= bytes.len() as u64);
        assert!(reader.end().is_some());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3 * BLOCK_SIZE)) {
            read_never_panics(&bytes);
        }

        #[test]
        fn mutated_logs_never_panic_and_keep_a_prefix(
            lens in proptest::collection::vec(0usize..20_000, 1..8),
            mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let records: Vec<Vec<u8>> =
                lens.iter().enumerate().map(|(i, &len)| record(len, i as u8)).collect();
            let bytes = encode_log(&records);
            let mut damaged = bytes.clone();
            for (index, value) in &mutations {
                let i = index.index(damaged.len());
                damaged[i] = *value;
            }
            damaged.truncate(cut.index(damaged.len() + 1));
            read_never_panics(&damaged);
            // Whatever is returned is the original records, in order, from the start.
            let (read, _) = read_all(&damaged);
            if !matches!(LogReader::new(&damaged, MAGIC).end(), Some(LogEnd::BadHeader { .. })) {
                for (i, (_, r)) in read.iter().enumerate() {
                    prop_assert_eq!(r, &records[i]);
                }
            }
        }
    }
}
