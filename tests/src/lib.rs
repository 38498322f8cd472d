//! End-to-end test support: real `allidbd` processes on loopback.
//!
//! [`Daemon::start`] writes the given TOML as the config file of a fresh temporary directory,
//! runs the daemon with its data directory there and every listener on `127.0.0.1:0`, and waits
//! for `allidbd: ready`; the bound addresses come from the daemon's machine-readable lines.
//! [`Daemon::kill`] (SIGKILL), [`Daemon::stop`] (SIGTERM) and [`Daemon::restart`] (same config
//! and data, new ports) drive crash and restart scenarios; [`Daemon::hangup`] sends SIGHUP and
//! [`Daemon::start_on_data_dir`] starts a daemon on a given directory (a restored checkpoint).
//!
//! The binary: `$ALLIDBD_BIN` when set, else `allidbd` next to the test executable's `deps/`
//! directory, built once per test process with `cargo build --profile test --workspace --bins
//! --tests` and copied to a per-worktree name, since other builds may share the target
//! directory. That command selects the same packages and targets as `cargo test --workspace`,
//! so Cargo resolves the same dependency features and reuses every library that run already
//! compiled: it only links the two binaries, and is never stale. (`-p allidb-cmd` alone would
//! resolve other features and compile a second copy of tonic, hyper, axum and the rest: twice
//! the disk and minutes more, which once filled a CI machine's disk.) The
//! `allidb` CLI ([`allidb_binary`]) is built and copied the same way, at the same time.
//!
//! [`sources`] holds the source-provenance calls (merge-sources writes, `DeleteBySource`, a
//! scan of the whole tenant) the provenance tests share; [`grpc`] the calls and checks of the
//! `grpc*` tests, [`auth`] the daemon with one tenant's API keys the auth and checkpoint tests
//! start, [`docker`] what the container tests share.
//!
//! TLS: a test writes its certificates to files, names them in the `[tls]` section of the config
//! and connects with [`Daemon::tls_channel`]; [`Daemon::signal`] sends SIGHUP (reload) and
//! [`Daemon::wait_for_log`] waits for the daemon to report what it did. [`allidb_binary`] is the
//! CLI, copied like the daemon.
//!
//! Invariants: a daemon never outlives its [`Daemon`] (dropped = SIGKILL); the child gets no
//! `ALLIDB_*` variable from the test environment except the ones a test passes explicitly.

pub mod auth;
pub mod backup;
pub mod certs;
pub mod docker;
pub mod grpc;
pub mod netns;
pub mod ring;
pub mod sources;
pub mod tmpfs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use allidb_api::pb::allidb_client::AlliDbClient;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig};

/// How long a daemon may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Metadata key of the API key.
pub const API_KEY_HEADER: &str = allidb_api::auth::API_KEY_METADATA;

/// A gRPC client of `allidb.AlliDB`, as [`Daemon::client`] connects it.
pub type Client = AlliDbClient<Channel>;

/// A running (or stopped) `allidbd` with its own temporary directory.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound HTTP address, when the daemon serves HTTP.
    pub http_addr: Option<SocketAddr>,
    /// The bound admin address (`/metrics`, `/healthz`, `/readyz`), when the daemon prints it.
    pub admin_addr: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    extra_env: Vec<(String, String)>,
    /// The network namespace and address the daemon runs in (`None`: this one, on loopback).
    host: Option<NetHost>,
    /// The `allidbd` it runs (`None`: the build under test, [`allidbd_binary`]).
    binary: Option<PathBuf>,
    /// Lines the daemon printed on stdout after `ready`.
    lines: Option<Receiver<String>>,
    dir: tempfile::TempDir,
}

/// A host of a partition test: a network namespace (made by the test) and the address the
/// daemon listens on in it.
#[derive(Clone, Debug)]
pub struct NetHost {
    /// The namespace name (`ip netns`).
    pub netns: String,
    /// The daemon's address in it.
    pub ip: std::net::IpAddr,
}

/// The binaries under test: `allidbd` and `allidb` (see the module documentation).
struct Binaries {
    allidbd: PathBuf,
    allidb: PathBuf,
}

fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        if let Some(path) = std::env::var_os("ALLIDBD_BIN") {
            let allidbd = PathBuf::from(path);
            let allidb = allidbd.with_file_name("allidb");
            return Binaries { allidbd, allidb };
        }
        let exe = std::env::current_exe().expect("the test executable has a path");
        let deps = exe.parent().expect("the test executable is in a directory");
        let profile_dir = if deps.ends_with("deps") {
            deps.parent().expect("deps/ has a parent").to_owned()
        } else {
            deps.to_owned()
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        // What `cargo test` set for this test process describes this package, not the build:
        // passed on, `CARGO_MANIFEST_DIR` alone dirties ring's build script (it tracks that
        // variable) and with it rustls, tonic and everything above them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        let status = build
            .args([
                "build",
                "--profile",
                "test",
                "--workspace",
                "--bins",
                "--tests",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building allidbd failed");
        Binaries {
            allidbd: private_copy(&profile_dir, "allidbd"),
            allidb: private_copy(&profile_dir, "allidb"),
        }
    })
}

