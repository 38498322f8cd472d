#!/usr/bin/env python3
"""Benchmarks of the Python client package `allidb` (issue 14; results in docs/benchmarks.md).

1. ingest: `Client.put_many` of N entities (default 100,000 x 384-d) vs `allidb import` of the
   same entities from a JSON-lines file, each run against a fresh `allidbd` with an empty data
   directory, runs alternating import / put_many. The JSON file is written once, before the
   runs; only the ingest is timed (import: the wall time of the `allidb import` process;
   put_many: the call, including building the `Entity` objects from the numpy rows).
2. query: `Client.query` vs the package's generated grpcio stub used directly
   (`allidb._proto`), one query in flight, with and without the entities in the reply
   (`include_entity`), against one daemon holding the ingested entities (after the ANN index
   caught up). The raw and package calls alternate query by query (the first of each pair
   flips every round); each round runs the same query vectors.
   Also measured without the network: the client-side cost of turning one reply into the
   package's dataclasses (`query_response_from_proto`), the part of the overhead that does
   not depend on the server.

The vectors are seeded numpy normals, normalized and rounded to 4 decimals, so that the JSON
file and the floats put_many sends are the same 32-bit values.

The package is imported from this checkout (clients/python/src), not from site-packages, so
that the figures are those of the code next to the script. Needs numpy and the package's
dependencies (grpcio, protobuf):

    python3 -m venv /tmp/venv-pybench
    /tmp/venv-pybench/bin/pip install './clients/python[test]' numpy
    /tmp/venv-pybench/bin/python bench/python_client_bench.py            # both benchmarks
    /tmp/venv-pybench/bin/python bench/python_client_bench.py --only query --n 100000

Binaries: $ALLIDBD_BIN / $ALLIDB_BIN, else target/release/allidbd and target/release/allidb
under the repository root (never built by this script).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
# --package-src DIR (before argparse: the import below needs it) measures another copy of the
# package, e.g. an older commit's: git archive <commit> clients/python/src | tar -x -C /tmp/old
_src = REPO_ROOT / "clients" / "python" / "src"
if "--package-src" in sys.argv:
    _src = Path(sys.argv[sys.argv.index("--package-src") + 1]).resolve()
sys.path.insert(0, str(_src))

import numpy as np  # noqa: E402

import allidb  # noqa: E402
from allidb import _convert as conv  # noqa: E402
from allidb._proto import allidb_pb2 as pb  # noqa: E402
from allidb._proto import allidb_pb2_grpc as rpc  # noqa: E402


def binary(env: str, name: str) -> Path:
    value = os.environ.get(env)
    path = Path(value) if value else REPO_ROOT / "target" / "release" / name
    if not path.is_file():
        sys.exit(f"no {name} binary at {path} (set ${env} or build the release binaries)")
    return path.resolve()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class Daemon:
    """An `allidbd` on free loopback ports with a fresh temporary data directory."""

    def __init__(self, exe: Path, extra: List[str], data_dir: Optional[Path] = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="allidb-pybench-"))
        self.log = open(self.dir / "allidbd.log", "wb")
        data = data_dir if data_dir is not None else self.dir / "data"
        self.proc = subprocess.Popen(
            [str(exe), "--data-dir", str(data), "--grpc-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--set", "server.admin_addr=127.0.0.1:0",
             "--log-level", "warn", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        self.grpc = self.admin = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"allidbd: (grpc|admin) listening on (\S+)", line)
            if m:
                setattr(self, m.group(1), m.group(2))
            if line.strip() == "allidbd: ready":
                break
            if time.monotonic() > deadline:
                break
        if not self.grpc or self.proc.poll() is not None:
            self.stop()
            sys.exit(f"allidbd did not start; log in {self.dir / 'allidbd.log'}")
        # Keep draining stdout so the daemon never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_indexed(self, timeout: float = 1800) -> float:
        start = time.monotonic()
        while self.metric("allidb_vector_index_pending") > 0:
            if time.monotonic() - start > timeout:
                raise TimeoutError("the ANN index did not catch up")
            time.sleep(0.5)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.round(v, 4).astype(np.float32)


def entity_id(i: int) -> str:
    return f"e-{i:07d}"


def write_jsonl(path: Path, vectors: np.ndarray) -> None:
    # "%.4f" of the rounded values: the Rust parser and protobuf's float conversion both land
    # on the nearest f32 of the same decimal, so both paths store the same vectors.
    with open(path, "w") as out:
        for i, row in enumerate(vectors):
            values = ",".join(f"{x:.4f}" for x in row.tolist())
            out.write(f'{{"entity_id":"{entity_id(i)}","embeddings":[{{"vector":[{values}]}}]}}\n')


def run_import(allidb_exe: Path, addr: str, path: Path, batch: int, conc: int) -> Dict:
    cmd = [str(allidb_exe), "--addr", addr, "--json", "import", str(path),
           "--batch-size", str(batch), "--concurrency", str(conc)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"allidb import failed ({done.returncode}): {done.stderr.strip()}")
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": wall, "written": reply["written"], "self_reported": reply["elapsed_secs"]}


def run_put_many(addr: str, vectors: np.ndarray, batch: int, conc: int) -> Dict:
    with allidb.Client(addr, timeout=600) as db:
        db.wait_ready(60)
        start = time.perf_counter()
        result = db.put_many(
            (allidb.Entity(entity_id(i), vector=row) for i, row in enumerate(vectors)),
            batch_size=batch, concurrency=conc,
        )
        wall = time.perf_counter() - start
    return {"seconds": wall, "written": result.written}


def bench_ingest(args: argparse.Namespace, vectors: np.ndarray, workdir: Path) -> Dict:
    allidbd, allidb_exe = binary("ALLIDBD_BIN", "allidbd"), binary("ALLIDB_BIN", "allidb")
    jsonl = workdir / "entities.jsonl"
    t = time.perf_counter()
    write_jsonl(jsonl, vectors)
    print(f"# wrote {jsonl.stat().st_size / 1e6:.0f} MB of JSON lines in "
          f"{time.perf_counter() - t:.0f} s (not timed)", flush=True)
    rows: Dict[str, List[Dict]] = {"import": [], "put_many": []}
    loads = []
    for run in range(args.runs):
        order = ["import", "put_many"] if run % 2 == 0 else ["put_many", "import"]
        for tool in order:
            daemon = Daemon(allidbd, args.daemon_set)
            try:
                loads.append(load_average())
                if tool == "import":
                    r = run_import(allidb_exe, daemon.grpc, jsonl, args.batch_size,
                                   args.import_concurrency)
                else:
                    r = run_put_many(daemon.grpc, vectors, args.batch_size,
                                     args.put_concurrency)
                loads.append(load_average())
            finally:
                daemon.stop()
            if r["written"] != len(vectors):
                sys.exit(f"{tool} wrote {r['written']} of {len(vectors)}")
            r["rate"] = len(vectors) / r["seconds"]
            rows[tool].append(r)
            print(f"ingest run {run + 1} {tool:8s} {r['seconds']:7.2f} s "
                  f"{r['rate']:8.0f} entities/s  load {loads[-1]}", flush=True)
    jsonl.unlink()
    med = {tool: statistics.median(r["rate"] for r in rs) for tool, rs in rows.items()}
    summary = {
        "runs": rows, "loads": loads,
        "median_rate": med, "ratio_put_many_over_import": med["put_many"] / med["import"],
    }
    print(f"ingest medians: import {med['import']:.0f}/s, put_many {med['put_many']:.0f}/s, "
          f"ratio {summary['ratio_put_many_over_import']:.2f}x", flush=True)
    return summary


def bench_query(args: argparse.Namespace, vectors: np.ndarray) -> Dict:
    allidbd = binary("ALLIDBD_BIN", "allidbd")
    daemon = Daemon(allidbd, args.daemon_set, args.query_data)
    try:
        with allidb.Client(daemon.grpc, timeout=600) as db:
            db.wait_ready(60)
            t = time.perf_counter()
            if db.get(entity_id(len(vectors) - 1)) is None:
                db.put_many(
                    (allidb.Entity(entity_id(i), vector=row) for i, row in enumerate(vectors)),
                    batch_size=args.batch_size, concurrency=args.put_concurrency,
                )
                what = "loaded"
            else:
                what = f"found in {args.query_data}"
            waited = daemon.wait_indexed()
            print(f"# query data: {len(vectors)} entities {what} and indexed in "
                  f"{time.perf_counter() - t:.0f} s (index caught up {waited:.0f} s after the "
                  f"last write)", flush=True)
            queries = make_vectors(args.queries, vectors.shape[1], args.seed + 1)
            stub = db.stub
            metadata = db.metadata
            k = args.k

            def raw(include_entity: bool):
                def call(q: np.ndarray):
                    request = pb.QueryRequest(query_vector=q.tolist(), k=k)
                    if not include_entity:
                        request.include_entity = False
                    return stub.Query(request, metadata=metadata, timeout=600)
                return call

            def package(include_entity: bool):
                def call(q: np.ndarray):
                    return db.query(q, k=k, include_entity=include_entity)
                return call

            variants = {
                "raw, entities": raw(True), "package, entities": package(True),
                "raw, ids only": raw(False), "package, ids only": package(False),
            }
            # Warm-up: every variant over every query once (caches, connections).
            for call in variants.values():
                for q in queries[: min(200, len(queries))]:
                    call(q)
            per_run: Dict[str, List[Dict]] = {name: [] for name in variants}
            loads = []
            names = list(variants)
            for run in range(args.runs):
                # raw and package calls alternate query by query (which goes first flips every
                # round), so both see the same moments of a noisy machine.
                for i in range(0, len(names), 2):
                    pair = names[i : i + 2] if run % 2 == 0 else names[i : i + 2][::-1]
                    lat: Dict[str, List[float]] = {name: [] for name in pair}
                    # The second of a pair runs the query half a set ahead: both cover the
                    # same queries, and no call repeats the one just before it (the daemon
                    # would answer a repeated query from warmer caches).
                    half = len(queries) // 2
                    for j in range(len(queries)):
                        for slot, name in enumerate(pair):
                            q = queries[(j + half * slot) % len(queries)]
                            t0 = time.perf_counter()
                            variants[name](q)
                            lat[name].append(time.perf_counter() - t0)
                    for name in pair:
                        lat_us = sorted(x * 1e6 for x in lat[name])
                        row = {
                            "p50_us": lat_us[len(lat_us) // 2],
                            "mean_us": statistics.fmean(lat_us),
                            "p99_us": lat_us[int(len(lat_us) * 0.99)],
                        }
                        per_run[name].append(row)
                        loads.append(load_average())
                        print(f"query run {run + 1} {name:18s} p50 {row['p50_us']:7.0f} us  mean "
                              f"{row['mean_us']:7.0f} us  p99 {row['p99_us']:7.0f} us  load "
                              f"{loads[-1]}", flush=True)
            # Client-side conversion alone, on replies fetched once (no network, no server).
            convert = {}
            for include_entity in (True, False):
                request = pb.QueryRequest(query_vector=queries[0].tolist(), k=k)
                if not include_entity:
                    request.include_entity = False
                reply = stub.Query(request, metadata=metadata)
                n = 2000
                t0 = time.perf_counter()
                for _ in range(n):
                    conv.query_response_from_proto(reply)
                convert["entities" if include_entity else "ids only"] = (
                    (time.perf_counter() - t0) / n * 1e6
                )
                # The request side: options, vector copy (numpy -> repeated float).
                t0 = time.perf_counter()
                for _ in range(n):
                    r = conv.query_options(k=k, include_entity=include_entity)
                    r.query_vector.extend(conv.floats(queries[0]))
                convert["request " + ("entities" if include_entity else "ids only")] = (
                    (time.perf_counter() - t0) / n * 1e6
                )
                t0 = time.perf_counter()
                for _ in range(n):
                    r = pb.QueryRequest(query_vector=queries[0].tolist(), k=k)
                    if not include_entity:
                        r.include_entity = False
                convert["raw request " + ("entities" if include_entity else "ids only")] = (
                    (time.perf_counter() - t0) / n * 1e6
                )
    finally:
        daemon.stop()
    med = {name: {m: statistics.median(r[m] for r in rows) for m in ("p50_us", "mean_us", "p99_us")}
           for name, rows in per_run.items()}
    overhead = {}
    for what in ("entities", "ids only"):
        raw_m, pkg_m = med[f"raw, {what}"], med[f"package, {what}"]
        # Per round (raw and package measured side by side), then the median of the rounds.
        paired = {
            m: [p[m] / r[m] - 1 for p, r in zip(per_run[f"package, {what}"], per_run[f"raw, {what}"])]
            for m in ("p50_us", "mean_us")
        }
        overhead[what] = {m: statistics.median(v) for m, v in paired.items()}
        overhead[what]["per_run_p50"] = paired["p50_us"]
        print(f"query {what}: medians raw p50 {raw_m['p50_us']:.0f} us, package p50 "
              f"{pkg_m['p50_us']:.0f} us; overhead per round (p50) "
              f"{', '.join(f'{x * 100:+.1f}%' for x in paired['p50_us'])}: median "
              f"{overhead[what]['p50_us'] * 100:+.1f}% (of means {overhead[what]['mean_us'] * 100:+.1f}%)",
              flush=True)
    for name, us in convert.items():
        print(f"client-side cost, {name}: {us:.1f} us per call", flush=True)
    return {"runs": per_run, "loads": loads, "median": med, "overhead": overhead,
            "client_side_us": convert}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["ingest", "query"], help="run one benchmark")
    parser.add_argument("--n", type=int, default=100_000, help="entities (default 100000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--runs", type=int, default=4,
                        help="runs of each side (default 4: even, so each side goes first as often)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--batch-size", type=int, default=256,
                        help="entities per BatchPutEntities, both tools (default 256, both defaults)")
    parser.add_argument("--import-concurrency", type=int, default=2,
                        help="allidb import --concurrency (default 2, its default)")
    parser.add_argument("--put-concurrency", type=int, default=4,
                        help="put_many concurrency (default 4, its default)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per variant and run")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--daemon-set", action="append", default=[], metavar="--set=K=V",
                        help="extra allidbd argument (repeatable), e.g. --daemon-set=--set=index.m=16")
    parser.add_argument("--query-data", type=Path,
                        help="data directory of the query benchmark's daemon, kept afterwards: "
                             "a second run with the same --n and directory skips the load")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--package-src", type=Path, default=_src,
                        help="directory holding the allidb package (default clients/python/src)")
    args = parser.parse_args()

    print(f"# python {sys.version.split()[0]}, grpcio {__import__('grpc').__version__}, "
          f"protobuf {__import__('google.protobuf').protobuf.__version__}, numpy {np.__version__}, "
          f"load {load_average()}", flush=True)
    print(f"# package: {Path(allidb.__file__).parent}", flush=True)
    vectors = make_vectors(args.n, args.dim, args.seed)
    out: Dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="allidb-pybench-") as work:
        if args.only in (None, "ingest"):
            out["ingest"] = bench_ingest(args, vectors, Path(work))
        if args.only in (None, "query"):
            out["query"] = bench_query(args, vectors)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
