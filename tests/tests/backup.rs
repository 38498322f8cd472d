//! End-to-end tests of `allidb backup` (docs/backup.md) with real components: `allidbd`
//! processes, the `allidb` CLI, and an S3-compatible server started on loopback (moto's
//! `moto_server`, from PyPI's `moto[server]`; `.ci/run` installs it and sets `MOTO_SERVER`).
//!
//! Covered: a backup to S3, a second one after more writes uploading only the new files
//! (counted in the bucket), a restore into an empty directory whose daemon serves exactly the
//! source's data (entities with vectors, edges and chunks; queries answer the same ids; a dropped
//! tenant stays dropped); a damaged and a missing object named by `verify` and `restore`;
//! kill -9 of the uploader and the daemon mid-backup; the daemon's schedule with retention.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::{Daemon, allidb_binary, doc_entity, key_line, request};
use serde_json::Value;

const ADMIN_KEY: &str = "backup-admin-key-0123456789";
const GONE_KEY: &str = "backup-gone-key-0123456789";
const TENANT: &str = "kept";
const GONE: &str = "gone";
const BUCKET: &str = "allidb-backups";
const DIM: usize = 8;

/// An S3-compatible server on loopback, stopped on drop.
struct S3Server {
    child: Child,
    addr: SocketAddr,
}

