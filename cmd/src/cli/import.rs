//! `allidb import`: streams a JSON-lines file of entities (the HTTP JSON `Entity` shape, one per
//! line) into the daemon with `BatchPutEntities`.
//!
//! A reader thread reads and parses lines and hands batches (at most `--batch-size` entities and
//! about `--batch-bytes` encoded bytes) through a bounded channel to the writer, which keeps at
//! most `--concurrency` batches in flight. Memory is therefore bounded by
//! `(concurrency + channel capacity) x batch` plus one line (`--max-line-bytes`); the file is never
//! read whole. A line that is not valid UTF-8 or JSON, is too long, or that the daemon rejects is a
//! counted failure with its line number, never an abort; entities a batch rejects are retried one
//! by one with `PutEntity` to learn each one's reason. Only a transport failure or a batch-level
//! error other than invalid input stops the import (with the summary so far). The progress bar
//! counts bytes read and is drawn only on a terminal.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allidb_api::pb;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Context;
use super::connect::{Client, connect};
use super::error::{CliError, CliResult, Outcome};

/// `allidb import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON-lines file, one entity per line; `-` reads standard input.
    pub file: PathBuf,
    /// Entities per BatchPutEntities request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// A batch is also sent once its entities reach this many encoded bytes.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Longest accepted line in bytes; longer lines are counted as failures.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line_bytes: u64,
    /// How many failures the summary lists (the ones with the lowest line numbers).
    #[arg(long, default_value_t = 100)]
    pub max_reported_failures: usize,
}

/// One line that was not imported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineFailure {
    /// 1-based line number.
    pub line: u64,
    /// The entity id, when the line parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Why it was not imported.
    pub reason: String,
}

/// The result of an import.
#[derive(Debug, Serialize)]
pub struct ImportSummary {
    /// The input (`-` for standard input).
    pub file: String,
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Entities written.
    pub written: u64,
    /// Lines not imported.
    pub failed: u64,
    /// The first failures by line number (at most `--max-reported-failures`).
    pub failures: Vec<LineFailure>,
    /// Whether more failures happened than are listed.
    pub failures_truncated: bool,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

impl ImportSummary {
    fn human(&self) -> String {
        let rate = self.written as f64 / self.elapsed_secs.max(1e-9);
        let mut text = format!(
            "import {}: {} written, {} failed ({} lines, {} bytes, {:.2} s, {rate:.0} entities/s)\n",
            self.file, self.written, self.failed, self.lines, self.bytes, self.elapsed_secs
        );
        for failure in &self.failures {
            match &failure.entity_id {
                Some(id) => text.push_str(&format!(
                    "  line {} (entity {id}): {}\n",
                    failure.line, failure.reason
                )),
                None => text.push_str(&format!("  line {}: {}\n", failure.line, failure.reason)),
            }
        }
        if self.failures_truncated {
            text.push_str(&format!(
                "  ... {} more failures not listed\n",
                self.failed - self.failures.len() as u64
            ));
        }
        text
    }
}

/// Counts written entities and keeps the failures with the lowest line numbers.
#[derive(Debug)]
struct Tally {
    written: u64,
    failed: u64,
    failures: BTreeMap<u64, LineFailure>,
    max_reported: usize,
}

impl Tally {
    fn new(max_reported: usize) -> Self {
        Self {
            written: 0,
            failed: 0,
            failures: BTreeMap::new(),
            max_reported,
        }
    }

    fn fail(&mut self, failure: LineFailure) {
        self.failed += 1;
        self.failures.insert(failure.line, failure);
        if self.failures.len() > self.max_reported {
            self.failures.pop_last();
        }
    }

    fn add(&mut self, outcome: BatchOutcome) {
        self.written += outcome.written;
        for failure in outcome.failures {
            self.fail(failure);
        }
    }
}

/// How one line ended when read.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// The line (without its `\n` / `\r\n`) is in the buffer.
    Complete,
    /// The line was longer than the limit; it was skipped.
    TooLong,
}

/// Reads lines of at most `max_bytes`, skipping the rest of longer ones without buffering them.
#[derive(Debug)]
struct BoundedLines<R> {
    reader: R,
    max_bytes: usize,
    line_number: u64,
    bytes_read: u64,
}

impl<R: BufRead> BoundedLines<R> {
    fn new(reader: R, max_bytes: usize) -> Self {
        Self {
            reader,
            max_bytes,
            line_number: 0,
            bytes_read: 0,
        }
    }

