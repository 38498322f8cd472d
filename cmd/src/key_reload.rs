//! SIGHUP reloads the API keys of `allidbd` (the key file and the key environment variable).
//!
//! [`reload_keys_on_sighup`] registers the signal handler at call time (so a SIGHUP never takes
//! the process's default action, termination, once it returned) and spawns one task that calls
//! [`Authenticator::reload`] per signal. A key source that does not load keeps the previous keys
//! in force, and the failure is logged with the reason (never a key or a key hash). Other SIGHUP
//! work (certificate reload) registers its own handler; tokio delivers each signal to all.

use std::sync::Arc;

use allidb_api::auth::Authenticator;
use tokio::signal::unix::{SignalKind, signal};

/// Reloads `auth`'s keys on every SIGHUP, from a spawned task, for the life of the runtime.
pub fn reload_keys_on_sighup(auth: Arc<Authenticator>) -> std::io::Result<()> {
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload_keys(&auth);
        }
    });
    Ok(())
}

/// One reload, logged: the new key count, or the error and the key count still in force.
fn reload_keys(auth: &Authenticator) {
    match auth.reload() {
        Ok(keys) => tracing::info!(keys, "SIGHUP: API keys reloaded"),
        Err(error) => tracing::error!(
            %error,
            keys_in_force = auth.key_count(),
            "SIGHUP: API key reload failed; the previous keys stay in force"
        ),
    }
}
