//! End-to-end tests of TLS (issue 5, `docs/operations.md` "TLS") against a real `allidbd`:
//! handshakes and RPCs over gRPC and the HTTP gateway with the right CA; refusals with a wrong
//! CA, an expired server certificate, and (with `tls.client_ca_file`) a missing or foreign client
//! certificate; certificate reload on SIGHUP (new connections see the new certificate, an open
//! connection keeps working, a broken file keeps the old one); the CLI's `--tls-*` flags,
//! `--tls-server-name` included.
//!
//! Certificates are generated per test with `rcgen` and written to a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use allidb_api::pb::HealthCheckRequest;
use allidb_api::pb::allidb_client::AlliDbClient;
use allidb_cmd::cli::error::error_chain;
use allidb_tests::certs::{Ca, Pem};
use allidb_tests::{Daemon, allidb_binary};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The files a TLS daemon reads, in their own temporary directory.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).expect("the file is written");
        path
    }

    /// Writes the server's certificate and key (replacing earlier ones).
    fn write_server(&self, server: &Pem) {
        self.write("server-cert.pem", &server.cert);
        self.write("server-key.pem", &server.key);
    }

    /// The `[tls]` section naming the server files (and `client_ca` for mTLS).
    fn config(&self, client_ca: Option<&Ca>) -> String {
        let quoted = |path: PathBuf| format!("{:?}", path.to_str().expect("a UTF-8 path"));
        let mut config = format!(
            "[tls]\nenabled = true\ncert_file = {}\nkey_file = {}\n",
            quoted(self.path("server-cert.pem")),
            quoted(self.path("server-key.pem")),
        );
        if let Some(ca) = client_ca {
            let path = self.write("client-ca.pem", &ca.pem());
            config.push_str(&format!("client_ca_file = {}\n", quoted(path)));
        }
        config
    }
}

/// Starts a TLS daemon serving `server`, requiring client certificates of `client_ca` if given.
fn start_tls_daemon(files: &TlsFiles, server: &Pem, client_ca: Option<&Ca>) -> Daemon {
    files.write_server(server);
    Daemon::start(&files.config(client_ca))
}

/// Client TLS settings trusting `ca`, presenting `identity` if given.
fn client_tls(ca: &Ca, identity: Option<&Pem>) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    match identity {
        Some(pem) => tls.identity(Identity::from_pem(&pem.cert, &pem.key)),
        None => tls,
    }
}

/// One `HealthCheck` RPC on `channel`.
async fn health_on(channel: Channel) -> Result<(), String> {
    AlliDbClient::new(channel)
        .health_check(HealthCheckRequest {})
        .await
        .map(|_| ())
        .map_err(|status| error_chain(&status))
}

/// Connects with `tls` and makes one RPC; the error (of the handshake or the RPC) as text.
async fn health_over_tls(daemon: &Daemon, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = daemon
        .tls_channel(tls)
        .await
        .map_err(|error| error_chain(&error))?;
    health_on(channel).await
}

/// What an HTTPS exchange with the gateway negotiated and answered.
#[derive(Debug)]
struct HttpsReply {
    alpn: Option<Vec<u8>>,
    version: rustls::ProtocolVersion,
    /// The HTTP/1.1 response, when `http/1.1` was negotiated.
    response: Option<String>,
}

/// A TLS connection to `addr` trusting `ca` (with `identity`, offering `alpn`, limited to
/// `versions`); over `http/1.1` it sends `GET /health` and reads the response.
async fn https_health(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<&Pem>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<HttpsReply, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots
            .add(cert.expect("the CA PEM parses"))
            .expect("the CA is a trust anchor");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("ring supports TLS 1.2 and 1.3")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(pem) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("the client certificate parses"),
                PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).expect("the client key parses"),
            )
            .expect("a usable client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from("localhost").expect("a DNS name");
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| error_chain(&e))?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let version = session
        .protocol_version()
        .expect("a completed handshake has a version");
    let response = if alpn.as_deref() == Some(b"http/1.1") {
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| error_chain(&e))?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response)
            .await
            .map_err(|e| error_chain(&e))?;
        Some(String::from_utf8_lossy(&response).into_owned())
    } else {
        None
    };
    Ok(HttpsReply {
        alpn,
        version,
        response,
    })
}