/// A copy of the built binary `name` private to this worktree: other worktrees sharing the
/// target directory may replace the built one while tests run. Swapped in atomically by a
/// rename.
fn private_copy(profile_dir: &Path, name: &str) -> PathBuf {
    let built = profile_dir.join(name);
    let worktree = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_MANIFEST_DIR").hash(&mut hasher);
        hasher.finish()
    };
    let binary = profile_dir.join(format!("{name}-e2e-{worktree:016x}"));
    let staging = profile_dir.join(format!("{name}-e2e-{worktree:016x}.{}", std::process::id()));
    std::fs::copy(&built, &staging).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    std::fs::rename(&staging, &binary)
        .unwrap_or_else(|e| panic!("renaming {}: {e}", staging.display()));
    binary
}

/// The `allidbd` binary (see the module documentation).
pub fn allidbd_binary() -> PathBuf {
    binaries().allidbd.clone()
}

/// The `allidb` CLI built with the daemon: `allidb` next to `$ALLIDBD_BIN` when that is set,
/// else a private copy (like [`allidbd_binary`]) taken right after the same build.
pub fn allidb_binary() -> PathBuf {
    binaries().allidb.clone()
}

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`), while it
/// runs.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// One key-file line granting `role` in `tenant` to `key`.
pub fn key_line(key: &str, tenant: &str, role: &str) -> String {
    format!("{} {tenant} {role}\n", allidb_api::auth::hash_key(key))
}

/// `message` as a request carrying `key` (none = no key metadata).
pub fn request<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert(
            API_KEY_HEADER,
            key.parse().expect("test keys are valid metadata"),
        );
    }
    request
}

/// An HTTP reply: the status code and the body as text.
#[derive(Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body (after the headers), as text.
    pub body: String,
}

/// One HTTP/1.1 request to `addr` on its own connection (`Connection: close`), with the API key
/// header when `key` is given; `body` is sent as is (empty: no body).
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> HttpReply {
    let headers: Vec<(&str, &str)> = key.map(|key| (API_KEY_HEADER, key)).into_iter().collect();
    http_request(addr, method, path, &headers, body)
}

/// One HTTP/1.1 request on its own connection (`Connection: close`) with `headers` and `body`,
/// read to the end. Replies must carry a `Content-Length` (chunked ones are refused).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    use std::io::{Read, Write};
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = std::net::TcpStream::connect(addr).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("a UTF-8 reply read to the end");
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {reply:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked replies are not supported here: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    HttpReply {
        status,
        body: body.to_owned(),
    }
}

impl Daemon {
    /// Starts a daemon whose config file is `config_toml` (listeners and data dir are set by
    /// flags) and waits until it is ready.
    pub fn start(config_toml: &str) -> Daemon {
        Self::start_with_env(config_toml, &[])
    }

    /// [`Daemon::start`] with authentication on and a key file granting each `(key, tenant,
    /// role)` of `keys` (and no key from the environment).
    pub fn start_with_keys(keys: &[(&str, &str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key_file = dir.path().join("keys");
        let lines: String = keys
            .iter()
            .map(|(key, tenant, role)| key_line(key, tenant, role))
            .collect();
        std::fs::write(&key_file, lines).expect("the key file is written");
        // The key file is read at startup; the directory may go after.
        Self::start(&format!(
            "[auth]\nenabled = true\nkey_file = {:?}\nkeys_env = \"\"\n",
            key_file.display().to_string()
        ))
    }

    /// [`Daemon::start`] with extra environment variables for the daemon.
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Daemon {
        Self::launch(config_toml, env, None)
    }

    /// [`Daemon::start`] on an existing data directory (e.g. a checkpoint), which the daemon
    /// uses in place (it is not removed with the daemon's temporary directory).
    pub fn start_on_data_dir(config_toml: &str, data_dir: &Path) -> Daemon {
        Self::launch(config_toml, &[], Some(data_dir.to_owned()))
    }

    /// [`Daemon::start`] running `allidbd` instead of the build under test (an older release, for
    /// an upgrade); [`Daemon::set_binary`] changes it for the next start.
    pub fn start_binary(allidbd: &Path, config_toml: &str) -> Daemon {
        let mut daemon = Self::prepare(config_toml, &[], None, None);
        daemon.binary = Some(allidbd.to_owned());
        daemon.spawn();
        daemon
    }

    /// The `allidbd` this daemon runs from its next start on (`None`: the build under test).
    pub fn set_binary(&mut self, allidbd: Option<PathBuf>) {
        self.binary = allidbd;
    }

    /// The config file (`config_toml`) this daemon starts with from its next start on.
    pub fn set_config(&mut self, config_toml: &str) {
        std::fs::write(&self.config_path, config_toml).expect("the config file is written");
    }

    /// [`Daemon::start`] inside the network namespace of `host`, every listener on its address.
    pub fn start_in(host: NetHost, config_toml: &str) -> Daemon {
        Self::launch_on(config_toml, &[], None, Some(host))
    }

    fn launch(config_toml: &str, env: &[(&str, &str)], data_dir: Option<PathBuf>) -> Daemon {
        Self::launch_on(config_toml, env, data_dir, None)
    }

    fn launch_on(
        config_toml: &str,
        env: &[(&str, &str)],
        data_dir: Option<PathBuf>,
        host: Option<NetHost>,
    ) -> Daemon {
        let mut daemon = Self::prepare(config_toml, env, data_dir, host);
        daemon.spawn();
        daemon
    }

    /// [`Daemon::start`] that returns once the daemon printed `line` (`allidbd: <line>`), e.g.
    /// `joining`, instead of `ready`.
    pub fn start_until(config_toml: &str, line: &str) -> Daemon {
        let mut daemon = Self::prepare(config_toml, &[], None, None);
        daemon.spawn_until(&format!("allidbd: {line}"));
        daemon
    }

    /// A daemon of `config_toml` in a new temporary directory, not started.
    fn prepare(
        config_toml: &str,
        env: &[(&str, &str)],
        data_dir: Option<PathBuf>,
        host: Option<NetHost>,
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_path = dir.path().join("allidb.toml");
        std::fs::write(&config_path, config_toml).expect("the config file is written");
        Daemon {
            child: None,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: None,
            admin_addr: None,
            data_dir: data_dir.unwrap_or_else(|| dir.path().join("data")),
            log_path: dir.path().join("allidbd.log"),
            config_path,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            host,
            binary: None,
            lines: None,
            dir,
        }
    }

    /// Runs a daemon whose config file is `config_toml` that is expected to stop on its own
    /// before it is ready (a refused start): its exit code and its log. Panics if it reports
    /// ready, or is still running after `limit` (then it is killed).
    pub fn start_refused(config_toml: &str, limit: Duration) -> (Option<i32>, String) {
        Self::refused(Self::prepare(config_toml, &[], None, None), limit)
    }

    /// [`Daemon::start_refused`] on an existing data directory (e.g. a node's after it left).
    pub fn start_refused_on_data_dir(
        config_toml: &str,
        data_dir: &Path,
        limit: Duration,
    ) -> (Option<i32>, String) {
        let daemon = Self::prepare(config_toml, &[], Some(data_dir.to_owned()), None);
        Self::refused(daemon, limit)
    }

    /// Runs `daemon` until it exits by itself (within `limit`) without reporting ready.
    fn refused(daemon: Daemon, limit: Duration) -> (Option<i32>, String) {
        let log = std::fs::File::create(&daemon.log_path).expect("the log file opens");
        let mut child = daemon
            .command()
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("allidbd starts");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child can be waited for") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "allidbd still running after {limit:?}; log:\n{}",
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).expect("stdout reads");
        }
        assert!(
            !stdout.lines().any(|l| l == "allidbd: ready"),
            "allidbd reported ready; log:\n{}",
            daemon.log()
        );
        (status.code(), daemon.log())
    }

    /// The temporary directory holding the config, the log and the data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the daemon logged (standard error) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The command line of this daemon (without spawning it).
    pub fn command(&self) -> Command {
        let binary = self.binary.clone().unwrap_or_else(allidbd_binary);
        let (mut command, ip) = match &self.host {
            None => (Command::new(binary), "127.0.0.1".to_owned()),
            Some(host) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &host.netns]).arg(binary);
                (command, host.ip.to_string())
            }
        };
        let any_port = format!("{ip}:0");
        command
            .arg("--config")
            .arg(&self.config_path)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--grpc-addr", &any_port, "--http-addr", &any_port])
            .args(["--set", &format!("server.admin_addr={any_port}")]);
        for (name, _) in std::env::vars() {
            if name.starts_with("ALLIDB_") {
                command.env_remove(name);
            }
        }
        command.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn spawn(&mut self) {
        self.spawn_until("allidbd: ready");
    }

    /// Spawns the daemon and waits until it prints `until` (a whole stdout line).
    fn spawn_until(&mut self, until: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("the log file opens");
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("allidbd starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.http_addr = None;
        self.admin_addr = None;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("allidbd: grpc listening on ") {
                        self.grpc_addr = addr.parse().expect("a socket address");
                    } else if let Some(addr) = line.strip_prefix("allidbd: http listening on ") {
                        self.http_addr = Some(addr.parse().expect("a socket address"));
                    } else if let Some(addr) = line.strip_prefix("allidbd: admin listening on ") {
                        self.admin_addr = Some(addr.parse().expect("a socket address"));
                    } else if line == until {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "allidbd did not print {until:?} in time; log:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "allidbd exited before {until:?} ({status:?}); log:\n{}",
                        self.log()
                    )
                }
            }
        }
        self.lines = Some(rx);
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running daemon.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the daemon is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit pid_t");
        // SAFETY: `pid` is our own child, not yet reaped, so it cannot name another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} is delivered");
    }

    /// Waits up to `timeout` until the daemon's log contains `needle` at least `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of the samples of metric `name` on the admin port whose labels include every
    /// pair of `labels` (0 when there is none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let admin = self
            .admin_addr
            .expect("allidbd prints the admin address before ready");
        let (status, body) = http_get(admin, "/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter(|line| {
                labels
                    .iter()
                    .all(|(label, value)| line.contains(&format!("{label}=\"{value}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The resident set size of the running daemon in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.pid().expect("the daemon is running");
        rss_bytes_of(pid).expect("VmRSS of a running daemon")
    }

    /// Opens a `BulkPutEntities` stream with `key` (none: no key) that sends nothing and stays
    /// open, so that it holds its request-budget charge (the largest message) until the
    /// returned task is aborted.
    pub async fn hold_bulk_stream(&self, key: Option<&'static str>) -> tokio::task::JoinHandle<()> {
        let mut client = self.client().await;
        let (open, rx) = tokio::sync::mpsc::channel::<allidb_api::pb::BulkPutEntitiesRequest>(1);
        tokio::spawn(async move {
            let _open = open;
            let _ = client
                .bulk_put_entities(request(ReceiverStream::new(rx), key))
                .await;
            std::future::pending::<()>().await;
        })
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the daemon with SIGKILL (a crash) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("the daemon is reaped");
        }
    }

    /// Sends `signal` to the running daemon (which stays owned by this handle).
    fn send_signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the daemon is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit pid_t");
        // SAFETY: `pid` is our own child, not yet reaped, so it cannot name another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} is delivered");
    }

    /// Sends SIGHUP (reload keys) to the running daemon; returns at once.
    pub fn hangup(&self) {
        self.send_signal(libc::SIGHUP);
    }

    /// Stops the daemon with SIGTERM and waits (at most a minute) for it to exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.send_signal(libc::SIGTERM);
        let mut child = self.child.take().expect("the daemon is running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("the daemon can be waited for") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("allidbd ignored SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines the daemon printed on stdout after `ready`, waiting up to `timeout` for `count`.
    pub fn lines_after_ready(&self, count: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + timeout;
        if let Some(rx) = &self.lines {
            while lines.len() < count {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
        }
        lines
    }

    /// Starts the daemon again on the same config and data (after [`Daemon::kill`] or
    /// [`Daemon::stop`]; a running daemon is killed first).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The gRPC endpoint URL.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A connected gRPC channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc_url())
            .expect("a valid URL")
            .connect()
            .await
            .expect("the daemon accepts connections")
    }

    /// The gRPC endpoint URL of a daemon with `tls.enabled`.
    pub fn grpc_tls_url(&self) -> String {
        format!("https://{}", self.grpc_addr)
    }

    /// A gRPC channel over TLS configured by `tls`, or why it could not connect.
    pub async fn tls_channel(
        &self,
        tls: ClientTlsConfig,
    ) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(self.grpc_tls_url())
            .expect("a valid URL")
            .connect_timeout(Duration::from_secs(10))
            .tls_config(tls)?
            .connect()
            .await
    }

    /// A connected `allidb.AlliDB` client.
    pub async fn client(&self) -> AlliDbClient<Channel> {
        AlliDbClient::new(self.channel().await)
    }
}

/// A plain HTTP/1.1 `GET` of `path` on `addr` (one connection, `Connection: close`): the status
/// and the body as text. For the admin endpoints, whose replies carry a `Content-Length`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with_headers(addr, path, &[])
}

/// [`http_get`] with extra request headers (e.g. the API key or `X-Trace-Id`).
pub fn http_get_with_headers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let reply = http_request(addr, "GET", path, headers, "");
    (reply.status, reply.body)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `doc` entity with one embedding: the entity most end-to-end tests write.
pub fn doc_entity(id: &str, vector: &[f32]) -> allidb_api::pb::Entity {
    allidb_api::pb::Entity {
        entity_id: id.to_owned(),
        entity_type: "doc".to_owned(),
        embeddings: vec![allidb_api::pb::VectorEmbedding {
            vector: vector.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    }
}
