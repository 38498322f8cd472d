//! TLS for the daemon's listeners and the CLI's connections: rustls 0.23 with the `ring`
//! provider, TLS 1.2 and 1.3 only.
//!
//! Server side: [`ServerTls`] loads the `[tls]` files (certificate chain, private key, optional
//! client CA for mutual TLS) into one rustls `ServerConfig` per listener (ALPN `h2` for gRPC,
//! `h2` and `http/1.1` for the HTTP gateway), each held in an [`ArcSwap`]. [`TlsListener`]
//! accepts TCP connections and runs every handshake in its own task, bounded by
//! [`HANDSHAKE_TIMEOUT`], with the configuration current at accept time; it serves tonic (as a
//! stream, [`TlsListener::into_incoming`]) and axum (as an [`axum::serve::Listener`]).
//! [`ServerTls::reload`] (on SIGHUP) re-reads every file and swaps the configurations in; open
//! connections keep the session they negotiated. A fresh `ServerConfig` also means a fresh
//! session-resumption cache, so no session negotiated under the old CA resumes under the new one.
//!
//! Client side: [`client_tls_config`] checks the CLI's `--tls-ca`, `--tls-cert` and `--tls-key`
//! files with the same parsers and builds tonic's client TLS settings.
//!
//! This module lives in `allidb-cmd`, not `allidb-api`: it reads the daemon's `[tls]` section,
//! owns listening sockets and serves the CLI, all of which are this crate's; the API crate stays
//! independent of transport and files.
//!
//! Invariants: a failed or slow handshake never stops or delays accepting other connections (it
//! is logged at debug level and dropped); a reload that fails leaves the configuration in use
//! untouched; every error names the config key (or CLI flag) and the file. Must never: offer a
//! way to skip certificate verification, accept a client without a certificate when a client CA
//! is configured, or negotiate a protocol older than TLS 1.2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::Stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// How long a client may take to complete its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long accepting pauses after an error that is not about one connection (e.g. too many
/// open files), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// ALPN protocols of the gRPC listener.
pub const GRPC_ALPN: &[&[u8]] = &[b"h2"];

/// ALPN protocols of the HTTP gateway, in order of preference.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The protocol versions offered: TLS 1.3 and TLS 1.2, nothing older.
const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

const CERT_FILE_KEY: &str = "config key tls.cert_file";
const KEY_FILE_KEY: &str = "config key tls.key_file";
const CLIENT_CA_FILE_KEY: &str = "config key tls.client_ca_file";

/// Why TLS material cannot be used. `origin` is the config key (`config key tls.cert_file`) or
/// the CLI flag (`--tls-ca`) the file came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A required file is not configured.
    #[error("{origin}: is required when tls.enabled = true")]
    Missing {
        /// The config key.
        origin: &'static str,
    },
    /// The file cannot be read.
    #[error("{origin}: cannot read {path}: {source}")]
    Read {
        /// The config key or flag.
        origin: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is unusable (no PEM item, a malformed certificate or key, a key that
    /// does not match its certificate).
    #[error("{origin}: {path}: {message}")]
    Invalid {
        /// The config key or flag.
        origin: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The crypto provider cannot build a configuration (not expected with `ring`).
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// Installs the `ring` provider as the process default (for anything that asks rustls for the
/// default provider). Configurations built here name `ring` explicitly and do not depend on it.
pub fn install_crypto_provider() {
    // An error means a provider is already installed in this process (an earlier call); it
    // stays, and every configuration of this module names its provider anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One PEM file as read from disk, with the key or flag it came from.
struct PemFile<'a> {
    origin: &'static str,
    path: &'a Path,
    bytes: Vec<u8>,
}

impl<'a> PemFile<'a> {
    fn read(origin: &'static str, path: &'a Path) -> Result<Self, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            origin,
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            origin,
            path,
            bytes,
        })
    }

    fn invalid(&self, message: impl Into<String>) -> TlsError {
        TlsError::Invalid {
            origin: self.origin,
            path: self.path.to_owned(),
            message: message.into(),
        }
    }

    /// Every `CERTIFICATE` block, in file order; at least one.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certificates = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.invalid(format!("malformed PEM: {error}")))?;
        if certificates.is_empty() {
            return Err(self.invalid("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(certificates)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|error| match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                self.invalid("holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
            }
            other => self.invalid(format!("malformed PEM: {other}")),
        })
    }
}

