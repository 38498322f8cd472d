//! Byte-level primitives of the SSTable format (docs/storage.md §7): varints, a bounds-checked
//! reader, block trailers and handles, the footer and the properties block.
//!
//! Invariant: every decoder here returns [`Malformed`] on any input it cannot parse; none indexes
//! a slice without checking, so malformed bytes never panic.

use crate::types::InternalKey;

use super::TableProperties;

/// Why a region of a table does not parse; the caller turns it into
/// [`crate::Error::Corruption`] with the file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

impl From<&str> for Malformed {
    fn from(reason: &str) -> Self {
        Malformed(reason.to_owned())
    }
}

/// Result of a decoder.
pub(crate) type Parsed<T> = std::result::Result<T, Malformed>;

/// Bytes of the trailer after every block: compression byte + crc32.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;
/// The only compression of format version 1.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// Bytes of the fixed footer.
pub(crate) const FOOTER_LEN: usize = 64;
/// Last 8 bytes of every table.
pub(crate) const TABLE_MAGIC: [u8; 8] = *b"ALLISST\x01";
/// The table format version written into the footer.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// The properties block version.
const PROPERTIES_VERSION: u8 = 1;
/// Footer bytes covered by the footer checksum.
const FOOTER_CHECKED_LEN: usize = 52;

/// Appends `value` as unsigned LEB128.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `key` as `key_len varint, user_key, ts u64, seq u64`.
fn put_internal_key(out: &mut Vec<u8>, key: &InternalKey) {
    put_varint(out, key.user_key.len() as u64);
    out.extend_from_slice(&key.user_key);
    out.extend_from_slice(&key.ts.to_le_bytes());
    out.extend_from_slice(&key.seq.to_le_bytes());
}

/// A forward reader over a byte slice whose every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// True when every byte has been consumed.
    pub(crate) fn is_at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    /// The next `len` bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Parsed<&'a [u8]> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                Malformed(format!(
                    "need {len} bytes at {}, only {} left",
                    self.position,
                    self.bytes.len() - self.position
                ))
            })?;
        let out = &self.bytes[self.position..end];
        self.position = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Parsed<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Parsed<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Parsed<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Parsed<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// An unsigned LEB128 value of at most 10 bytes that fits a `u64`.
    pub(crate) fn varint(&mut self) -> Parsed<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let group = u64::from(byte & 0x7f);
            if shift == 63 && group > 1 {
                return Err("varint overflows u64".into());
            }
            value |= group << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A varint that must fit a `usize` (lengths and offsets).
    pub(crate) fn varint_len(&mut self) -> Parsed<usize> {
        let value = self.varint()?;
        usize::try_from(value).map_err(|_| Malformed(format!("length {value} exceeds usize")))
    }

    fn internal_key(&mut self) -> Parsed<InternalKey> {
        let len = self.varint_len()?;
        let user_key = self.bytes(len)?.to_vec();
        let ts = self.u64()?;
        let seq = self.u64()?;
        Ok(InternalKey { user_key, ts, seq })
    }
}

/// Where a block's bytes are (the 5-byte trailer follows at `offset + size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl BlockHandle {
    /// Offset just past the block's trailer, `None` on overflow.
    pub(crate) fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }

    /// Appends the handle as two varints (the index block's value).
    pub(crate) fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint(out, self.offset);
        put_varint(out, self.size);
    }

    /// Decodes a handle written by [`BlockHandle::encode_to`]; the whole input must be consumed.
    pub(crate) fn decode(bytes: &[u8]) -> Parsed<Self> {
        let mut reader = ByteReader::new(bytes);
        let offset = reader.varint()?;
        let size = reader.varint()?;
        if !reader.is_at_end() {
            return Err("trailing bytes after block handle".into());
        }
        Ok(Self { offset, size })
    }
}

/// The block trailer for `block`: compression byte, then crc32 over block bytes + that byte.
pub(crate) fn block_trailer(block: &[u8]) -> [u8; BLOCK_TRAILER_LEN] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(block);
    hasher.update(&[COMPRESSION_NONE]);
    let crc = hasher.finalize().to_le_bytes();
    [COMPRESSION_NONE, crc[0], crc[1], crc[2], crc[3]]
}

/// The bytes of the block at `handle` in `file`, after checking bounds and the trailer.
pub(crate) fn verified_block(file: &[u8], handle: BlockHandle) -> Parsed<&[u8]> {
    let end = handle
        .end_with_trailer()
        .filter(|end| *end <= file.len() as u64)
        .ok_or_else(|| {
            Malformed(format!(
                "block of {} bytes extends past the end of the {}-byte file",
                handle.size,
                file.len()
            ))
        })?;
    // Both fit in usize: they are bounded by `file.len()`.
    let start = handle.offset as usize;
    let trailer_start = end as usize - BLOCK_TRAILER_LEN;
    let block = &file[start..trailer_start];
    let trailer = &file[trailer_start..end as usize];
    if trailer != block_trailer(block) {
        return Err(if trailer[0] != COMPRESSION_NONE {
            Malformed(format!(
                "unknown block compression {} (or damaged trailer)",
                trailer[0]
            ))
        } else {
            "block checksum mismatch".into()
        });
    }
    Ok(block)
}

