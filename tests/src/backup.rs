//! Support for the backup tests (`tests/tests/backup*.rs`, docs/backup.md): an S3-compatible
//! server on loopback (moto's `moto_server`, from PyPI's `moto[server]`; `.ci/run` installs it
//! and sets `MOTO_SERVER`), a relay in front of it whose connections a test can cut (all of
//! them, or those of chosen requests), the `allidb` CLI run with the server's endpoint and
//! credentials, and a daemon with the data the backups hold (and its scheduled backups'
//! config section).
//!
//! Invariants: every server and relay listens on 127.0.0.1 only and stops when dropped; the CLI
//! gets no `ALLIDB_*` or `AWS_*` variable from the test environment, only the ones set here, and
//! keeps its backup hash cache under the system temporary directory
//! (`XDG_CACHE_HOME=<tmp>/allidb-tests-cache`), never in the user's home.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allidb_api::pb;
use serde_json::Value;

use crate::{Daemon, allidb_binary, doc_entity, key_line, request};

/// The admin key of tenant [`TENANT`] in [`start_daemon`]'s daemons.
pub const ADMIN_KEY: &str = "backup-admin-key-0123456789";
/// The admin key of tenant [`GONE`].
pub const GONE_KEY: &str = "backup-gone-key-0123456789";
/// The tenant whose data the backup tests check.
pub const TENANT: &str = "kept";
/// A tenant the tests drop before backing up.
pub const GONE: &str = "gone";
/// The bucket [`S3Server::start`] creates.
pub const BUCKET: &str = "allidb-backups";
/// Dimension of [`vector`].
pub const DIM: usize = 8;

/// An S3-compatible server on loopback with [`BUCKET`] created, stopped on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    addr: SocketAddr,
}

/// How the CLI reaches an S3 server: endpoint and credentials.
#[derive(Clone, Debug)]
pub struct S3Access {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
}

impl S3Access {
    /// The target `url` (`s3://...`) opened through this endpoint and these credentials, as the
    /// CLI opens it: for a test that reads the store signed (moto refuses an unsigned object
    /// read) or calls the upload code directly.
    pub fn open(&self, url: &str) -> allidb_cmd::backup::ObjectTarget {
        let settings = allidb_cmd::backup::S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            retry_timeout: Some(Duration::from_secs(10)),
        };
        allidb_cmd::backup::ObjectTarget::open(url, &settings, false).expect("the target opens")
    }
}

