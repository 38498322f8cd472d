//! Containers (docs/deploy.md): README.md's 3-node ring in containers, with the image of
//! `deploy/build-image.sh` made from the binaries this test run built (`--profile test
//! --no-build`), run by docker-compose, and its failure matrix. The image on its own and the
//! Kubernetes manifest are tested in `deploy.rs`; the helpers both share are in
//! `allidb_tests::docker`.
//!
//! Opt-in: the test runs only with `ALLIDB_CONTAINER_TESTS=1` (`.ci/run` sets it; it needs
//! Docker Engine, docker-compose and root for `deploy/init-secrets.sh`), and otherwise prints
//! why it skipped.
//!
//! - README.md's "Run a 3-node ring in containers" block, run line by line as written in a copy
//!   of `deploy/` (the image line takes `--profile test --no-build`; a `cluster ... status` line
//!   is repeated until it lists the expected normal nodes: 3, then 4 after `up -d n3`).
//! - The failure matrix on that 4-node ring (RF 3), with hinted handoff off so that only repair
//!   brings missed writes to a replica: QUORUM writers on n0, n1 and n2 (a new entity per write
//!   and one register per writer) through `docker kill` + `docker start` on the same volume,
//!   `docker pause`/`unpause`, `docker network disconnect`/`connect` of n3 (the cut-off node
//!   acknowledges no QUORUM write, from inside its container) and `docker restart` (SIGTERM).
//!   After healing: every acknowledged entity is read back at QUORUM, every register holds at
//!   least its last acknowledged value, and after `allidb cluster repair` on n0 and n1 (which
//!   replicate every range between them) a `--preview` on every node finds no range differing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_api::pb::allidb_client::AlliDbClient;
use allidb_tests::docker::{
    DOCKER, docker_tests_enabled, repo_root, run, run_ok, target_dir, wait_for,
};
use allidb_tests::{allidb_binary, allidbd_binary, doc_entity, request};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The compose project of these tests (its containers are `allidbci_nI_1`).
const PROJECT: &str = "allidbci";

/// The shell block of README.md's section `heading`.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README.md has no section {heading}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section has a sh block")
        .0;
    block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A copy of the repository's deploy/ (without secrets) in `dir`, where README's commands run.
fn copy_deploy(dir: &Path) {
    let from = repo_root().join("deploy");
    let to = dir.join("deploy");
    std::fs::create_dir_all(&to).unwrap();
    for file in [
        "build-image.sh",
        "init-secrets.sh",
        "Dockerfile",
        "image.toml",
        "compose.yaml",
        "compose.toml",
    ] {
        std::fs::copy(from.join(file), to.join(file))
            .unwrap_or_else(|e| panic!("copying deploy/{file}: {e}"));
    }
}

