//! The admin HTTP server on `server.admin_addr`: `/metrics` (Prometheus text format),
//! `/healthz` (liveness) and `/readyz` (readiness).
//!
//! Liveness: `/healthz` answers 200 whenever the process can answer at all. Readiness follows
//! [`Readiness`], which the daemon moves forward only: 503 `starting` until the store is open
//! and serving, 200 `ready` after, 503 `stopping` once a graceful shutdown began. The server
//! binds before the store opens (so probes and metrics work during a long recovery) and is
//! stopped last, after the store is closed.
//!
//! Invariants: no route needs or reads an API key, and none exposes tenant data: `/metrics`
//! carries only bounded, tenant-free series ([`crate::telemetry`]). Must never: block an async
//! worker on the store (a scrape renders on the blocking pool), or report ready before the
//! store is attached to the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::telemetry::Scrape;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the daemon is in its lifecycle, as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// The store is open and the service serves it.
    pub fn set_ready(&self) {
        // `fetch_max`: a shutdown that began first is never undone.
        self.0.fetch_max(READY, Ordering::AcqRel);
    }

    /// A graceful shutdown began.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Release);
    }

    /// `true` while serving.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }

    fn name(&self) -> &'static str {
        match self.0.load(Ordering::Acquire) {
            STARTING => "starting",
            READY => "ready",
            _ => "stopping",
        }
    }
}

#[derive(Clone, Debug)]
struct AdminState {
    readiness: Arc<Readiness>,
    scrape: Arc<Scrape>,
}

/// The admin routes over `readiness` and `scrape`.
pub fn router(readiness: Arc<Readiness>, scrape: Scrape) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState {
            readiness,
            scrape: Arc::new(scrape),
        })
}

/// The running admin server.
#[derive(Debug)]
pub struct AdminServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Serves [`router`] on `listener` until [`AdminServer::stop`].
    pub fn serve(listener: TcpListener, readiness: Arc<Readiness>, scrape: Scrape) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            axum::serve(listener, router(readiness, scrape))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self { stop, task }
    }

    /// Stops accepting, lets in-flight probes and scrapes finish, and waits for the server.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the admin server stopped with an error"),
            Err(join) => tracing::warn!(%join, "admin server task"),
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let scrape = Arc::clone(&state.scrape);
    match tokio::task::spawn_blocking(move || scrape.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let status = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", state.readiness.name())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let readiness = Readiness::default();
        assert_eq!(readiness.name(), "starting");
        assert!(!readiness.is_ready());
        readiness.set_ready();
        assert!(readiness.is_ready());
        readiness.set_stopping();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.name(), "stopping");
        readiness.set_ready();
        assert_eq!(readiness.name(), "stopping");
    }
}
