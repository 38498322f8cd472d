//! API-key reload of `allidbd` (the key file and the key environment variable), one of the
//! daemon's SIGHUP reload steps (see `daemon::on_sighup`).
//!
//! A key source that does not load keeps the previous keys in force, and the failure is logged
//! with the reason (never a key or a key hash).

use allidb_api::auth::Authenticator;

/// One reload, logged: the new key count, or the error and the key count still in force.
pub fn reload_keys(auth: &Authenticator) {
    match auth.reload() {
        Ok(keys) => tracing::info!(keys, "SIGHUP: API keys reloaded"),
        Err(error) => tracing::error!(
            %error,
            keys_in_force = auth.key_count(),
            "SIGHUP: API key reload failed; the previous keys stay in force"
        ),
    }
}
