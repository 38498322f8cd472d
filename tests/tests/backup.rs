//! End-to-end tests of `allidb backup` (docs/backup.md) with real components: `allidbd`
//! processes, the `allidb` CLI, and an S3-compatible server started on loopback (moto's
//! `moto_server`, from PyPI's `moto[server]`; `.ci/run` installs it and sets `MOTO_SERVER`).
//!
//! Covered: a backup to S3, a second one after more writes uploading only the new files
//! (counted in the bucket), a restore into an empty directory whose daemon serves exactly the
//! source's data (entities with vectors, edges and chunks; queries answer the same ids; a dropped
//! tenant stays dropped); the writes after the daemon's last index dump caught up on the
//! restored node; the hash cache (a second backup reads none of the unchanged files again, and
//! restores exactly); a file above 8 MiB uploaded in multipart parts and restored byte for
//! byte, and one changed mid-upload storing nothing; a damaged and a missing object named by
//! `verify` and `restore`;
//! a multipart upload aborted when a part or its completion fails; kill -9 of the uploader and
//! the daemon mid-backup, and of the daemon during one of its scheduled backups; the daemon's
//! schedule with retention.
//! Errors (credentials, bucket, network, full disk) are in `backup_errors.rs`, a ring in
//! `backup_ring.rs`; the S3 server and the helpers in the tests crate (`tests/src/backup.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::backup::{
    ADMIN_KEY, BUCKET, GONE, GONE_KEY, Relay, RequestFilter, S3Access, S3Server, allidb,
    allidb_command, backup_create, daemon_config, distinct_vector, every_entity, restore,
    restore_and_start, scheduled_backups, start_daemon, write_distinct,
};
use allidb_tests::{Daemon, request};
use serde_json::Value;

/// The ids the 10 nearest neighbours of entity `a<i>`'s vector answer, best first. The tests
/// here write [`write_distinct`]'s data, whose vectors are all different: the answer is one
/// well-defined list, the same on any node holding the same data.
async fn query_ids(daemon: &Daemon, i: usize) -> Vec<String> {
    result_ids(
        daemon,
        pb::QueryRequest {
            query_vector: distinct_vector("a", i),
            k: 10,
            max_hops: Some(0),
            ..Default::default()
        },
    )
    .await
}