impl S3Server {
    /// Starts `moto_server` (`$MOTO_SERVER`, else on `PATH`) and creates [`BUCKET`].
    ///
    /// The server binds a port of its own choosing (`-p 0`) and names it on stderr: a port
    /// chosen free here and handed over could be taken in between by another listener of the
    /// same test binary (a relay), and the server would exit while the test talked to that.
    pub fn start() -> S3Server {
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): install it with `pip install 'moto[server]'` \
                     or set MOTO_SERVER to its path"
                )
            });
        let stderr = child.stderr.take().expect("stderr is piped");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Reads the port, then drains the request log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            const LISTENING: &str = "Running on http://127.0.0.1:";
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once(LISTENING) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(digits.parse::<u16>());
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("moto_server names its port on stderr within 30 s")
            .expect("moto_server's port is a number");
        let server = S3Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        assert_eq!(
            server.http("PUT", &format!("/{BUCKET}"), &[], "").0,
            200,
            "bucket created"
        );
        server
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The endpoint with the credentials moto accepts while it checks none.
    pub fn access(&self) -> S3Access {
        S3Access {
            endpoint: self.endpoint(),
            key_id: "testing".to_owned(),
            secret: "testing".to_owned(),
        }
    }

    /// One plain HTTP request (moto accepts unsigned ones until it checks credentials);
    /// (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connects");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}").expect("sends");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("reads");
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The keys in [`BUCKET`] under `prefix` (while the server checks no credentials).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let (status, body) = self.http(
            "GET",
            &format!("/{BUCKET}?list-type=2&prefix={prefix}&max-keys=1000"),
            &[],
            "",
        );
        assert_eq!(status, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// Makes the server check credentials from now on, as S3 does: creates an IAM user allowed
    /// every S3 action and returns its access key (moto's IAM, reached unsigned before the
    /// switch; afterwards every request must be signed with a key it issued).
    pub fn check_credentials(&self) -> S3Access {
        let iam = |params: &str| {
            // moto routes by the service named in the credential scope; it checks no
            // signature yet.
            let scope = "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/iam/aws4_request, \
                         SignedHeaders=host, Signature=0";
            let headers = [
                ("Authorization", scope),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ];
            let (status, body) = self.http(
                "POST",
                "/",
                &headers,
                &format!("{params}&Version=2010-05-08"),
            );
            assert_eq!(status, 200, "IAM {params}: {body}");
            body
        };
        iam("Action=CreateUser&UserName=backup");
        // {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22\
                      %3A%22Allow%22%2C%22Action%22%3A%22s3%3A%2A%22%2C%22Resource%22%3A%22%2A\
                      %22%7D%5D%7D";
        iam(&format!(
            "Action=PutUserPolicy&UserName=backup&PolicyName=s3&PolicyDocument={policy}"
        ));
        let created = iam("Action=CreateAccessKey&UserName=backup");
        let field = |name: &str| {
            created
                .split_once(&format!("<{name}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                .map(|(value, _)| value.to_owned())
                .unwrap_or_else(|| panic!("{name} in {created}"))
        };
        let access = S3Access {
            endpoint: self.endpoint(),
            key_id: field("AccessKeyId"),
            secret: field("SecretAccessKey"),
        };
        let (status, body) = self.http(
            "POST",
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain")],
            "0",
        );
        assert_eq!(status, 200, "credentials checked from now on: {body}");
        access
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay on loopback in front of `upstream` whose network a test can cut: while cut, it
/// resets every open connection and closes each new one as soon as its request begins (a
/// server that accepts, then fails). Made with [`Relay::refusing`], it also closes the
/// connection of every HTTP request whose request line a filter matches, without relaying it
/// (a network failure for those requests only). Stops relaying when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    requests_refused: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

/// Which HTTP requests a [`Relay::refusing`] relay drops: true for a request line
/// (`PUT /bucket/key?partNumber=1&uploadId=... HTTP/1.1`) it must not relay.
pub type RequestFilter = fn(&str) -> bool;

impl Relay {
    /// Starts relaying connections from a new loopback port to `upstream`.
    pub fn start(upstream: SocketAddr) -> Relay {
        Self::start_with(upstream, None)
    }

    /// [`Relay::start`] that reads the HTTP/1.1 requests it relays (each one's head, then its
    /// `Content-Length` bytes of body) and drops every one whose request line `refuse`
    /// matches: it closes that connection both ways instead of relaying the request, as a
    /// network failure would, every time the request is sent again.
    pub fn refusing(upstream: SocketAddr, refuse: RequestFilter) -> Relay {
        Self::start_with(upstream, Some(refuse))
    }

    fn start_with(upstream: SocketAddr, refuse: Option<RequestFilter>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let relay = Relay {
            addr: listener.local_addr().expect("a bound address"),
            cut: Arc::default(),
            refused: Arc::default(),
            requests_refused: Arc::default(),
            open: Arc::default(),
            stop: Arc::default(),
        };
        let (cut, refused, requests_refused, open, stop) = (
            relay.cut.clone(),
            relay.refused.clone(),
            relay.requests_refused.clone(),
            relay.open.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    // Closed once the request's first bytes came: the client always sees a
                    // connection that dropped its request (closed before the client wrote,
                    // it may see an error of another kind, which its retry policy may not
                    // retry).
                    let mut first = [0u8; 1];
                    let mut client = client;
                    let _ = client.set_read_timeout(Some(Duration::from_secs(1)));
                    let _ = client.read(&mut first);
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let pair = (client.try_clone(), server.try_clone());
                let (Ok(client_copy), Ok(server_copy)) = pair else {
                    continue;
                };
                if let Ok(mut open) = open.lock() {
                    open.extend(client.try_clone());
                    open.extend(server.try_clone());
                }
                match refuse {
                    None => pipe(client, server_copy),
                    Some(refuse) => {
                        pipe_requests(client, server_copy, refuse, requests_refused.clone())
                    }
                }
                pipe(server, client_copy);
            }
        });
        relay
    }

    /// `http://<relay address>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the network: open connections are shut down, new ones closed once accepted.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut open) = self.open.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Relays again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Connections accepted and closed while the network was cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Requests a [`Relay::refusing`] relay dropped (each retry counts).
    pub fn requests_refused(&self) -> usize {
        self.requests_refused.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` into `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Relays the HTTP/1.1 requests of one connection from `from` (the client) to `to` (the
/// server) on a thread, each whole: its head up to the empty line, then `Content-Length` bytes
/// of body (a chunked body is relayed as it comes, to the end of the connection). A request
/// whose request line `refuse` matches is not relayed: both connections are shut down and
/// `refused` counts it. Ends when either side closes.
fn pipe_requests(
    from: TcpStream,
    mut to: TcpStream,
    refuse: RequestFilter,
    refused: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || {
        let Ok(client) = from.try_clone() else { return };
        let mut from = BufReader::new(from);
        loop {
            let mut head = Vec::new();
            loop {
                let start = head.len();
                match from.read_until(b'\n', &mut head) {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                    Ok(_) if head[start..] == *b"\r\n" => break,
                    Ok(_) => {}
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let request_line = String::from_utf8_lossy(&head);
            let request_line = request_line.lines().next().unwrap_or_default();
            if refuse(request_line) {
                refused.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            let header = |name: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(name)?.trim().strip_prefix(':'))
                    .map(str::trim)
            };
            let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            let length: u64 = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let relayed = if chunked {
                to.write_all(&head)
                    .and_then(|()| std::io::copy(&mut from, &mut to).map(|_| ()))
            } else {
                to.write_all(&head).and_then(|()| {
                    let copied = std::io::copy(&mut (&mut from).take(length), &mut to)?;
                    if copied == length {
                        Ok(())
                    } else {
                        Err(std::io::ErrorKind::UnexpectedEof.into())
                    }
                })
            };
            if relayed.is_err() || chunked {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    });
}

/// How an `allidb` run ended.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code (printing the output otherwise).
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("allidb exits"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `allidb ARGS` with `s3`'s endpoint and credentials and [`ADMIN_KEY`] in its environment.
pub fn allidb_command(s3: Option<&S3Access>, args: &[&str]) -> Command {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    if let Some(s3) = s3 {
        command
            .env("AWS_ENDPOINT_URL", &s3.endpoint)
            .env("AWS_ACCESS_KEY_ID", &s3.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret)
            .env("AWS_REGION", "us-east-1");
    }
    command
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("allidb-tests-cache"),
        )
        .env("ALLIDB_API_KEY", ADMIN_KEY)
        .args(args);
    command.stdin(Stdio::null());
    command
}

/// Runs [`allidb_command`] to its end.
pub fn allidb(s3: Option<&S3Access>, args: &[&str]) -> Run {
    allidb_command(s3, args)
        .output()
        .expect("allidb runs")
        .into()
}

/// A daemon with keys for [`TENANT`] (admin) and [`GONE`] (admin), small memtables so writes
/// reach SSTables; its key file is written into `keys_dir`.
pub fn start_daemon(keys_dir: &Path, extra: &str) -> Daemon {
    let key_file = keys_dir.join("keys");
    std::fs::write(
        &key_file,
        [
            key_line(ADMIN_KEY, TENANT, "admin"),
            key_line(GONE_KEY, GONE, "admin"),
        ]
        .concat(),
    )
    .expect("the key file is written");
    Daemon::start(&daemon_config(&key_file, extra))
}

/// The config of [`start_daemon`]'s daemons.
pub fn daemon_config(key_file: &Path, extra: &str) -> String {
    format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n\n[storage]\nmemtable_bytes = 1048576\n{extra}",
        key_file.display().to_string()
    )
}

/// A `[backup]` section scheduling the daemon's own backups to `target` (`s3`: the S3 server's
/// endpoint and credentials, for an `s3://` target), with the further keys `settings` (TOML
/// lines, e.g. `interval_secs = 1`).
pub fn scheduled_backups(target: &str, s3: Option<&S3Access>, settings: &str) -> String {
    let mut section = format!("\n[backup]\ntarget = {target:?}\n");
    if let Some(s3) = s3 {
        section.push_str(&format!(
            "endpoint = {:?}\nregion = \"us-east-1\"\naccess_key_id = {:?}\n\
             secret_access_key = {:?}\n",
            s3.endpoint, s3.key_id, s3.secret
        ));
    }
    section.push_str(settings);
    section
}

/// The vector of entity `i`. It repeats every 97 entities, so a query finds many entities at
/// exactly the same distance: compare query answers across nodes with [`distinct_vector`]'s
/// data ([`write_distinct`]) instead.
pub fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0 + d as f32 * 0.01)
        .collect()
}

/// The vector of entity `<prefix><i>` in [`write_distinct`]'s data: each coordinate 24
/// pseudo-random bits in [0, 1) drawn from the entity's id, so no two entities share a
/// vector and the nearest neighbours of a query are one well-defined list (no exact ties).
pub fn distinct_vector(prefix: &str, i: usize) -> Vec<f32> {
    // FNV-1a of the id, then one splitmix64 step per coordinate.
    let mut state = format!("{prefix}{i:05}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (0..DIM)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Entity `i` of a batch with `vector`: an edge to the previous one and a chunk.
fn entity_with(prefix: &str, i: usize, vector: &[f32]) -> pb::Entity {
    let mut entity = doc_entity(&format!("{prefix}{i:05}"), vector);
    entity.outgoing_edges = vec![pb::GraphEdge {
        to_entity: format!("{prefix}{:05}", i.saturating_sub(1)),
        relation: "next".to_owned(),
        weight: 0.5,
        ..Default::default()
    }];
    entity.chunks = vec![pb::TextChunk {
        chunk_id: "c0".to_owned(),
        text: format!(
            "chunk of {prefix}{i}, with some text to make the tables grow {}",
            "x".repeat(200)
        ),
        ..Default::default()
    }];
    entity
}

/// Entity `i` of a batch: [`vector`]`(i)`, an edge to the previous one and a chunk.
pub fn entity(prefix: &str, i: usize) -> pb::Entity {
    entity_with(prefix, i, &vector(i))
}

/// Writes entities `range` (see [`entity`]) with `key`, 200 to a batch.
pub async fn write(daemon: &Daemon, key: &str, prefix: &str, range: std::ops::Range<usize>) {
    let entities = range.map(|i| entity(prefix, i)).collect();
    write_entities(daemon, key, entities).await;
}

/// Writes entities `range` as [`write`] does, but each with [`distinct_vector`]`(prefix, i)`:
/// data whose query answers are well defined, to compare two nodes' answers.
pub async fn write_distinct(
    daemon: &Daemon,
    key: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    let entities = range
        .map(|i| entity_with(prefix, i, &distinct_vector(prefix, i)))
        .collect();
    write_entities(daemon, key, entities).await;
}

/// Writes `entities` with `key`, 200 to a batch; every write must succeed.
async fn write_entities(daemon: &Daemon, key: &str, entities: Vec<pb::Entity>) {
    let mut client = daemon.client().await;
    for batch in entities.chunks(200) {
        let reply = client
            .batch_put_entities(request(
                pb::BatchPutEntitiesRequest {
                    entities: batch.to_vec(),
                    ..Default::default()
                },
                Some(key),
            ))
            .await
            .expect("writes succeed")
            .into_inner();
        assert!(reply.success && reply.failure_count == 0, "{reply:?}");
    }
}

/// Every entity of the key's tenant, in id order, as the daemon returns them.
pub async fn every_entity(daemon: &Daemon, key: &str) -> Vec<pb::Entity> {
    let mut client = daemon.client().await;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .range_scan(request(
                pb::RangeScanRequest {
                    limit: 500,
                    page_token: token.clone(),
                    ..Default::default()
                },
                Some(key),
            ))
            .await
            .expect("scan")
            .into_inner();
        all.extend(page.entities);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// `allidb --addr DAEMON --json backup create --to TARGET EXTRA...`, which must succeed; its
/// JSON reply.
pub fn backup_create(
    s3: Option<&S3Access>,
    daemon: &Daemon,
    target: &str,
    extra: &[&str],
) -> Value {
    let addr = daemon.grpc_url();
    let mut args = vec![
        "--addr",
        addr.as_str(),
        "--json",
        "backup",
        "create",
        "--to",
        target,
    ];
    args.extend_from_slice(extra);
    allidb(s3, &args).expect(0).json()
}

/// `allidb backup restore --from TARGET --backup BACKUP --data-dir DEST EXTRA...` (`EXTRA`: e.g.
/// `--node HOST`, `--json`) with `s3`'s endpoint and credentials, run to its end.
pub fn restore(
    s3: Option<&S3Access>,
    target: &str,
    backup: &str,
    dest: &Path,
    extra: &[&str],
) -> Run {
    let dest = dest.display().to_string();
    let mut args = vec![
        "backup",
        "restore",
        "--from",
        target,
        "--backup",
        backup,
        "--data-dir",
        dest.as_str(),
    ];
    args.extend_from_slice(extra);
    allidb(s3, &args)
}

/// Restores `backup` into a new directory under `root` and starts a daemon on it (with the key
/// file in `keys`).
pub fn restore_and_start(
    s3: Option<&S3Access>,
    target: &str,
    backup: &str,
    root: &Path,
    keys: &Path,
) -> Daemon {
    let dest = root.join(format!("restored-{backup}"));
    let reply = restore(s3, target, backup, &dest, &["--json"])
        .expect(0)
        .json();
    assert!(reply["files"].as_u64().unwrap_or(0) > 0, "{reply}");
    Daemon::start_on_data_dir(&daemon_config(&keys.join("keys"), ""), &dest)
}
