//! Request validation of expiry (issue 39, TTL; docs/api.md "Expiry"): an entity's
//! `expires_at_nanos` or `ttl_secs`, and the tenant's default TTL, resolved into the absolute
//! expiry time the write stores. The clock is the coordinating node's (the write's), so every
//! replica stores the same time. Like [`crate::validate`], every refusal names the field by its
//! request path and maps to `INVALID_ARGUMENT`; nothing here panics on any input.

use tonic::Status;

use crate::pb;

/// Longest time to live, in seconds: 20 years (Cassandra's bound too). Also bounds how far
/// ahead an `expires_at_nanos` may lie, and the tenants' default TTLs.
pub const MAX_TTL_SECS: i64 = 630_720_000;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The expiry time a write of `entity` (request path `field`) stores, at the server's write time
/// `now_nanos`: its `expires_at_nanos`, else `now + ttl_secs`, else `now +
/// default_ttl_secs` (the tenant's; 0: none), else 0 (never).
///
/// Refused: a negative or too large `ttl_secs`, a negative `expires_at_nanos`, both fields
/// given, and an `expires_at_nanos` that is not ahead of `now_nanos` (the entity would never be
/// readable: refusing says so instead of acknowledging a write no read can see) or more than
/// [`MAX_TTL_SECS`] ahead.
pub fn expires_at(
    field: &str,
    entity: &pb::Entity,
    now_nanos: i64,
    default_ttl_secs: u64,
) -> Result<i64, Status> {
    let ttl = entity.ttl_secs;
    if !(0..=MAX_TTL_SECS).contains(&ttl) {
        return Err(Status::invalid_argument(format!(
            "{field}.ttl_secs must be 0 (none) or 1..={MAX_TTL_SECS} seconds (20 years), got {ttl}"
        )));
    }
    let at = entity.expires_at_nanos;
    if at < 0 {
        return Err(Status::invalid_argument(format!(
            "{field}.expires_at_nanos must be 0 (never) or a time in nanoseconds since the Unix \
             epoch, got {at}"
        )));
    }
    if at != 0 && ttl != 0 {
        return Err(Status::invalid_argument(format!(
            "{field}: give expires_at_nanos or ttl_secs, not both"
        )));
    }
    let latest = now_nanos.saturating_add(MAX_TTL_SECS * NANOS_PER_SEC);
    if at != 0 {
        if at <= now_nanos {
            return Err(Status::invalid_argument(format!(
                "{field}.expires_at_nanos ({at}) is not after the server's time ({now_nanos}): \
                 the entity would never be readable"
            )));
        }
        if at > latest {
            return Err(Status::invalid_argument(format!(
                "{field}.expires_at_nanos ({at}) is more than {MAX_TTL_SECS} seconds (20 years) \
                 after the server's time ({now_nanos})"
            )));
        }
        return Ok(at);
    }
    let ttl = match ttl {
        0 => i64::try_from(default_ttl_secs)
            .unwrap_or(MAX_TTL_SECS)
            .min(MAX_TTL_SECS),
        given => given,
    };
    Ok(match ttl {
        0 => 0,
        ttl => now_nanos.saturating_add(ttl * NANOS_PER_SEC),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn entity(expires_at_nanos: i64, ttl_secs: i64) -> pb::Entity {
        pb::Entity {
            entity_id: "a".into(),
            expires_at_nanos,
            ttl_secs,
            ..pb::Entity::default()
        }
    }

    #[test]
    fn resolves_the_time_from_the_entity_then_the_tenant_default() {
        let at =
            |e: i64, ttl: i64, default: u64| expires_at("entity", &entity(e, ttl), NOW, default);
        assert_eq!(at(0, 0, 0).unwrap(), 0, "no expiry");
        assert_eq!(
            at(0, 0, 60).unwrap(),
            NOW + 60 * NANOS_PER_SEC,
            "the tenant default"
        );
        assert_eq!(
            at(0, 5, 60).unwrap(),
            NOW + 5 * NANOS_PER_SEC,
            "the entity's TTL wins"
        );
        assert_eq!(
            at(NOW + 7, 0, 60).unwrap(),
            NOW + 7,
            "an explicit time wins"
        );
        assert_eq!(
            at(0, MAX_TTL_SECS, 0).unwrap(),
            NOW + MAX_TTL_SECS * NANOS_PER_SEC
        );
    }

    #[test]
    fn refuses_out_of_range_values_naming_the_field() {
        let refused = |e: i64, ttl: i64| {
            let status = expires_at("entities[3]", &entity(e, ttl), NOW, 0).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            status.message().to_owned()
        };
        assert!(refused(0, -1).starts_with("entities[3].ttl_secs must be"));
        assert!(refused(0, MAX_TTL_SECS + 1).starts_with("entities[3].ttl_secs must be"));
        assert!(refused(-5, 0).starts_with("entities[3].expires_at_nanos must be"));
        assert!(refused(NOW + 1, 5).contains("not both"));
        assert!(refused(NOW, 0).contains("is not after the server's time"));
        assert!(refused(NOW - 1_000, 0).contains("is not after the server's time"));
        assert!(
            refused(NOW + (MAX_TTL_SECS + 1) * NANOS_PER_SEC, 0).contains("20 years"),
            "too far ahead"
        );
    }
}