const BOTH_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Runs the CLI against `daemon` with `args` before the command `health`; (exit code, output).
fn cli_health(daemon: &Daemon, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("--addr")
        .arg(daemon.grpc_addr.to_string())
        .args(args)
        .arg("health")
        .stdin(Stdio::null())
        .output()
        .expect("allidb runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().expect("allidb exits"), text)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ca_serves_grpc_and_http_and_a_wrong_ca_is_refused() {
    let ca = Ca::new("allidb test CA");
    let files = TlsFiles::new();
    let daemon = start_tls_daemon(&files, &ca.server(), None);

    // A client that never starts its handshake, and one that sends garbage, must not stop or
    // delay the handshakes of others.
    let _silent = tokio::net::TcpStream::connect(daemon.grpc_addr)
        .await
        .expect("TCP connect");
    let mut garbage = tokio::net::TcpStream::connect(daemon.grpc_addr)
        .await
        .expect("TCP connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("garbage is sent");

    health_over_tls(&daemon, client_tls(&ca, None))
        .await
        .expect("gRPC over TLS with the right CA");

    let wrong = Ca::new("another CA");
    let refused = health_over_tls(&daemon, client_tls(&wrong, None))
        .await
        .expect_err("a wrong CA must be refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // Plaintext gRPC to the TLS port fails.
    let plaintext = async {
        let channel = Channel::from_shared(daemon.grpc_url())
            .expect("a valid URL")
            .connect()
            .await
            .map_err(|error| error_chain(&error))?;
        health_on(channel).await
    };
    assert!(plaintext.await.is_err(), "plaintext must not be served");

    // The gRPC listener negotiates h2.
    let http_addr = daemon.http_addr.expect("the daemon serves HTTP");
    let grpc_alpn = https_health(daemon.grpc_addr, &ca, None, &[b"h2"], BOTH_VERSIONS)
        .await
        .expect("a TLS handshake with the gRPC listener");
    assert_eq!(grpc_alpn.alpn.as_deref(), Some(&b"h2"[..]));

    // The HTTP gateway: http/1.1 over TLS 1.3 and TLS 1.2; h2 is preferred when offered.
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let reply = https_health(http_addr, &ca, None, &[b"http/1.1"], &[version])
            .await
            .expect("HTTPS with the right CA");
        assert_eq!(reply.version, version.version);
        let response = reply.response.expect("an HTTP/1.1 response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"healthy\":true"), "{response}");
    }
    let h2 = https_health(http_addr, &ca, None, &[b"h2", b"http/1.1"], BOTH_VERSIONS)
        .await
        .expect("a TLS handshake offering h2");
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let refused = https_health(http_addr, &wrong, None, &[b"http/1.1"], BOTH_VERSIONS)
        .await
        .expect_err("HTTPS with a wrong CA must be refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // The CLI: --tls-ca makes the bare address https and verifies the daemon.
    let ca_path = files.write("ca.pem", &ca.pem());
    let wrong_path = files.write("wrong-ca.pem", &wrong.pem());
    let (code, output) = cli_health(&daemon, &["--tls-ca", path_arg(&ca_path)]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("healthy"), "{output}");
    let (code, output) = cli_health(&daemon, &["--tls-ca", path_arg(&wrong_path)]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("UnknownIssuer"), "{output}");
    let (code, output) = cli_health(&daemon, &[]);
    assert_eq!(code, 1, "plaintext CLI against TLS: {output}");

    // Still serving after every refusal.
    health_over_tls(&daemon, client_tls(&ca, None))
        .await
        .expect("gRPC over TLS after refused clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    let ca = Ca::new("allidb test CA");
    let files = TlsFiles::new();
    let daemon = start_tls_daemon(&files, &ca.expired_server(), None);
    let refused = health_over_tls(&daemon, client_tls(&ca, None))
        .await
        .expect_err("an expired certificate must be refused");
    assert!(refused.contains("certificate expired"), "{refused}");
    let http_addr = daemon.http_addr.expect("the daemon serves HTTP");
    let refused = https_health(http_addr, &ca, None, &[b"http/1.1"], BOTH_VERSIONS)
        .await
        .expect_err("an expired certificate must be refused over HTTPS");
    assert!(refused.contains("certificate expired"), "{refused}");
}

#[test]
fn the_cli_checks_the_name_given_by_tls_server_name() {
    let ca = Ca::new("allidb test CA");
    let mut params =
        CertificateParams::new(vec!["db1.allidb.test".to_owned()]).expect("server parameters");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let files = TlsFiles::new();
    let daemon = start_tls_daemon(&files, &ca.issue(params), None);
    let ca_path = files.write("ca.pem", &ca.pem());
    let ca_arg = ["--tls-ca", path_arg(&ca_path)];
    // --addr is 127.0.0.1, which the certificate does not name.
    let (code, output) = cli_health(&daemon, &ca_arg);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not valid for name"), "{output}");
    let named = |name: &str| {
        let mut args = ca_arg.to_vec();
        args.extend(["--tls-server-name", name]);
        cli_health(&daemon, &args)
    };
    let (code, output) = named("db1.allidb.test");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("healthy"), "{output}");
    let (code, output) = named("db2.allidb.test");
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not valid for name"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_verified_when_a_client_ca_is_set() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let other_ca = Ca::new("other CA");
    let files = TlsFiles::new();
    let daemon = start_tls_daemon(&files, &server_ca.server(), Some(&client_ca));

    let signed = client_ca.client();
    health_over_tls(&daemon, client_tls(&server_ca, Some(&signed)))
        .await
        .expect("a client certificate signed by the client CA");
    assert!(
        health_over_tls(&daemon, client_tls(&server_ca, None))
            .await
            .is_err(),
        "no client certificate must be refused"
    );
    assert!(
        health_over_tls(&daemon, client_tls(&server_ca, Some(&other_ca.client())))
            .await
            .is_err(),
        "a client certificate of another CA must be refused"
    );

    let http_addr = daemon.http_addr.expect("the daemon serves HTTP");
    let reply = https_health(
        http_addr,
        &server_ca,
        Some(&signed),
        &[b"http/1.1"],
        BOTH_VERSIONS,
    )
    .await
    .expect("HTTPS with a client certificate");
    let response = reply.response.expect("an HTTP/1.1 response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // TLS 1.3 reports the server's refusal of the client only on the first read.
    let without = https_health(http_addr, &server_ca, None, &[b"http/1.1"], BOTH_VERSIONS).await;
    assert!(
        without.is_err()
            || without
                .as_ref()
                .is_ok_and(|reply| reply.response.as_deref() == Some("")),
        "HTTPS without a client certificate must be refused: {without:?}"
    );

    // The CLI with --tls-cert/--tls-key.
    let ca_path = files.write("server-ca.pem", &server_ca.pem());
    let cert_path = files.write("client-cert.pem", &signed.cert);
    let key_path = files.write("client-key.pem", &signed.key);
    let ca_arg = ["--tls-ca", path_arg(&ca_path)];
    let (code, output) = cli_health(
        &daemon,
        &[
            ca_arg[0],
            ca_arg[1],
            "--tls-cert",
            path_arg(&cert_path),
            "--tls-key",
            path_arg(&key_path),
        ],
    );
    assert_eq!(code, 0, "{output}");
    let (code, output) = cli_health(&daemon, &ca_arg);
    assert_eq!(code, 1, "the CLI without a client certificate: {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_keeps_open_connections() {
    let old_ca = Ca::new("old CA");
    let files = TlsFiles::new();
    let daemon = start_tls_daemon(&files, &old_ca.server(), None);
    let open = daemon
        .tls_channel(client_tls(&old_ca, None))
        .await
        .expect("a connection before the reload");
    health_on(open.clone())
        .await
        .expect("an RPC before the reload");

    let new_ca = Ca::new("new CA");
    files.write_server(&new_ca.server());
    daemon.signal(libc::SIGHUP);
    assert!(
        daemon.wait_for_log("TLS certificates reloaded", 1, Duration::from_secs(10)),
        "no reload logged:\n{}",
        daemon.log()
    );

    health_over_tls(&daemon, client_tls(&new_ca, None))
        .await
        .expect("a new connection verifies against the new CA");
    let refused = health_over_tls(&daemon, client_tls(&old_ca, None))
        .await
        .expect_err("new connections no longer present the old certificate");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    health_on(open.clone())
        .await
        .expect("the connection opened before the reload still works");

    // A broken file: the reload fails, the certificate in use stays.
    files.write("server-key.pem", "not a key");
    daemon.signal(libc::SIGHUP);
    assert!(
        daemon.wait_for_log("TLS reload failed", 1, Duration::from_secs(10)),
        "no failed reload logged:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("tls.key_file"), "{log}");
    health_over_tls(&daemon, client_tls(&new_ca, None))
        .await
        .expect("the last good certificate is still served");
    health_on(open)
        .await
        .expect("the old connection survives a failed reload");
}

#[test]
fn startup_refuses_unusable_tls_files_naming_the_key() {
    let ca = Ca::new("allidb test CA");
    let files = TlsFiles::new();
    files.write_server(&ca.server());
    files.write("server-key.pem", &ca.server().key);
    let config = files.write("allidb.toml", &files.config(None));
    let data = files.path("data");
    let mut command = Command::new(allidb_tests::allidbd_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--set", "server.admin_addr=127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("allidbd runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tls.key_file") && stderr.contains("does not match"),
        "{stderr}"
    );
}