    /// Reads the next line into `line`; `None` at the end of the input.
    fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<Option<LineRead>> {
        line.clear();
        let mut too_long = false;
        let mut any_byte = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if available.is_empty() {
                if !any_byte {
                    return Ok(None);
                }
                break;
            }
            any_byte = true;
            let newline = available.iter().position(|byte| *byte == b'\n');
            let content = &available[..newline.unwrap_or(available.len())];
            if !too_long {
                if line.len() + content.len() > self.max_bytes {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(content);
                }
            }
            let consumed = newline.map_or(available.len(), |at| at + 1);
            self.reader.consume(consumed);
            self.bytes_read += consumed as u64;
            if newline.is_some() {
                break;
            }
        }
        self.line_number += 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(if too_long {
            LineRead::TooLong
        } else {
            LineRead::Complete
        }))
    }
}

/// What the reader thread sends to the writer.
#[derive(Debug)]
enum ReaderMessage {
    /// Parsed entities with their line numbers.
    Batch(Vec<(u64, pb::Entity)>),
    /// A line that could not be parsed.
    Failed(LineFailure),
}

/// Batch limits of the reader.
#[derive(Clone, Copy, Debug)]
struct BatchLimits {
    entities: usize,
    bytes: u64,
    max_line_bytes: usize,
}

/// Totals of the reader thread.
#[derive(Debug, Default)]
struct ReadTotals {
    lines: u64,
    bytes: u64,
}

/// Parses one line: `Ok(None)` for a blank line.
fn parse_line(line: &[u8]) -> Result<Option<pb::Entity>, String> {
    let text = std::str::from_utf8(line).map_err(|error| format!("not UTF-8: {error}"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<pb::Entity>(text)
        .map(Some)
        .map_err(|error| format!("invalid JSON entity: {error}"))
}

/// Reads and parses `input`, sending batches to `sender` until the input ends or the receiver
/// is gone. Runs on its own thread (blocking reads).
fn read_batches(
    input: impl BufRead,
    limits: BatchLimits,
    sender: &mpsc::Sender<ReaderMessage>,
    progress: &ProgressBar,
) -> io::Result<ReadTotals> {
    let mut lines = BoundedLines::new(input, limits.max_line_bytes);
    let mut line = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0u64;
    // A send error means the writer stopped (it reports why); the reader just stops too.
    let send = |message| sender.blocking_send(message).is_ok();
    while let Some(read) = lines.next_line(&mut line)? {
        progress.set_position(lines.bytes_read);
        let line_number = lines.line_number;
        let parsed = match read {
            LineRead::TooLong => Err(format!(
                "the line is longer than {} bytes (--max-line-bytes)",
                limits.max_line_bytes
            )),
            LineRead::Complete => parse_line(&line),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(entity)) => {
                batch_bytes += entity.encoded_len() as u64;
                batch.push((line_number, entity));
                if batch.len() >= limits.entities || batch_bytes >= limits.bytes {
                    batch_bytes = 0;
                    if !send(ReaderMessage::Batch(std::mem::take(&mut batch))) {
                        break;
                    }
                }
            }
            Err(reason) => {
                let failure = LineFailure {
                    line: line_number,
                    entity_id: None,
                    reason,
                };
                if !send(ReaderMessage::Failed(failure)) {
                    break;
                }
            }
        }
    }
    if !batch.is_empty() {
        send(ReaderMessage::Batch(batch));
    }
    Ok(ReadTotals {
        lines: lines.line_number,
        bytes: lines.bytes_read,
    })
}

/// Written count and failures of one batch.
#[derive(Debug, Default)]
struct BatchOutcome {
    written: u64,
    failures: Vec<LineFailure>,
}

/// Whether a batch-level status means "this input is unacceptable" (so entities are retried one by
/// one to find the culprits) rather than "the daemon cannot serve" (which stops the import).
fn is_input_rejection(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::OutOfRange
            | tonic::Code::ResourceExhausted
            | tonic::Code::PermissionDenied
    )
}

/// Writes one entity with `PutEntity`; `Err` only for a failure that must stop the import.
async fn put_one(
    client: &mut Client,
    consistency: i32,
    line: u64,
    entity: pb::Entity,
) -> CliResult<Result<(), LineFailure>> {
    let entity_id = entity.entity_id.clone();
    let reply = client
        .put_entity(pb::PutEntityRequest {
            entity: Some(entity),
            consistency_level: consistency,
            ..Default::default()
        })
        .await;
    let reason = match reply {
        Ok(reply) if reply.get_ref().success => return Ok(Ok(())),
        Ok(reply) => reply.into_inner().error_message,
        Err(status)
            if is_input_rejection(status.code()) || status.code() == tonic::Code::Unknown =>
        {
            status.message().to_owned()
        }
        Err(status) => return Err(CliError::rpc("PutEntity", status)),
    };
    Ok(Err(LineFailure {
        line,
        entity_id: Some(entity_id),
        reason,
    }))
}

