//! Fuzzes the payload and key decoders on arbitrary bytes: [`EntityBody::decode`],
//! [`EdgeValue::decode`], [`WriteBatch::decode`] and [`CellKey::decode`].
//!
//! Checked for each: no panic; a failure is a decoding error (`Codec` or `InvalidArgument`);
//! what decodes round-trips:
//! * a body or edge value re-encodes to bytes that decode to the same encoding (bincode accepts
//!   some non-canonical input, e.g. unsorted map keys, so the input bytes themselves need not
//!   come back; floats are compared through their encoding, so NaN payloads count);
//! * a write batch and a cell key re-encode to exactly the input bytes (both formats are
//!   canonical: one encoding per value), and a decoded key keeps the key layout's invariant that
//!   its strings are NUL-free.

#![no_main]

use allidb_fuzz::assert_decode_error;
use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{EdgeValue, EntityBody};
use allidb_storage::key::{CellKey, CellSuffix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    check_body(bytes);
    check_edge(bytes);
    check_batch(bytes);
    check_key(bytes);
});

/// Decodes `bytes` with `decode`; if it decodes, encoding it again must be stable.
fn check_payload<T>(
    bytes: &[u8],
    what: &str,
    decode: fn(&[u8]) -> allidb_storage::Result<T>,
    encode: fn(&T) -> allidb_storage::Result<Vec<u8>>,
) {
    match decode(bytes) {
        Ok(value) => {
            let encoded = encode(&value).expect("a decoded value encodes");
            let again = decode(&encoded).expect("an encoded value decodes");
            assert_eq!(
                encode(&again).expect("a decoded value encodes"),
                encoded,
                "{what}: decode(encode(x)) differs from x"
            );
        }
        Err(error) => assert_decode_error(&error, what),
    }
}

fn check_body(bytes: &[u8]) {
    check_payload(bytes, "entity body", EntityBody::decode, EntityBody::encode);
}

fn check_edge(bytes: &[u8]) {
    check_payload(bytes, "edge value", EdgeValue::decode, EdgeValue::encode);
}

fn check_batch(bytes: &[u8]) {
    match WriteBatch::decode(bytes) {
        Ok((base_seq, batch)) => {
            let mut encoded = Vec::new();
            batch.encode(base_seq, &mut encoded);
            assert_eq!(encoded, bytes, "write batch: encode(decode(b)) != b");
        }
        Err(error) => assert_decode_error(&error, "write batch"),
    }
}

fn check_key(bytes: &[u8]) {
    match CellKey::decode(bytes) {
        Ok(key) => {
            assert_eq!(key.encode(), bytes, "cell key: encode(decode(b)) != b");
            let mut strings = vec![&key.tenant, &key.entity_id];
            if let CellSuffix::OutEdge {
                relation,
                to: other,
            }
            | CellSuffix::InEdge {
                relation,
                from: other,
            } = &key.suffix
            {
                strings.extend([relation, other]);
            }
            for s in strings {
                assert!(
                    !s.contains('\0'),
                    "cell key: decoded string {s:?} holds a NUL"
                );
            }
        }
        Err(error) => assert_decode_error(&error, "cell key"),
    }
}
