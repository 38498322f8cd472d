//! Versioned payload codec: every stored payload (entity body, edge value) is
//! `format_version: u8` followed by a `bincode` 2.0.1 encoding with a fixed configuration
//! (standard varint config, little endian) and a size limit.
//!
//! Invariant: decoding never panics and never allocates more than [`MAX_PAYLOAD`] bytes, whatever
//! the input; an unknown version byte is an error naming the version.

use crate::error::{Error, Result};
use bincode::config::{Config, Configuration, Limit, LittleEndian, Varint};

/// The payload format version written in front of every payload.
pub const PAYLOAD_VERSION: u8 = 1;

/// Largest payload the codec accepts (64 MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;

type PayloadConfig = Configuration<LittleEndian, Varint, Limit<MAX_PAYLOAD>>;

fn config() -> PayloadConfig {
    bincode::config::standard().with_limit::<MAX_PAYLOAD>()
}

/// Encodes `value` behind the version byte.
pub fn encode<T: bincode::Encode>(value: &T) -> Result<Vec<u8>> {
    encode_as(PAYLOAD_VERSION, value)
}

/// Encodes `value` behind the version byte `version` (a payload type with several formats).
pub fn encode_as<T: bincode::Encode>(version: u8, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![version];
    bincode::encode_into_std_write(value, &mut out, config())
        .map_err(|e| Error::Codec(format!("encode: {e}")))?;
    if out.len() > MAX_PAYLOAD {
        return Err(Error::InvalidArgument(format!(
            "payload of {} bytes exceeds the {MAX_PAYLOAD}-byte limit",
            out.len()
        )));
    }
    Ok(out)
}

/// Decodes a payload written by [`encode`]; trailing bytes are an error.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T> {
    decode_as(PAYLOAD_VERSION, bytes)
}

/// Decodes a payload written by [`encode_as`] with `expected` as its version byte.
pub fn decode_as<T: bincode::Decode<()>>(expected: u8, bytes: &[u8]) -> Result<T> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| Error::Codec("empty payload".to_owned()))?;
    if version != expected {
        return Err(Error::Codec(format!("unknown payload version {version}")));
    }
    let (value, read) = bincode::decode_from_slice(body, config())
        .map_err(|e| Error::Codec(format!("decode: {e}")))?;
    if read != body.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after payload",
            body.len() - read
        )));
    }
    Ok(value)
}

const _: fn() = || {
    fn assert_config<C: Config>() {}
    assert_config::<PayloadConfig>();
};
