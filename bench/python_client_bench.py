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
3. overhead (issue 36 point 3; only with `--only overhead`): `Client.query` vs the raw stub on
   the real vectors of npm-minilm-20k (`--data`, default ../shared/data/npm-minilm-20k next to
   the repository) with graphrag_bench.py's generated graph (needs hnswlib, which that module
   imports): (a) one ANN query top-10 (hops 0, ef 64) with and without the entities, (b) one
   Graph-RAG question in one call (10 seeds, 2 hops over `depends`, fan-out 16, 1,000 nodes,
   the context, no entities), its reply not read and its context node ids read; one call in
   flight, raw and package alternating as in 2 (`--queries`, at most the 500 query vectors).
   Then the same calls answered by a stand-in stub that returns a stored reply at once: the
   client-side cost per call without the network and the daemon.

The vectors of 1 and 2 are seeded numpy normals, normalized and rounded to 4 decimals, so that the JSON
file and the floats put_many sends are the same 32-bit values.

The package is imported from this checkout (clients/python/src), not from site-packages, so
that the figures are those of the code next to the script. Needs numpy and the package's
dependencies (grpcio, protobuf):

    python3 -m venv /tmp/venv-pybench
    /tmp/venv-pybench/bin/pip install './clients/python[test]' numpy
    /tmp/venv-pybench/bin/python bench/python_client_bench.py            # both benchmarks
    /tmp/venv-pybench/bin/python bench/python_client_bench.py --only query --n 100000
    /tmp/venv-pybench/bin/pip install hnswlib
    /tmp/venv-pybench/bin/python bench/python_client_bench.py --only overhead --runs 5 \
        --queries 500 --query-data /tmp/pybench-npm

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
from typing import Callable, Dict, List, Optional, Tuple

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


def paired_rounds(
    variants: Dict[str, Callable[[np.ndarray], object]], queries: np.ndarray, runs: int,
    label: str = "query",
) -> Tuple[Dict[str, List[Dict]], List[str]]:
    """Latencies of the variants (consecutive names form raw/package pairs), one call in
    flight: per round and variant p50, mean and p99 in us, and the load averages."""
    # Warm-up: every variant over every query once (caches, connections).
    for call in variants.values():
        for q in queries[: min(200, len(queries))]:
            call(q)
    per_run: Dict[str, List[Dict]] = {name: [] for name in variants}
    loads = []
    names = list(variants)
    for run in range(runs):
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
                print(f"{label} run {run + 1} {name:28s} p50 {row['p50_us']:7.0f} us  mean "
                      f"{row['mean_us']:7.0f} us  p99 {row['p99_us']:7.0f} us  load "
                      f"{loads[-1]}", flush=True)
    return per_run, loads


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
            per_run, loads = paired_rounds(variants, queries, args.runs)
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
                # The request side: options, vector copy (numpy -> repeated float), as
                # Client.query builds it (conv.query_request since issue 36).
                t0 = time.perf_counter()
                for _ in range(n):
                    if hasattr(conv, "query_request"):
                        r = conv.query_request(queries[0], k=k, include_entity=include_entity)
                    else:
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


# ---- overhead over the raw stubs on real data (issue 36 point 3) ----------------------------


def read_vecs(path: Path) -> np.ndarray:
    """The rows of a TEXMEX .fvecs file as a float32 matrix."""
    raw = np.fromfile(path, dtype=np.int32)
    return np.ascontiguousarray(raw.reshape(-1, raw[0] + 1)[:, 1:].view(np.float32))


