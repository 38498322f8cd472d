#!/usr/bin/env python3
"""Sustained ingest against hnswlib's build (issue 10; results in docs/benchmarks.md, "Sustained
ingest").

Each run, alternating:
  1. a fresh `allidbd` (default configuration: sync durability, tail bound 20,000) on loopback
     ports with its own temporary data directory, and `allidb bench ingest -n N --dim D` against
     it (4 connections, 256 entities a request: the command's defaults). Reported: the ingest
     rate the command prints, the pending tail when it ends (`allidb_vector_index_pending`), and
     the indexed rate, N over the time from the first write until the tail is empty;
  2. hnswlib (M 16, ef_construction 200, cosine) `add_items` of exactly the same vectors (the
     port of `synthetic_vector` below, checked against an entity read back from the daemon) on
     `--threads` threads (default: all cores).

Prints each run and the medians, and the ratio of the daemon's indexed rate to hnswlib's.
Needs numpy, hnswlib and the Python client (`pip install ./clients/python numpy hnswlib`):

    cargo build --release -p allidb-cmd --bins
    /tmp/pyenv/bin/python bench/ingest_vs_hnswlib.py [-n 200000] [--dim 384] [--runs 3] \
        [--threads N] [--bin target/release]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np

from allidbd_process import Daemon

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients/python/src"))
import allidb  # noqa: E402

GOLD = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
ENTITY_STREAM = 1
SEED = 42  # `allidb bench`'s default --seed


def synthetic_vectors(seed: int, stream: int, count: int, dim: int) -> np.ndarray:
    """`synthetic_vector` of cmd/src/cli/bench.rs for entities 0..count, as float32 rows."""
    index = np.arange(count, dtype=np.uint64)
    out = np.empty((count, dim), dtype=np.float32)
    with np.errstate(over="ignore"):
        state = (np.uint64(seed) ^ (index * np.uint64(0xD1B54A32D192ED03))) ^ np.uint64(
            (stream * GOLD) & MASK)
        for column in range(dim):
            state = state + np.uint64(GOLD)
            z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[:, column] = (z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 23) - 1
    return out


def daemon_run(bin_dir: Path, count: int, dim: int, check: np.ndarray) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    daemon = Daemon(str(bin_dir / "allidbd"), str(work))
    try:
        start = time.time()
        out = subprocess.run(
            [str(bin_dir / "allidb"), "bench", "ingest", "--addr", daemon.grpc,
             "-n", str(count), "--dim", str(dim)],
            check=True, capture_output=True, text=True).stdout
        ingest_s = time.time() - start
        tail = int(daemon.pending())
        while daemon.pending() > 0:
            time.sleep(0.2)
        indexed_s = time.time() - start
        client = allidb.Client(daemon.grpc)
        probe = client.get("bench-0000000003")
        client.close()
        if probe is None or not np.allclose(np.asarray(probe.vector, dtype=np.float32), check[3]):
            sys.exit("the vectors generated here differ from `allidb bench ingest`'s")
        printed = float(re.search(r"([\d.]+) entities/s", out).group(1))
        return {"ingest": printed, "tail": tail, "indexed": count / indexed_s,
                "ingest_s": ingest_s, "indexed_s": indexed_s}
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def hnswlib_run(vectors: np.ndarray, threads: int) -> float:
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=200, random_seed=7)
    start = time.time()
    index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)
    return len(vectors) / (time.time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bin", default=str(ROOT / "target/release"))
    args = parser.parse_args()
    vectors = synthetic_vectors(SEED, ENTITY_STREAM, args.n, args.dim)
    print(f"# machine: {os.cpu_count()} cores, load {os.getloadavg()}; n {args.n}, dim {args.dim}",
          flush=True)
    ours, theirs = [], []
    for run in range(1, args.runs + 1):
        figures = daemon_run(Path(args.bin), args.n, args.dim, vectors)
        ours.append(figures)
        print(f"run {run} allidbd: ingest {figures['ingest']:.0f} entities/s "
              f"({figures['ingest_s']:.1f} s, tail {figures['tail']} pending at the end), "
              f"indexed {figures['indexed']:.0f} entities/s ({figures['indexed_s']:.1f} s)",
              flush=True)
        rate = hnswlib_run(vectors, args.threads)
        theirs.append(rate)
        print(f"run {run} hnswlib add_items, {args.threads} threads: {rate:.0f} vectors/s "
              f"(ratio {figures['indexed'] / rate:.2f}x)", flush=True)
    ingest = statistics.median(f["ingest"] for f in ours)
    indexed = statistics.median(f["indexed"] for f in ours)
    built = statistics.median(theirs)
    print(f"median: allidbd ingest {ingest:.0f}/s, indexed {indexed:.0f}/s; hnswlib {built:.0f}/s; "
          f"indexed / hnswlib {indexed / built:.2f}x, ingest / hnswlib {ingest / built:.2f}x")


if __name__ == "__main__":
    main()