/// Writes one batch; entities the batch did not write are retried one by one.
async fn write_batch(
    mut client: Client,
    consistency: i32,
    items: Vec<(u64, pb::Entity)>,
) -> CliResult<BatchOutcome> {
    let request = pb::BatchPutEntitiesRequest {
        entities: items.iter().map(|(_, entity)| entity.clone()).collect(),
        consistency_level: consistency,
        ..Default::default()
    };
    let retry: Vec<(u64, pb::Entity)> = match client.batch_put_entities(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            if reply.failure_count == 0 {
                return Ok(BatchOutcome {
                    written: items.len() as u64,
                    failures: Vec::new(),
                });
            }
            let mut written: HashMap<String, usize> = HashMap::new();
            for id in reply.entity_ids {
                *written.entry(id).or_default() += 1;
            }
            let mut retry = Vec::new();
            let mut outcome_written = 0;
            for (line, entity) in items {
                match written.get_mut(&entity.entity_id) {
                    Some(count) if *count > 0 => {
                        *count -= 1;
                        outcome_written += 1;
                    }
                    _ => retry.push((line, entity)),
                }
            }
            let mut outcome = retry_one_by_one(&mut client, consistency, retry).await?;
            outcome.written += outcome_written;
            return Ok(outcome);
        }
        Err(status) if is_input_rejection(status.code()) => items,
        Err(status) => return Err(CliError::rpc("BatchPutEntities", status)),
    };
    retry_one_by_one(&mut client, consistency, retry).await
}

async fn retry_one_by_one(
    client: &mut Client,
    consistency: i32,
    items: Vec<(u64, pb::Entity)>,
) -> CliResult<BatchOutcome> {
    let mut outcome = BatchOutcome::default();
    for (line, entity) in items {
        match put_one(client, consistency, line, entity).await? {
            Ok(()) => outcome.written += 1,
            Err(failure) => outcome.failures.push(failure),
        }
    }
    Ok(outcome)
}

/// The input and its size (for the progress bar), `-` = standard input.
fn open_input(path: &Path) -> CliResult<(Box<dyn BufRead + Send>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(BufReader::new(io::stdin())), None));
    }
    let file = File::open(path).map_err(|source| CliError::io(path, source))?;
    let size = file
        .metadata()
        .map_err(|source| CliError::io(path, source))?
        .len();
    Ok((
        Box::new(BufReader::with_capacity(1 << 20, file)),
        Some(size),
    ))
}

fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `allidb import`: the summary goes to standard output; lines not imported make the outcome
/// partial.
pub async fn run(context: &mut Context, args: ImportArgs) -> CliResult<Outcome> {
    let client = connect(&context.connect).await?;
    let (input, size) = open_input(&args.file)?;
    let progress = progress_bar(size);
    let limits = BatchLimits {
        entities: args.batch_size as usize,
        bytes: args.batch_bytes,
        max_line_bytes: usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX),
    };
    let concurrency = args.concurrency as usize;
    let started = Instant::now();
    let (sender, mut receiver) = mpsc::channel(concurrency);
    let reader_progress = progress.clone();
    let reader = std::thread::spawn(move || read_batches(input, limits, &sender, &reader_progress));

    let mut tally = Tally::new(args.max_reported_failures);
    let mut in_flight: JoinSet<CliResult<BatchOutcome>> = JoinSet::new();
    let mut stopped: Option<CliError> = None;
    while let Some(message) = receiver.recv().await {
        match message {
            ReaderMessage::Failed(failure) => tally.fail(failure),
            ReaderMessage::Batch(items) => {
                if in_flight.len() >= concurrency
                    && let Some(joined) = in_flight.join_next().await
                    && let Err(error) = absorb(&mut tally, joined)
                {
                    stopped = Some(error);
                    break;
                }
                in_flight.spawn(write_batch(client.clone(), context.consistency, items));
            }
        }
    }
    drop(receiver);
    while let Some(joined) = in_flight.join_next().await {
        if let Err(error) = absorb(&mut tally, joined) {
            stopped.get_or_insert(error);
        }
    }
    let read = match reader.join() {
        Ok(result) => result.map_err(|source| CliError::io(&args.file, source)),
        Err(_) => Err(CliError::input(
            args.file.display().to_string(),
            "the reader thread panicked",
        )),
    };
    progress.finish_and_clear();
    let totals = match (&stopped, read) {
        (_, Ok(totals)) => totals,
        (None, Err(error)) => {
            stopped = Some(error);
            ReadTotals::default()
        }
        (Some(_), Err(_)) => ReadTotals::default(),
    };
    let summary = ImportSummary {
        file: args.file.display().to_string(),
        lines: totals.lines,
        bytes: totals.bytes,
        written: tally.written,
        failed: tally.failed,
        failures_truncated: tally.failed > tally.failures.len() as u64,
        failures: tally.failures.into_values().collect(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    context.printer.reply(&summary, ImportSummary::human)?;
    if let Some(error) = stopped {
        context.printer.flush()?;
        return Err(error);
    }
    Ok(Outcome::from_complete(summary.failed == 0))
}

/// Adds a finished batch to the tally; a batch that stopped the import is the error.
fn absorb(
    tally: &mut Tally,
    joined: Result<CliResult<BatchOutcome>, tokio::task::JoinError>,
) -> CliResult<()> {
    match joined {
        Ok(Ok(outcome)) => {
            tally.add(outcome);
            Ok(())
        }
        Ok(Err(error)) => Err(error),
        Err(join_error) => Err(CliError::input(
            "import",
            format!("a batch task failed: {join_error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn all_lines(text: &[u8], max: usize) -> Vec<(u64, Result<String, ()>)> {
        let mut lines = BoundedLines::new(BufReader::with_capacity(3, Cursor::new(text)), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = lines.next_line(&mut buf).unwrap() {
            let value = match read {
                LineRead::Complete => Ok(String::from_utf8(buf.clone()).unwrap()),
                LineRead::TooLong => Err(()),
            };
            out.push((lines.line_number, value));
        }
        assert_eq!(lines.bytes_read, text.len() as u64);
        out
    }

    #[test]
    fn bounded_lines_number_lines_and_skip_long_ones() {
        let lines = all_lines(b"ab\r\n\nlonger-line\nxyz", 5);
        assert_eq!(
            lines,
            vec![
                (1, Ok("ab".to_owned())),
                (2, Ok(String::new())),
                (3, Err(())),
                (4, Ok("xyz".to_owned())),
            ]
        );
        assert!(all_lines(b"", 5).is_empty());
        assert_eq!(all_lines(b"\n", 5), vec![(1, Ok(String::new()))]);
    }

    #[test]
    fn lines_parse_to_entities_or_reasons() {
        assert_eq!(parse_line(b"   ").unwrap(), None);
        let entity = parse_line(br#"{"entity_id":"a","importance":0.5}"#)
            .unwrap()
            .unwrap();
        assert_eq!((entity.entity_id.as_str(), entity.importance), ("a", 0.5));
        assert!(parse_line(b"{bad").unwrap_err().contains("invalid JSON"));
        assert!(parse_line(b"[1,2]").unwrap_err().contains("invalid JSON"));
        assert!(parse_line(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_reader_batches_by_count_and_bytes_and_reports_bad_lines() {
        let text =
            "{\"entity_id\":\"a\"}\nnot json\n{\"entity_id\":\"b\"}\n\n{\"entity_id\":\"c\"}\n";
        let (sender, mut receiver) = mpsc::channel(16);
        let limits = BatchLimits {
            entities: 2,
            bytes: u64::MAX,
            max_line_bytes: 1024,
        };
        let totals =
            read_batches(Cursor::new(text), limits, &sender, &ProgressBar::hidden()).unwrap();
        drop(sender);
        assert_eq!((totals.lines, totals.bytes), (5, text.len() as u64));
        let mut batches = Vec::new();
        let mut failures = Vec::new();
        while let Some(message) = receiver.blocking_recv() {
            match message {
                ReaderMessage::Batch(items) => batches.push(
                    items
                        .into_iter()
                        .map(|(line, e)| (line, e.entity_id))
                        .collect::<Vec<_>>(),
                ),
                ReaderMessage::Failed(failure) => failures.push(failure.line),
            }
        }
        assert_eq!(
            batches,
            vec![
                vec![(1, "a".to_owned()), (3, "b".to_owned())],
                vec![(5, "c".to_owned())]
            ]
        );
        assert_eq!(failures, vec![2]);

        let (sender, mut receiver) = mpsc::channel(16);
        let by_bytes = BatchLimits {
            entities: 100,
            bytes: 1,
            max_line_bytes: 1024,
        };
        read_batches(Cursor::new(text), by_bytes, &sender, &ProgressBar::hidden()).unwrap();
        drop(sender);
        let mut sizes = Vec::new();
        while let Some(message) = receiver.blocking_recv() {
            if let ReaderMessage::Batch(items) = message {
                sizes.push(items.len());
            }
        }
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn the_tally_keeps_the_lowest_line_numbers() {
        let mut tally = Tally::new(2);
        for line in [9, 3, 7, 1] {
            tally.fail(LineFailure {
                line,
                entity_id: None,
                reason: "r".into(),
            });
        }
        tally.add(BatchOutcome {
            written: 5,
            failures: Vec::new(),
        });
        assert_eq!((tally.written, tally.failed), (5, 4));
        assert_eq!(
            tally.failures.keys().copied().collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}
