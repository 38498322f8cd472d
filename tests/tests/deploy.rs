//! Deployment files on their own (docs/deploy.md): the image of `deploy/build-image.sh`, made
//! from the binaries this test run built (`--profile test --no-build`), run by Docker Engine,
//! and the Kubernetes manifest `deploy/k8s/allidb.yaml` validated against the schemas.
//! README.md's ring in containers and its failure matrix are in `containers.rs`; the helpers
//! both share are in `allidb_tests::docker`.
//!
//! Opt-in: the Docker test runs only with `ALLIDB_CONTAINER_TESTS=1` (`.ci/run` sets it; it
//! needs Docker Engine), and otherwise prints why it skipped. The Kubernetes manifest test runs
//! when `kubernetes-validate` is on `PATH` or named by `$KUBERNETES_VALIDATE`, and is required
//! with `ALLIDB_CONTAINER_TESTS=1`.
//!
//! - The image runs as uid 10001, reports healthy through its `HEALTHCHECK` (`allidb probe
//!   readyz`), stops on SIGTERM within `docker stop`'s grace period with exit code 0, and exits
//!   2 on a configuration error with the message in `docker logs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use allidb_tests::allidbd_binary;
use allidb_tests::docker::{
    DOCKER, docker_tests_enabled, repo_root, run, run_ok, target_dir, wait_for,
};

/// The image README.md and deploy/compose.yaml name.
const IMAGE: &str = "allidb:latest";

/// Builds the image once per test process from the binaries of this run.
fn build_image() {
    static BUILT: OnceLock<String> = OnceLock::new();
    let summary = BUILT.get_or_init(|| {
        // Builds (links) the binaries of this test run into target/debug.
        let _ = allidbd_binary();
        let output = Command::new(repo_root().join("deploy/build-image.sh"))
            .args(["--profile", "test", "--no-build", "--tag", IMAGE])
            .env("CARGO_TARGET_DIR", target_dir())
            .output()
            .expect("deploy/build-image.sh runs");
        assert!(
            output.status.success(),
            "build-image.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    });
    eprintln!("{summary}");
}

/// Removes a container and its anonymous volume when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", "-v", &self.0]);
    }
}

fn inspect(container: &str, format: &str) -> String {
    run_ok("docker", &["inspect", "--format", format, container])
        .trim()
        .to_owned()
}

#[test]
fn the_image_runs_as_a_non_root_user_stops_on_sigterm_and_exits_2_on_a_config_error() {
    if !docker_tests_enabled("image") {
        return;
    }
    let _docker = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    build_image();
    let name = format!("allidbci-single-{}", std::process::id());
    let _ = run("docker", &["rm", "-f", &name]);
    let container = Container(name.clone());
    run_ok("docker", &["run", "-d", "--name", &container.0, IMAGE]);
    let took = wait_for("the container is healthy", Duration::from_secs(120), || {
        inspect(&name, "{{.State.Health.Status}}") == "healthy"
    });
    eprintln!("healthy (HEALTHCHECK allidb probe readyz) after {took:?}");
    assert_eq!(inspect(&name, "{{.Config.User}}"), "10001:10001");
    let top = run_ok("docker", &["top", &name, "-eo", "pid,uid,comm"]);
    let uids: Vec<&str> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !uids.is_empty() && uids.iter().all(|uid| *uid == "10001"),
        "processes of the container: {top}"
    );
    // The volume is writable by that user: the store opened and flushes on the way out.
    let started = Instant::now();
    run_ok("docker", &["stop", "--time", "10", &name]);
    let stopped = started.elapsed();
    assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "0");
    let logs = run("docker", &["logs", &name]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("allidbd: stopped"),
        "stdout: {}",
        String::from_utf8_lossy(&logs.stdout)
    );
    assert!(
        stopped < Duration::from_secs(10),
        "SIGTERM took {stopped:?}"
    );
    eprintln!("docker stop (SIGTERM) took {stopped:?}, exit code 0");

    // A configuration error: exit code 2, the message naming the key in `docker logs`.
    for (args, needle) in [
        (
            vec!["--set", "storage.no_such_key=1"],
            "storage.no_such_key",
        ),
        (
            vec!["-e", "ALLIDB_SERVER_GRPC_ADDR=nowhere"],
            "ALLIDB_SERVER_GRPC_ADDR",
        ),
    ] {
        let name = format!("allidbci-config-{}", std::process::id());
        let _ = run("docker", &["rm", "-f", &name]);
        let container = Container(name.clone());
        let mut command = vec!["run", "--name", container.0.as_str()];
        let (env, flags): (Vec<&str>, Vec<&str>) = if args[0] == "-e" {
            (args.clone(), Vec::new())
        } else {
            (Vec::new(), args.clone())
        };
        command.extend(env);
        command.push(IMAGE);
        command.extend(flags);
        let output = run("docker", &command);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "2");
        let logs = run("docker", &["logs", &name]);
        let stderr = String::from_utf8_lossy(&logs.stderr);
        assert!(
            stderr.contains("allidbd: config key") && stderr.contains(needle),
            "docker logs: {stderr}"
        );
    }
}

/// `kubernetes-validate`, when installed; `None` (the test skips) unless the container tests are
/// on, which require it.
fn kubernetes_validate() -> Option<PathBuf> {
    let named = std::env::var_os("KUBERNETES_VALIDATE").map(PathBuf::from);
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("kubernetes-validate"))
                .find(|p| p.is_file())
        })
    };
    let found = named.or_else(on_path);
    if found.is_none() {
        let required = std::env::var("ALLIDB_CONTAINER_TESTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "ALLIDB_CONTAINER_TESTS=1 needs kubernetes-validate (pip install \
             kubernetes-validate==1.37.0; .ci/run does)"
        );
        eprintln!(
            "k8s: skipped: kubernetes-validate is not on PATH nor named by $KUBERNETES_VALIDATE"
        );
    }
    found
}

fn validate(validator: &Path, file: &Path) -> Output {
    Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("kubernetes-validate runs")
}

#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let Some(validator) = kubernetes_validate() else {
        return;
    };
    let manifest = repo_root().join("deploy/k8s/allidb.yaml");
    let output = validate(&validator, &manifest);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for kind in [
        "statefulset/allidb",
        "service/allidb",
        "poddisruptionbudget/allidb",
        "configmap/allidb",
    ] {
        assert!(
            stdout.contains(&format!("passed for resource {kind}")),
            "{kind}: {stdout}"
        );
    }
    let text = std::fs::read_to_string(&manifest).unwrap();
    for needed in [
        "path: /readyz",
        "path: /healthz",
        "fieldPath: metadata.name",
        "preStop:",
        "publishNotReadyAddresses: true",
        "allidb-0.allidb:7946",
        "ALLIDB_CLUSTER_RPC_ADVERTISE_ADDR",
    ] {
        assert!(text.contains(needed), "the manifest lacks {needed}");
    }
    // The validator fails a manifest with a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, text.replace("readinessProbe:", "readinesProbe:")).unwrap();
    assert!(
        !validate(&validator, &broken).status.success(),
        "a misspelt field passed validation"
    );
}