/// The certificate chain of `cert` with the private key of `key`, checked to match.
fn certified_key(
    cert: &PemFile<'_>,
    key: &PemFile<'_>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = cert.certificates()?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.private_key()?)
        .map_err(|error| key.invalid(format!("unusable private key: {error}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key type cannot report its public key; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(key
            .invalid(format!(
                "the private key does not match the certificate in {} ({})",
                cert.path.display(),
                cert.origin
            ))),
        Err(error) => Err(cert.invalid(format!("unusable certificate: {error}"))),
    }
}

/// The trust anchors of the CA certificates in `ca`.
fn root_store(ca: &PemFile<'_>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in ca.certificates()? {
        roots
            .add(certificate)
            .map_err(|error| ca.invalid(format!("unusable CA certificate: {error}")))?;
    }
    Ok(roots)
}

/// The files of the `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServerFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

impl ServerFiles {
    /// Reads every file and builds the gRPC and HTTP configurations.
    fn server_configs(&self) -> Result<ListenerConfigs, TlsError> {
        let provider = ring_provider();
        let cert = PemFile::read(CERT_FILE_KEY, &self.cert_file)?;
        let key = PemFile::read(KEY_FILE_KEY, &self.key_file)?;
        let certified = certified_key(&cert, &key, &provider)?;
        let client_verifier: Option<Arc<dyn ClientCertVerifier>> = match &self.client_ca_file {
            None => None,
            Some(path) => {
                let ca = PemFile::read(CLIENT_CA_FILE_KEY, path)?;
                let roots = Arc::new(root_store(&ca)?);
                // Client certificates are required: the builder refuses anonymous clients
                // unless told otherwise, and this module never tells it.
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|error| ca.invalid(format!("unusable client CA: {error}")))?;
                Some(verifier)
            }
        };
        let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(PROTOCOL_VERSIONS)
                .map_err(TlsError::Setup)?;
            let builder = match &client_verifier {
                Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
                None => builder.with_no_client_auth(),
            };
            let mut config =
                builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
            config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(ListenerConfigs {
            grpc: build(GRPC_ALPN)?,
            http: build(HTTP_ALPN)?,
        })
    }
}

struct ListenerConfigs {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

/// The daemon's TLS state: the files to (re)load and the configuration each listener uses for
/// its next handshake.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerFiles,
    grpc: Arc<ArcSwap<ServerConfig>>,
    http: Arc<ArcSwap<ServerConfig>>,
}

impl ServerTls {
    /// Loads the files of `config`; `None` when `tls.enabled` is false.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Self>, TlsError> {
        if !config.enabled {
            return Ok(None);
        }
        let required =
            |file: &Option<PathBuf>, origin| file.clone().ok_or(TlsError::Missing { origin });
        let files = ServerFiles {
            cert_file: required(&config.cert_file, CERT_FILE_KEY)?,
            key_file: required(&config.key_file, KEY_FILE_KEY)?,
            client_ca_file: config.client_ca_file.clone(),
        };
        let configs = files.server_configs()?;
        Ok(Some(Self {
            files,
            grpc: Arc::new(ArcSwap::new(configs.grpc)),
            http: Arc::new(ArcSwap::new(configs.http)),
        }))
    }

    /// Whether clients must present a certificate signed by `tls.client_ca_file`.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// Re-reads every file; on success new handshakes use the new material, on error nothing
    /// changes. Open connections are never affected.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = self.files.server_configs()?;
        self.grpc.store(configs.grpc);
        self.http.store(configs.http);
        Ok(())
    }

    /// [`ServerTls::reload`], logging the outcome (the SIGHUP handler's step).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert_file = %self.files.cert_file.display(),
                "TLS certificates reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "TLS reload failed; the certificates in use stay in use"
            ),
        }
    }

    /// The gRPC listener over `tcp` (ALPN `h2`).
    pub fn grpc_listener(&self, tcp: TcpListener, local_addr: SocketAddr) -> TlsListener {
        TlsListener::new("grpc", tcp, local_addr, self.grpc.clone())
    }

    /// The HTTP gateway's listener over `tcp` (ALPN `h2`, `http/1.1`).
    pub fn http_listener(&self, tcp: TcpListener, local_addr: SocketAddr) -> TlsListener {
        TlsListener::new("http", tcp, local_addr, self.http.clone())
    }
}

/// A TLS connection whose handshake completed, and its peer.
type Handshaken = (TlsStream<TcpStream>, SocketAddr);

/// Accepts TCP connections and yields them once their TLS handshake completed.
#[derive(Debug)]
pub struct TlsListener {
    name: &'static str,
    tcp: TcpListener,
    local_addr: SocketAddr,
    config: Arc<ArcSwap<ServerConfig>>,
    handshakes: JoinSet<Option<Handshaken>>,
}