/// The ids `query` answers, best first.
async fn result_ids(daemon: &Daemon, query: pb::QueryRequest) -> Vec<String> {
    let mut client = daemon.client().await;
    client
        .query(request(query, Some(ADMIN_KEY)))
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
        let answer = query_ids(source, i).await;
        assert_eq!(
            answer.first(),
            Some(&format!("a{i:05}")),
            "the nearest to a{i}'s vector is a{i}: {answer:?}"
        );
        assert_eq!(query_ids(restored, i).await, answer, "query {i}");
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
    write_distinct(&daemon, GONE_KEY, "g", 0..300).await;
    write_distinct(&daemon, ADMIN_KEY, "a", 0..3000).await;
    drop_gone_tenant(&daemon).await;
    let target = format!("s3://{BUCKET}/ring-a");

    let first = backup_create(Some(&s3.access()), &daemon, &target, &[]);
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

    write_distinct(&daemon, ADMIN_KEY, "b", 0..1500).await;
    let second = backup_create(Some(&s3.access()), &daemon, &target, &[]);
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

    let list = allidb(
        Some(&s3.access()),
        &["--json", "backup", "list", "--from", &target],
    )
    .expect(0);
    let listed: Value = list.json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["complete"] == true)
    );
    allidb(Some(&s3.access()), &["backup", "verify", "--from", &target]).expect(0);

    let id = second["backup_id"].as_str().unwrap();
    let restored = restore_and_start(
        Some(&s3.access()),
        &target,
        id,
        scratch.path(),
        scratch.path(),
    );
    assert_same_data(&daemon, &restored).await;

    // Retention: the newest backup stays whole, the older one's files go.
    let store = s3.access().open(&target);
    let blobs_of = async |backup: &Value| -> std::collections::BTreeSet<String> {
        let id = backup["backup_id"].as_str().unwrap();
        let key = format!("backups/{id}/node.manifest");
        let bytes = store.read(&key).await.unwrap().expect("the manifest");
        let manifest = allidb_cmd::backup::manifest::decode(&bytes).unwrap();
        manifest
            .files
            .iter()
            .map(|f| format!("ring-a/{}", f.blob_key()))
            .collect()
    };
    let (old_blobs, kept_blobs) = (blobs_of(&first).await, blobs_of(&second).await);
    let only_old: Vec<&String> = old_blobs.difference(&kept_blobs).collect();
    let shared: Vec<&String> = old_blobs.intersection(&kept_blobs).collect();
    assert!(
        !only_old.is_empty() && !shared.is_empty(),
        "the first backup has blobs of its own and blobs the second shares: {only_old:?} {shared:?}"
    );
    let pruned = allidb(
        Some(&s3.access()),
        &[
            "--json", "backup", "delete", "--from", &target, "--keep", "1",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(
        pruned["blobs_deleted"].as_u64().unwrap() as usize,
        only_old.len(),
        "exactly the blobs only the deleted backup needed: {pruned}"
    );
    let remaining: std::collections::BTreeSet<String> =
        s3.keys("ring-a/blobs/").into_iter().collect();
    for blob in &only_old {
        assert!(
            !remaining.contains(*blob),
            "{blob}, needed only by the deleted backup, is gone"
        );
    }
    for blob in &shared {
        assert!(
            remaining.contains(*blob),
            "{blob}, shared with the kept backup, stays"
        );
    }
    assert_eq!(remaining, kept_blobs, "the kept backup's blobs, no others");
    allidb(Some(&s3.access()), &["backup", "verify", "--from", &target]).expect(0);
}

/// A second backup takes the hashes of the files the first one hashed (the hard-linked tables,
/// older than the cache's 2 s settling time) from the hash cache instead of reading them, and
/// restores exactly; with `--no-hash-cache` every file is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_takes_unchanged_files_hashes_from_the_cache() {
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write_distinct(&daemon, ADMIN_KEY, "a", 0..3000).await;
    // Files modified less than 2 s before their hashing are not recorded.
    std::thread::sleep(Duration::from_millis(2500));
    let cache = scratch.path().join("hashes").display().to_string();
    let target = format!("file://{}", scratch.path().join("store").display());
    let with_cache = ["--hash-cache", cache.as_str()];
    let first = backup_create(None, &daemon, &target, &with_cache);
    assert_eq!(first["hash_cache_hits"], 0, "{first}");
    assert_eq!(first["hashed_bytes"], first["total_bytes"], "{first}");
    let second = backup_create(None, &daemon, &target, &with_cache);
    let hits = second["hash_cache_hits"].as_u64().unwrap();
    let hashed = second["hashed_bytes"].as_u64().unwrap();
    assert!(
        hits >= 1 && hashed < second["total_bytes"].as_u64().unwrap(),
        "the tables' hashes come from the cache: {second}"
    );
    let uncached = backup_create(None, &daemon, &target, &["--no-hash-cache"]);
    assert_eq!(uncached["hash_cache_hits"], 0, "{uncached}");
    assert_eq!(
        uncached["hashed_bytes"], uncached["total_bytes"],
        "{uncached}"
    );
    let id = second["backup_id"].as_str().unwrap();
    let restored = restore_and_start(None, &target, id, scratch.path(), scratch.path());
    assert_same_data(&daemon, &restored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_object_is_named_and_never_half_restored() {
    let scratch = tempfile::tempdir().unwrap();
    let daemon = start_daemon(scratch.path(), "");
    write_distinct(&daemon, ADMIN_KEY, "a", 0..2000).await;
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
    let refused = restore(None, &target, &id, &dest, &[]).expect(1);
    assert!(
        refused
            .stderr
            .contains(&format!("blobs/{damaged_name} is damaged")),
        "{}",
        refused.stderr
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
    // With the damaged blob repaired, the missing one is the restore's only problem: it is
    // named, and no data dir is left behind.
    bytes[middle] ^= 0x20;
    std::fs::write(&damaged, &bytes).unwrap();
    let refused = restore(None, &target, &id, &dest, &[]).expect(1);
    assert!(
        refused
            .stderr
            .contains(&format!("blobs/{missing_name} is missing")),
        "{}",
        refused.stderr
    );
    assert!(!dest.exists(), "no half-restored data dir");
    assert!(
        !scratch.path().join(".restored.restoring").exists(),
        "the partial restore is removed"
    );

    // A damaged manifest is named too.
    let manifest = store.join("backups").join(&id).join("node.manifest");
    let mut text = std::fs::read(&manifest).unwrap();
    let last = text.len() - 3;
    text[last] ^= 0x01;
    std::fs::write(&manifest, &text).unwrap();
    let refused = restore(None, &target, &id, &dest, &[]).expect(1);
    assert!(
        refused.stderr.contains("node.manifest") && refused.stderr.contains("checksum"),
        "{}",
        refused.stderr
    );
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backup_leaves_no_complete_backup_and_the_next_one_restores() {
    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(scratch.path(), "");
    write_distinct(&daemon, ADMIN_KEY, "a", 0..4000).await;
    let target = format!("s3://{BUCKET}/crash");
    let addr = daemon.grpc_url();
    // Slow enough (256 KiB/s) to be killed in the middle.
    let mut uploader = allidb_command(
        Some(&s3.access()),
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
    wait_for_a_blob(&s3, "crash/blobs/", || {
        let exited = uploader.try_wait().unwrap().map(|exit| {
            format!(
                "the backup exited ({exit}) before uploading anything: {}",
                uploader_err()
            )
        });
        let output = format!(
            "its output: {}\ndaemon log:\n{}",
            uploader_err(),
            daemon.log()
        );
        (exited, output)
    });
    uploader.kill().unwrap();
    uploader.wait().unwrap();
    daemon.kill();
    let partial = s3.keys("crash/blobs/").len();

    let listed = list_backups(&s3, &target);
    assert!(
        listed.iter().all(|b| b["backup_id"] != "interrupted"),
        "an interrupted backup never lists: {listed:?}"
    );

    daemon.restart();
    let next = backup_create(Some(&s3.access()), &daemon, &target, &[]);
    assert!(
        next["reused_files"].as_u64().unwrap() as usize >= partial.min(1),
        "blobs of the interrupted backup are reused: {next}"
    );
    let list = list_backups(&s3, &target);
    assert_eq!(list.len(), 1, "{list:?}");
    let id = next["backup_id"].as_str().unwrap();
    let restored = restore_and_start(
        Some(&s3.access()),
        &target,
        id,
        scratch.path(),
        scratch.path(),
    );
    assert_same_data(&daemon, &restored).await;
}

/// Every backup `allidb backup list --json` shows in `target` on `s3`.
fn list_backups(s3: &S3Server, target: &str) -> Vec<Value> {
    let listed = allidb(
        Some(&s3.access()),
        &["--json", "backup", "list", "--from", target],
    )
    .expect(0)
    .json();
    listed.as_array().expect("a list").clone()
}

/// Waits until the bucket holds an object under `blobs` (a loaded machine may take a while to
/// checkpoint and hash before the first upload: up to 120 s). `backup` is asked meanwhile
/// whether the backup ended before uploading anything (`Some(why)`, which fails the test) and
/// what it printed so far (for the failure message).
fn wait_for_a_blob(
    s3: &S3Server,
    blobs: &str,
    mut backup: impl FnMut() -> (Option<String>, String),
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while s3.keys(blobs).is_empty() {
        let (ended, output) = backup();
        if let Some(why) = ended {
            panic!("{why}");
        }
        assert!(
            Instant::now() < deadline,
            "the backup uploads something within 120 s; {output}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kill -9 of the daemon in the middle of one of its own scheduled backups (`[backup]
/// interval_secs`: the daemon uploads to moto itself, paced at 256 KiB/s so that it is caught
/// mid-upload, once its first blob is in the bucket): the interrupted backup never lists; after
/// a restart the next scheduled backup completes, reuses the blobs the interrupted one
/// uploaded, and restores exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_daemon_mid_scheduled_backup_lists_nothing_and_the_next_one_restores() {
    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(scratch.path(), "");
    write_distinct(&daemon, ADMIN_KEY, "a", 0..2000).await;
    let target = format!("s3://{BUCKET}/scheduled");
    let scheduled = |max_bytes_per_sec: u64| {
        let settings = format!("interval_secs = 1\nmax_bytes_per_sec = {max_bytes_per_sec}\n");
        daemon_config(
            &scratch.path().join("keys"),
            &scheduled_backups(&target, Some(&s3.access()), &settings),
        )
    };
    // Every write is in the store before the schedule starts, one second after the restart.
    daemon.stop();
    daemon.set_config(&scheduled(256 << 10));
    daemon.restart();
    wait_for_a_blob(&s3, "scheduled/blobs/", || {
        (None, format!("daemon log:\n{}", daemon.log()))
    });
    daemon.kill();
    let partial = s3.keys("scheduled/blobs/").len();
    let listed = list_backups(&s3, &target);
    assert!(
        listed.is_empty(),
        "the interrupted backup ({partial} blobs uploaded) never lists: {listed:?}"
    );

    daemon.set_config(&scheduled(0));
    daemon.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.metric("allidb_backups_total", &[("outcome", "ok")]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "a scheduled backup completes after the restart; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.metric("allidb_backup_reused_files_total", &[]) >= 1.0,
        "blobs of the interrupted backup are reused"
    );
    let listed = list_backups(&s3, &target);
    let id = listed
        .iter()
        .rev()
        .find(|b| b["complete"] == true)
        .and_then(|b| b["backup_id"].as_str())
        .unwrap_or_else(|| panic!("a complete backup lists: {listed:?}"));
    let restored = restore_and_start(
        Some(&s3.access()),
        &target,
        id,
        scratch.path(),
        scratch.path(),
    );
    assert_same_data(&daemon, &restored).await;
}

/// `n` pseudo-random bytes (splitmix64 from `seed`): a file no compression or dedup shortens.
fn pseudo_random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut bytes = Vec::with_capacity(n + 8);
    while bytes.len() < n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(n);
    bytes
}

/// Writes a checkpoint into `dir` whose table `lsm/000001.sst` is 20 MiB of pseudo-random bytes
/// (3 parts of a multipart upload: 8, 8 and 4 MiB), beside a small `lsm/CURRENT`; the table's
/// bytes.
fn big_checkpoint(dir: &std::path::Path) -> Vec<u8> {
    use allidb_cmd::backup::target::PART_BYTES;

    std::fs::create_dir_all(dir.join("lsm")).unwrap();
    let big = pseudo_random_bytes(20 << 20, 7);
    assert!(big.len() > 2 * PART_BYTES);
    std::fs::write(dir.join("lsm/000001.sst"), &big).unwrap();
    std::fs::write(dir.join("lsm/CURRENT"), b"MANIFEST-000002\n").unwrap();
    big
}

/// The multipart uploads [`BUCKET`] holds unfinished (S3's ListMultipartUploads, XML).
fn multipart_uploads(s3: &S3Server) -> String {
    let (status, uploads) = s3.http("GET", &format!("/{BUCKET}?uploads"), &[], "");
    assert_eq!(status, 200, "{uploads}");
    uploads
}

/// A file above `PART_BYTES` (8 MiB) goes up in multipart parts (cmd/src/backup/target.rs
/// `upload_file`): 20 MiB of pseudo-random bytes reach moto as one object of 3 parts (S3 names a
/// multipart object's ETag `"<md5>-<parts>"`) and restore byte for byte. A file whose bytes
/// change while its parts are being sent fails, naming the file, and leaves neither an object
/// under its blob name nor an unfinished multipart upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_above_8_mib_goes_up_in_parts_and_a_change_mid_upload_stores_nothing() {
    use allidb_cmd::backup::BackupError;
    use allidb_cmd::backup::manifest::{blob_key, sha256_hex};
    use allidb_cmd::backup::target::PART_BYTES;

    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let checkpoint = scratch.path().join("checkpoint");
    let big = big_checkpoint(&checkpoint);
    let target = format!("s3://{BUCKET}/multipart");
    let cp = checkpoint.display().to_string();
    let created = allidb(
        Some(&s3.access()),
        &[
            "--json",
            "backup",
            "create",
            "--checkpoint",
            &cp,
            "--to",
            &target,
            "--no-hash-cache",
            "--max-bytes-per-sec",
            "0",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(created["uploaded_files"], 2, "{created}");
    let big_key = format!("multipart/{}", blob_key(&sha256_hex(&big)));
    let (status, listing) = s3.http(
        "GET",
        &format!("/{BUCKET}?list-type=2&prefix={big_key}"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{listing}");
    assert!(
        listing.contains(&format!("<Size>{}</Size>", big.len())),
        "the 20 MiB blob is stored whole: {listing}"
    );
    let etag = listing
        .split_once("<ETag>")
        .and_then(|(_, rest)| rest.split_once("</ETag>"))
        .map(|(etag, _)| {
            etag.replace("&#34;", "")
                .replace("&quot;", "")
                .replace('"', "")
        })
        .unwrap_or_default();
    assert!(
        etag.ends_with("-3"),
        "stored by a multipart upload of 3 parts (ETag \"<md5>-3\"): {listing}"
    );
    let dest = scratch.path().join("restored");
    let id = created["backup_id"].as_str().unwrap();
    restore(Some(&s3.access()), &target, id, &dest, &[]).expect(0);
    let restored = std::fs::read(dest.join("lsm/000001.sst")).unwrap();
    assert!(
        restored == big,
        "restored byte for byte ({} bytes)",
        restored.len()
    );

    // The bytes change after the first part was sent: the upload's own hash no longer matches.
    let store = s3.access().open(&format!("s3://{BUCKET}/changing"));
    let file = scratch.path().join("000009.sst");
    std::fs::write(&file, &big).unwrap();
    let sha256 = sha256_hex(&big);
    let key = blob_key(&sha256);
    let mut throttle = allidb_cluster::stream::Throttle::new(0);
    let mut sent_total = 0u64;
    let mut changed = false;
    let mut sent = |bytes: u64| {
        sent_total += bytes;
        if !changed {
            // Past the first part, before the second is read.
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.write_all_at(&[!big[PART_BYTES + 100]], (PART_BYTES + 100) as u64)
                .unwrap();
            changed = true;
        }
    };
    let error = store
        .upload_file(&key, &file, &sha256, &mut throttle, &mut sent)
        .await
        .expect_err("a file changed mid-upload must not be stored");
    assert!(
        matches!(&error, BackupError::Changed { path, .. } if *path == file),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("changed"),
        "the error names the file: {message}"
    );
    assert!(changed && sent_total >= PART_BYTES as u64);
    assert!(
        s3.keys("changing/").is_empty(),
        "no object under its blob name: {:?}",
        s3.keys("changing/")
    );
    let uploads = multipart_uploads(&s3);
    assert!(
        !uploads.contains("changing/"),
        "the multipart upload was aborted, not left unfinished: {uploads}"
    );
}

/// Every failure of a multipart upload aborts it (cmd/src/backup/target.rs `upload_file`): a
/// part failing while the next ones are sent, the last part failing once the whole file was
/// read (awaited before the completion), and the completion failing. A relay in front of moto
/// drops the chosen request each time it is sent (it closes the connection, as a network
/// failure would) and relays every other one, the abort included: the backup fails naming the
/// network failure, and leaves neither an object under the blob's name nor an unfinished
/// multipart upload in moto's ListMultipartUploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_failing_at_any_part_or_its_completion_is_aborted() {
    use allidb_cmd::backup::manifest::{blob_key, sha256_hex};

    let s3 = S3Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let checkpoint = scratch.path().join("checkpoint");
    let big = big_checkpoint(&checkpoint);
    let cp = checkpoint.display().to_string();
    let cases: [(&str, RequestFilter); 3] = [
        ("first-part", |line| {
            line.starts_with("PUT ") && line.contains("partNumber=1&")
        }),
        ("last-part", |line| {
            line.starts_with("PUT ") && line.contains("partNumber=3&")
        }),
        ("completion", |line| {
            line.starts_with("POST ") && line.contains("uploadId=")
        }),
    ];
    for (prefix, refuse) in cases {
        let relay = Relay::refusing(s3.addr(), refuse);
        let through_relay = S3Access {
            endpoint: relay.endpoint(),
            ..s3.access()
        };
        let target = format!("s3://{BUCKET}/{prefix}");
        let failed = allidb(
            Some(&through_relay),
            &[
                "backup",
                "create",
                "--checkpoint",
                &cp,
                "--to",
                &target,
                "--no-hash-cache",
                "--max-bytes-per-sec",
                "0",
                "--retry-timeout-secs",
                "1",
            ],
        )
        .expect(1);
        assert!(
            relay.requests_refused() > 0,
            "{prefix}: the relay dropped the request"
        );
        assert!(
            failed.stderr.contains("network failure"),
            "{prefix}: {}",
            failed.stderr
        );
        let blob = format!("{prefix}/{}", blob_key(&sha256_hex(&big)));
        assert!(
            !s3.keys(&format!("{prefix}/")).contains(&blob),
            "{prefix}: no object under the blob's name"
        );
        let uploads = multipart_uploads(&s3);
        assert!(
            !uploads.contains(&format!("<Key>{prefix}/")),
            "{prefix}: the multipart upload was aborted, not left unfinished: {uploads}"
        );
    }
}

/// The ids a text (BM25) query for `text` answers, best first.
async fn text_hits(daemon: &Daemon, text: &str) -> Vec<String> {
    result_ids(
        daemon,
        pb::QueryRequest {
            text: Some(text.to_owned()),
            k: 3,
            max_hops: Some(0),
            ..Default::default()
        },
    )
    .await
}

/// A backup carries the daemon's last index dump as it is (no dump of its own) and the WAL
/// written since: the entities written after that dump are caught up on the restored node
/// (its indexes find them), not missing and not rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_the_last_index_dump_are_caught_up_on_the_restored_node() {
    let scratch = tempfile::tempdir().unwrap();
    // No periodic dump during the test, however slow the machine.
    let daemon = start_daemon(scratch.path(), "\n[index]\ndump_interval_secs = 86400\n");
    write_distinct(&daemon, ADMIN_KEY, "a", 0..1000).await;
    write_distinct(&daemon, GONE_KEY, "g", 0..10).await;
    // A tenant drop dumps the indexes at once: that dump holds "a", not "b" (3000 entities
    // written after it, past the 1 MiB memtables, so partly flushed into tables).
    drop_gone_tenant(&daemon).await;
    write_distinct(&daemon, ADMIN_KEY, "b", 0..3000).await;
    let target = format!("file://{}", scratch.path().join("store").display());
    let created = backup_create(None, &daemon, &target, &[]);
    let (index_covered, covered) = (
        created["index_covered_seq"].as_u64().unwrap(),
        created["covered_seq"].as_u64().unwrap(),
    );
    assert!(
        index_covered > 0 && index_covered < covered,
        "the backup's index dump predates the writes of b: {created}"
    );
    let id = created["backup_id"].as_str().unwrap();
    let restored = restore_and_start(None, &target, id, scratch.path(), scratch.path());
    assert!(
        restored
            .log()
            .contains("indexes loaded and caught up from the WAL"),
        "the restored node loads the dump and catches up; log:\n{}",
        restored.log()
    );
    for i in [0, 1234, 2999] {
        let id = format!("b{i:05}");
        let hits = text_hits(&restored, &format!("b{i}")).await;
        assert_eq!(hits.first(), Some(&id), "a text query finds {id}");
        assert_eq!(hits, text_hits(&daemon, &format!("b{i}")).await);
    }
    assert_same_data(&daemon, &restored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_backs_up_on_its_schedule_and_keeps_the_newest() {
    let scratch = tempfile::tempdir().unwrap();
    let store = scratch.path().join("scheduled");
    let target = format!("file://{}", store.display());
    let extra = scheduled_backups(&target, None, "interval_secs = 1\nkeep = 2\n");
    let daemon = start_daemon(scratch.path(), &extra);
    write_distinct(&daemon, ADMIN_KEY, "a", 0..500).await;
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
