//! `allidb probe readyz | healthz`: one GET of the node's readiness or liveness route on its
//! admin port (`server.admin_addr`, docs/operations.md "Health and readiness"), for container
//! health checks and Kubernetes exec probes in an image that carries no HTTP client. Exits 0
//! when the route answers 200 and 1 otherwise (not listening, 503 `starting`, `stopping`, an
//! engine refusing writes), printing the answer.
//!
//! [`admin_http_get`] is the one plain-HTTP GET of the CLI; `allidb cluster` parses its JSON
//! answers. The admin port needs no key, so none is ever sent.

use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Context;
use super::error::{CliError, CliResult, Outcome};

/// `allidb probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The node's admin address (`server.admin_addr`).
    #[arg(long, env = "ALLIDB_ADMIN_ADDR", default_value = "127.0.0.1:7002")]
    pub admin: String,
    /// Deadline of the request, in milliseconds.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
    /// The route to ask.
    #[arg(value_enum)]
    pub route: ProbeRoute,
}

/// The routes `allidb probe` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeRoute {
    /// `GET /readyz`: 200 once the node serves (on a ring: normal in the topology log).
    Readyz,
    /// `GET /healthz`: 200 whenever the process answers.
    Healthz,
}

impl ProbeRoute {
    fn path(self) -> &'static str {
        match self {
            Self::Readyz => "/readyz",
            Self::Healthz => "/healthz",
        }
    }
}

/// Runs `allidb probe`: prints the route's answer; an error unless it is 200.
pub async fn run(context: &mut Context, args: ProbeArgs) -> CliResult<Outcome> {
    let path = args.route.path();
    let timeout = Duration::from_millis(args.timeout_ms);
    let (status, body) = admin_http_get(&args.admin, path, timeout).await?;
    if status != "200" {
        return Err(CliError::input(
            format!("--admin {}", args.admin),
            format!("{path} answered {status}: {}", body.trim()),
        ));
    }
    context.printer.line(format!("{path}: {}", body.trim()))?;
    Ok(Outcome::Complete)
}

/// GETs `path` from the admin server at `addr` within `timeout`: the status code (as text) and
/// the body.
pub(super) async fn admin_http_get(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> CliResult<(String, String)> {
    let origin = format!("--admin {addr}");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CliError::input(&origin, format!("no answer within {timeout:?}")))?
        .map_err(|e| CliError::input(&origin, e))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| CliError::input(&origin, "not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    Ok((status.to_owned(), body.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn probe_takes_a_route_and_an_admin_address() {
        let cli =
            Cli::try_parse_from(["allidb", "probe", "--admin", "10.0.0.1:7002", "readyz"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not probe: {:?}", cli.command);
        };
        assert_eq!(
            (args.admin.as_str(), args.route, args.timeout_ms),
            ("10.0.0.1:7002", ProbeRoute::Readyz, 3000)
        );
        assert!(Cli::try_parse_from(["allidb", "probe", "metrics"]).is_err());
        assert!(Cli::try_parse_from(["allidb", "probe", "--timeout-ms", "0", "healthz"]).is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_naming_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = admin_http_get(&addr, "/readyz", Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("--admin {addr}")), "{error}");
    }
}