impl TlsListener {
    fn new(
        name: &'static str,
        tcp: TcpListener,
        local_addr: SocketAddr,
        config: Arc<ArcSwap<ServerConfig>>,
    ) -> Self {
        Self {
            name,
            tcp,
            local_addr,
            config,
            handshakes: JoinSet::new(),
        }
    }

    /// The next connection whose handshake completed. Cancel-safe: connections accepted and
    /// handshakes in flight stay in `self`.
    pub async fn accept_handshaken(&mut self) -> Handshaken {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                    Err(error) => self.pause_after_accept_error(error).await,
                },
                Some(finished) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match finished {
                        Ok(Some(connection)) => return connection,
                        Ok(None) => {}
                        Err(error) => tracing::debug!(
                            listener = self.name,
                            %error,
                            "a TLS handshake task ended abnormally"
                        ),
                    }
                }
            }
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(listener = self.name, %peer, %error, "TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(self.config.load_full());
        let name = self.name;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some((stream, peer)),
                Ok(Err(error)) => {
                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(
                        listener = name,
                        %peer,
                        timeout = ?HANDSHAKE_TIMEOUT,
                        "TLS handshake timed out"
                    );
                    None
                }
            }
        });
    }

    async fn pause_after_accept_error(&self, error: std::io::Error) {
        use std::io::ErrorKind;
        // Errors about one connection that died before it was accepted: nothing to wait for.
        if matches!(
            error.kind(),
            ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionRefused
        ) {
            tracing::debug!(listener = self.name, %error, "accept");
            return;
        }
        tracing::warn!(listener = self.name, %error, "accept failed; pausing");
        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
    }

    /// The connections as the stream tonic's `serve_with_incoming_shutdown` takes; it never
    /// yields an error (failed handshakes are dropped).
    pub fn into_incoming(
        self,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let (stream, _peer) = listener.accept_handshaken().await;
            Some((Ok(stream), listener))
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_handshaken().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Client TLS files named by the CLI's flags.
#[derive(Clone, Copy, Debug)]
pub struct ClientTlsFiles<'a> {
    /// `--tls-ca`: the CA that signed the daemon's certificate.
    pub ca: &'a Path,
    /// `--tls-cert` and `--tls-key`: a client certificate chain and its key, for mTLS.
    pub identity: Option<(&'a Path, &'a Path)>,
}

/// tonic's client TLS settings for `files`, after checking every file parses (and that the
/// client key matches its certificate). The server's name is checked against the host of the
/// address connected to.
pub fn client_tls_config(
    files: ClientTlsFiles<'_>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    client_tls(
        ("--tls-ca", files.ca),
        files
            .identity
            .map(|(cert, key)| (("--tls-cert", cert), ("--tls-key", key))),
    )
}

/// The TLS settings of node-to-node calls when `tls.enabled` (else `None`): peers are trusted
/// when signed by the cluster CA (`tls.client_ca_file`, which the server also requires client
/// certificates from), and this node presents its own certificate (`tls.cert_file`/`key_file`).
pub fn cluster_client_tls(
    config: &TlsConfig,
) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
    if !config.enabled {
        return Ok(None);
    }
    let required =
        |origin, path: &Option<PathBuf>| path.clone().ok_or(TlsError::Missing { origin });
    let ca = required(CLIENT_CA_FILE_KEY, &config.client_ca_file)?;
    let cert = required(CERT_FILE_KEY, &config.cert_file)?;
    let key = required(KEY_FILE_KEY, &config.key_file)?;
    client_tls(
        (CLIENT_CA_FILE_KEY, &ca),
        Some(((CERT_FILE_KEY, &cert), (KEY_FILE_KEY, &key))),
    )
    .map(Some)
}

type TlsFile<'a> = (&'static str, &'a Path);