impl S3Server {
    fn start() -> S3Server {
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): install it with `pip install 'moto[server]'` \
                     or set MOTO_SERVER to its path"
                )
            });
        let server = S3Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(server.addr).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            server.http("PUT", &format!("/{BUCKET}")).0,
            200,
            "bucket created"
        );
        server
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One plain HTTP request (moto accepts unsigned ones); (status, body).
    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connects");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("sends");
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

    /// The keys in the bucket under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let (status, body) = self.http(
            "GET",
            &format!("/{BUCKET}?list-type=2&prefix={prefix}&max-keys=1000"),
        );
        assert_eq!(status, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// `allidb` with the S3 server's endpoint and credentials in its environment.
fn allidb_command(s3: Option<&S3Server>, args: &[&str]) -> Command {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    if let Some(s3) = s3 {
        command
            .env("AWS_ENDPOINT_URL", s3.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
    }
    command.env("ALLIDB_API_KEY", ADMIN_KEY).args(args);
    command.stdin(Stdio::null());
    command
}

fn allidb(s3: Option<&S3Server>, args: &[&str]) -> Run {
    let output: Output = allidb_command(s3, args).output().expect("allidb runs");
    Run {
        code: output.status.code().expect("allidb exits"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A daemon with keys for [`TENANT`] (admin) and [`GONE`] (admin), small memtables so writes
/// reach SSTables.
fn start_daemon(keys_dir: &Path, extra: &str) -> Daemon {
    let key_file = keys_dir.join("keys");
    std::fs::write(
        &key_file,
        [
            key_line(ADMIN_KEY, TENANT, "admin"),
            key_line(GONE_KEY, GONE, "admin"),
        ]
        .concat(),
    )
    .unwrap();
    Daemon::start(&config(&key_file, extra))
}

fn config(key_file: &Path, extra: &str) -> String {
    format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n\n[storage]\nmemtable_bytes = 1048576\n{extra}",
        key_file.display().to_string()
    )
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0 + d as f32 * 0.01)
        .collect()
}

/// Entity `i` of a batch: a vector, an edge to the previous one and a chunk.
fn entity(prefix: &str, i: usize) -> pb::Entity {
    let mut entity = doc_entity(&format!("{prefix}{i:05}"), &vector(i));
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

async fn write(daemon: &Daemon, key: &str, prefix: &str, range: std::ops::Range<usize>) {
    let mut client = daemon.client().await;
    let entities: Vec<pb::Entity> = range.map(|i| entity(prefix, i)).collect();
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
async fn every_entity(daemon: &Daemon, key: &str) -> Vec<pb::Entity> {
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

async fn query_ids(daemon: &Daemon, i: usize) -> Vec<String> {
    let mut client = daemon.client().await;
    client
        .query(request(
            pb::QueryRequest {
                query_vector: vector(i),
                k: 10,
                max_hops: Some(0),
                ..Default::default()
            },
            Some(ADMIN_KEY),
        ))
        .await
        .expect("query")
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.entity_id)
        .collect()
}

async fn drop_gone_tenant(daemon: &Daemon) {
    let mut client = daemon.client().await;
    client
        .drop_tenant(request(
            pb::DropTenantRequest {
                tenant_id: GONE.to_owned(),
                confirm: true,
                ..Default::default()
            },
            Some(GONE_KEY),
        ))
        .await
        .expect("drop");
}

fn backup_create(s3: Option<&S3Server>, daemon: &Daemon, target: &str, extra: &[&str]) -> Value {
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

/// Restores `backup` into a new directory under `root` and starts a daemon on it.
fn restore_and_start(
    s3: Option<&S3Server>,
    target: &str,
    backup: &str,
    root: &Path,
    keys: &Path,
) -> Daemon {
    let dest = root.join(format!("restored-{backup}"));
    let dest_text = dest.display().to_string();
    let reply = allidb(
        s3,
        &[
            "--json",
            "backup",
            "restore",
            "--from",
            target,
            "--backup",
            backup,
            "--data-dir",
            &dest_text,
        ],
    )
    .expect(0)
    .json();
    assert!(reply["files"].as_u64().unwrap() > 0, "{reply}");
    Daemon::start_on_data_dir(&config(&keys.join("keys"), ""), &dest)
}

async fn assert_same_data(source: &Daemon, restored: &Daemon) {
    let expected = every_entity(source, ADMIN_KEY).await;
    assert!(!expected.is_empty());
    let actual = every_entity(restored, ADMIN_KEY).await;
    assert_eq!(actual.len(), expected.len(), "entity count");
    assert!(
        actual == expected,
        "every entity, edge, chunk and vector is restored"
    );
    for i in [0, 17, 333] {
        assert_eq!(
            query_ids(restored, i).await,
            query_ids(source, i).await,
            "query {i}"
        );
    }
    assert!(
        every_entity(restored, GONE_KEY).await.is_empty(),
        "a dropped tenant stays dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_to_s3_are_incremental_and_restore_exactly() {
    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write(&daemon, GONE_KEY, "g", 0..300).await;
    write(&daemon, ADMIN_KEY, "a", 0..3000).await;
    drop_gone_tenant(&daemon).await;
    let target = format!("s3://{BUCKET}/ring-a");

    let first = backup_create(Some(&s3), &daemon, &target, &[]);
    let blobs_first = s3.keys("ring-a/blobs/").len();
    assert_eq!(
        first["uploaded_files"].as_u64().unwrap() as usize,
        blobs_first,
        "{first}"
    );
    assert!(
        s3.keys("ring-a/backups/")
            .iter()
            .any(|k| k.ends_with("node.manifest")),
        "the manifest is written"
    );

    write(&daemon, ADMIN_KEY, "b", 0..1500).await;
    let second = backup_create(Some(&s3), &daemon, &target, &[]);
    let blobs_second = s3.keys("ring-a/blobs/").len();
    let uploaded = second["uploaded_files"].as_u64().unwrap() as usize;
    assert_eq!(
        uploaded,
        blobs_second - blobs_first,
        "only new files are uploaded: {second}"
    );
    assert!(second["reused_files"].as_u64().unwrap() >= 1, "{second}");
    assert!(
        uploaded < second["files"].as_u64().unwrap() as usize,
        "the tables of the first backup are not uploaded again: {second}"
    );

    let list = allidb(Some(&s3), &["--json", "backup", "list", "--from", &target]).expect(0);
    let listed: Value = list.json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["complete"] == true)
    );
    allidb(Some(&s3), &["backup", "verify", "--from", &target]).expect(0);

    let id = second["backup_id"].as_str().unwrap();
    let restored = restore_and_start(Some(&s3), &target, id, scratch.path(), scratch.path());
    assert_same_data(&daemon, &restored).await;

    // Retention: the newest backup stays whole, the older one's files go.
    let pruned = allidb(
        Some(&s3),
        &[
            "--json", "backup", "delete", "--from", &target, "--keep", "1",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 1, "{pruned}");
    allidb(Some(&s3), &["backup", "verify", "--from", &target]).expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_name_the_missing_bucket() {
    let s3 = S3Server::start();
    let run = allidb(
        Some(&s3),
        &["backup", "list", "--from", "s3://no-such-bucket/x"],
    )
    .expect(1);
    assert!(
        run.stderr.contains("bucket does not exist"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_object_is_named_and_never_half_restored() {
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write(&daemon, ADMIN_KEY, "a", 0..2000).await;
    let store = scratch.path().join("store");
    let target = format!("file://{}", store.display());
    let created = backup_create(None, &daemon, &target, &[]);
    let id = created["backup_id"].as_str().unwrap().to_owned();

    let mut blobs: Vec<PathBuf> = std::fs::read_dir(store.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let damaged = blobs.pop().unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&damaged, &bytes).unwrap();
    let damaged_name = damaged.file_name().unwrap().to_string_lossy().into_owned();

    let verify = allidb(None, &["backup", "verify", "--from", &target]).expect(3);
    assert!(
        verify
            .stdout
            .contains(&format!("blobs/{damaged_name} is damaged")),
        "{}",
        verify.stdout
    );
    let dest = scratch.path().join("restored");
    let dest_text = dest.display().to_string();
    let restore_args = [
        "backup",
        "restore",
        "--from",
        target.as_str(),
        "--backup",
        id.as_str(),
        "--data-dir",
        dest_text.as_str(),
    ];
    let restore = allidb(None, &restore_args).expect(1);
    assert!(
        restore
            .stderr
            .contains(&format!("blobs/{damaged_name} is damaged")),
        "{}",
        restore.stderr
    );
    assert!(!dest.exists(), "no half-restored data dir");

    let missing = blobs.pop().unwrap();
    std::fs::remove_file(&missing).unwrap();
    let missing_name = missing.file_name().unwrap().to_string_lossy().into_owned();
    let verify = allidb(None, &["backup", "verify", "--from", &target]).expect(3);
    assert!(
        verify
            .stdout
            .contains(&format!("blobs/{missing_name} is missing")),
        "{}",
        verify.stdout
    );

    // A damaged manifest is named too.
    let manifest = store.join("backups").join(&id).join("node.manifest");
    let mut text = std::fs::read(&manifest).unwrap();
    let last = text.len() - 3;
    text[last] ^= 0x01;
    std::fs::write(&manifest, &text).unwrap();
    let restore = allidb(None, &restore_args).expect(1);
    assert!(
        restore.stderr.contains("node.manifest") && restore.stderr.contains("checksum"),
        "{}",
        restore.stderr
    );
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backup_leaves_no_complete_backup_and_the_next_one_restores() {
    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(scratch.path(), "");
    write(&daemon, ADMIN_KEY, "a", 0..4000).await;
    let target = format!("s3://{BUCKET}/crash");
    let addr = daemon.grpc_url();
    // Slow enough (256 KiB/s) to be killed in the middle.
    let mut uploader = allidb_command(
        Some(&s3),
        &[
            "--addr",
            &addr,
            "backup",
            "create",
            "--to",
            &target,
            "--backup-id",
            "interrupted",
            "--max-bytes-per-sec",
            "262144",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(scratch.path().join("uploader.err")).unwrap(),
    ))
    .spawn()
    .unwrap();
    let uploader_err = || std::fs::read_to_string(scratch.path().join("uploader.err")).unwrap();
    // A loaded machine may take a while to checkpoint and hash before the first upload.
    let deadline = Instant::now() + Duration::from_secs(120);
    while s3.keys("crash/blobs/").is_empty() {
        if let Some(exit) = uploader.try_wait().unwrap() {
            panic!(
                "the backup exited ({exit}) before uploading anything: {}",
                uploader_err()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the backup uploads something within 120 s; its output: {}\ndaemon log:\n{}",
            uploader_err(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    uploader.kill().unwrap();
    uploader.wait().unwrap();
    daemon.kill();
    let partial = s3.keys("crash/blobs/").len();

    let list = allidb(Some(&s3), &["--json", "backup", "list", "--from", &target]).expect(0);
    assert!(
        list.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["backup_id"] != "interrupted"),
        "an interrupted backup never lists: {}",
        list.stdout
    );

    daemon.restart();
    let next = backup_create(Some(&s3), &daemon, &target, &[]);
    assert!(
        next["reused_files"].as_u64().unwrap() as usize >= partial.min(1),
        "blobs of the interrupted backup are reused: {next}"
    );
    let list = allidb(Some(&s3), &["--json", "backup", "list", "--from", &target])
        .expect(0)
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let id = next["backup_id"].as_str().unwrap();
    let restored = restore_and_start(Some(&s3), &target, id, scratch.path(), scratch.path());
    assert_same_data(&daemon, &restored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_backs_up_on_its_schedule_and_keeps_the_newest() {
    let scratch = tempfile::tempdir().unwrap();
    let store = scratch.path().join("scheduled");
    let extra = format!(
        "\n[backup]\ntarget = \"file://{}\"\ninterval_secs = 1\nkeep = 2\n",
        store.display()
    );
    let daemon = start_daemon(scratch.path(), &extra);
    write(&daemon, ADMIN_KEY, "a", 0..500).await;
    let target = format!("file://{}", store.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = daemon.metric("allidb_backups_total", &[("outcome", "ok")]);
        if ok >= 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "three scheduled backups; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = allidb(None, &["--json", "backup", "list", "--from", &target])
        .expect(0)
        .json();
    let backups = list.as_array().unwrap();
    assert!(
        (1..=3).contains(&backups.len()),
        "retention keeps 2 (a third may be running): {list}"
    );
    let id = backups
        .iter()
        .rev()
        .find(|b| b["complete"] == true)
        .unwrap()["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let restored = restore_and_start(None, &target, &id, scratch.path(), scratch.path());
    assert_eq!(
        every_entity(&restored, ADMIN_KEY).await.len(),
        500,
        "the scheduled backup holds the writes made before it"
    );
}

/// A free loopback UDP port below the ephemeral range, for a gossip listener (as in cluster.rs).
fn free_udp_addr() -> SocketAddr {
    use rand::Rng;
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(32768);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(1024..low);
        if let Ok(socket) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            return socket.local_addr().unwrap();
        }
    }
    panic!("no free UDP port");
}

/// Node `i` of a 3-node ring (RF 3, no auth) on `data_dir` or a fresh one.
fn ring_node(i: usize, gossip: &[SocketAddr], data_dir: Option<&Path>) -> Daemon {
    let toml = format!(
        "[cluster]\nenabled = true\nname = \"backup-e2e\"\nnode_name = \"n{i}\"\n\
         secret = \"backup-e2e-secret-0123456789\"\nlisten_addr = \"{}\"\nseeds = [\"{}\"]\n\
         gossip_interval_ms = 100\n",
        gossip[i], gossip[0]
    );
    match data_dir {
        Some(dir) => Daemon::start_on_data_dir(&toml, dir),
        None => Daemon::start(&toml),
    }
}

/// Waits until `daemon` sees three normal nodes; returns their host ids, sorted.
fn ring_host_ids(daemon: &Daemon) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = allidb_tests::http_get(daemon.admin_addr.unwrap(), "/cluster/status");
        if status == 200 {
            let value: Value = serde_json::from_str(&body).unwrap();
            let nodes = value["nodes"].as_array().cloned().unwrap_or_default();
            if nodes.len() == 3 && nodes.iter().all(|n| n["status"] == "normal") {
                let mut ids: Vec<String> = nodes
                    .iter()
                    .map(|n| n["host_id"].as_str().unwrap().to_owned())
                    .collect();
                ids.sort();
                return ids;
            }
        }
        assert!(Instant::now() < deadline, "ring not formed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn node_ids(daemon: &Daemon) -> Vec<String> {
    let mut client = daemon.client().await;
    client
        .range_scan(request(
            pb::RangeScanRequest {
                limit: 1000,
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("scan of a node holding every range")
        .into_inner()
        .entities
        .into_iter()
        .map(|e| e.entity_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_is_backed_up_under_one_id_and_restored_node_by_node() {
    let scratch = tempfile::tempdir().unwrap();
    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let nodes: Vec<Daemon> = (0..3).map(|i| ring_node(i, &gossip, None)).collect();
    let hosts = ring_host_ids(&nodes[0]);
    let mut client = nodes[0].client().await;
    for i in 0..300 {
        client
            .put_entity(request(
                pb::PutEntityRequest {
                    entity: Some(doc_entity(&format!("r{i:04}"), &vector(i))),
                    consistency_level: pb::ConsistencyLevel::ConsistencyAll as i32,
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("write at ALL");
    }
    let before: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for node in &nodes {
            all.push(node_ids(node).await);
        }
        all
    };
    let store = scratch.path().join("ring-store");
    let target = format!("file://{}", store.display());
    let admin = nodes[0].admin_addr.unwrap().to_string();
    let staging = scratch.path().join("staging").display().to_string();
    let mut command = allidb_command(
        None,
        &[
            "--json",
            "cluster",
            "--admin",
            &admin,
            "backup",
            "--to",
            &target,
            "--staging",
            &staging,
            "--backup-id",
            "ring-1",
        ],
    );
    command.env_remove("ALLIDB_API_KEY");
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list = allidb(None, &["--json", "backup", "list", "--from", &target])
        .expect(0)
        .json();
    assert_eq!(list[0]["complete"], true, "{list}");
    assert_eq!(list[0]["nodes"].as_array().unwrap().len(), 3, "{list}");
    drop(nodes);

    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let mut restored = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let dest = scratch.path().join(format!("restored-{i}"));
        let dest_text = dest.display().to_string();
        allidb(
            None,
            &[
                "backup",
                "restore",
                "--from",
                &target,
                "--backup",
                "ring-1",
                "--node",
                host,
                "--data-dir",
                &dest_text,
            ],
        )
        .expect(0);
        restored.push((dest, i));
    }
    let restored: Vec<Daemon> = restored
        .iter()
        .map(|(dest, i)| ring_node(*i, &gossip, Some(dest)))
        .collect();
    assert_eq!(
        ring_host_ids(&restored[0]),
        hosts,
        "the same host ids come back"
    );
    for (node, expected) in restored.iter().zip(&before) {
        let mut actual = node_ids(node).await;
        actual.sort();
        let mut expected = expected.clone();
        expected.sort();
        assert_eq!(&actual, &expected, "every replica holds what it held");
    }
}