class ReplayStub:
    """A stand-in for the generated stub whose ``Query`` returns one stored reply at once: the
    client-side cost of a call without the network and the daemon."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    def Query(self, request: object, metadata: object = None, timeout: object = None) -> object:
        return self.reply


def bench_overhead(args: argparse.Namespace) -> Dict:
    """The package's `Client.query` against the raw generated stub on npm-minilm-20k: (a) one
    ANN query top-10 (hops 0), with and without the entities; (b) one Graph-RAG question in one
    call (10 seeds, 2 hops over `depends`, fan-out 16, 1,000 nodes, context, no entities), the
    reply not read and its context node ids read. One call in flight, raw and package calls
    alternating (paired_rounds). Then the same calls against a ReplayStub (no network)."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from graphrag_bench import RELATION, generate_graph  # noqa: E402  (needs hnswlib)
    from graphrag_bench import entity_id as row_id  # noqa: E402

    base = read_vecs(args.data / "base.fvecs")
    queries = read_vecs(args.data / "query.fvecs")[: args.queries]
    allidbd = binary("ALLIDBD_BIN", "allidbd")
    daemon = Daemon(allidbd, ["--set", "query.max_expansion_nodes=20000", *args.daemon_set],
                    args.query_data)
    ef = args.ef
    try:
        with allidb.Client(daemon.grpc, timeout=600) as db:
            db.wait_ready(60)
            t = time.perf_counter()
            if db.get(row_id(len(base) - 1)) is None:
                depends, mentions, _ = generate_graph(len(base), args.graph_seed)
                db.put_many(
                    (allidb.Entity(row_id(i), vector=base[i], type="package")
                     for i in range(len(base))),
                    batch_size=args.batch_size, concurrency=args.put_concurrency,
                )
                edges = [allidb.Edge(row_id(row), row_id(target), RELATION, weight)
                         for row, out in depends.items() for weight, target in out]
                edges += [allidb.Edge(row_id(row), row_id(target), "mentions", 1.0)
                          for row, target in mentions]
                db.add_edges(edges)
                what = f"loaded ({len(edges)} edges, graph seed {args.graph_seed})"
            else:
                what = f"found in {args.query_data}"
            waited = daemon.wait_indexed()
            print(f"# data: {len(base)} entities of {args.data} {what}, indexed in "
                  f"{time.perf_counter() - t:.0f} s (index caught up {waited:.0f} s after the "
                  f"last write); {len(queries)} query vectors, ef {ef}", flush=True)
            stub, metadata = db.stub, db.metadata
            rag = dict(k=10, seeds=10, hops=2, relations=[RELATION], direction="out", ef=ef,
                       include_entity=False, include_context=True, max_fan_out=16,
                       max_nodes=1000, max_context_bytes=16 << 20)

            def raw_ann_request(q: np.ndarray, include_entity: bool) -> object:
                request = pb.QueryRequest(query_vector=q.tolist(), k=10, max_hops=0, ef=ef)
                if not include_entity:
                    request.include_entity = False
                return request

            def raw_rag_request(q: np.ndarray) -> object:
                return pb.QueryRequest(
                    query_vector=q.tolist(), k=10, seeds=10, max_hops=2, relations=[RELATION],
                    direction=pb.DIRECTION_OUT, ef=ef, include_entity=False,
                    include_context=True, max_fan_out=16, max_nodes=1000,
                    max_context_bytes=16 << 20)

            def variants(target: object, client: allidb.Client) -> Dict[str, Callable]:
                """The calls, raw then package in each pair, through ``target`` (a stub)."""

                def raw_ann(include_entity: bool) -> Callable:
                    return lambda q: target.Query(raw_ann_request(q, include_entity),
                                                  metadata=metadata, timeout=600)

                def package_ann(include_entity: bool) -> Callable:
                    return lambda q: client.query(q, k=10, hops=0, ef=ef,
                                                  include_entity=include_entity)

                def raw_rag_ids(q: np.ndarray) -> object:
                    reply = target.Query(raw_rag_request(q), metadata=metadata, timeout=600)
                    return [node.entity_id for node in reply.context.nodes]

                def package_rag_ids(q: np.ndarray) -> object:
                    return [node.id for node in client.query(q, **rag).context.nodes]

                calls = {
                    "ANN raw, entities": raw_ann(True),
                    "ANN package, entities": package_ann(True),
                    "ANN raw, ids only": raw_ann(False),
                    "ANN package, ids only": package_ann(False),
                    "RAG raw": lambda q: target.Query(raw_rag_request(q), metadata=metadata,
                                                      timeout=600),
                    "RAG package": lambda q: client.query(q, **rag),
                    "RAG raw, node ids read": raw_rag_ids,
                    "RAG package, node ids read": package_rag_ids,
                }
                if hasattr(allidb.QueryContext, "ids"):  # the package's fast path to the ids
                    calls["RAG raw, node ids read (2)"] = raw_rag_ids
                    calls["RAG package, context.ids"] = lambda q: client.query(q, **rag).context.ids
                return calls

            live = variants(stub, db)
            per_run, loads = paired_rounds(live, queries, args.runs, "overhead")
            # Without the network: the same calls answered by a ReplayStub holding the reply
            # to the first query; median of 5 repetitions of `--offline-calls` calls each.
            offline: Dict[str, float] = {}
            q0 = queries[0]
            replies = {
                "ANN": {True: stub.Query(raw_ann_request(q0, True), metadata=metadata),
                        False: stub.Query(raw_ann_request(q0, False), metadata=metadata)},
                "RAG": stub.Query(raw_rag_request(q0), metadata=metadata),
            }
            real_stub = db._stub
            try:
                extra: Dict[str, Callable] = {
                    "RAG package, node paths read": lambda q: [
                        node.path for node in db.query(q, **rag).context.nodes],
                    "ANN package, entities, vectors read": lambda q: [
                        r.entity.vector for r in db.query(q, k=10, hops=0, ef=ef)],
                }
                if hasattr(allidb.Entity, "vector_array"):
                    extra["ANN package, entities, vectors_array()"] = (
                        lambda q: db.query(q, k=10, hops=0, ef=ef).vectors_array())
                for name in list(variants(stub, db)) + list(extra):
                    if name.startswith("ANN"):
                        reply = replies["ANN"]["ids only" not in name]
                    else:
                        reply = replies["RAG"]
                    fake = ReplayStub(reply)
                    db._stub = fake
                    call = {**variants(fake, db), **extra}[name]
                    times = []
                    for _ in range(5):
                        t0 = time.perf_counter()
                        for j in range(args.offline_calls):
                            call(queries[j % len(queries)])
                        times.append((time.perf_counter() - t0) / args.offline_calls * 1e6)
                    offline[name] = statistics.median(times)
                    print(f"offline {name:38s} {offline[name]:8.1f} us per call", flush=True)
            finally:
                db._stub = real_stub
            context_nodes = len(replies["RAG"].context.nodes)
            sizes = [len(stub.Query(raw_rag_request(q), metadata=metadata).context.nodes)
                     for q in queries]
            print(f"# Graph-RAG contexts over the {len(queries)} questions: mean "
                  f"{statistics.fmean(sizes):.0f} nodes, median {statistics.median(sizes):.0f}, "
                  f"max {max(sizes)}", flush=True)
            reply_bytes = {"ANN entities": replies["ANN"][True].ByteSize(),
                           "ANN ids only": replies["ANN"][False].ByteSize(),
                           "RAG": replies["RAG"].ByteSize()}
            print(f"# reply of the first query: {context_nodes} context nodes; bytes "
                  f"{reply_bytes}", flush=True)
    finally:
        daemon.stop()
    med = {name: {m: statistics.median(r[m] for r in rows) for m in ("p50_us", "mean_us", "p99_us")}
           for name, rows in per_run.items()}
    overhead = {}
    names = list(per_run)
    for raw_name, pkg_name in zip(names[0::2], names[1::2]):
        pairs = list(zip(per_run[pkg_name], per_run[raw_name]))
        ratio = [p["p50_us"] / r["p50_us"] - 1 for p, r in pairs]
        diff = [p["p50_us"] - r["p50_us"] for p, r in pairs]
        overhead[pkg_name] = {"p50_ratio": statistics.median(ratio), "p50_us": statistics.median(diff),
                              "per_run_ratio": ratio}
        print(f"{pkg_name}: raw p50 {med[raw_name]['p50_us']:.0f} us, package p50 "
              f"{med[pkg_name]['p50_us']:.0f} us; per round "
              f"{', '.join(f'{x * 100:+.1f}%' for x in ratio)}: median "
              f"{overhead[pkg_name]['p50_ratio'] * 100:+.1f}% "
              f"({overhead[pkg_name]['p50_us']:+.0f} us)", flush=True)
    return {"runs": per_run, "loads": loads, "median": med, "overhead": overhead,
            "offline_us": offline, "context_nodes": context_nodes, "reply_bytes": reply_bytes,
            "context_sizes": {"mean": statistics.fmean(sizes), "median": statistics.median(sizes),
                              "max": max(sizes)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["ingest", "query", "overhead"],
                        help="run one benchmark (overhead: only when named)")
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
    parser.add_argument("--data", type=Path,
                        default=REPO_ROOT.parent / "shared" / "data" / "npm-minilm-20k",
                        help="--only overhead: the npm-minilm-20k directory (base.fvecs, query.fvecs)")
    parser.add_argument("--ef", type=int, default=64, help="--only overhead: HNSW ef (default 64)")
    parser.add_argument("--graph-seed", type=int, default=20,
                        help="--only overhead: seed of graphrag_bench's graph (default 20, its own)")
    parser.add_argument("--offline-calls", type=int, default=2000,
                        help="--only overhead: calls per repetition against the ReplayStub")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--package-src", type=Path, default=_src,
                        help="directory holding the allidb package (default clients/python/src)")
    args = parser.parse_args()

    print(f"# python {sys.version.split()[0]}, grpcio {__import__('grpc').__version__}, "
          f"protobuf {__import__('google.protobuf').protobuf.__version__}, numpy {np.__version__}, "
          f"load {load_average()}", flush=True)
    print(f"# package: {Path(allidb.__file__).parent}", flush=True)
    vectors = make_vectors(args.n, args.dim, args.seed) if args.only != "overhead" else None
    out: Dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="allidb-pybench-") as work:
        if args.only in (None, "ingest"):
            out["ingest"] = bench_ingest(args, vectors, Path(work))
        if args.only in (None, "query"):
            out["query"] = bench_query(args, vectors)
        if args.only == "overhead":
            out["overhead"] = bench_overhead(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