/// Stops and removes the test's compose project (containers, network, volumes) when dropped.
struct Compose {
    dir: PathBuf,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", PROJECT)
            .args(["-f", "deploy/compose.yaml"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose runs")
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.command(&["--profile", "grow", "logs", "--tail", "40"]);
            eprintln!("{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self.command(&["--profile", "grow", "down", "-v", "--timeout", "5"]);
    }
}

/// Runs one README line in bash (after the function definitions before it) in `dir`.
fn run_line(dir: &Path, bin: &Path, prelude: &str, line: &str) -> Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .current_dir(dir)
        .env("PATH", path)
        .env("COMPOSE_PROJECT_NAME", PROJECT)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("ALLIDB_API_KEY")
        .args(["-c", &format!("set -eo pipefail\n{prelude}\n{line}")])
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

fn container(node: usize) -> String {
    format!("{PROJECT}_n{node}_1")
}

/// Node `via`'s `/cluster/status` (its published admin port), `None` while it does not answer
/// (stopped, paused, starting).
fn cluster_status(via: usize) -> Option<Value> {
    use std::io::{Read, Write};
    let admin: std::net::SocketAddr = format!("127.0.0.1:72{via}2").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /cluster/status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// `(name, status)` of every node in node `via`'s `/cluster/status`, sorted by name.
fn states(via: usize) -> Vec<(String, String)> {
    let Some(status) = cluster_status(via) else {
        return Vec::new();
    };
    let mut states: Vec<(String, String)> = status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or_default().to_owned(),
                        n["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    states.sort();
    states
}

/// Waits until every node of `nodes` sees them all `normal`.
fn wait_all_normal(nodes: usize, limit: Duration) -> Duration {
    let expected: Vec<(String, String)> = (0..nodes)
        .map(|i| (format!("n{i}"), "normal".to_owned()))
        .collect();
    wait_for("every node normal on every node", limit, || {
        (0..nodes).all(|via| states(via) == expected)
    })
}

/// The TLS settings of a client of the compose ring (deploy/secrets of `dir`).
fn client_tls(secrets: &Path) -> ClientTlsConfig {
    let read = |file: &str| {
        std::fs::read(secrets.join(file)).unwrap_or_else(|e| panic!("secrets/{file}: {e}"))
    };
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("client.pem"), read("client.key")))
        .domain_name("localhost")
}

async fn client_of(node: usize, tls: &ClientTlsConfig) -> AlliDbClient<Channel> {
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:72{node}0"))
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .tls_config(tls.clone())
        .expect("TLS settings apply")
        .connect_lazy();
    AlliDbClient::new(channel)
}

const QUORUM: i32 = pb::ConsistencyLevel::ConsistencyQuorum as i32;

/// What the writers were told: entities acknowledged, the last acknowledged value of each
/// register, attempts.
#[derive(Debug, Default)]
struct Acknowledged {
    entities: Vec<String>,
    registers: Vec<(String, u64)>,
    attempts: u64,
    failures: u64,
}

/// A QUORUM writer through node `node` until `stop`: alternately a new entity and its
/// register `reg-{node}` (value in `entity_type`).
async fn writer(
    node: usize,
    tls: ClientTlsConfig,
    key: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let mut client = client_of(node, &tls).await;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = if seq.is_multiple_of(2) {
            format!("reg-{node}")
        } else {
            format!("w{node}-{seq}")
        };
        let mut entity = doc_entity(&id, &[1.0, seq as f32, 0.5]);
        entity.entity_type = format!("v{seq}");
        let message = pb::PutEntityRequest {
            entity: Some(entity),
            consistency_level: QUORUM,
            ..Default::default()
        };
        let reply = client.put_entity(request(message, Some(&key))).await;
        let ok = reply.is_ok_and(|r| r.into_inner().success);
        {
            let mut acked = acked.lock().unwrap();
            acked.attempts += 1;
            if !ok {
                acked.failures += 1;
            } else if seq.is_multiple_of(2) {
                acked.registers.retain(|(r, _)| *r != id);
                acked.registers.push((id, seq));
            } else {
                acked.entities.push(id);
            }
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A QUORUM put from inside node `node`'s container (its own loopback), as root (the CLI's
/// client key is root's); whether it was acknowledged.
fn put_from_inside(node: usize, id: &str, key: &str) -> bool {
    run(
        "docker",
        &[
            "exec",
            "-u",
            "0",
            &container(node),
            "/usr/local/bin/allidb",
            "--addr",
            "https://localhost:7000",
            "--tls-ca",
            "/etc/allidb/secrets/ca.pem",
            "--tls-cert",
            "/etc/allidb/secrets/client.pem",
            "--tls-key",
            "/etc/allidb/secrets/client.key",
            "--api-key",
            key,
            "--consistency",
            "quorum",
            "put",
            "--id",
            id,
            "--vector",
            "1,0,0",
        ],
    )
    .status
    .success()
}

/// `allidb --json cluster repair ARGS` through node `node` with the operator key.
fn repair(dir: &Path, node: usize, operator: &str, args: &[&str]) -> Value {
    let secrets = dir.join("deploy/secrets");
    let file = |f: &str| secrets.join(f).display().to_string();
    let output = Command::new(allidb_binary())
        .args([
            "--json",
            "--addr",
            &format!("https://127.0.0.1:72{node}0"),
            "--tls-ca",
            &file("ca.pem"),
            "--tls-cert",
            &file("client.pem"),
            "--tls-key",
            &file("client.key"),
            "--tls-server-name",
            "localhost",
            "--api-key",
            operator,
            "cluster",
            "repair",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("allidb runs");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "repair through n{node} ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn count(reply: &Value, field: &str) -> u64 {
    reply[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {reply}"))
}

#[test]
fn the_readme_ring_runs_as_written_and_survives_the_failure_matrix() {
    if !docker_tests_enabled("compose") {
        return;
    }
    let _docker = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let _ = allidbd_binary();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_owned();
    copy_deploy(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(allidb_binary(), bin.join("allidb")).unwrap();
    let compose = Compose { dir: dir.clone() };
    // A project left by an interrupted run.
    let _ = compose.command(&["--profile", "grow", "down", "-v", "--timeout", "5"]);

    // README.md, line by line.
    let mut prelude = String::new();
    let mut nodes = 3;
    for line in readme_block("## Run a 3-node ring in containers") {
        if line.contains("docker-compose") && line.contains(" down") {
            // The teardown comes after the failure matrix (Compose's drop).
            continue;
        }
        if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.ends_with("()"))
        {
            prelude.push_str(&line);
            prelude.push('\n');
            continue;
        }
        let line = if line.starts_with("deploy/build-image.sh") {
            line.replacen(
                "deploy/build-image.sh",
                "deploy/build-image.sh --profile test --no-build",
                1,
            )
        } else {
            line
        };
        if line.contains("up -d n3") {
            nodes = 4;
        }
        let is_status = line.contains("cluster") && line.contains(" status");
        let line_started = Instant::now();
        loop {
            let output = run_line(&dir, &bin, &prelude, &line);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let normal = stdout.lines().filter(|l| l.contains("normal")).count();
            if output.status.success() && (!is_status || normal == nodes) {
                eprintln!("$ {line}\n{stdout}");
                break;
            }
            assert!(
                is_status && line_started.elapsed() < Duration::from_secs(240),
                "README line failed: {line}\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    assert_eq!(nodes, 4, "README adds the fourth node");
    eprintln!("README walkthrough: {:?}", started.elapsed());
    wait_all_normal(4, Duration::from_secs(120));

    // The failure matrix runs with hinted handoff off: only repair brings what a replica
    // missed. The config file is bind-mounted; each node rereads it on restart.
    let config = dir.join("deploy/compose.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    assert!(
        toml.trim_end().ends_with("gossip_interval_ms = 500"),
        "[cluster] is last"
    );
    toml.push_str("hinted_handoff_enabled = false\n");
    std::fs::write(&config, toml).unwrap();
    let names: Vec<String> = (0..4).map(container).collect();
    let mut restart = vec!["restart", "--time", "30"];
    restart.extend(names.iter().map(String::as_str));
    run_ok("docker", &restart);
    wait_all_normal(4, Duration::from_secs(180));

    let secrets = dir.join("deploy/secrets");
    let app_key = std::fs::read_to_string(secrets.join("app.key")).unwrap();
    let app_key = app_key.trim().to_owned();
    let operator = std::fs::read_to_string(secrets.join("operator.key")).unwrap();
    let operator = operator.trim().to_owned();
    let tls = client_tls(&secrets);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let writers: Vec<_> = (0..3)
        .map(|node| {
            runtime.spawn(writer(
                node,
                tls.clone(),
                app_key.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    let acks = || acked.lock().unwrap().entities.len();
    let under_load = |what: &str, seconds: u64| {
        let before = acks();
        std::thread::sleep(Duration::from_secs(seconds));
        let during = acks() - before;
        eprintln!("{what}: {during} entities acknowledged in {seconds} s");
        during
    };
    under_load("warm-up", 3);

    // 1. docker kill, then start on the same volume.
    run_ok("docker", &["kill", &names[1]]);
    under_load("n1 killed", 4);
    run_ok("docker", &["start", &names[1]]);
    let took = wait_all_normal(4, Duration::from_secs(120));
    eprintln!("n1 back (same volume) after {took:?}");

    // 2. docker pause: a node that stops answering without closing connections.
    run_ok("docker", &["pause", &names[2]]);
    assert!(
        under_load("n2 paused", 8) > 0,
        "the others acknowledge while n2 is paused"
    );
    run_ok("docker", &["unpause", &names[2]]);
    wait_all_normal(4, Duration::from_secs(120));

    // 3. docker network disconnect: n3 alone is a minority and acknowledges nothing.
    let network = format!("{PROJECT}_ring");
    run_ok("docker", &["network", "disconnect", &network, &names[3]]);
    let mut cut_acked = 0;
    let cut_started = Instant::now();
    let mut cut_tries = 0;
    while cut_started.elapsed() < Duration::from_secs(10) {
        cut_tries += 1;
        if put_from_inside(3, &format!("cut-{cut_tries}"), &app_key) {
            cut_acked += 1;
        }
    }
    assert!(under_load("n3 cut off", 2) > 0, "the majority acknowledges");
    assert_eq!(
        cut_acked, 0,
        "the cut-off node acknowledged {cut_acked} of {cut_tries} QUORUM writes"
    );
    eprintln!("n3 cut off: 0 of {cut_tries} QUORUM writes from inside it acknowledged");
    run_ok(
        "docker",
        &[
            "network",
            "connect",
            "--ip",
            "172.30.35.13",
            &network,
            &names[3],
        ],
    );
    wait_all_normal(4, Duration::from_secs(120));

    // 4. docker restart: SIGTERM, the shutdown announced, the same volume.
    let before = acked.lock().unwrap().failures;
    run_ok("docker", &["restart", "--time", "30", &names[0]]);
    wait_all_normal(4, Duration::from_secs(120));
    let restart_failures = acked.lock().unwrap().failures - before;
    eprintln!("n0 restarted: {restart_failures} writes failed meanwhile (its own writer's)");
    under_load("healed", 3);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        runtime.block_on(writer).unwrap();
    }

    // Repair on n0 and n1 (every range has 3 of the 4 nodes, so one of them), then no replica
    // differs anywhere.
    let preview = repair(&dir, 0, &operator, &["--preview"]);
    eprintln!(
        "before repair: {} ranges, {} partitions differing (seen from n0)",
        count(&preview, "ranges_differing"),
        count(&preview, "partitions_differing")
    );
    for node in [0, 1] {
        let repaired = repair(&dir, node, &operator, &[]);
        eprintln!(
            "repair through n{node}: {} partitions repaired",
            count(&repaired, "partitions_repaired")
        );
    }
    for node in 0..4 {
        let after = repair(&dir, node, &operator, &["--preview"]);
        assert_eq!(
            count(&after, "ranges_differing"),
            0,
            "after repair, n{node} still finds replicas differing: {after}"
        );
    }

    // Every acknowledged write, read back at QUORUM.
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut reader = runtime.block_on(client_of(1, &tls));
    let mut lost = Vec::new();
    for ids in acked.entities.chunks(200) {
        let message = pb::GetEntitiesRequest {
            entity_ids: ids.to_vec(),
            consistency_level: QUORUM,
            ..Default::default()
        };
        let reply = runtime
            .block_on(reader.get_entities(request(message, Some(&app_key))))
            .expect("a QUORUM read of the healed ring")
            .into_inner();
        lost.extend(reply.missing_ids);
    }
    for (register, last) in &acked.registers {
        let message = pb::GetEntitiesRequest {
            entity_ids: vec![register.clone()],
            consistency_level: QUORUM,
            ..Default::default()
        };
        let reply = runtime
            .block_on(reader.get_entities(request(message, Some(&app_key))))
            .expect("a QUORUM read of the healed ring")
            .into_inner();
        let value: u64 = reply
            .entities
            .first()
            .and_then(|e| e.entity_type.strip_prefix('v')?.parse().ok())
            .unwrap_or(0);
        assert!(
            value >= *last,
            "register {register} holds v{value}, older than the acknowledged v{last}"
        );
    }
    eprintln!(
        "failure matrix: {} writes attempted, {} entities and {} registers acknowledged, {} lost; \
         {:?} in all",
        acked.attempts,
        acked.entities.len(),
        acked.registers.len(),
        lost.len(),
        started.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    drop(compose);
}
