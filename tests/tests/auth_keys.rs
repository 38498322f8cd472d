//! End-to-end tests of API keys over their life against a real `allidbd`: key file reload on
//! SIGHUP (add, remove, broken file), the counting and rate-limited logging of failed
//! authentications, and `allidb keys generate` (its keys authenticate; the CLI checkpoints with
//! the admin key and is refused with the read key). The role table is in `auth.rs`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use allidb_api::auth::hash_key;
use allidb_tests::auth::{Fixture, READ_KEY, TENANT, accepted};
use allidb_tests::{Daemon, allidb_binary, http_call, key_line};
use serde_json::Value;

/// How long a SIGHUP reload may take to show.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Polls `condition` until it holds or [`RELOAD_TIMEOUT`] passes.
async fn eventually(what: &str, daemon: &Daemon, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_file_reloads_on_sighup_and_a_broken_file_keeps_the_old_keys() {
    const FIRST: &str = "first-key";
    const SECOND: &str = "second-key";
    let fx = Fixture::start(&key_line(FIRST, TENANT, "read"));
    let mut client = fx.daemon.client().await;
    assert!(accepted(&mut client, FIRST).await);
    assert!(!accepted(&mut client, SECOND).await);

    let both = format!(
        "{}{}",
        key_line(FIRST, TENANT, "read"),
        key_line(SECOND, TENANT, "read")
    );
    std::fs::write(&fx.key_file, both).unwrap();
    fx.daemon.hangup();
    eventually("adding a key", &fx.daemon, async || {
        accepted(&mut client, SECOND).await
    })
    .await;
    assert!(accepted(&mut client, FIRST).await);

    std::fs::write(&fx.key_file, key_line(SECOND, TENANT, "read")).unwrap();
    fx.daemon.hangup();
    eventually("removing a key", &fx.daemon, async || {
        !accepted(&mut client, FIRST).await
    })
    .await;
    let addr = fx.daemon.http_addr.expect("allidbd serves HTTP");
    assert_eq!(
        http_call(addr, "GET", "/entities", Some(FIRST), "").status,
        401
    );
    assert_eq!(
        http_call(addr, "GET", "/entities", Some(SECOND), "").status,
        200
    );

    std::fs::write(&fx.key_file, "this is not a key line\n").unwrap();
    fx.daemon.hangup();
    eventually("logging the failed reload", &fx.daemon, async || {
        fx.daemon.log().contains("API key reload failed")
    })
    .await;
    assert!(
        accepted(&mut client, SECOND).await,
        "the old keys stay in force"
    );
    assert!(!accepted(&mut client, FIRST).await);
    assert!(fx.daemon.pid().is_some(), "SIGHUP must not stop the daemon");
}

/// `(suppressed, failed_total)` of each failed-authentication log line.
fn failure_lines(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        let start = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} missing in {line}"))
            + name.len()
            + 1;
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
    };
    log.lines()
        .filter(|line| line.contains("API key authentication failed"))
        .map(|line| (field(line, "suppressed"), field(line, "failed_total")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_counted_and_logged_at_most_once_a_second() {
    const BURST: u64 = 200;
    let fx = Fixture::start(&key_line(READ_KEY, TENANT, "read"));
    let mut client = fx.daemon.client().await;
    let addr = fx.daemon.http_addr.expect("allidbd serves HTTP");
    let started = Instant::now();
    for i in 0..BURST {
        let key = format!("wrong-key-{i}");
        if i % 10 == 0 {
            assert_eq!(
                http_call(addr, "GET", "/entities", Some(&key), "").status,
                401
            );
        } else {
            assert!(!accepted(&mut client, &key).await);
        }
    }
    let burst_secs = started.elapsed().as_secs();
    assert!(
        accepted(&mut client, READ_KEY).await,
        "successes are not failures"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!accepted(&mut client, "one-more-wrong-key").await);
    let total = BURST + 1;

    eventually("logging the last failure", &fx.daemon, async || {
        failure_lines(&fx.daemon.log())
            .last()
            .is_some_and(|&(_, failed_total)| failed_total == total)
    })
    .await;
    let log = fx.daemon.log();
    let lines = failure_lines(&log);
    assert!(
        lines.len() as u64 <= burst_secs + 3,
        "{} lines for a {burst_secs} s burst:\n{log}",
        lines.len()
    );
    let represented: u64 = lines.iter().map(|&(suppressed, _)| suppressed + 1).sum();
    assert_eq!(
        represented, total,
        "every failure is logged or counted:\n{log}"
    );
    assert!(!log.contains("wrong-key"), "a key was logged");
    assert!(
        !log.contains(&hash_key("wrong-key-0")),
        "a key hash was logged"
    );
}

/// Runs the `allidb` CLI with `args` (no `ALLIDB_*` variable from the environment).
fn allidb(args: &[&str]) -> Output {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().expect("allidb runs")
}

fn labelled<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_keys_authenticate_and_the_cli_checkpoints_with_an_admin_key() {
    let admin = allidb(&[
        "keys",
        "generate",
        "--tenant",
        TENANT,
        "--role",
        "admin",
        "--expires-in",
        "1d",
    ]);
    assert!(admin.status.success(), "{admin:?}");
    let stdout = String::from_utf8(admin.stdout).unwrap();
    let stderr = String::from_utf8(admin.stderr).unwrap();
    let admin_key = labelled(&stdout, "api_key: ").to_owned();
    let admin_line = labelled(&stdout, "key_file_line: ").to_owned();
    assert!(admin_key.starts_with("allidb_"), "{admin_key}");
    assert!(stderr.contains("only this once"), "{stderr}");
    assert!(!stderr.contains(&admin_key), "the key is printed once");
    assert!(
        admin_line.starts_with(&hash_key(&admin_key)),
        "{admin_line}"
    );

    let reader = allidb(&[
        "--json", "keys", "generate", "--tenant", TENANT, "--role", "read",
    ]);
    assert!(reader.status.success(), "{reader:?}");
    let reader: Value = serde_json::from_slice(&reader.stdout).unwrap();
    let reader_key = reader["api_key"].as_str().unwrap().to_owned();
    assert_eq!(reader["role"], "read");
    assert!(reader["expires_at"].is_null());
    assert_ne!(reader_key, admin_key);

    let bad_tenant = allidb(&[
        "keys",
        "generate",
        "--tenant",
        "two words",
        "--role",
        "read",
    ]);
    assert_eq!(bad_tenant.status.code(), Some(1), "{bad_tenant:?}");
    assert!(String::from_utf8_lossy(&bad_tenant.stderr).contains("tenant"));
    let bad_role = allidb(&["keys", "generate", "--tenant", TENANT, "--role", "root"]);
    assert_eq!(bad_role.status.code(), Some(2), "{bad_role:?}");

    let keys = format!(
        "{admin_line}\n{}\n",
        reader["key_file_line"].as_str().unwrap()
    );
    let fx = Fixture::start(&keys);
    let mut client = fx.daemon.client().await;
    assert!(accepted(&mut client, &admin_key).await);
    assert!(accepted(&mut client, &reader_key).await);

    let addr = fx.daemon.grpc_url();
    let target = fx.next_target();
    let target_arg = target.display().to_string();
    let refused = allidb(&[
        "--addr",
        &addr,
        "--api-key",
        &reader_key,
        "checkpoint",
        &target_arg,
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
    assert!(!target.exists());
    let written = allidb(&[
        "--addr",
        &addr,
        "--api-key",
        &admin_key,
        "checkpoint",
        &target_arg,
    ]);
    assert!(written.status.success(), "{written:?}");
    assert!(String::from_utf8_lossy(&written.stdout).contains("checkpoint written to"));
    assert!(target.join("lsm/CURRENT").exists());
    assert!(target.join("index/CURRENT").exists());
}
