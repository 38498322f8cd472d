//! The one place the CLI connects to a daemon: endpoint parsing, transport settings and the API
//! key interceptor.
//!
//! Everything that opens a gRPC channel goes through [`connect`], so transport security is
//! decided here and nowhere else: with TLS settings ([`crate::tls::client_tls_config`], from
//! `--tls-ca` and optionally `--tls-cert`/`--tls-key`) the connection is https and the daemon's
//! certificate is verified against the given CA; there is no way to skip that verification. Invariant: the API key is only ever placed in the
//! `x-allidb-api-key` metadata of requests; it is never logged, printed or part of an error or a
//! `Debug` rendering.

use std::fmt;
use std::time::Duration;

use allidb_api::auth::API_KEY_METADATA;
use allidb_api::pb::alli_db_client::AlliDbClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::error::{CliError, CliResult};

/// Largest message the CLI sends or accepts (big batches, scans and gets of many entities).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How long the CLI waits for the TCP (and HTTP/2) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client of the `allidb.AlliDB` service that sends the API key with every call.
pub type Client = AlliDbClient<InterceptedService<Channel, ApiKeyInterceptor>>;

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The endpoint URI, e.g. `http://127.0.0.1:7000`.
    pub addr: String,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// TLS settings (the CA to trust, an optional client certificate); `None` = plaintext.
    pub tls: Option<ClientTlsConfig>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("addr", &self.addr)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Adds `x-allidb-api-key` to every request when a key is configured.
#[derive(Clone)]
pub struct ApiKeyInterceptor {
    key: Option<AsciiMetadataValue>,
}

impl ApiKeyInterceptor {
    /// An interceptor for `api_key`; a key that is not printable ASCII is rejected.
    pub fn new(api_key: Option<&str>) -> CliResult<Self> {
        let key = match api_key {
            None | Some("") => None,
            Some(key) => {
                let mut value: AsciiMetadataValue =
                    MetadataValue::try_from(key).map_err(|_| CliError::InvalidApiKey)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self { key })
    }
}

impl fmt::Debug for ApiKeyInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyInterceptor")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Interceptor for ApiKeyInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.key {
            request.metadata_mut().insert(API_KEY_METADATA, key.clone());
        }
        Ok(request)
    }
}

/// Parses `addr` into an endpoint; a bare `host:port` means `https://host:port` with TLS
/// settings and `http://host:port` without. The scheme and the TLS settings must agree.
fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> CliResult<Endpoint> {
    let invalid = |reason: String| CliError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else if tls.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|error| invalid(error.to_string()))?;
    let https = endpoint.uri().scheme_str() == Some("https");
    let endpoint = match (https, tls) {
        (true, Some(tls)) => endpoint
            .tls_config(tls.clone())
            .map_err(|error| invalid(error.to_string()))?,
        (true, None) => {
            return Err(invalid(
                "https needs --tls-ca (the CA that signed the daemon's certificate)".to_owned(),
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(
                "--tls-ca needs an https:// address (or a bare host:port)".to_owned(),
            ));
        }
        (false, None) => endpoint,
    };
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// Opens one connection to the daemon at `options.addr`.
pub async fn connect(options: &ConnectOptions) -> CliResult<Client> {
    let interceptor = ApiKeyInterceptor::new(options.api_key.as_deref())?;
    let channel = endpoint(&options.addr, options.tls.as_ref())?
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            addr: options.addr.clone(),
            source,
        })?;
    Ok(AlliDbClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_means_http_and_garbage_is_rejected() {
        assert_eq!(
            endpoint("127.0.0.1:7000", None).unwrap().uri().to_string(),
            "http://127.0.0.1:7000/"
        );
        assert_eq!(
            endpoint("http://localhost:1", None)
                .unwrap()
                .uri()
                .port_u16(),
            Some(1)
        );
        assert!(matches!(
            endpoint("http://exa mple:1", None),
            Err(CliError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn tls_settings_make_bare_addresses_https_and_the_scheme_must_agree() {
        let tls = ClientTlsConfig::new();
        assert_eq!(
            endpoint("127.0.0.1:7000", Some(&tls))
                .unwrap()
                .uri()
                .to_string(),
            "https://127.0.0.1:7000/"
        );
        assert!(endpoint("https://localhost:1", Some(&tls)).is_ok());
        let refused = |addr: &str, tls: Option<&ClientTlsConfig>| match endpoint(addr, tls) {
            Err(CliError::InvalidAddress { reason, .. }) => reason,
            other => panic!("{addr}: {other:?}"),
        };
        assert!(refused("https://localhost:1", None).contains("--tls-ca"));
        assert!(refused("http://localhost:1", Some(&tls)).contains("https://"));
    }

    #[test]
    fn the_key_goes_into_metadata_and_never_into_debug_output() {
        let mut interceptor = ApiKeyInterceptor::new(Some("s3cret-key")).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get(API_KEY_METADATA).unwrap(),
            "s3cret-key"
        );
        assert!(!format!("{interceptor:?}").contains("s3cret"));
        let options = ConnectOptions {
            addr: "x".into(),
            api_key: Some("s3cret-key".into()),
            tls: None,
        };
        assert!(!format!("{options:?}").contains("s3cret"));

        let mut keyless = ApiKeyInterceptor::new(None).unwrap();
        let request = keyless.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get(API_KEY_METADATA).is_none());
        assert!(matches!(
            ApiKeyInterceptor::new(Some("bad\nkey")),
            Err(CliError::InvalidApiKey)
        ));
    }
}