/// The fixed footer: where the filter, properties and index blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) filter: BlockHandle,
    pub(crate) properties: BlockHandle,
    pub(crate) index: BlockHandle,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        for handle in [self.filter, self.properties, self.index] {
            out.extend_from_slice(&handle.offset.to_le_bytes());
            out.extend_from_slice(&handle.size.to_le_bytes());
        }
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&[0; 3]);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&TABLE_MAGIC);
        let mut footer = [0u8; FOOTER_LEN];
        footer.copy_from_slice(&out);
        footer
    }

    /// Decodes the last [`FOOTER_LEN`] bytes of a table; checks magic, checksum, version and
    /// that the regions tile `[data_end, file_len - FOOTER_LEN)` in the documented order.
    pub(crate) fn decode(bytes: &[u8], file_len: u64) -> Parsed<Self> {
        if bytes.len() != FOOTER_LEN {
            return Err(Malformed(format!("footer must be {FOOTER_LEN} bytes")));
        }
        if bytes[FOOTER_LEN - TABLE_MAGIC.len()..] != TABLE_MAGIC {
            return Err("bad magic: not an AlliDB SSTable".into());
        }
        let mut reader = ByteReader::new(bytes);
        let mut handle = || -> Parsed<BlockHandle> {
            Ok(BlockHandle {
                offset: reader.u64()?,
                size: reader.u64()?,
            })
        };
        let (filter, properties, index) = (handle()?, handle()?, handle()?);
        let version = reader.u8()?;
        let reserved: [u8; 3] = reader.array()?;
        let stored_crc = reader.u32()?;
        if crc32fast::hash(&bytes[..FOOTER_CHECKED_LEN]) != stored_crc {
            return Err("footer checksum mismatch".into());
        }
        if version != FORMAT_VERSION {
            return Err(Malformed(format!(
                "unsupported table format version {version}"
            )));
        }
        if reserved != [0; 3] {
            return Err("non-zero reserved footer bytes".into());
        }
        let footer = Footer {
            filter,
            properties,
            index,
        };
        let tiles = filter.end_with_trailer() == Some(properties.offset)
            && properties.end_with_trailer() == Some(index.offset)
            && index.end_with_trailer() == file_len.checked_sub(FOOTER_LEN as u64);
        if !tiles {
            return Err("footer block handles do not tile the file".into());
        }
        Ok(footer)
    }
}

/// Encodes the properties block (format version 1). `file_size` is not stored.
pub(crate) fn encode_properties(properties: &TableProperties) -> Vec<u8> {
    let mut out = vec![PROPERTIES_VERSION];
    put_internal_key(&mut out, &properties.smallest);
    put_internal_key(&mut out, &properties.largest);
    for value in [
        properties.entries,
        properties.tombstones,
        properties.min_ts,
        properties.max_ts,
        properties.min_seq,
        properties.max_seq,
        properties.raw_key_bytes,
        properties.raw_value_bytes,
        properties.data_blocks,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Decodes and sanity-checks a properties block; `file_size` is filled in from the caller.
pub(crate) fn decode_properties(bytes: &[u8], file_size: u64) -> Parsed<TableProperties> {
    let mut reader = ByteReader::new(bytes);
    let version = reader.u8()?;
    if version != PROPERTIES_VERSION {
        return Err(Malformed(format!(
            "unsupported properties version {version}"
        )));
    }
    let smallest = reader.internal_key()?;
    let largest = reader.internal_key()?;
    let properties = TableProperties {
        smallest,
        largest,
        entries: reader.u64()?,
        tombstones: reader.u64()?,
        min_ts: reader.u64()?,
        max_ts: reader.u64()?,
        min_seq: reader.u64()?,
        max_seq: reader.u64()?,
        raw_key_bytes: reader.u64()?,
        raw_value_bytes: reader.u64()?,
        data_blocks: reader.u64()?,
        file_size,
    };
    if !reader.is_at_end() {
        return Err("trailing bytes after properties".into());
    }
    let consistent = properties.smallest <= properties.largest
        && properties.entries >= 1
        && properties.tombstones <= properties.entries
        && properties.data_blocks >= 1
        && properties.data_blocks <= properties.entries
        && properties.min_ts <= properties.max_ts
        && properties.min_seq <= properties.max_seq;
    if !consistent {
        return Err("inconsistent properties".into());
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(value in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut reader = ByteReader::new(&out);
            prop_assert_eq!(reader.varint().unwrap(), value);
            prop_assert!(reader.is_at_end());
        }

        #[test]
        fn varint_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = ByteReader::new(&bytes).varint();
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let eleven = [0xffu8; 11];
        assert!(ByteReader::new(&eleven).varint().is_err());
        let mut overflow = vec![0xffu8; 9];
        overflow.push(0x02);
        assert!(ByteReader::new(&overflow).varint().is_err());
        let mut max = vec![0xffu8; 9];
        max.push(0x01);
        assert_eq!(ByteReader::new(&max).varint().unwrap(), u64::MAX);
    }

    #[test]
    fn footer_round_trips_and_rejects_damage() {
        let footer = Footer {
            filter: BlockHandle {
                offset: 100,
                size: 10,
            },
            properties: BlockHandle {
                offset: 115,
                size: 20,
            },
            index: BlockHandle {
                offset: 140,
                size: 30,
            },
        };
        let file_len = 175 + FOOTER_LEN as u64;
        let bytes = footer.encode();
        assert_eq!(Footer::decode(&bytes, file_len).unwrap(), footer);
        assert!(Footer::decode(&bytes, file_len + 1).is_err());
        for bit in 0..FOOTER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Footer::decode(&damaged, file_len).is_err(), "bit {bit}");
        }
    }
}
