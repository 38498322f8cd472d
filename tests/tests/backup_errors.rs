//! End-to-end tests of how `allidb backup` fails (docs/backup.md "Errors"), with the real CLI, a
//! real daemon and moto's S3 server on loopback: each failure names its cause and what it
//! concerns (the bucket, the endpoint, the file), within a bounded time, and leaves nothing
//! half done.
//!
//! Covered: wrong credentials (a key id the server did not issue, once it checks them), a
//! missing bucket, an endpoint where nothing listens and one
//! that accepts then closes every connection (retried with backoff, then named), the network
//! cut in the middle of an upload (a short cut is retried through and the backup restores; a
//! lasting one fails naming the endpoint, and no backup lists), and a full disk during a
//! restore (a small tmpfs mounted by the test; skipped, with the reason printed, where mounting
//! is not permitted).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use allidb_tests::backup::{
    ADMIN_KEY, BUCKET, Relay, Run, S3Access, S3Server, allidb, allidb_command, backup_create,
    every_entity, restore, restore_and_start, start_daemon, write,
};
use allidb_tests::tmpfs::Tmpfs;

/// How long a request is retried in these tests (`--retry-timeout-secs`).
const RETRY_SECS: &str = "2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_named() {
    let s3 = S3Server::start();
    // moto checks credentials from here on: a key id it did not issue is refused before any
    // signature is checked. (A key it issued cannot be shown to work with this CLI: moto 5.2.1
    // computes a different signature for a query string holding an encoded `/`, as every
    // listing's `prefix=backups%2F` does; boto3's listings fail the same way.)
    let issued = s3.check_credentials();
    let unknown_key = S3Access {
        key_id: "AKIAUNKNOWNKEY000000".to_owned(),
        ..issued
    };
    let target = format!("s3://{BUCKET}/creds");
    let scratch = tempfile::tempdir().unwrap();
    let checkpoint = scratch.path().display().to_string();
    let list = ["backup", "list", "--from", target.as_str()];
    let create = [
        "backup",
        "create",
        "--to",
        target.as_str(),
        "--checkpoint",
        checkpoint.as_str(),
    ];
    for args in [&list[..], &create[..]] {
        let run = allidb(Some(&unknown_key), args).expect(1);
        let expected = format!(
            "allidb: {target}: list backups/: access denied: check the credentials \
             (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the [backup] section) for bucket \
             {BUCKET} at {} (",
            s3.endpoint()
        );
        assert!(
            run.stderr.starts_with(&expected) && run.stderr.contains("InvalidAccessKeyId"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named() {
    let s3 = S3Server::start();
    let run = allidb(
        Some(&s3.access()),
        &["backup", "list", "--from", "s3://no-such-bucket/x"],
    )
    .expect(1);
    assert!(
        run.stderr.contains(&format!(
            "s3://no-such-bucket/x: list backups/: the bucket does not exist: no bucket \
             no-such-bucket at {}",
            s3.endpoint()
        )),
        "{}",
        run.stderr
    );
}

/// `allidb backup list` against `endpoint`, retrying for [`RETRY_SECS`]; the run and its time.
fn list_at(endpoint: &str) -> (Run, Duration) {
    let access = S3Access {
        endpoint: endpoint.to_owned(),
        key_id: "testing".to_owned(),
        secret: "testing".to_owned(),
    };
    let started = Instant::now();
    let run = allidb(
        Some(&access),
        &[
            "backup",
            "list",
            "--from",
            &format!("s3://{BUCKET}/x"),
            "--retry-timeout-secs",
            RETRY_SECS,
        ],
    );
    (run, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_does_not_answer_is_retried_then_named() {
    // Nothing listens: the port of a listener just closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let (run, took) = list_at(&nowhere);
    let run = run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "list backups/: cannot reach the endpoint {nowhere}: no connection could be made \
             (network failure; retried with backoff, at most 10 times within {RETRY_SECS} s)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(30),
        "retried for the retry timeout, then failed: {took:?}"
    );

    // A server that accepts every connection, then closes it.
    let s3 = S3Server::start();
    let relay = Relay::start(s3.addr());
    relay.cut();
    let (run, took) = list_at(&relay.endpoint());
    let run = run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "list backups/: network failure: the connection to the endpoint {} was closed, \
             reset or timed out (retried with backoff",
            relay.endpoint()
        )),
        "{}",
        run.stderr
    );
    assert!(
        relay.refused() >= 3,
        "retried: {} connections",
        relay.refused()
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_mid_upload_is_retried_through_or_named_when_it_lasts() {
    let s3 = S3Server::start();
    let relay = Relay::start(s3.addr());
    let through_relay = S3Access {
        endpoint: relay.endpoint(),
        ..s3.access()
    };
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write(&daemon, ADMIN_KEY, "a", 0..4000).await;
    let target = format!("s3://{BUCKET}/cut");
    let addr = daemon.grpc_url();
    let staging = scratch.path().join("staging");
    let staging_text = staging.display().to_string();
    // Slow (256 KiB/s), so the network is cut in the middle of the upload.
    let spawn_backup = |id: &str, retry_secs: &str| {
        let stderr = scratch.path().join(format!("{id}.err"));
        let child = allidb_command(
            Some(&through_relay),
            &[
                "--addr",
                &addr,
                "--json",
                "backup",
                "create",
                "--to",
                &target,
                "--backup-id",
                id,
                "--staging",
                &staging_text,
                "--max-bytes-per-sec",
                "262144",
                "--retry-timeout-secs",
                retry_secs,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
        (child, stderr)
    };
    let wait_for_blobs = |more_than: usize, child: &mut std::process::Child| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while s3.keys("cut/blobs/").len() <= more_than {
            assert!(
                child.try_wait().unwrap().is_none(),
                "exited before uploading"
            );
            assert!(Instant::now() < deadline, "uploads within 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A short cut: the requests it fails are retried, and the backup completes.
    let (mut first, first_err) = spawn_backup("short-cut", "30");
    wait_for_blobs(0, &mut first);
    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.refused() < 2 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the backup ended during the cut: {}",
            std::fs::read_to_string(&first_err).unwrap()
        );
        assert!(Instant::now() < deadline, "requests during the cut");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let refused = relay.refused();
    relay.heal();
    let output = first.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(&first_err).unwrap();
    assert!(output.status.success(), "retried through the cut: {stderr}");
    let restored = restore_and_start(
        Some(&s3.access()),
        &target,
        "short-cut",
        scratch.path(),
        scratch.path(),
    );
    assert_eq!(
        every_entity(&restored, ADMIN_KEY).await.len(),
        4000,
        "the backup retried through the cut restores whole"
    );
    drop(restored);

    // A lasting cut: retried with backoff, then the backup fails naming the endpoint.
    write(&daemon, ADMIN_KEY, "b", 0..4000).await;
    let before = s3.keys("cut/blobs/").len();
    let (mut second, second_err) = spawn_backup("long-cut", RETRY_SECS);
    wait_for_blobs(before, &mut second);
    relay.cut();
    let cut_at = Instant::now();
    let deadline = cut_at + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the backup fails within 60 s of the cut"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&second_err).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("allidb: {target}: upload blobs/"))
            && stderr.contains(&format!(
                "network failure: the connection to the endpoint {} was closed, reset or timed \
                 out (retried with backoff, at most 10 times within {RETRY_SECS} s)",
                relay.endpoint()
            )),
        "{stderr}"
    );
    assert!(relay.refused() > refused, "retried during the lasting cut");
    assert!(
        !staging.join("node").exists(),
        "the staging checkpoint is removed"
    );
    let listed = allidb(
        Some(&s3.access()),
        &["--json", "backup", "list", "--from", &target],
    )
    .expect(0)
    .json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["short-cut"], "the failed backup never lists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_restore_is_named_and_leaves_nothing() {
    let Some(volume) = Tmpfs::mount("1m") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write(&daemon, ADMIN_KEY, "a", 0..3000).await;
    let target = format!("file://{}", scratch.path().join("store").display());
    let created = backup_create(None, &daemon, &target, &[]);
    assert!(
        created["total_bytes"].as_u64().unwrap() > 2 << 20,
        "the backup is larger than the volume: {created}"
    );
    let id = created["backup_id"].as_str().unwrap();

    let dest = volume.path().join("restored");
    let run = restore(None, &target, id, &dest, &[]).expect(1);
    let staged = volume.path().join(".restored.restoring");
    assert!(
        run.stderr
            .starts_with(&format!("allidb: {}/", staged.display()))
            && run
                .stderr
                .trim_end()
                .ends_with(": No space left on device (os error 28)"),
        "names the file that did not fit and the cause: {}",
        run.stderr
    );
    assert!(!dest.exists(), "no half-restored data dir");
    assert_eq!(
        std::fs::read_dir(volume.path()).unwrap().count(),
        0,
        "the partial restore is removed, its space given back"
    );

    // The same backup restores where there is room.
    let roomy = scratch.path().join("roomy");
    restore(None, &target, id, &roomy, &[]).expect(0);
}