fn client_tls(
    ca: TlsFile<'_>,
    identity: Option<(TlsFile<'_>, TlsFile<'_>)>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let ca = PemFile::read(ca.0, ca.1)?;
    root_store(&ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.bytes));
    if let Some((cert, key)) = identity {
        let cert = PemFile::read(cert.0, cert.1)?;
        let key = PemFile::read(key.0, key.1)?;
        certified_key(&cert, &key, &ring_provider())?;
        config = config.identity(Identity::from_pem(cert.bytes, key.bytes));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    /// A CA and a server certificate it signed: (ca pem, cert pem, key pem).
    fn pki() -> (String, String, String) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsConfig {
        TlsConfig {
            enabled: true,
            cert_file: Some(cert.to_owned()),
            key_file: Some(key.to_owned()),
            client_ca_file: client_ca.map(Path::to_owned),
        }
    }

    #[track_caller]
    fn assert_refused(config: &TlsConfig, fragments: &[&str]) {
        let message = ServerTls::from_config(config)
            .expect_err("must be refused")
            .to_string();
        for fragment in fragments {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn valid_files_load_with_alpn_per_listener_and_reload() {
        let files = Files::new();
        let (ca, cert, key) = pki();
        let config = tls_config(
            &files.write("cert.pem", &cert),
            &files.write("key.pem", &key),
            Some(&files.write("ca.pem", &ca)),
        );
        let tls = ServerTls::from_config(&config).unwrap().unwrap();
        assert!(tls.requires_client_certificates());
        assert_eq!(tls.grpc.load().alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(
            tls.http.load().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let before = tls.grpc.load_full();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.grpc.load_full()));

        // A failed reload keeps the configuration in use.
        files.write("key.pem", "garbage");
        let current = tls.grpc.load_full();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&current, &tls.grpc.load_full()));

        let disabled = TlsConfig::default();
        assert!(ServerTls::from_config(&disabled).unwrap().is_none());
    }

    #[test]
    fn missing_files_name_the_key_and_the_file() {
        let files = Files::new();
        let (_, cert, key) = pki();
        let cert_path = files.write("cert.pem", &cert);
        let key_path = files.write("key.pem", &key);
        let absent = files.dir.path().join("absent.pem");
        assert_refused(
            &tls_config(&absent, &key_path, None),
            &["tls.cert_file", "absent.pem", "cannot read"],
        );
        assert_refused(
            &tls_config(&cert_path, &absent, None),
            &["tls.key_file", "absent.pem"],
        );
        assert_refused(
            &tls_config(&cert_path, &key_path, Some(&absent)),
            &["tls.client_ca_file", "absent.pem"],
        );
        let mut unset = tls_config(&cert_path, &key_path, None);
        unset.key_file = None;
        assert_refused(&unset, &["tls.key_file", "required"]);
    }

    #[test]
    fn garbage_pem_names_the_key_and_the_file() {
        let files = Files::new();
        let (_, cert, key) = pki();
        let cert_path = files.write("cert.pem", &cert);
        let key_path = files.write("key.pem", &key);
        let garbage = files.write("garbage.pem", "not a certificate\n");
        assert_refused(
            &tls_config(&garbage, &key_path, None),
            &["tls.cert_file", "garbage.pem", "no PEM certificate"],
        );
        assert_refused(
            &tls_config(&cert_path, &garbage, None),
            &["tls.key_file", "garbage.pem", "no PEM private key"],
        );
        assert_refused(
            &tls_config(&cert_path, &key_path, Some(&garbage)),
            &["tls.client_ca_file", "garbage.pem"],
        );
        // A certificate where the key belongs, and a truncated PEM block.
        assert_refused(
            &tls_config(&cert_path, &cert_path, None),
            &["tls.key_file", "no PEM private key"],
        );
        let truncated = files.write("truncated.pem", &cert[..cert.len() / 2]);
        assert_refused(
            &tls_config(&truncated, &key_path, None),
            &["tls.cert_file", "truncated.pem", "malformed PEM"],
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_keys() {
        let files = Files::new();
        let (_, cert, _) = pki();
        let (_, _, other_key) = pki();
        assert_refused(
            &tls_config(
                &files.write("cert.pem", &cert),
                &files.write("other-key.pem", &other_key),
                None,
            ),
            &[
                "tls.key_file",
                "other-key.pem",
                "does not match",
                "tls.cert_file",
            ],
        );
    }

    #[test]
    fn client_files_are_checked_naming_the_flag() {
        let files = Files::new();
        let (ca, cert, key) = pki();
        let (_, _, other_key) = pki();
        let ca_path = files.write("ca.pem", &ca);
        let cert_path = files.write("cert.pem", &cert);
        let key_path = files.write("key.pem", &key);
        let other_key_path = files.write("other-key.pem", &other_key);
        let garbage = files.write("garbage.pem", "garbage");
        assert!(
            client_tls_config(ClientTlsFiles {
                ca: &ca_path,
                identity: Some((&cert_path, &key_path)),
            })
            .is_ok()
        );
        let refused = |files: ClientTlsFiles<'_>| client_tls_config(files).unwrap_err().to_string();
        let message = refused(ClientTlsFiles {
            ca: &garbage,
            identity: None,
        });
        assert!(
            message.contains("--tls-ca") && message.contains("garbage.pem"),
            "{message}"
        );
        let message = refused(ClientTlsFiles {
            ca: &ca_path,
            identity: Some((&cert_path, &other_key_path)),
        });
        assert!(
            message.contains("--tls-key") && message.contains("does not match"),
            "{message}"
        );
    }
}
